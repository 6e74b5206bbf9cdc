"""Tests for mh2f_jax.inference.derainer: tiling, dtypes, self-ensemble, loading and exporting."""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mh2f_jax import errors
from mh2f_jax import inference
from mh2f_jax import metrics
from mh2f_jax import model as model_lib
from mh2f_jax.export import params_file

from inference_helper import _tiny_model_and_params, rainy_photo, random_params, tiny_run  # pylint: disable=g-bad-import-order


@pytest.fixture(name='run', scope='session')
def _run_fixture(tmp_path_factory):
  return tiny_run(tmp_path_factory)


# ------------------------------------------------------------------ random tiny models


# ----------------------------------------------------------------------------- tiling
# (The tiled executors themselves are tested in tests/inference/test_tiling.py.)


def test_tiling_settings_are_validated(hadb_derainer):
  for kwargs in ({'tile_size': 130}, {'tile_size': 128, 'tile_overlap': 30},
                 {'tile_size': 128, 'tile_overlap': 128, 'tiling': 'approx'},
                 {'tile_size': 128, 'tile_overlap': 16, 'tile_margin': 12,
                  'tiling': 'approx'},
                 {'tile_size': -4}, {'tiling': 'fast'}):
    with pytest.raises(ValueError, match='tile|tiling'):
      hadb_derainer.set_tiling(**kwargs)
  with pytest.raises(errors.UserError):
    hadb_derainer.set_tiling(tile_size=130)
  # Overlap and margin only matter to blended tiling.
  hadb_derainer.set_tiling(tile_size=16)
  assert hadb_derainer.tiling == 'exact' and hadb_derainer.tile_size == 16
  hadb_derainer.set_tiling()


# --------------------------------------------------------------------- dtypes, batches


def test_derain_keeps_dtype_and_shape(hadb_derainer):
  d = hadb_derainer
  rainy = rainy_photo(20, 24)
  raw = d.derain_raw(rainy[None].astype(np.float32) / 255.0)[0]

  out8 = d.derain(rainy)
  assert out8.dtype == np.uint8 and out8.shape == rainy.shape
  np.testing.assert_array_equal(out8, metrics.to_uint8(raw))

  x32 = rainy.astype(np.float32) / 255.0
  out32 = d.derain(x32)
  assert out32.dtype == np.float32 and out32.shape == rainy.shape
  assert out32.min() >= 0.0 and out32.max() <= 1.0
  np.testing.assert_allclose(out32, np.clip(raw, 0, 1), atol=1e-6)

  out64 = d.derain(x32.astype(np.float64))
  assert out64.dtype == np.float64
  np.testing.assert_allclose(out64, out32, atol=1e-6)

  out_jax = d.derain(jnp.asarray(x32))
  np.testing.assert_allclose(out_jax, out32, atol=1e-6)


def test_batch_equals_single_images(hadb_derainer):
  batch = np.stack([rainy_photo(20, 24, seed=1), rainy_photo(20, 24, seed=2)])
  out = hadb_derainer.derain(batch)
  assert out.shape == batch.shape and out.dtype == np.uint8
  x = batch.astype(np.float32) / 255.0
  together = hadb_derainer.derain_raw(x)
  for i in range(2):
    np.testing.assert_allclose(together[i], hadb_derainer.derain_raw(x[i:i + 1])[0],
                               atol=1e-5)


def test_derain_rejects_bad_arrays(hadb_derainer):
  for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
              np.zeros((8, 8, 3), np.int32), np.zeros((0, 8, 3), np.float32)):
    with pytest.raises(ValueError):
      hadb_derainer.derain(bad)


def test_self_ensembles_flips_by_default_and_x8_by_name(hadb_derainer, caplog):
  x = rainy_photo(24, 24, seed=3).astype(np.float32) / 255.0
  plain = hadb_derainer.derain_raw(x[None])[0]
  flips = hadb_derainer.derain_raw(x[None], self_ensemble=True)[0]
  assert np.abs(flips - plain).max() > 1e-4  # The ensemble is not the single pass.
  np.testing.assert_array_equal(hadb_derainer.derain_raw(x[None], self_ensemble='flips')[0],
                                flips)
  np.testing.assert_array_equal(hadb_derainer.derain_raw(x[None], self_ensemble='none')[0],
                                plain)
  # Averaging over the flips makes the result equivariant to them.
  for transform in (lambda a: a[:, ::-1], lambda a: a[::-1]):
    got = hadb_derainer.derain_raw(np.ascontiguousarray(transform(x))[None],
                                   self_ensemble=True)[0]
    np.testing.assert_allclose(got, transform(flips), atol=1e-5)
  with caplog.at_level(logging.WARNING, logger='mh2f_jax'):
    d = inference.Derainer(hadb_derainer.model, hadb_derainer.params, self_ensemble='x8')
    x8 = d.derain_raw(x[None])[0]
    d.derain_raw(x[None])
  assert caplog.text.count('sideways') == 1  # Once per Derainer, not per image.
  for transform in (lambda a: np.rot90(a, 1), lambda a: np.rot90(a, 3)[::-1]):
    got = d.derain_raw(np.ascontiguousarray(transform(x))[None])[0]
    np.testing.assert_allclose(got, transform(x8), atol=1e-5)
  with pytest.raises(ValueError, match='self_ensemble'):
    inference.Derainer(hadb_derainer.model, hadb_derainer.params, self_ensemble='x4')


# ------------------------------------------------------------------ loading, exporting


def test_from_workdir_best_falls_back_to_latest(run, caplog):
  from mh2f_jax.workdir import checkpoints
  latest = checkpoints.checkpoint_steps(run.workdir)[-1]
  with caplog.at_level(logging.WARNING, logger='mh2f_jax'):
    d = inference.Derainer.from_workdir(run.workdir)  # 'best', but no validation ran
  assert d.step == latest and d.checkpoint == 'latest'
  assert 'no best checkpoint' in caplog.text
  with pytest.raises(errors.UserError, match='no best checkpoint'):
    inference.Derainer.from_workdir(run.workdir, 'best', fallback_to_latest=False)
  with pytest.raises(errors.UserError, match='step 12345'):
    inference.Derainer.from_workdir(run.workdir, 12345)


def test_export_and_load_params_file(run, tmp_path):
  d = inference.Derainer.from_workdir(run.workdir, 'latest')
  path = str(tmp_path / 'mh2f.msgpack')
  info = params_file.export_params(run.workdir, path, 'latest')
  assert info['step'] == d.step and os.path.isfile(path)
  rainy = rainy_photo(20, 24, seed=4)
  expected = d.derain(rainy)
  from_json = inference.Derainer.from_params_file(path, os.path.join(run.workdir,
                                                                     'config.json'))
  np.testing.assert_array_equal(from_json.derain(rainy), expected)
  from_dict = inference.Derainer.from_params_file(path, info['model_config'])
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(from_dict.params),
               jax.device_get(d.params))
  with pytest.raises(errors.UserError, match='refusing'):
    params_file.export_params(run.workdir, os.path.join(run.workdir, 'config.json'))


def test_params_file_errors(run, tmp_path):
  bad = tmp_path / 'bad.msgpack'
  bad.write_bytes(b'\x00garbage\xff' * 10)
  with pytest.raises(errors.UserError, match='not a parameters file'):
    inference.Derainer.from_params_file(str(bad), {'features': 8, 'num_blocks': 2})
  with pytest.raises(errors.UserError, match='cannot read'):
    inference.Derainer.from_params_file(str(tmp_path / 'missing.msgpack'), {})
  good = str(tmp_path / 'p.msgpack')
  params_file.export_params(run.workdir, good, 'latest')
  with pytest.raises(errors.UserError, match='do not fit'):
    inference.Derainer.from_params_file(good, {'features': 16, 'num_blocks': 2})


# ------------------------------------------------------------------------- backends


def test_onnxruntime_backend_equals_jax_whole_and_tiled(hadb_derainer):
  pytest.importorskip('onnxruntime', reason='onnxruntime is not installed (the [export] extra)')
  model, params = _tiny_model_and_params('hadb')
  fast = inference.Derainer(model, params, backend='onnxruntime')
  assert fast.backend == 'onnxruntime' and hadb_derainer.backend == 'jax'
  # Whole images (one not a multiple of 4, a batch), then the tiled path.
  for batch in (rainy_photo(37, 45)[None], np.stack([rainy_photo(20, 24, 1), rainy_photo(20, 24, 2)])):
    x = batch.astype(np.float32) / 255.0
    diff = np.abs(fast.derain_raw(x) - hadb_derainer.derain_raw(x)).max()
    assert diff <= 1e-4
  x = rainy_photo(70, 61, seed=5).astype(np.float32) / 255.0
  for d in (fast, hadb_derainer):
    d.set_tiling(32, 16, 4, max_untiled_pixels=0)
  try:
    assert fast.will_tile(70, 61)
    assert np.abs(fast.derain_raw(x[None]) - hadb_derainer.derain_raw(x[None])).max() <= 1e-4
  finally:
    hadb_derainer.set_tiling()


def test_backend_choice(monkeypatch, caplog):
  from mh2f_jax.inference import backends
  model, params = _tiny_model_and_params('hadb')
  with pytest.raises(ValueError, match='backend must be one of'):
    inference.Derainer(model, params, backend='tensorrt')
  monkeypatch.setattr(backends, 'onnxruntime_available', lambda: False)
  with pytest.raises(errors.UserError, match='pip install onnx onnxruntime'):
    inference.Derainer(model, params, backend='onnxruntime')
  # 'auto' without the packages: JAX, and one line saying how to get the faster runtime.
  with caplog.at_level(logging.WARNING, logger='mh2f_jax'):
    assert inference.Derainer(model, params, backend='auto').backend == 'jax'
  assert len(caplog.records) == 1 and 'onnxruntime is not installed' in caplog.text
  monkeypatch.setattr(backends, 'onnxruntime_available', lambda: True)
  assert backends.choose_backend('auto', model) == 'onnxruntime'  # CPU, float32, installed
  bf16 = model_lib.MH2FNet(features=8, num_blocks=2, dtype=jnp.bfloat16)
  assert backends.choose_backend('auto', bf16) == 'jax'  # the graph is float32 only
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert backends.choose_backend('auto', model) == 'jax'


def test_from_workdir_takes_the_ema_params_unless_raw(tmp_path):
  from absl import flags  # pylint: disable=g-import-not-at-top
  import grain  # pylint: disable=g-import-not-at-top
  from mh2f_jax.workdir import checkpoints  # pylint: disable=g-import-not-at-top
  from mh2f_jax.training import steps  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  model = model_lib.MH2FNet(features=8, num_blocks=2)
  raw, ema = random_params(model, 0), random_params(model, 1)
  workdir = str(tmp_path)
  checkpoints.save_config(workdir, {'model': {'features': 8, 'num_blocks': 2},
                                      'ema_decay': 0.99})
  manager = checkpoints.create_train_manager(workdir, max_to_keep=None,
                                               enable_async=False)
  state = steps.TrainState(step=np.int32(3), params=raw, opt_state={'mu': raw},
                           ema_params=ema)
  checkpoints.save_train_state(manager, 3, state, iter(
      grain.MapDataset.source([0]).to_iter_dataset()))
  manager.close()
  by_default = inference.Derainer.from_workdir(workdir, 'latest')
  assert by_default.checkpoint == 'latest, EMA'
  for got, want in zip(jax.tree.leaves(by_default.params), jax.tree.leaves(ema)):
    np.testing.assert_array_equal(np.asarray(got), want)
  as_raw = inference.Derainer.from_workdir(workdir, 'latest', params='raw')
  assert as_raw.checkpoint == 'latest'
  for got, want in zip(jax.tree.leaves(as_raw.params), jax.tree.leaves(raw)):
    np.testing.assert_array_equal(np.asarray(got), want)
