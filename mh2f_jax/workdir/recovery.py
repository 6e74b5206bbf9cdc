"""A workdir that is not as its run left it: corrupt checkpoints, vanished checkpoints.

``checkpointing`` asks this module when a restore fails or finds nothing:

* A checkpoint that cannot be restored although it fits the run (a file truncated or
  deleted inside ``checkpoints/STEP/``) is corrupt: reported in one line, moved aside to
  ``WORKDIR/checkpoints_corrupt/STEP-<UTC time>`` (kept, never deleted: the user may
  want to look at it), and the next newest is tried.
* A checkpoint whose parameters have other shapes than the model the config builds is
  not corrupt: the config does not fit the workdir, and the run stops naming the shapes.
* A workdir whose ``metrics.jsonl`` or best checkpoint shows a run that got past step 0
  but has no training checkpoint left is refused rather than restarted from scratch
  (which would cut its record).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from absl import logging as absl_logging
from etils import epath
import jax
import orbax.checkpoint as ocp

from mh2f_jax.errors import UserError
from mh2f_jax.model import params as params_lib
from mh2f_jax.runtime import hosts

_log = logging.getLogger(__name__)

CORRUPT_DIR = 'checkpoints_corrupt'


class ConfigMismatchError(UserError):
  """A checkpoint holds parameters of another shape than the config's model."""


def short_reason(error: BaseException, limit: int = 160) -> str:
  """The first non-empty line of an exception, cut to ``limit`` characters."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  text = f'{type(error).__name__}: {lines[0] if lines else ""}'
  return text if len(text) <= limit else text[:limit - 3] + '...'


def params_mismatch(item_dir: str, params: Any) -> str | None:
  """How the saved parameters differ from ``params``' shapes, or None if they agree.

  Args:
    item_dir: a checkpoint item folder holding a tree with a 'params' entry (a training
      state) or the params tree itself (a best checkpoint).
    params: the expected parameters (arrays or ``ShapeDtypeStruct``s).

  Returns:
    A description of the first differences; None when the shapes agree or the metadata
    cannot be read (then the checkpoint is judged corrupt, not mismatched).
  """
  handler = ocp.PyTreeCheckpointHandler()
  try:
    tree = handler.metadata(epath.Path(item_dir)).tree
  except Exception:  # pylint: disable=broad-except  (unreadable: not a mismatch)
    return None
  finally:
    handler.close()
  saved = tree.get('params', tree) if isinstance(tree, dict) else tree
  return params_lib.mismatch(saved, params, got_name='saved', wanted_name='config gives')


def move_aside(checkpoint_dir: str, step: int) -> str:
  """Moves ``checkpoint_dir/STEP`` to ``WORKDIR/checkpoints_corrupt/STEP-<UTC time>``.

  Only process 0 moves; every process waits for it.

  Returns:
    The new path.
  """
  workdir = os.path.dirname(os.path.abspath(checkpoint_dir))
  stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
  target = os.path.join(workdir, CORRUPT_DIR, f'{step}-{stamp}')
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(os.path.join(checkpoint_dir, str(step)), target)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f'moved corrupt checkpoint {step}')
  return target


def restore_newest_intact(manager: ocp.CheckpointManager, restore: Any,
                          abstract_params: Any, state_item: str) -> Any | None:
  """Restores the newest checkpoint that can be, moving corrupt ones aside.

  Args:
    manager: the training checkpoint manager.
    restore: ``restore(step)`` returns the restored state or raises.
    abstract_params: the parameters the config's model has (shapes).
    state_item: the item name of the training state inside a step.

  Returns:
    The restored state, or None when the workdir has no checkpoint.

  Raises:
    ConfigMismatchError: a checkpoint's parameters have other shapes than the model.
    UserError: there were checkpoints, but every one was corrupt.
  """
  directory = os.fspath(manager.directory)
  moved = []
  while (step := manager.latest_step()) is not None:
    try:
      state, error = restore(step), None
    # Orbax and TensorStore raise many types for a damaged file (ValueError, OSError,
    # KeyError, their own); any of them means this step cannot be restored.
    except Exception as e:  # pylint: disable=broad-except
      state, error = None, e
    if hosts.agree(error is None, 'all'):
      absl_logging.info('resumed from checkpoint %d in %s', step, directory)
      return state
    if not os.path.isdir(os.path.join(directory, str(step))):
      # Deleted by someone else while it was read: not corrupt; look again.
      _log.warning('checkpoint %d vanished while it was read: trying the newest again', step)
      manager.reload()
      continue
    item_dir = os.path.join(directory, str(step), state_item)
    mismatch = params_mismatch(item_dir, abstract_params) if os.path.isdir(item_dir) else None
    if mismatch:
      raise ConfigMismatchError(
          f'checkpoint {step} in {directory} does not fit the config\'s model ({mismatch}): '
          'use the config the workdir was trained with, or a new --workdir')
    reason = short_reason(error) if error is not None else 'failed on another process'
    target = move_aside(directory, step)
    moved.append(target)
    _log.warning('checkpoint %d is corrupt (%s): moved to %s; trying the one before',
                 step, reason, target)
    manager.reload()
  if moved:
    raise UserError(f'every checkpoint in {directory} was corrupt (moved to '
                    f'{os.path.dirname(moved[0])}): nothing to resume from; '
                    'start again in a new --workdir')
  return None


def recorded_progress(workdir: str, metrics_file: str, best_dir: str) -> int:
  """The furthest step the workdir's record shows: metrics rows and best checkpoints."""
  furthest = 0
  try:
    with open(os.path.join(workdir, metrics_file)) as f:
      for line in f:
        try:
          row = json.loads(line)
        except ValueError:
          continue
        if isinstance(row, dict) and isinstance(row.get('step'), int):
          furthest = max(furthest, row['step'])
  except FileNotFoundError:
    pass
  best = os.path.join(workdir, best_dir)
  if os.path.isdir(best):
    furthest = max([furthest, *ocp.utils.checkpoint_steps(best)])
  return furthest


def _saved_interval(workdir: str, config_file: str) -> int:
  """The checkpoint interval of the run that wrote the workdir's config (0: unknown)."""
  try:
    with open(os.path.join(workdir, config_file)) as f:
      every = json.load(f).get('checkpoint_every_steps')
  except (OSError, ValueError, AttributeError):
    return 0
  return every if isinstance(every, int) and every > 0 else 0


def refuse_lost_checkpoints(workdir: str, metrics_file: str, best_dir: str,
                            checkpoint_dir: str, config_file: str) -> None:
  """Refuses to start from scratch in a workdir whose record shows a trained run.

  A run killed before its first checkpoint was complete restarts from step 0 as
  usual. The record tells the two apart: a save waits for the one before it to finish,
  so a record past twice the checkpoint interval means a checkpoint had been complete.

  Raises:
    UserError: the record reaches past twice the checkpoint interval, but there is no
      checkpoint to resume.
  """
  furthest = recorded_progress(workdir, metrics_file, best_dir)
  every = _saved_interval(workdir, config_file)
  if every and furthest > 2 * every:
    raise UserError(
        f'workdir {workdir} has no checkpoint in {os.path.join(workdir, checkpoint_dir)} '
        f'but its record ({metrics_file}, {best_dir}/) reaches step {furthest}: its '
        'checkpoints were deleted or moved. Put them back to resume, or start again in a '
        f'new --workdir (or delete {metrics_file} and {best_dir}/ to start over here)')
