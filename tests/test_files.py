"""Tests of mh2f_jax.files: atomic writes, PNG encoding, listing, names."""

import errno
import json
import os

import numpy as np
from PIL import Image
import pytest

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


OLD = b'old contents\n' * 1000


class _CutShort:
  """A binary file whose ``write`` stores the first half of the data, then fails."""

  def __init__(self, f):
    self._f = f

  def write(self, data):
    self._f.write(bytes(data)[:len(data) // 2])
    self._f.flush()
    raise OSError(errno.ENOSPC, 'No space left on device')

  def __getattr__(self, name):
    return getattr(self._f, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._f.close()


def _open_cut_short(created):
  """An ``open`` whose writable files are cut short; records the paths it opens."""
  def fake_open(path, mode='r', *args, **kwargs):
    f = open(path, mode, *args, **kwargs)  # pylint: disable=unspecified-encoding
    if any(c in mode for c in 'wax+'):
      created.append(os.fspath(path))
      return _CutShort(f)
    return f
  return fake_open


def test_write_atomic_cut_short_leaves_the_old_file_and_no_temporary(tmp_path,
                                                                     monkeypatch):
  target = tmp_path / 'report.json'
  target.write_bytes(OLD)
  created = []
  # The module's own writes go through this ``open`` (it shadows the builtin there).
  monkeypatch.setattr(files, 'open', _open_cut_short(created), raising=False)
  with pytest.raises(OSError) as e:
    files.write_atomic(target, b'new contents\n' * 5000)
  assert e.value.errno == errno.ENOSPC
  assert created, 'write_atomic opened no file for writing'
  assert target.read_bytes() == OLD
  assert os.listdir(tmp_path) == ['report.json']


def test_write_atomic_failing_rename_leaves_the_old_file_and_no_temporary(tmp_path,
                                                                          monkeypatch):
  target = tmp_path / 'report.json'
  target.write_bytes(OLD)
  renamed = []

  def failing_replace(src, dst):
    with open(src, 'rb') as f:
      renamed.append((os.fspath(src), os.fspath(dst), f.read()))
    raise OSError(errno.EIO, 'Input/output error')

  monkeypatch.setattr(os, 'replace', failing_replace)
  with pytest.raises(OSError, match='Input/output error'):
    files.write_atomic(target, b'new contents\n' * 5000)
  # The rename was of a complete temporary file beside the target.
  [(src, dst, contents)] = renamed
  assert dst == str(target) and os.path.dirname(src) == str(tmp_path)
  assert contents == b'new contents\n' * 5000
  assert target.read_bytes() == OLD
  assert os.listdir(tmp_path) == ['report.json']


@pytest.mark.parametrize('write', [files.write_atomic, files.write_new])
def test_writes_to_a_name_as_long_as_the_file_system_takes(tmp_path, write):
  for name in ('n' * 251 + '.png', 'é' * 125 + '.png'):  # 255 and 254 bytes.
    write(tmp_path / name, b'x')
    assert (tmp_path / name).read_bytes() == b'x'
  assert sorted(os.listdir(tmp_path)) == sorted(['n' * 251 + '.png', 'é' * 125 + '.png'])
