"""The training loop: :func:`train_and_evaluate` trains, validates and checkpoints a run.

The loop reads top to bottom; each piece lives in the module named for its job:

* ``config_schema``: validation of the config, the fields a resume must keep.
* ``steps``: the mesh, the state and the jitted train step (sharded data parallelism
  over every device of every process).
* ``optim``: Adam and the learning-rate schedule.
* ``input_pipeline``: the Grain iterators; ``checkpointing``: the workdir on disk.
* ``validation``: the eval step and the best checkpoint; ``metric_writer``:
  ``metrics.jsonl`` and TensorBoard; ``preemption``: SIGTERM/Ctrl-C.

A fresh run starts from random weights, or from trained ones (``config.init_from``; see
``init_from``); ``WORKDIR/run.json`` records which, and the datasets (``run_record``).
The workdir is the unit of resumption: a run started on a workdir that has checkpoints
continues from the newest, model state and data iterator together, so a resumed run
gives bit-identical parameters to an uninterrupted one. Everything random is derived
from ``config.seed``: the initial parameters, the data order and crops (Grain), and a
per-step key ``fold_in(key, step)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import json
import math
import os
import time
from typing import Any, NamedTuple

from absl import logging
import jax
import ml_collections
import numpy as np

from mh2f_jax.workdir import checkpoints
from mh2f_jax import config_schema
from mh2f_jax.datasets import input_pipeline
from mh2f_jax.datasets import memory_cache
from mh2f_jax.datasets import mixture
from mh2f_jax.training import init_from
from mh2f_jax.training import metric_writer
from mh2f_jax import model as model_lib
from mh2f_jax.training import optim
from mh2f_jax.training import preemption
from mh2f_jax.training import progress
from mh2f_jax.runtime import cpu_devices
from mh2f_jax.runtime import host_memory
from mh2f_jax.workdir import save_loops
from mh2f_jax.training import steps
from mh2f_jax.training import validation
from mh2f_jax.workdir import lock
from mh2f_jax.workdir import run_record
from mh2f_jax.errors import UserError


class NonFiniteLossError(UserError):
  """The loss became NaN or infinite; training stopped without saving the bad state."""


def itstime(step: int, every: int, *, last: bool = False) -> bool:
  """Whether an action done every ``every`` steps (0: never) is due after ``step``.

  Args:
    step: the number of completed steps.
    every: the interval; 0 disables the periodic action.
    last: whether this is the last step (periodic actions that must also end the run
      pass it on).

  Returns:
    True when the action is due.
  """
  return last or (every > 0 and step % every == 0)


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> str:
  """Creates the workdir, or refuses to continue one trained with other frozen fields.

  Returns:
    The workdir's absolute path.

  Raises:
    UserError: listing every differing field.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)
  if not os.path.exists(os.path.join(workdir, checkpoints.CONFIG_FILE)):
    return workdir
  saved = checkpoints.load_config(workdir).to_dict()
  diffs = config_schema.config_differences(saved, config.to_dict())
  if diffs:
    raise UserError(
        f'workdir {workdir} was trained with a different config; these fields must match '
        'to resume (use a new --workdir to start another run):\n  ' + '\n  '.join(diffs))
  return workdir


class _Throughput:
  """Steps per second over an interval that excludes validation and checkpoint time."""

  def __init__(self):
    self.reset()

  def reset(self) -> None:
    self.start, self.steps = time.perf_counter(), 0

  def rate(self) -> float:
    return self.steps / max(time.perf_counter() - self.start, 1e-9)


def fetch_metrics(pending: list[tuple[int, Mapping[str, jax.Array]]],
                  manager: Any) -> list[dict[str, float]]:
  """Moves the steps' metrics to the host; stops on a non-finite loss.

  Args:
    pending: ``(step, metrics)`` of the steps since the last fetch; emptied.
    manager: the training checkpoint manager (the message names its newest step).

  Returns:
    The rows, in step order.

  Raises:
    NonFiniteLossError: naming the first step whose loss is NaN or infinite.
  """
  rows = [(s, {k: float(v) for k, v in jax.device_get(m).items()}) for s, m in pending]
  pending.clear()
  for s, row in rows:
    if not math.isfinite(row['loss']):
      last = manager.latest_step()
      kept = (f'the last good checkpoint is step {last} in {manager.directory}'
              if last is not None else 'no checkpoint had been saved yet')
      raise NonFiniteLossError(
          f'non-finite loss ({row["loss"]}) at step {s}; training stopped and nothing after '
          f'it was saved ({kept}). Lower optim.learning_rate or set optim.grad_clip_norm.')
  return [row for _, row in rows]


def _train_row(step: int, rows: list[dict[str, float]], lr: float, throughput: _Throughput,
               batch_size: int) -> dict[str, float]:
  """The means of the interval's rows, with the learning rate and the throughput."""
  rate = throughput.rate()
  means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
  return {'step': step, **means, 'lr': lr, 'steps_per_sec': rate,
          'images_per_sec': rate * batch_size}


def _close(bar: progress.ProgressBar | None, manager: Any, validator: validation.Validator | None,
           writer: metric_writer.MetricWriter) -> None:
  """Finishes the pending checkpoint writes and closes every output of the run."""
  if bar is not None:
    bar.close()
  manager.wait_until_finished()
  manager.close()
  if validator is not None:
    validator.close()
  writer.close()


def _compile(train_step: Callable, state: steps.TrainState, batch: Any) -> Callable:
  """Compiles the train step for the batch's shapes, logging the time it took."""
  start = time.perf_counter()
  compiled = train_step.lower(state, batch).compile()
  logging.info('compiled the train step in %.1f s', time.perf_counter() - start)
  return compiled


def _log_setup(config: ml_collections.ConfigDict, state: steps.TrainState,
               num_train_examples: int, num_train_steps: int, start_step: int,
               workdir: str) -> None:
  logging.info('processes: %d, devices: %d (%d local), per-device batch: %d in %d '
               'micro-batch(es), EMA decay: %s', jax.process_count(), jax.device_count(),
               jax.local_device_count(), config.batch_size // jax.device_count(),
               config.grad_accum_steps, config.ema_decay)
  logging.info('model: %s parameters, %s', f'{model_lib.count_params(state.params):,}',
               json.dumps(config.model.to_dict(), sort_keys=True))
  logging.info('training examples: %d, steps: %d (%.3g epochs of batch %d), from step %d',
               num_train_examples, num_train_steps,
               num_train_steps * config.batch_size / num_train_examples,
               config.batch_size, start_step)
  if start_step >= num_train_steps and jax.process_index() == 0:
    logging.info('workdir already trained to step %d of %d: nothing to train', start_step,
                 num_train_steps)


class _Due(NamedTuple):
  """Which actions follow a step."""
  log: bool
  eval: bool
  grids: bool
  save: bool

  def any(self) -> bool:
    return self.log or self.eval or self.grids or self.save


def due_actions(config: ml_collections.ConfigDict, step: int, *, last: bool, stopping: bool,
                validate: bool, is_main: bool) -> _Due:
  """What to do after ``step``: log, validate, write image grids, save a checkpoint.

  A stopping run only logs and saves. The final validation runs before the final
  checkpoint, so a run killed in between redoes both when resumed.
  """
  validate = validate and not stopping
  return _Due(log=itstime(step, config.log_every_steps, last=last),
              eval=validate and itstime(step, config.eval_every_steps, last=last),
              grids=validate and is_main and itstime(step, config.image_every_steps),
              save=stopping or itstime(step, config.checkpoint_every_steps, last=last))


def _validate_and_save(due: _Due, step: int, state: steps.TrainState,
                       validator: validation.Validator | None,
                       writer: metric_writer.MetricWriter, manager: Any,
                       train_iter: Any) -> dict[str, Any]:
  """Validates (the EMA parameters where the run keeps them), writes grids, saves.

  Returns:
    What the run's summary takes from the validation (nothing when there was none).
  """
  summary = {}
  if due.eval:
    row = validator.run(step, state.params, writer, with_grids=due.grids,
                        ema_params=state.ema_params)
    summary = {k: row[k] for k in ('psnr_y', 'ssim_y') if k in row}
    summary['best'] = validator.best
  elif due.grids:
    writer.images(step, validator.grids(steps.eval_params(state)))
  if due.save:
    checkpoints.save_train_state(manager, step, state, train_iter)
  return summary


# The one function longer than 80 lines: the loop reads top to bottom in one place (every
# piece it calls lives in the module named for its job).
@lock.held
@save_loops.wait_for_writes_left_by_a_failure()  # A full disk: one error line, no tracebacks.
def train_and_evaluate(config: ml_collections.ConfigDict | Mapping[str, Any], workdir: str, *,
                       sources: tuple[Sequence[Any], Sequence[Any] | None] | None = None,
                       step_callbacks: Sequence[Callable[[int], None]] = ()
                       ) -> dict[str, Any]:
  """Trains (or resumes training) and validates; see the module docstring.

  Args:
    config: a config with the schema of ``mh2f_jax.config_schema``.
    workdir: the run's directory; one with checkpoints is resumed from the newest (its
      ``config.json`` must agree on ``config_schema.FROZEN_FIELDS``).
    sources: ``(train, eval)`` random-access example sources (eval may be None); None
      opens the splits ``config.data`` names.
    step_callbacks: called with the step number after every step, on every process.

  Returns:
    A summary: ``step`` (reached), ``num_train_steps``, the last logged ``loss``, ``l1``,
    ``ssim``, the last validation ``psnr_y``/``ssim_y``, ``best`` (record or None),
    ``interrupted`` (stopped by a signal) and ``workdir``.

  Raises:
    UserError: a bad config, frozen fields that differ from the workdir's, a batch that
      does not split over the devices, a missing dataset, a non-finite loss, or a
      workdir fault (in use, lost checkpoints, full disk: docs/training.md, Faults).
  """
  host_memory.keep_freed_memory()  # Before JAX's CPU client starts (a notebook's first call).
  config = ml_collections.ConfigDict(config) if isinstance(config, Mapping) else config
  config_schema.validate(config)
  cpu_devices.split_host(config.cpu_devices, config.batch_size, config.grad_accum_steps)
  config = config_schema.resolve_paths(config)  # What config.json records is what is used.
  workdir = prepare_workdir(workdir, config)  # Before any expensive work.
  is_main, ema = jax.process_index() == 0, config.ema_decay is not None
  mesh = steps.create_mesh()
  steps.check_batch_divisible(config.batch_size, jax.device_count(), config.grad_accum_steps)
  model = model_lib.from_config(config.model)
  train_source, eval_source = sources or input_pipeline.get_sources(config)
  num_train_steps = config_schema.resolve_num_train_steps(config, len(train_source))
  tx, schedule = optim.create_optimizer(config.optim, num_train_steps)
  train_iter = input_pipeline.create_train_iterator(
      memory_cache.cache_source(train_source, config.data.cache, config.data.cache_max_gb),
      global_batch_size=config.batch_size, patch_size=config.data.patch_size,
      hflip=config.data.hflip, seed=config.seed, num_workers=config.data.num_workers)
  manager = checkpoints.create_train_manager(workdir, max_to_keep=config.max_to_keep)
  state = checkpoints.restore_train_state(
      manager, steps.abstract_train_state(model, tx, config.seed, mesh, ema), train_iter)
  state, origin = (state, None) if state else init_from.initial_state(config, model, tx,
                                                                      mesh, ema, workdir)
  if is_main:  # Only now: a config that cannot restore the workdir's state is not saved.
    checkpoints.save_config(workdir, {**config.to_dict(), 'num_train_steps': num_train_steps})
    run_record.save(workdir, mixture.describe(train_source, config.data), origin)
  start_step = step = int(jax.device_get(state.step))
  _log_setup(config, state, len(train_source), num_train_steps, start_step, workdir)
  train_step = steps.make_train_step(
      model, tx, ssim_weight=config.loss.ssim_weight, seed=config.seed, mesh=mesh,
      grad_accum_steps=config.grad_accum_steps, ema_decay=config.ema_decay)
  validator = (validation.Validator(model, eval_source, workdir, config.num_eval_images)
               if eval_source is not None and config.num_eval_images != 0 else None)
  writer = metric_writer.MetricWriter(workdir, start_step, enabled=is_main)
  summary = {'num_train_steps': num_train_steps, 'interrupted': False, 'workdir': workdir,
             'best': validator.best if validator else checkpoints.read_best(workdir)}
  pending, throughput, compiled_step, bar = [], _Throughput(), None, None
  try:
    with preemption.StopRequest() as stop:
      while step < num_train_steps:
        batch = steps.global_batch(next(train_iter), mesh)
        if compiled_step is None:
          compiled_step = _compile(train_step, state, batch)
          # Created after the compilation, so that its rate and ETA are the steps'.
          bar = progress.ProgressBar(num_train_steps, start_step, enabled=is_main)
          throughput.reset()
        with jax.profiler.StepTraceAnnotation('train', step_num=step):
          state, step_metrics = compiled_step(state, batch)
        step += 1
        throughput.steps += 1
        pending.append((step, step_metrics))
        for callback in step_callbacks:
          callback(step)
        bar.update(1)
        last = step == num_train_steps
        stopping = stop.agreed(sync_point=itstime(step, config.log_every_steps, last=last))
        due = due_actions(config, step, last=last, stopping=stopping,
                          validate=validator is not None, is_main=is_main)
        rows = fetch_metrics(pending, manager) if due.any() else []
        if due.log:
          row = _train_row(step, rows, float(schedule(step - 1)), throughput,
                           config.batch_size)
          writer.row(row, 'train')
          bar.set_postfix(loss=f'{row["loss"]:.4f}')
          summary.update({k: row[k] for k in ('loss', 'l1', 'ssim')})
        with bar.paused():  # The bar's rate and ETA are the training steps'.
          summary.update(_validate_and_save(due, step, state, validator, writer, manager,
                                            train_iter))
        if due.any():
          throughput.reset()  # Validation and checkpoint time stay out of the rates.
        if stopping:
          summary['interrupted'] = True
          logging.warning('stopped at step %d by %s; checkpoint saved in %s', step,
                          stop.describe(), manager.directory)
          break
  finally:
    _close(bar, manager, validator, writer)
  logging.info('done: step %d of %d, best %s', step, num_train_steps, summary['best'])
  return {**summary, 'step': step}
