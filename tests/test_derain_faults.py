"""Faults around ``mh2f-derain``: unwritable outputs, Ctrl-C, odd inputs, 16-bit colour."""

import errno
import hashlib
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from mh2f_jax import derain
from mh2f_jax import files

from inference_helper import tiny_run  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 24, 20
NAMES = ('a.png', 'b.png', 'c.png')


@pytest.fixture(name='run', scope='session')
def _run_fixture(tmp_path_factory):
  return tiny_run(tmp_path_factory)


@pytest.fixture(name='photos')
def _photos(tmp_path):
  folder = tmp_path / 'photos'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for name in NAMES:
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(folder / name)
  return folder


def _main(capsys, run, *args):
  try:
    status = derain.run([f'--workdir={run.workdir}', '--checkpoint=latest', '--backend=jax',
                         *args])
  except KeyboardInterrupt:
    pytest.fail('Ctrl-C escaped the command with a traceback')
  captured = capsys.readouterr()
  return status, captured.out, captured.err


def _errors(text):
  return [line for line in text.splitlines() if line.startswith('error:')]


def _digests(folder):
  return {p: hashlib.sha256((folder / p).read_bytes()).hexdigest() for p in os.listdir(folder)}


def test_an_output_folder_under_a_file_is_refused_before_the_first_photo(
    run, photos, tmp_path, capsys):
  (tmp_path / 'file').write_text('x')
  out = tmp_path / 'file' / 'out'
  status, stdout, stderr = _main(capsys, run, f'--input={photos}', f'--output={out}')
  assert status == 2
  assert _errors(stderr) == [f'error: cannot write to the output folder {out}: Not a '
                             'directory']
  assert ' -> ' not in stdout  # No photo was derained.


def test_a_full_disk_stops_the_run_at_the_first_failed_write(
    run, photos, tmp_path, capsys, monkeypatch):
  out = tmp_path / 'out'
  real, attempts = files.write_new, []

  def write_new(path, data):
    attempts.append(path)
    if len(attempts) > 1:
      raise OSError(errno.ENOSPC, 'No space left on device')
    real(path, data)

  monkeypatch.setattr(files, 'write_new', write_new)
  status, stdout, stderr = _main(capsys, run, f'--input={photos}', f'--output={out}')
  assert status == 2 and len(attempts) == 2  # The third photo was not derained.
  assert _errors(stderr) == [f'error: cannot write {out / "b.png"}: No space left on '
                             'device; stopped after 1 of 3 image(s)']
  assert sorted(os.listdir(out)) == ['a.png'] and stdout.count(' -> ') == 1


def test_ctrl_c_is_one_line_exit_130_and_leaves_no_partial_file(
    run, photos, tmp_path, capsys, monkeypatch):
  out = tmp_path / 'out'
  real_link, links = os.link, []

  def link(src, dst):  # Interrupted between writing the second file and naming it.
    links.append(dst)
    if len(links) == 2:
      raise KeyboardInterrupt
    real_link(src, dst)

  monkeypatch.setattr(os, 'link', link)
  status, stdout, stderr = _main(capsys, run, f'--input={photos}', f'--output={out}')
  assert status == 130
  assert stderr.strip().splitlines() == ['python -m mh2f_jax.derain: interrupted']
  assert os.listdir(out) == ['a.png']  # Complete; b.png's temporary file removed.
  assert stdout.count(' -> ') == 1
  with Image.open(out / 'a.png') as img:
    img.load()


def test_skip_existing_continues_an_interrupted_run(run, photos, tmp_path, capsys):
  out = tmp_path / 'out'
  assert _main(capsys, run, f'--input={photos}', f'--output={out}')[0] == 0
  os.remove(out / 'b.png')
  kept = _digests(out)
  status, stdout, stderr = _main(capsys, run, f'--input={photos}', f'--output={out}',
                                 '--skip_existing')
  assert status == 0, stderr
  assert f'skipped 2 input(s) whose output exists in {out}' in stdout
  assert f'{photos / "b.png"} -> {out / "b.png"}' in stdout and stdout.count(' -> ') == 1
  assert 'derained 1 of 1 image(s)' in stdout
  assert sorted(os.listdir(out)) == ['a.png', 'b.png', 'c.png']
  assert {k: v for k, v in _digests(out).items() if k != 'b.png'} == kept


def test_entries_that_are_not_regular_files_are_listed_as_skipped(
    run, photos, tmp_path, capsys):
  os.symlink(tmp_path / 'gone.png', photos / 'dangling.png')
  os.mkfifo(photos / 'pipe.png')
  status, stdout, stderr = _main(capsys, run, f'--input={photos}',
                                 f'--output={tmp_path / "out"}')
  assert status == 0, stderr
  assert f'note: skipped {photos / "dangling.png"}: a dangling symbolic link' in stderr
  assert f'note: skipped {photos / "pipe.png"}: a FIFO (named pipe)' in stderr
  assert 'derained 3 of 3' in stdout


def test_a_fifo_input_is_refused_instead_of_waiting_forever(run, tmp_path):
  fifo = tmp_path / 'photo.png'
  os.mkfifo(fifo)
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO}
  try:
    proc = subprocess.run(
        [sys.executable, '-m', 'mh2f_jax.derain', f'--workdir={run.workdir}',
         f'--input={fifo}', f'--output={tmp_path / "out"}'],
        capture_output=True, text=True, env=env, timeout=120)
  except subprocess.TimeoutExpired:
    pytest.fail('mh2f-derain waited on a FIFO input')
  assert proc.returncode == 2
  assert _errors(proc.stderr) == [f'error: input {fifo} is a FIFO (named pipe), not an '
                                  'image file']


def _png_rgb16(path, pixels):
  """A 16-bit RGB PNG (which Pillow cannot write)."""
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data)))
  height, width = pixels.shape[:2]
  rows = b''.join(b'\0' + row.astype('>u2').tobytes() for row in pixels)
  path.write_bytes(b'\x89PNG\r\n\x1a\n'
                   + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 16, 2, 0, 0, 0))
                   + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))


def test_16_bit_colour_is_not_made_8_bit_without_a_word(run, tmp_path, capsys):
  folder = tmp_path / 'in'
  folder.mkdir()
  pixels = np.random.default_rng(1).integers(0, 65536, (H, W, 3), dtype=np.uint16)
  _png_rgb16(folder / 'deep.png', pixels)
  tifffile.imwrite(folder / 'deep.tif', pixels, photometric='rgb')
  Image.fromarray(pixels[..., 0]).save(folder / 'gray16.png')  # Keeps 16 bits: no note.
  status, _, stderr = _main(capsys, run, f'--input={folder}', f'--output={tmp_path / "o"}')
  assert status == 0, stderr
  notes = [line for line in stderr.splitlines() if '16 bits' in line]
  assert notes == [
      f'note: {folder / name} has 16 bits per colour channel: it is derained and written '
      'as 8-bit (16 bits are kept for grayscale only)' for name in ('deep.png', 'deep.tif')]


def test_a_workdir_whose_config_does_not_fit_its_checkpoint_is_named_as_such(
    run, photos, tmp_path, capsys):
  import json  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / 'run'
  shutil.copytree(run.workdir, workdir)
  config = json.loads((workdir / 'config.json').read_text())
  config['model']['features'] *= 2
  (workdir / 'config.json').write_text(json.dumps(config))
  status = derain.run([f'--workdir={workdir}', '--checkpoint=latest', f'--input={photos}',
                       f'--output={tmp_path / "out"}'])
  lines = _errors(capsys.readouterr().err)
  assert status == 2 and len(lines) == 1
  assert lines[0].startswith(f'error: the parameters in {workdir} (step ')
  assert lines[0].endswith(f'was {workdir / "config.json"} changed after the run was '
                           'trained?')
  assert 'export' not in lines[0]


def test_a_photo_added_beside_a_derained_one_of_the_same_stem_is_derained(
    run, photos, tmp_path, capsys):
  out = tmp_path / 'out'
  assert _main(capsys, run, f'--input={photos}', f'--output={out}')[0] == 0
  kept = _digests(out)
  # a.jpg sorts before a.png: its name must not depend on a.png being there.
  Image.fromarray(np.random.default_rng(5).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
      photos / 'a.jpg')
  status, stdout, stderr = _main(capsys, run, f'--input={photos}', f'--output={out}',
                                 '--skip_existing')
  assert status == 0, stderr
  assert f'skipped 3 input(s) whose output exists in {out}' in stdout
  assert f'{photos / "a.jpg"} -> {out / "a.jpg.png"}' in stdout and stdout.count(' -> ') == 1
  assert 'derained 1 of 1 image(s)' in stdout
  assert sorted(os.listdir(out)) == ['a.jpg.png', 'a.png', 'b.png', 'c.png']
  assert {k: v for k, v in _digests(out).items() if k != 'a.jpg.png'} == kept


def test_an_unwritable_output_folder_is_refused_before_the_model_is_loaded(
    run, photos, tmp_path, capsys, monkeypatch):
  from mh2f_jax import cli  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(cli, 'load_derainer',
                      lambda *args, **kwargs: pytest.fail('the model was loaded first'))
  (tmp_path / 'file').write_text('x')
  out = tmp_path / 'file' / 'out'
  status, _, stderr = _main(capsys, run, f'--input={photos}', f'--output={out}')
  assert status == 2
  assert _errors(stderr) == [f'error: cannot write to the output folder {out}: Not a '
                             'directory']


@pytest.mark.parametrize('name, output', [
    ('r' * 220 + '.png', 'r' * 220 + '.png'),  # The temporary file's name is longer.
    ('r' * 251 + '.jpg', None),  # The output name, with .png added, is cut to fit.
])
def test_photos_with_long_valid_names_are_derained(run, tmp_path, capsys, name, output):
  folder = tmp_path / 'in'
  folder.mkdir()
  Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(folder / name, format='PNG')
  status, stdout, stderr = _main(capsys, run, f'--input={folder}', f'--output={tmp_path / "o"}')
  assert status == 0, stderr
  written = os.listdir(tmp_path / 'o')
  assert len(written) == 1 and 'derained 1 of 1' in stdout
  assert written[0] == output or (output is None and written[0].startswith('r' * 200)
                                  and written[0].endswith('.png'))
