function g = rgb2gray(x)
% MATLAB's rgb2gray: its weights to the precision MATLAB stores them, summed
% R, G, then B; uint8 input gives uint8 (rounded half away from zero).
w = [0.298936021293775, 0.587043074451121, 0.114020904255103];
d = double(x);
g = w(1) * d(:, :, 1) + w(2) * d(:, :, 2);
g = g + w(3) * d(:, :, 3);
if isa(x, 'uint8')
  g = uint8(g);
end
end
