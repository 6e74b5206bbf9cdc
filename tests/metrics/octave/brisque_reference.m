function brisque_reference(release_dir, images_mat, names_file, out_file)
% BRISQUE of every image in images_mat by the release's brisquescore.m (which
% runs svm-scale and svm-predict in release_dir), then the 36 features of
% brisque_feature.m on the grey image brisquescore.m makes.
pkg load image
addpath(fullfile(fileparts(mfilename('fullpath')), 'standins'));
addpath(release_dir);
images = load(images_mat);
names = strsplit(strtrim(fileread(names_file)), "\n");
fid = fopen(out_file, 'w');
here = pwd;
cd(release_dir);
for i = 1:numel(names)
  im = images.(sprintf('img%d', i - 1));
  s = brisquescore(im);
  g = im;
  if size(g, 3) == 3
    g = rgb2gray(uint8(g));
  end
  f = brisque_feature(double(g));
  fprintf(fid, '%s %.17g', names{i}, s);
  fprintf(fid, ' %.17g', f);
  fprintf(fid, '\n');
end
cd(here);
fclose(fid);
end
