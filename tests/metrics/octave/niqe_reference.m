function niqe_reference(release_dir, images_mat, names_file, out_file)
% NIQE of every image in images_mat by the release's computequality.m, 'gray'
% (the release as written) and 'y' (Y of rgb2ycbcr given as a grey image).
pkg load image
addpath(fullfile(fileparts(mfilename('fullpath')), 'standins'));
addpath(release_dir);
load(fullfile(release_dir, 'modelparameters.mat'));
images = load(images_mat);
names = strsplit(strtrim(fileread(names_file)), "\n");
fid = fopen(out_file, 'w');
for i = 1:numel(names)
  im = images.(sprintf('img%d', i - 1));
  g = computequality(im, 96, 96, 0, 0, mu_prisparam, cov_prisparam);
  y = g;
  if size(im, 3) == 3
    y = computequality(rgb2ycbcr_y(im), 96, 96, 0, 0, mu_prisparam, cov_prisparam);
  end
  fprintf(fid, '%s %.17g %.17g\n', names{i}, g, y);
end
fclose(fid);
end
