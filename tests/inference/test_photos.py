"""Tests for mh2f_jax.inference.photos: output names and reading transparent photos."""

import itertools
import os

import numpy as np
import pytest
from PIL import Image

from mh2f_jax import files
from mh2f_jax.inference import photos

NAME_MAX = 255  # Bytes in one file name on Linux and macOS file systems.


def _outputs(stem: str) -> set[str]:
  return {stem + '.png', stem + '.tif'}


def test_a_png_keeps_its_name_and_every_other_input_adds_png():
  assert photos.output_stem('a.png') == 'a'
  assert photos.output_stem('a.jpg') == 'a.jpg'
  assert photos.output_stem('a.JPG') == 'a.JPG'
  assert photos.output_stem('A.PNG') == 'A.PNG'  # A.png may be beside it.
  assert photos.output_stem('a.jpg.png') == 'a.jpg.png'  # a.jpg takes a.jpg.png.
  assert photos.output_stem('2024.05.01.png') == '2024.05.01'  # '.01' is no image.
  assert photos.output_stem('photo') == 'photo'


def test_output_names_never_meet_whatever_else_is_in_the_folder():
  names = ['a.png', 'a.jpg', 'a.jpg.png', 'a.png.png', 'a.tif', 'a.tif.png', 'A.PNG',
           'A.png', 'a.jpeg', 'a.b.png', 'a.webp.png', 'a.PNG.png', 'x' * 251 + '.png',
           'x' * 252 + '.jpg', 'y' * 300 + '.png', 'y' * 301 + '.png', 'é' * 120 + '.png']
  names = list(dict.fromkeys(names + [f'{n}.png' for n in names]))
  # Every name a folder lists has an image extension (files.list_images).
  assert all(os.path.splitext(n)[1].lower() in files.image_extensions() for n in names)
  taken = {}
  for name in names:
    for out in _outputs(photos.output_stem(name)):
      assert out not in taken, f'{name} and {taken.get(out)} both give {out}'
      taken[out] = name
  # A pure function of the input's own name: the same stem alone and in any company.
  folder = [f'/in/{n}' for n in names]
  for subset in itertools.islice(itertools.combinations(folder, 3), 200):
    assert photos.output_stems(list(subset)) == [photos.output_stem(os.path.basename(p))
                                                 for p in subset]


@pytest.mark.parametrize('name', ['x' * 251 + '.png', 'x' * 252 + '.jpg', 'é' * 125 + '.tif',
                                  os.fsdecode(b'\xff' * 250 + b'.jpg')])  # Not UTF-8.
def test_output_names_fit_the_file_system_with_room_for_a_comparison_suffix(name, tmp_path):
  stem = photos.output_stem(name)
  assert len(os.fsencode(stem + '-99.png')) <= NAME_MAX and stem.startswith(name[:100])
  (tmp_path / (stem + '-99.png')).write_bytes(b'')  # The file system takes it.


def test_uploads_of_one_name_in_one_request_get_distinct_names():
  stems = photos.upload_stems(['/u/1/IMG.png', '/u/2/IMG.png', '/u/3/IMG.png', '/u/4/IMG (2).png',
                               '/u/5/IMG.jpg'])
  assert stems == ['IMG', 'IMG (2)', 'IMG (3)', 'IMG (2) (2)', 'IMG.jpg']
  # An upload may have no image extension at all.
  assert photos.upload_stems(['/u/1/a.png', '/u/2/a']) == ['a', 'a (2)']


def _alpha_of(path):
  loaded = photos.read_image(str(path))
  assert loaded.kind == 'rgba', loaded.kind
  return loaded.alpha


@pytest.mark.parametrize('fmt', ['png', 'gif'])
def test_a_palette_image_with_a_transparent_colour_keeps_it(tmp_path, fmt):
  index = np.arange(24 * 20, dtype=np.uint8).reshape(24, 20) % 4
  img = Image.fromarray(index, 'P')
  # Entries 2 and 3 have one colour: only the index tells the transparent one.
  img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 255] + [9] * 756)
  path = tmp_path / f'p.{fmt}'
  img.save(path, transparency=2)
  np.testing.assert_array_equal(_alpha_of(path), np.where(index == 2, 0, 255))


def test_an_rgb_png_with_a_transparent_colour_keeps_it(tmp_path):
  rgb = np.zeros((8, 6, 3), np.uint8)
  rgb[2:4] = (10, 20, 30)
  path = tmp_path / 'trns.png'
  Image.fromarray(rgb).save(path, transparency=(10, 20, 30))
  expected = np.full((8, 6), 255)
  expected[2:4] = 0
  np.testing.assert_array_equal(_alpha_of(path), expected)
