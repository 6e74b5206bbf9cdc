"""Tests of the workdir layout: configs, params-only restore, the best checkpoint, errors."""

import json
import os
from typing import Any

from absl import flags
from flax import struct
import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mh2f_jax.workdir import checkpoints

from mh2f_jax.workdir import loading
from mh2f_jax.training import steps
from mh2f_jax.errors import UserError


def _params(value: float) -> dict:
  return {'head': {'kernel': jnp.full((3, 3, 3, 4), value), 'bias': jnp.zeros((4,))},
          'mheb_0': {'gamma': jnp.arange(4, dtype=jnp.float32) * value}}


def _state(step: int) -> steps.TrainState:
  params = _params(float(step))
  return steps.TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                          opt_state={'mu': jax.tree.map(jnp.ones_like, params)})


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A workdir with training checkpoints at steps 1..3 (2 kept) and config.json."""
  path = str(tmp_path_factory.mktemp('workdir'))
  checkpoints.save_config(path, {'model': {'features': 4}, 'seed': 0})
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  iterator = iter(grain.MapDataset.source(list(range(10))).to_iter_dataset())
  manager = checkpoints.create_train_manager(path, max_to_keep=2)
  for step in (1, 2, 3):
    next(iterator)
    checkpoints.save_train_state(manager, step, _state(step), iterator)
  manager.wait_until_finished()
  manager.close()
  return path


def _assert_params(params, value):
  expected = jax.tree.map(np.asarray, _params(value))
  assert jax.tree.structure(params) == jax.tree.structure(expected)
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, want)


def test_restore_params_latest_and_by_step(workdir):
  assert checkpoints.checkpoint_steps(workdir) == [2, 3]
  params, step = loading.restore_params(workdir)
  assert step == 3
  _assert_params(params, 3.0)
  for selector in (2, '2', ' 2 '):
    params, step = loading.restore_params(workdir, selector)
    assert step == 2
    _assert_params(params, 2.0)


def test_unknown_step_lists_available_steps(workdir):
  with pytest.raises(UserError, match=r'no checkpoint at step 1; .*steps 2, 3'):
    loading.restore_params(workdir, 1)


@pytest.mark.parametrize('selector', ['newest', '-1', -1, 2.5, None])
def test_bad_selector(workdir, selector):
  with pytest.raises(UserError, match='checkpoint'):
    loading.restore_params(workdir, selector)


def test_best_requires_a_validation(workdir):
  with pytest.raises(UserError, match='no best checkpoint'):
    loading.restore_params(workdir, 'best')


def test_missing_workdir_and_empty_workdir(tmp_path):
  with pytest.raises(UserError, match='does not exist'):
    loading.restore_params(str(tmp_path / 'nope'))
  with pytest.raises(UserError, match='has no checkpoints'):
    loading.restore_params(str(tmp_path))
  with pytest.raises(UserError, match='does not exist'):
    checkpoints.load_config(str(tmp_path / 'nope'))
  with pytest.raises(UserError, match='config.json does not exist'):
    checkpoints.load_config(str(tmp_path))
  (tmp_path / 'config.json').write_text('{not json')
  with pytest.raises(UserError, match='cannot read'):
    checkpoints.load_config(str(tmp_path))


def test_config_roundtrip(workdir):
  config = checkpoints.load_config(workdir)
  assert config.model.features == 4 and config.seed == 0


def test_best_checkpoint_replaces_the_previous_one(tmp_path):
  path = str(tmp_path)
  manager = checkpoints.create_best_manager(path)
  checkpoints.save_best(manager, path, 5, _params(5.0), 20.0, 0.7)
  record = checkpoints.save_best(manager, path, 9, _params(9.0), 21.5, 0.75)
  manager.close()
  assert record == {'step': 9, 'psnr_y': 21.5, 'ssim_y': 0.75}
  with open(os.path.join(path, checkpoints.BEST_FILE)) as f:
    assert json.load(f) == record
  assert checkpoints.read_best(path) == record
  assert checkpoints.best_steps(path) == [9]
  params, step = loading.restore_params(path, 'best')
  assert step == 9
  _assert_params(params, 9.0)
  # The best step is also found by number, though it is no training checkpoint.
  _, step = loading.restore_params(path, 9)
  assert step == 9
  with pytest.raises(UserError, match='use checkpoint=best'):
    loading.restore_params(path, 'latest')


def test_load_workdir_and_resolve_checkpoint(workdir):
  config, params, step = loading.load_workdir(workdir, 'latest')
  assert config.model.features == 4 and step == 3
  _assert_params(params, 3.0)
  # No best checkpoint in this workdir: 'best' falls back to 'latest' unless refused.
  assert loading.resolve_checkpoint(workdir, 'best', fallback=True) == 'latest'
  assert loading.load_workdir(workdir, 'best')[2] == 3
  with pytest.raises(UserError, match='no best checkpoint'):
    loading.load_workdir(workdir, 'best', fallback=False)
  assert loading.resolve_checkpoint(workdir, '2', fallback=False) == 2


def test_restore_train_state_round_trip(tmp_path):
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  path = str(tmp_path)
  manager = checkpoints.create_train_manager(path, max_to_keep=1, enable_async=False)
  iterator = iter(grain.MapDataset.source(list(range(10))).to_iter_dataset())
  abstract = jax.eval_shape(lambda: _state(0))
  assert checkpoints.restore_train_state(manager, abstract, iterator) is None
  next(iterator)
  checkpoints.save_train_state(manager, 5, _state(5), iterator)
  fresh = iter(grain.MapDataset.source(list(range(10))).to_iter_dataset())
  state = checkpoints.restore_train_state(manager, abstract, fresh)
  manager.close()
  assert int(state.step) == 5
  _assert_params(jax.tree.map(np.asarray, state.params), 5.0)
  assert next(fresh) == 1  # The data position came back with the state.


@struct.dataclass
class _StateBeforeEma:
  """The TrainState layout of checkpoints written before EMA existed."""
  step: jax.Array
  params: Any
  opt_state: Any


def _save_raw_state(path: str, step: int, state: Any) -> None:
  """Saves ``state`` as the code before EMA did: the dataclass itself as the item."""
  manager = checkpoints.create_train_manager(path, max_to_keep=None, enable_async=False)
  iterator = iter(grain.MapDataset.source(list(range(10))).to_iter_dataset())
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=grain.checkpoint.CheckpointSave(iterator)), force=True)
  manager.close()


def _restore(path: str, abstract: Any) -> Any:
  manager = checkpoints.create_train_manager(path, max_to_keep=None, enable_async=False)
  iterator = iter(grain.MapDataset.source(list(range(10))).to_iter_dataset())
  try:
    return checkpoints.restore_train_state(manager, abstract, iterator)
  finally:
    manager.close()


def test_workdir_from_before_ema_still_resumes_and_loads(tmp_path):
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  path = str(tmp_path)
  old = _StateBeforeEma(step=jnp.asarray(4, jnp.int32), params=_params(4.0),
                        opt_state={'mu': jax.tree.map(jnp.ones_like, _params(4.0))})
  _save_raw_state(path, 4, old)
  checkpoints.save_config(path, {'model': {'features': 4}, 'seed': 0})  # No ema_decay.
  state = _restore(path, jax.eval_shape(lambda: _state(0)))
  assert isinstance(state, steps.TrainState) and state.ema_params is None
  assert int(state.step) == 4
  _assert_params(jax.tree.map(np.asarray, state.params), 4.0)
  # The default, params='ema', takes the raw parameters of a run without EMA.
  _, params, step = loading.load_workdir(path, 'latest')
  assert step == 4
  _assert_params(params, 4.0)
  with pytest.raises(UserError, match="no ema_params .* use params='raw'"):
    loading.restore_params(path, 'latest', params='ema')
  with pytest.raises(UserError, match="params must be 'ema' or 'raw'"):
    loading.load_workdir(path, 'latest', params='average')


def test_ema_params_round_trip_and_selection(tmp_path):
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  path = str(tmp_path)
  checkpoints.save_config(path, {'model': {'features': 4}, 'seed': 0, 'ema_decay': 0.9})
  state = _state(6).replace(ema_params=_params(0.5))
  manager = checkpoints.create_train_manager(path, max_to_keep=None, enable_async=False)
  iterator = iter(grain.MapDataset.source(list(range(10))).to_iter_dataset())
  checkpoints.save_train_state(manager, 6, state, iterator)
  manager.close()
  restored = _restore(path, jax.eval_shape(lambda: _state(0).replace(ema_params=_params(0.))))
  _assert_params(jax.tree.map(np.asarray, restored.ema_params), 0.5)
  _assert_params(jax.tree.map(np.asarray, restored.params), 6.0)
  _assert_params(loading.load_workdir(path, 'latest')[1], 0.5)
  _assert_params(loading.load_workdir(path, 'latest', params='raw')[1], 6.0)
  # The best checkpoint keeps both; validation scored the EMA ones.
  best = checkpoints.create_best_manager(path)
  checkpoints.save_best(best, path, 6, _params(6.0), 30.0, 0.9, ema_params=_params(0.5))
  best.close()
  _assert_params(loading.load_workdir(path, 'best')[1], 0.5)
  _assert_params(loading.load_workdir(path, 'best', params='raw')[1], 6.0)
