function y = rgb2ycbcr_y(x)
% Y of MATLAB's rgb2ycbcr; uint8 input gives uint8 (rounded).
w = (1 / 255) * [65.481, 128.553, 24.966];
d = double(x);
y = w(1) * d(:, :, 1) + w(2) * d(:, :, 2);
y = y + w(3) * d(:, :, 3);
y = y + 16;
if isa(x, 'uint8')
  y = uint8(y);
end
end
