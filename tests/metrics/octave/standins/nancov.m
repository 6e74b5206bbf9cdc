function c = nancov(x)
% MATLAB's nancov default: rows with any NaN are left out, then cov (N - 1).
x = x(~any(isnan(x), 2), :);
n = size(x, 1);
xc = x - sum(x, 1) / n;
c = (xc' * xc) / (n - 1);
end
