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

from etils import epath
import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from mh2f_jax.workdir import recovery
from mh2f_jax import files
from mh2f_jax.errors import UserError
from mh2f_jax.training import metric_writer
from mh2f_jax.workdir import save_loops

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
# Which parameters evaluation and inference take: 'ema' (the EMA where the run kept one,
# else the raw ones) or 'raw'.
PARAMS_CHOICES = ('ema', 'raw')


def _check_workdir(workdir: str) -> str:
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
  path = os.path.join(_check_workdir(workdir), CONFIG_FILE)
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
        os.path.dirname(os.fspath(manager.directory)), metric_writer.METRICS_FILE, BEST_DIR,
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


def parse_checkpoint(checkpoint: str | int) -> str | int:
  """Normalises a checkpoint selector: 'latest', 'best' or a step number.

  Raises:
    UserError: anything else, naming the allowed forms.
  """
  if isinstance(checkpoint, (int, np.integer)) and not isinstance(checkpoint, bool):
    if checkpoint < 0:
      raise UserError(f'checkpoint step must be >= 0, got {checkpoint}')
    return int(checkpoint)
  if isinstance(checkpoint, str):
    text = checkpoint.strip()
    if text in ('latest', 'best'):
      return text
    if text.isdigit():
      return int(text)
  raise UserError(
      f"checkpoint must be 'latest', 'best' or a step number, got {checkpoint!r}")


@save_loops.wait_for_writes_left_by_a_failure()  # A corrupt checkpoint: its reads too.
def _restore_params_numpy(item_dir: str, subtree: str | None) -> Any:
  """Restores a params tree (or the ``subtree`` of a tree) as NumPy, no devices needed."""
  # The handler directly (not a Checkpointer): an item folder has no step metadata, and
  # a Checkpointer warns about that.
  handler = ocp.PyTreeCheckpointHandler()
  try:
    path = epath.Path(item_dir)
    tree = handler.metadata(path).tree
    if subtree is not None:
      tree = {subtree: tree[subtree]}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    restored = handler.restore(path, args=ocp.args.PyTreeRestore(
        item=tree, restore_args=restore_args, partial_restore=subtree is not None))
  finally:
    handler.close()
  return restored[subtree] if subtree is not None else restored


def _describe_available(train: list[int], best: list[int]) -> str:
  parts = [f'training checkpoints at steps {", ".join(map(str, train)) or "(none)"}']
  if best:
    parts.append(f'best at step {best[-1]}')
  return '; '.join(parts)


def restore_params(workdir: str, checkpoint: str | int = 'latest', *,
                   params: str = 'raw') -> tuple[Any, int]:
  """Restores only the parameters of a checkpoint, as NumPy arrays (no device used).

  Args:
    workdir: the training run's directory.
    checkpoint: 'latest' (newest training checkpoint), 'best' (best validation PSNR-Y),
      or a step number (int or a string of digits), found among the training
      checkpoints or the best one.
    params: 'raw', or 'ema' for the EMA parameters (which the checkpoint must hold;
      :func:`load_workdir` falls back to the raw ones where a run kept no EMA).

  Returns:
    ``(params, step)``: the Flax ``params`` tree of ``np.ndarray`` and its step.

  Raises:
    UserError: missing workdir, no (best) checkpoint, an unknown step, a malformed
      selector, a corrupt checkpoint, or 'ema' for a checkpoint without EMA parameters.
  """
  selector = parse_checkpoint(checkpoint)
  kind = parse_params(params)
  path = _check_workdir(workdir)
  train, best = checkpoint_steps(path), best_steps(path)
  if selector == 'latest':
    if not train:
      hint = f' (a best checkpoint exists at step {best[-1]}: use checkpoint=best)' if best else ''
      raise UserError(f'workdir {workdir} has no checkpoints in '
                      f'{os.path.join(path, CHECKPOINT_DIR)}{hint}')
    step = train[-1]
  elif selector == 'best':
    if not best:
      raise UserError(
          f'workdir {workdir} has no best checkpoint yet (it is saved after each '
          f'validation, every eval_every_steps and at the end of training); '
          f'{_describe_available(train, best)}')
    step = best[-1]
  else:
    step = selector
    if step not in train and step not in best:
      raise UserError(f'workdir {workdir} has no checkpoint at step {step}; '
                      f'{_describe_available(train, best)}')
  # 'latest' skips a corrupt newest checkpoint with a note; a named one is an error.
  candidates = [step] + ([s for s in reversed(train) if s < step] if selector == 'latest' else [])
  for candidate in candidates:
    try:
      return _restore_step_params(path, candidate, train, kind), int(candidate)
    except UserError:
      raise  # No EMA parameters in an intact checkpoint: not corruption.
    except Exception as e:  # pylint: disable=broad-except  (see checkpoint_recovery)
      reason = recovery.short_reason(e)
    if selector != 'latest':
      raise UserError(f'checkpoint {candidate} in {workdir} is corrupt ({reason}); choose '
                      f'another --checkpoint: {_describe_available(train, best)}')
    _log.warning('checkpoint %d in %s is corrupt (%s): skipped', candidate, workdir, reason)
  raise UserError(f'every training checkpoint in {workdir} is corrupt; '
                  f'{_describe_available(train, best)}')


def _restore_step_params(workdir: str, step: int, train: list[int], kind: str) -> Any:
  """The raw or EMA params of a training step (if ``step`` is one), else of the best.

  Raises:
    UserError: the checkpoint holds no EMA parameters and ``kind`` is 'ema'.
  """
  name = EMA_ITEM if kind == 'ema' else PARAMS_ITEM
  if step in train:
    item_dir, subtree = os.path.join(workdir, CHECKPOINT_DIR, str(step), STATE_ITEM), name
  else:
    item_dir, subtree = os.path.join(workdir, BEST_DIR, str(step), name), None
  try:
    if not os.path.isdir(item_dir):
      raise KeyError(name)
    return _restore_params_numpy(item_dir, subtree)
  except KeyError:
    raise UserError(f'checkpoint step {step} of {workdir} holds no {name} (a run keeps '
                    "EMA parameters only when ema_decay is set); use params='raw'") from None


def parse_params(params: str) -> str:
  """Checks a parameters selector: 'ema' or 'raw'.

  Raises:
    UserError: anything else.
  """
  if params not in PARAMS_CHOICES:
    raise UserError(f"params must be 'ema' or 'raw', got {params!r}")
  return params


def params_kind(config: ml_collections.ConfigDict, params: str = 'ema') -> str:
  """'ema' if ``params`` is 'ema' and the run kept an EMA (``ema_decay`` set), else 'raw'."""
  if parse_params(params) == 'ema' and config.get('ema_decay') is not None:
    return 'ema'
  return 'raw'


def resolve_checkpoint(workdir: str, checkpoint: Any, *, fallback: bool) -> str | int:
  """Parses a checkpoint selector and maps 'best' to 'latest' where there is no best.

  Args:
    workdir: an existing training workdir.
    checkpoint: 'latest', 'best', an int step or a string of digits.
    fallback: a missing best checkpoint falls back to 'latest' with a warning.

  Returns:
    The selector to pass to :func:`restore_params`.

  Raises:
    UserError: a malformed selector, or no best checkpoint and ``fallback`` False.
  """
  checkpoint = parse_checkpoint(checkpoint)
  if checkpoint != 'best' or best_steps(workdir):
    return checkpoint
  if not checkpoint_steps(workdir):
    return 'latest'  # No checkpoints at all: the loader's message says exactly that.
  if not fallback:
    raise UserError(f'{workdir} has no best checkpoint (no validation was recorded); '
                    'use --checkpoint=latest or a step number')
  _log.warning('%s has no best checkpoint (no validation was recorded): using the '
               'latest checkpoint instead', workdir)
  return 'latest'


def load_workdir(workdir: str, checkpoint: Any = 'best', *, fallback: bool = True,
                 params: str = 'ema') -> tuple[ml_collections.ConfigDict, Any, int]:
  """Loads what evaluation and inference need from a training workdir.

  Args:
    workdir: the training run's directory.
    checkpoint: 'best', 'latest' or a step (see :func:`resolve_checkpoint`).
    fallback: 'best' falls back to 'latest' when no validation was recorded.
    params: 'ema' (the EMA parameters where the run kept them, else the raw ones; see
      :func:`params_kind`) or 'raw'.

  Returns:
    ``(config, params, step)``: the run's config, its parameters (NumPy) and their step.

  Raises:
    UserError: see :func:`load_config`, :func:`resolve_checkpoint`, :func:`restore_params`.
  """
  workdir = os.fspath(workdir)
  config = load_config(workdir)
  selector = resolve_checkpoint(workdir, checkpoint, fallback=fallback)
  values, step = restore_params(workdir, selector, params=params_kind(config, params))
  return config, values, step
