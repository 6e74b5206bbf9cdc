function y = nanmean(x)
% MATLAB's nanmean along the first dimension.
nans = isnan(x);
n = sum(~nans, 1);
x(nans) = 0;
y = sum(x, 1) ./ n;
end
