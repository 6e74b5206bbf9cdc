"""The workdir on disk: every save, restore and "which checkpoint" decision.

Training writes, evaluation and inference read, through this one module: ``config.json``
(the resolved config), ``checkpoints/STEP/`` (Orbax steps with items 'state', the
``TrainState``, and 'data', the Grain iterator), ``best/STEP/`` (the parameters of the
best validation, items 'params', 'ema_params' with an EMA, and 'metrics') and
``best.json``; docs/training.md (Outputs, The best checkpoint, EMA) gives the layout and
why it is so. Parameters are restored as NumPy arrays from the checkpoint metadata alone,
so a checkpoint written on 8 GPUs restores on a laptop CPU.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp

from mh2f_jax.workdir import recovery
from mh2f_jax import files
from mh2f_jax.errors import UserError

_log = logging.getLogger(__name__)

CONFIG_FILE = 'config.json'
BEST_FILE = 'best.json'
CHECKPOINT_DIR = 'checkpoints'
BEST_DIR = 'best'
# Item names inside a training checkpoint step and a best step.
STATE_ITEM = 'state'
DATA_ITEM = 'data'
PARAMS_ITEM = 'params'
EMA_ITEM = 'ema_params'
METRICS_ITEM = 'metrics'
# The training record beside the checkpoints, one JSON object a line.
METRICS_FILE = 'metrics.jsonl'
# Which parameters evaluation and inference take: 'ema' (the EMA where the run kept one,
# else the raw ones) or 'raw'.


def check_workdir(workdir: str) -> str:
  """Returns the absolute workdir; UserError if it does not exist."""
  if not workdir:
    raise UserError('no workdir given')
  path = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
  if not os.path.isdir(path):
    raise UserError(f'workdir {workdir} is not a folder' if os.path.exists(path)
                    else f'workdir {workdir} does not exist')
  return path


def save_config(workdir: str, config: ml_collections.ConfigDict | dict) -> None:
  """Writes ``WORKDIR/config.json`` atomically.

  Args:
    workdir: the run's directory (created if missing).
    config: the resolved config.
  """
  data = config.to_dict() if hasattr(config, 'to_dict') else dict(config)
  files.write_json_atomic(os.path.join(workdir, CONFIG_FILE), data)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads the resolved config a training run wrote into its workdir.

  Args:
    workdir: the run's directory.

  Returns:
    The config as an (unlocked) ``ConfigDict``.

  Raises:
    UserError: the workdir or its ``config.json`` is missing or unreadable.
  """
  path = os.path.join(check_workdir(workdir), CONFIG_FILE)
  if not os.path.isfile(path):
    raise UserError(f'{path} does not exist: {workdir} is not a training workdir '
                    '(train.py writes config.json when it starts)')
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f'cannot read {path}: {e}') from e
  if not isinstance(data, dict):
    raise UserError(f'{path} does not hold a config (a JSON object)')
  return ml_collections.ConfigDict(data)


def checkpoint_steps(workdir: str) -> list[int]:
  """Returns the finalized training checkpoint steps, ascending (empty if none)."""
  return sorted(ocp.utils.checkpoint_steps(os.path.join(workdir, CHECKPOINT_DIR)))


def best_steps(workdir: str) -> list[int]:
  """Returns the finalized best-validation steps, ascending (at most one normally)."""
  return sorted(ocp.utils.checkpoint_steps(os.path.join(workdir, BEST_DIR)))


def create_train_manager(workdir: str, *, max_to_keep: int | None,
                         enable_async: bool = True) -> ocp.CheckpointManager:
  """Returns the training CheckpointManager at ``WORKDIR/checkpoints``.

  Every call to ``save`` writes (the caller decides when to save), the newest
  ``max_to_keep`` steps are kept, and saves run in the background unless
  ``enable_async`` is False. Call ``wait_until_finished()`` before exiting.

  Args:
    workdir: the run's directory.
    max_to_keep: steps to keep; None keeps all.
    enable_async: write in a background thread after the device-to-host copy.

  Returns:
    A manager with items 'state' and 'data'.
  """
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, save_interval_steps=1,
      enable_async_checkpointing=enable_async, create=True,
      # A save cut short (a full disk, a kill) leaves STEP.orbax-checkpoint-tmp behind:
      # the next run removes it (the workdir lock makes that run the only writer).
      cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.join(workdir, CHECKPOINT_DIR),
                               item_names=(STATE_ITEM, DATA_ITEM), options=options)


def save_train_state(manager: ocp.CheckpointManager, step: int, state: Any,
                     data_iter: Any) -> None:
  """Saves the training state and the data iterator as checkpoint ``step``.

  Must be called on every process (Orbax saves collectively). The write continues in
  the background on an async manager; ``manager.wait_until_finished()`` waits for it.

  Args:
    manager: from :func:`create_train_manager`.
    step: the state's step (the checkpoint's name).
    state: the ``TrainState``.
    data_iter: the Grain iterator whose position is saved with the state.
  """
  manager.save(int(step), args=ocp.args.Composite(**{
      STATE_ITEM: ocp.args.StandardSave(_state_fields(state)),
      DATA_ITEM: grain.checkpoint.CheckpointSave(data_iter)}), force=True)


def _state_fields(state: Any) -> dict[str, Any]:
  """The state's fields as a dict, without those that are None (EMA off).

  A None field would be written as a key of its own, which checkpoints from before the
  field existed lack; leaving it out keeps one layout for both.
  """
  return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)
          if getattr(state, f.name) is not None}


def restore_train_state(manager: ocp.CheckpointManager, abstract_state: Any,
                        data_iter: Any) -> Any | None:
  """Restores the newest training checkpoint, or returns None when there is none.

  A corrupt newest checkpoint is moved aside and the one before it restored; see
  ``checkpoint_recovery``.

  Args:
    manager: from :func:`create_train_manager`.
    abstract_state: the state's shapes, dtypes and shardings (restored onto those).
    data_iter: the Grain iterator, moved to the saved position in place.

  Returns:
    The restored state, or None.

  Raises:
    UserError: a checkpoint that does not fit ``abstract_state``, every checkpoint
      corrupt, or no checkpoint in a workdir whose record shows a trained run.
  """
  def restore(step: int) -> Any:
    restored = manager.restore(step, args=ocp.args.Composite(**{
        STATE_ITEM: ocp.args.StandardRestore(_state_fields(abstract_state)),
        DATA_ITEM: grain.checkpoint.CheckpointRestore(data_iter)}))
    return abstract_state.replace(**restored[STATE_ITEM])

  state = recovery.restore_newest_intact(manager, restore, abstract_state.params,
                                                    STATE_ITEM)
  if state is None:
    recovery.refuse_lost_checkpoints(
        os.path.dirname(os.fspath(manager.directory)), METRICS_FILE, BEST_DIR,
        CHECKPOINT_DIR, CONFIG_FILE)
  return state


def create_best_manager(workdir: str) -> ocp.CheckpointManager:
  """Returns the manager of ``WORKDIR/best``: one params-only checkpoint, written in sync.

  Synchronous so that ``best.json`` is written only once the parameters are on disk.
  """
  options = ocp.CheckpointManagerOptions(
      max_to_keep=1, save_interval_steps=1, enable_async_checkpointing=False, create=True)
  return ocp.CheckpointManager(os.path.join(workdir, BEST_DIR),
                               item_names=(PARAMS_ITEM, EMA_ITEM, METRICS_ITEM),
                               options=options)


def save_best(manager: ocp.CheckpointManager, workdir: str, step: int, params: Any,
              psnr_y: float, ssim_y: float, ema_params: Any = None) -> dict[str, Any]:
  """Saves ``params`` as the new best and then writes ``best.json``.

  Must be called on every process (Orbax saves collectively); only process 0 writes
  ``best.json``.

  Args:
    manager: from :func:`create_best_manager`.
    workdir: the run's directory.
    step: the training step of ``params``.
    params: the parameters (global arrays or NumPy).
    psnr_y: validation PSNR on Y (dB).
    ssim_y: validation SSIM on Y.
    ema_params: the EMA parameters (the ones validated), or None (EMA off).

  Returns:
    The record written: ``{'step', 'psnr_y', 'ssim_y'}``.
  """
  record = {'step': int(step), 'psnr_y': float(psnr_y), 'ssim_y': float(ssim_y)}
  items = {PARAMS_ITEM: ocp.args.StandardSave(params),
           METRICS_ITEM: ocp.args.JsonSave(record)}
  if ema_params is not None:
    items[EMA_ITEM] = ocp.args.StandardSave(ema_params)
  manager.save(int(step), args=ocp.args.Composite(**items), force=True)
  manager.wait_until_finished()
  if jax.process_index() == 0:
    files.write_json_atomic(os.path.join(workdir, BEST_FILE), record)
  return record


def read_best(workdir: str) -> dict[str, Any] | None:
  """Returns the best-validation record ``{'step', 'psnr_y', 'ssim_y'}``, or None.

  Read from the newest ``best/STEP/metrics`` item (the source of truth); ``best.json``
  only if that is unreadable.
  """
  steps = best_steps(workdir)
  if steps:
    path = os.path.join(workdir, BEST_DIR, str(steps[-1]), METRICS_ITEM)
    try:
      record = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(
          path, args=ocp.args.JsonRestore())
      return {'step': int(record['step']), 'psnr_y': float(record['psnr_y']),
              'ssim_y': float(record['ssim_y'])}
    except (OSError, ValueError, KeyError, TypeError, FileNotFoundError):
      pass
  path = os.path.join(workdir, BEST_FILE)
  if os.path.isfile(path):
    with open(path) as f:
      return json.load(f)
  return None
