"""Tests for the ``python -m mh2f_jax.derain`` command: formats, safety, error messages."""

import hashlib
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from PIL import ImageOps

from mh2f_jax import derain
from mh2f_jax import inference

from inference_helper import tiny_run  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# All photos (after EXIF rotation) share one size, so the model compiles once for them.
H, W = 24, 20


@pytest.fixture(name='run', scope='session')
def _run_fixture(tmp_path_factory):
  return tiny_run(tmp_path_factory)


@pytest.fixture(name='photos', scope='module')
def _photos(tmp_path_factory):
  """A folder of awkward inputs; returns (folder, {name: what was written})."""
  folder = tmp_path_factory.mktemp('photos')
  rng = np.random.default_rng(0)
  arrays = {
      'rgba.png': rng.integers(0, 256, (H, W, 4), dtype=np.uint8),
      'gray.png': rng.integers(0, 256, (H, W), dtype=np.uint8),
      'g16.png': rng.integers(0, 65536, (H, W), dtype=np.uint16),
      'one.png': rng.integers(0, 256, (1, 1, 3), dtype=np.uint8),
  }
  for name, array in arrays.items():
    Image.fromarray(array).save(folder / name)
  # Stored W x H sideways with EXIF orientation 6 (rotate 90 degrees clockwise to show).
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(rng.integers(0, 256, (W, H, 3), dtype=np.uint8)).save(
      folder / 'photo.jpg', exif=exif.tobytes(), quality=95)
  (folder / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'not really a png')
  (folder / 'notes.txt').write_text('not an image')
  return folder


def _digests(folder):
  return {p: hashlib.sha256((folder / p).read_bytes()).hexdigest() for p in os.listdir(folder)}


def _run_cli(*args):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO}
  return subprocess.run([sys.executable, '-m', 'mh2f_jax.derain', *args], capture_output=True,
                        text=True, env=env, timeout=300)


def test_folder_of_awkward_inputs(run, photos, tmp_path):
  before = _digests(photos)
  out = tmp_path / 'out'
  proc = _run_cli(f'--workdir={run.workdir}', f'--input={photos}', f'--output={out}')
  # One unreadable file: reported by name, skipped, the rest done, exit status 1.
  assert proc.returncode == 1, proc.stderr
  assert 'Traceback' not in proc.stderr
  assert f'cannot read {photos / "bad.png"}' in proc.stderr
  assert 'derained 5 of 6' in proc.stdout
  # A PNG keeps its name, any other input gains .png (photos.output_stem).
  assert sorted(os.listdir(out)) == ['g16.png', 'gray.png', 'one.png', 'photo.jpg.png',
                                     'rgba.png']
  assert _digests(photos) == before  # inputs untouched

  # Each output is what the Python API gives, in the documented pixel format. The CLI
  # asked for 'best'; with no validation recorded that is the latest checkpoint. Its
  # default backend is 'auto' (ONNX Runtime where installed, else JAX).
  d = inference.Derainer.from_workdir(run.workdir, 'latest', backend='auto')
  assert f'backend {d.backend}' in proc.stdout

  with Image.open(photos / 'photo.jpg') as src, Image.open(out / 'photo.jpg.png') as got:
    upright = np.asarray(ImageOps.exif_transpose(src).convert('RGB'))
    assert upright.shape == (H, W, 3) and got.size == (W, H) and got.mode == 'RGB'
    np.testing.assert_array_equal(np.asarray(got), d.derain(upright))

  with Image.open(photos / 'rgba.png') as src, Image.open(out / 'rgba.png') as got:
    src_a, got_a = np.asarray(src), np.asarray(got)
    assert got.mode == 'RGBA'
    np.testing.assert_array_equal(got_a[..., 3], src_a[..., 3])  # alpha restored as is
    np.testing.assert_array_equal(got_a[..., :3], d.derain(src_a[..., :3]))

  with Image.open(photos / 'gray.png') as src, Image.open(out / 'gray.png') as got:
    rgb = np.repeat(np.asarray(src)[..., None], 3, axis=-1)
    assert got.mode == 'L' and got.size == (W, H)
    expected = Image.fromarray(d.derain(rgb)).convert('L')
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))

  with Image.open(photos / 'g16.png') as src, Image.open(out / 'g16.png') as got:
    assert src.mode == 'I;16' and got.mode == 'I;16' and got.size == (W, H)
    x = np.asarray(src).astype(np.float32) / 65535.0
    y = d.derain(np.repeat(x[..., None], 3, axis=-1))
    gray = np.clip(y @ np.array([0.299, 0.587, 0.114], np.float32), 0, 1)
    np.testing.assert_array_equal(np.asarray(got), np.floor(gray * 65535 + 0.5))

  with Image.open(out / 'one.png') as got:
    assert got.size == (1, 1) and got.mode == 'RGB'


def _main(capsys, *args):
  status = derain.run(list(args))
  captured = capsys.readouterr()
  assert 'Traceback' not in captured.err
  return status, captured


def test_single_1x1_image(run, photos, tmp_path, capsys):
  status, captured = _main(capsys, f'--workdir={run.workdir}', f'--input={photos / "one.png"}',
                           f'--output={tmp_path}')
  assert status == 0, captured.err
  assert 'note: ' in captured.err and 'latest' in captured.err  # 'best' fell back
  # The compilations, once, at the end.
  assert re.search(r'compiled \d+ programs? in \d+\.\d s\n$', captured.out), captured.out
  with Image.open(tmp_path / 'one.png') as got:
    assert got.size == (1, 1)


def test_backend_flag(run, photos, tmp_path, capsys):
  pytest.importorskip('onnxruntime', reason='onnxruntime is not installed (the [export] extra)')
  outputs = {}
  for backend in ('jax', 'onnxruntime'):
    status, captured = _main(capsys, f'--workdir={run.workdir}', f'--backend={backend}',
                             f'--input={photos / "gray.png"}', f'--output={tmp_path / backend}')
    assert status == 0 and f'backend {backend}' in captured.out, captured.err
    with Image.open(tmp_path / backend / 'gray.png') as got:
      outputs[backend] = np.asarray(got).astype(int)
  # Raw outputs agree within 1e-4 (tests/inference/test_derainer.py): 8-bit values within one step.
  assert np.abs(outputs['jax'] - outputs['onnxruntime']).max() <= 1


def _error(capsys, *args):
  status, captured = _main(capsys, *args)
  lines = captured.err.strip().splitlines()
  assert status == 2 and len(lines) == 1 and lines[0].startswith('error: '), captured.err
  return lines[0]


def test_user_errors_are_one_line(run, photos, tmp_path, capsys):
  out = f'--output={tmp_path / "out"}'
  msg = _error(capsys, f'--workdir={tmp_path / "missing"}', f'--input={photos}', out)
  assert 'missing' in msg and 'does not exist' in msg

  no_ckpt = tmp_path / 'no_checkpoints'
  no_ckpt.mkdir()
  (no_ckpt / 'config.json').write_bytes(open(os.path.join(run.workdir, 'config.json'),
                                             'rb').read())
  msg = _error(capsys, f'--workdir={no_ckpt}', f'--input={photos}', out)
  assert 'has no checkpoints' in msg

  empty = tmp_path / 'empty'
  empty.mkdir()
  (empty / 'readme.txt').write_text('no images here')
  msg = _error(capsys, f'--workdir={run.workdir}', f'--input={empty}', out)
  assert msg.startswith(f'error: no images in {empty}')

  msg = _error(capsys, f'--workdir={run.workdir}', f'--input={tmp_path / "nope.png"}', out)
  assert 'does not exist' in msg

  before = _digests(photos)
  msg = _error(capsys, f'--workdir={run.workdir}', f'--input={photos}', f'--output={photos}')
  assert 'input folder' in msg
  msg = _error(capsys, f'--workdir={run.workdir}', f'--input={photos / "gray.png"}',
               f'--output={photos}')
  assert 'refusing to overwrite' in msg
  assert _digests(photos) == before


def test_compare_writes_side_by_side_and_never_replaces(run, photos, tmp_path, capsys):
  out = tmp_path / 'out'
  args = (f'--workdir={run.workdir}', f'--input={photos}', f'--output={out}', '--compare')
  status, captured = _main(capsys, *args)
  assert status == 1 and 'derained 5 of 6' in captured.out  # bad.png, as without --compare
  names = ['g16', 'gray', 'one', 'photo.jpg', 'rgba']
  assert sorted(os.listdir(out / 'compare')) == [f'{n}.png' for n in names]
  d = inference.Derainer.from_workdir(run.workdir, 'latest')
  with Image.open(photos / 'rgba.png') as src, Image.open(out / 'compare' / 'rgba.png') as cmp:
    rgb = np.asarray(src)[..., :3]
    got = np.asarray(cmp)
  # input | 8-pixel white gap | derained, 8-bit RGB.
  assert got.shape == (H, 2 * W + 8, 3)
  np.testing.assert_array_equal(got[:, :W], rgb)
  assert (got[:, W:W + 8] == 255).all()
  np.testing.assert_array_equal(got[:, W + 8:], d.derain(rgb))
  with Image.open(out / 'compare' / 'g16.png') as cmp:  # 16-bit input: shown in 8 bits
    assert cmp.mode == 'RGB' and cmp.size == (2 * W + 8, H)

  # A second run (outputs replaced on request) keeps the first comparisons and writes
  # new ones beside them.
  before = _digests(out / 'compare')
  status, captured = _main(capsys, *args, '--overwrite')
  assert status == 1
  after = _digests(out / 'compare')
  assert sorted(after) == sorted([f'{n}.png' for n in names] + [f'{n}-2.png' for n in names])
  assert all(after[name] == digest for name, digest in before.items())
  assert after['rgba-2.png'] == before['rgba.png']  # same input, same model
  assert f'{out / "compare" / "rgba-2.png"}' in captured.out
  assert not [p for p in os.listdir(out / 'compare') if p.startswith('.')]  # no temp files
