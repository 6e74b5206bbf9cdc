"""A checkpoint that a running training deletes while it is read is not called corrupt."""

import logging
import os
import shutil

from absl import flags
import grain
import jax
import jax.numpy as jnp
import pytest

from mh2f_jax.errors import UserError
from mh2f_jax.training import steps
from mh2f_jax.workdir import checkpoints
from mh2f_jax.workdir import loading

# What TensorStore raises when the files of a checkpoint go from under a read.
_GONE = ValueError('NOT_FOUND: Error opening "zarr" driver: Error reading local file '
                   '"checkpoints/3/state/d/0": No such file or directory')


def _state(step: int) -> steps.TrainState:
  params = {'head': {'kernel': jnp.full((3, 3, 3, 4), float(step))}}
  return steps.TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                          opt_state={'mu': jax.tree.map(jnp.ones_like, params)})


@pytest.fixture(name='workdir')
def _workdir(tmp_path):
  """Training checkpoints at steps 2 and 3, and config.json."""
  path = str(tmp_path / 'run')
  checkpoints.save_config(path, {'model': {'features': 4}, 'seed': 0})
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  iterator = iter(grain.MapDataset.source(list(range(10))).to_iter_dataset())
  manager = checkpoints.create_train_manager(path, max_to_keep=None)
  for step in (2, 3):
    next(iterator)
    checkpoints.save_train_state(manager, step, _state(step), iterator)
  manager.wait_until_finished()
  manager.close()
  return path


def _retention_during_first_read(monkeypatch, workdir, *, new_step=None):
  """The first read finds its step deleted (after ``new_step`` was finished, if given)."""
  real = loading._restore_params_numpy  # pylint: disable=protected-access
  root = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
  calls = []

  def restore(item_dir, subtree):
    calls.append(item_dir)
    if len(calls) == 1:
      step_dir = os.path.dirname(item_dir)
      if new_step is not None:
        shutil.copytree(step_dir, os.path.join(root, str(new_step)))
      shutil.rmtree(step_dir)
      raise _GONE
    return real(item_dir, subtree)

  monkeypatch.setattr(loading, '_restore_params_numpy', restore)


def test_latest_deleted_by_retention_while_read_takes_the_new_latest(
    workdir, monkeypatch, caplog):
  _retention_during_first_read(monkeypatch, workdir, new_step=4)
  with caplog.at_level(logging.WARNING, logger='mh2f_jax'):
    params, step = loading.restore_params(workdir, 'latest')
  assert step == 4
  assert float(params['head']['kernel'].max()) == 3.0  # Step 3's files, now named 4.
  assert 'corrupt' not in caplog.text
  assert 'checkpoint 3 in' in caplog.text and 'deleted while it was read' in caplog.text


def test_latest_deleted_while_read_without_a_newer_one_takes_the_one_before(
    workdir, monkeypatch, caplog):
  _retention_during_first_read(monkeypatch, workdir)
  with caplog.at_level(logging.WARNING, logger='mh2f_jax'):
    _, step = loading.restore_params(workdir, 'latest')
  assert step == 2
  assert 'corrupt' not in caplog.text


def test_a_named_step_deleted_while_read_is_not_called_corrupt(workdir, monkeypatch):
  _retention_during_first_read(monkeypatch, workdir)
  with pytest.raises(UserError) as raised:
    loading.restore_params(workdir, 3)
  assert 'corrupt' not in str(raised.value)
  assert 'checkpoint 3 in' in str(raised.value) and 'deleted while it was read' in str(
      raised.value)


def test_a_checkpoint_that_exists_and_fails_is_still_corrupt(workdir, monkeypatch, caplog):
  real = loading._restore_params_numpy  # pylint: disable=protected-access

  def restore(item_dir, subtree):
    if os.sep + '3' + os.sep in item_dir:
      raise ValueError('DATA_LOSS: truncated')
    return real(item_dir, subtree)

  monkeypatch.setattr(loading, '_restore_params_numpy', restore)
  with caplog.at_level(logging.WARNING, logger='mh2f_jax'):
    _, step = loading.restore_params(workdir, 'latest')
  assert step == 2 and 'checkpoint 3 in' in caplog.text and 'is corrupt' in caplog.text
  with pytest.raises(UserError, match='checkpoint 3 in .* is corrupt'):
    loading.restore_params(workdir, 3)
