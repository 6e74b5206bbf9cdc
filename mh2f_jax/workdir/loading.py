"""Which checkpoint a tool means, and its parameters: eval, derain, export and the app.

``'best'`` (falling back to ``'latest'`` where no validation ran), ``'latest'`` or a step,
and the raw or EMA parameters of it, read as NumPy arrays without building a train
state. A corrupt newest checkpoint is skipped with a note; a named corrupt step is an
error. A checkpoint that a running training deletes (``max_to_keep``) or supersedes while
it is read is not corrupt: the steps are listed again and the selector resolved anew.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from etils import epath
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from mh2f_jax.errors import UserError
from mh2f_jax.workdir import checkpoints
from mh2f_jax.workdir import recovery
from mh2f_jax.workdir import save_loops

_log = logging.getLogger(__name__)

PARAMS_CHOICES = ('ema', 'raw')


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


def restore_params(workdir: str, checkpoint: str | int = 'latest', *, params: str = 'raw',
                   another: str = 'choose another --checkpoint') -> tuple[Any, int]:
  """Restores only the parameters of a checkpoint, as NumPy arrays (no device used).

  Args:
    workdir: the training run's directory.
    checkpoint: 'latest' (newest training checkpoint), 'best' (best validation PSNR-Y),
      or a step number (int or a string of digits), found among the training
      checkpoints or the best one.
    params: 'raw', or 'ema' for the EMA parameters (which the checkpoint must hold;
      :func:`load_workdir` falls back to the raw ones where a run kept no EMA).
    another: how the caller's user names another checkpoint, for the messages about a
      corrupt or deleted one (the tools' flag; training's ``init_from=DIR:STEP``).

  Returns:
    ``(params, step)``: the Flax ``params`` tree of ``np.ndarray`` and its step.

  Raises:
    UserError: missing workdir, no (best) checkpoint, an unknown step, a malformed
      selector, a corrupt checkpoint, or 'ema' for a checkpoint without EMA parameters.
  """
  selector = parse_checkpoint(checkpoint)
  kind = parse_params(params)
  path = checkpoints.check_workdir(workdir)
  train, best = checkpoints.checkpoint_steps(path), checkpoints.best_steps(path)
  step = _select(workdir, path, selector, train, best, corrupt=set())
  return _restore_selected(workdir, path, selector, step, kind, another)


def _select(workdir: str, path: str, selector: str | int, train: list[int],
            best: list[int], corrupt: set[int]) -> int:
  """The step ``selector`` names among the listed steps, leaving out ``corrupt`` ones.

  Raises:
    UserError: no (best) checkpoint, or an unknown step.
  """
  if selector == 'latest':
    intact = [s for s in train if s not in corrupt]
    if intact:
      return intact[-1]
    if corrupt:
      raise UserError(f'every training checkpoint in {workdir} is corrupt; '
                      f'{_describe_available(train, best)}')
    hint = f' (a best checkpoint exists at step {best[-1]}: use checkpoint=best)' if best else ''
    raise UserError(f'workdir {workdir} has no checkpoints in '
                    f'{os.path.join(path, checkpoints.CHECKPOINT_DIR)}{hint}')
  if selector == 'best':
    if not best:
      raise UserError(
          f'workdir {workdir} has no best checkpoint yet (it is saved after each '
          f'validation, every eval_every_steps and at the end of training); '
          f'{_describe_available(train, best)}')
    return best[-1]
  if selector not in train and selector not in best:
    raise UserError(f'workdir {workdir} has no checkpoint at step {selector}; '
                    f'{_describe_available(train, best)}')
  return selector


# A running training deletes old checkpoints (max_to_keep) and replaces the best one: each
# time one of them goes while it is read, the steps are listed again. Bounded, in case
# checkpoints come and go faster than one can be read.
_MAX_RELISTS = 20


def _restore_selected(workdir: str, path: str, selector: str | int, step: int,
                      kind: str, another: str) -> tuple[Any, int]:
  """Restores ``step``, re-resolving ``selector`` when the step vanished while read.

  A checkpoint is called corrupt only if it still exists, and is still the one the
  selector names, after it failed to read. 'latest' then skips it with a note; a named
  step or 'best' is an error.
  """
  corrupt: set[int] = set()
  for _ in range(_MAX_RELISTS):
    train = checkpoints.checkpoint_steps(path)
    try:
      return _restore_step_params(path, step, train, kind), int(step)
    except UserError:
      raise  # No EMA parameters in an intact checkpoint: not corruption.
    except Exception as e:  # pylint: disable=broad-except  (see checkpoint_recovery)
      reason = recovery.short_reason(e)
    train, best = checkpoints.checkpoint_steps(path), checkpoints.best_steps(path)
    if step not in train and step not in best:
      if not isinstance(selector, str):
        raise UserError(f'checkpoint {step} in {workdir} was deleted while it was read '
                        '(a training run keeps only its newest max_to_keep checkpoints); '
                        f'{another}: {_describe_available(train, best)}')
      _log.warning('checkpoint %d in %s was deleted while it was read (a training run '
                   'keeps only its newest checkpoints): reading the %s one again',
                   step, workdir, selector)
      step = _select(workdir, path, selector, train, best, corrupt)
      continue
    now = _select(workdir, path, selector, train, best, corrupt)
    if now != step:  # A newer one was finished meanwhile: read that one.
      step = now
      continue
    if selector != 'latest':
      raise UserError(f'checkpoint {step} in {workdir} is corrupt ({reason}); '
                      f'{another}: {_describe_available(train, best)}')
    _log.warning('checkpoint %d in %s is corrupt (%s): skipped', step, workdir, reason)
    corrupt.add(step)
    step = _select(workdir, path, selector, train, best, corrupt)
  raise UserError(f'the checkpoints in {workdir} changed {_MAX_RELISTS} times while they '
                  'were read; try again')


def _restore_step_params(workdir: str, step: int, train: list[int], kind: str) -> Any:
  """The raw or EMA params of a training step (if ``step`` is one), else of the best.

  Raises:
    UserError: the checkpoint holds no EMA parameters and ``kind`` is 'ema'.
  """
  name = checkpoints.EMA_ITEM if kind == 'ema' else checkpoints.PARAMS_ITEM
  if step in train:
    item_dir, subtree = os.path.join(workdir, checkpoints.CHECKPOINT_DIR, str(step), checkpoints.STATE_ITEM), name
  else:
    item_dir, subtree = os.path.join(workdir, checkpoints.BEST_DIR, str(step), name), None
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
  if checkpoint != 'best' or checkpoints.best_steps(workdir):
    return checkpoint
  if not checkpoints.checkpoint_steps(workdir):
    return 'latest'  # No checkpoints at all: the loader's message says exactly that.
  if not fallback:
    raise UserError(f'{workdir} has no best checkpoint (no validation was recorded); '
                    'use --checkpoint=latest or a step number')
  _log.warning('%s has no best checkpoint (no validation was recorded): using the '
               'latest checkpoint instead', workdir)
  return 'latest'


def load_workdir(workdir: str, checkpoint: Any = 'best', *, fallback: bool = True,
                 params: str = 'ema', another: str = 'choose another --checkpoint'
                 ) -> tuple[ml_collections.ConfigDict, Any, int]:
  """Loads what evaluation and inference need from a training workdir.

  Args:
    workdir: the training run's directory.
    checkpoint: 'best', 'latest' or a step (see :func:`resolve_checkpoint`).
    fallback: 'best' falls back to 'latest' when no validation was recorded.
    params: 'ema' (the EMA parameters where the run kept them, else the raw ones; see
      :func:`params_kind`) or 'raw'.
    another: see :func:`restore_params`.

  Returns:
    ``(config, params, step)``: the run's config, its parameters (NumPy) and their step.

  Raises:
    UserError: see :func:`checkpoints.load_config`, :func:`resolve_checkpoint`, :func:`restore_params`.
  """
  workdir = os.fspath(workdir)
  config = checkpoints.load_config(workdir)
  selector = resolve_checkpoint(workdir, checkpoint, fallback=fallback)
  values, step = restore_params(workdir, selector, params=params_kind(config, params),
                                another=another)
  return config, values, step
