function out = imresize(in, scale)
% MATLAB's imresize(in, scale) for a 2-D image: bicubic, antialiased when
% shrinking; rows first, then columns; each output the sum of its taps in order.
out = double(in);
for dim = 1:2
  n = size(out, dim);
  m = ceil(scale * n);
  [w, ind] = contributions(n, m, scale, @cubic, 4, true);
  if dim == 1
    o = zeros(m, size(out, 2));
    for k = 1:size(w, 2)
      o = o + w(:, k) .* out(ind(:, k), :);
    end
  else
    o = zeros(size(out, 1), m);
    for k = 1:size(w, 2)
      o = o + (w(:, k).') .* out(:, ind(:, k));
    end
  end
  out = o;
end
end

function [weights, indices] = contributions(in_length, out_length, scale, kernel, kernel_width, antialiasing)
if (scale < 1) && (antialiasing)
  h = @(x) scale * kernel(scale * x);
  kernel_width = kernel_width / scale;
else
  h = kernel;
end
x = (1:out_length)';
u = x/scale + 0.5 * (1 - 1/scale);
left = floor(u - kernel_width/2);
P = ceil(kernel_width) + 2;
indices = bsxfun(@plus, left, 0:P-1);
weights = h(bsxfun(@minus, u, indices));
weights = bsxfun(@rdivide, weights, sum(weights, 2));
aux = [1:in_length, in_length:-1:1];
indices = aux(mod(indices-1, length(aux)) + 1);
kill = find(~any(weights, 1));
if ~isempty(kill)
  weights(:, kill) = [];
  indices(:, kill) = [];
end
end

function f = cubic(x)
absx = abs(x);
absx2 = absx.^2;
absx3 = absx.^3;
f = (1.5*absx3 - 2.5*absx2 + 1) .* (absx <= 1) + ...
    (-0.5*absx3 + 2.5*absx2 - 4*absx + 2) .* ((1 < absx) & (absx <= 2));
end
