function b = blkproc(a, blk, border, fun)
% MATLAB's blkproc without overlap on an image of whole blocks: fun's output for
% block (r, c) placed at block position (r, c).
rows = size(a, 1) / blk(1);
cols = size(a, 2) / blk(2);
b = [];
for c = 1:cols
  colout = [];
  for r = 1:rows
    colout = [colout; fun(a((r-1)*blk(1)+1:r*blk(1), (c-1)*blk(2)+1:c*blk(2)))];
  end
  b = [b colout];
end
end
