"""Tests of mh2f_jax.files: atomic writes, PNG encoding, listing, names."""

import json
import os

import numpy as np
from PIL import Image

from mh2f_jax import files


def test_write_json_atomic_leaves_no_temporary_files(tmp_path):
  target = tmp_path / 'out.json'
  files.write_json_atomic(str(target), {'a': 1})
  files.write_json_atomic(str(target), {'a': 2})
  assert json.loads(target.read_text()) == {'a': 2}
  assert os.listdir(tmp_path) == ['out.json']


def test_write_atomic_keeps_the_umask_permissions(tmp_path):
  old = os.umask(0o022)
  try:
    files.write_atomic(tmp_path / 'a.bin', b'x')
  finally:
    os.umask(old)
  assert (os.stat(tmp_path / 'a.bin').st_mode & 0o777) == 0o644


def test_encode_png_round_trips(tmp_path):
  image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
  path = tmp_path / 'x.png'
  path.write_bytes(files.encode_png(image))
  np.testing.assert_array_equal(np.asarray(Image.open(path)), image)


def test_list_images_skips_hidden_folders_and_other_files(tmp_path):
  for name in ('b.PNG', 'a.jpg', '.hidden.png', 'notes.txt'):
    (tmp_path / name).write_bytes(b'')
  (tmp_path / 'sub.png').mkdir()
  names = [os.path.basename(p) for p in files.list_images(str(tmp_path))]
  assert names == ['a.jpg', 'b.PNG']
  assert files.list_images(str(tmp_path), {'.jpg'}) == [str(tmp_path / 'a.jpg')]


def test_decode_name():
  assert files.decode_name(b'caf\xc3\xa9') == 'café'
  assert files.decode_name(np.array(b'x')) == 'x'
  assert files.decode_name(np.bytes_(b'\xff')) == '\ufffd'
  assert files.decode_name(7) == '7'
