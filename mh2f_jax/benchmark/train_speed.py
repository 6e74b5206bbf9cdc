"""The train step's speed: images/s, step time and memory, and the largest batch that fits.

The step is the training library's own (``training.steps.make_train_step`` with
``training.optim.create_optimizer``), as ``benchmarks/speed.py`` runs it, on a fixed
random batch already on the devices: what is timed is the step alone.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from mh2f_jax import model as model_lib
from mh2f_jax.benchmark import system
from mh2f_jax.training import optim
from mh2f_jax.training import steps


def is_out_of_memory(error: BaseException) -> bool:
  """Whether ``error`` is XLA running out of device memory (compiling or running)."""
  return (isinstance(error, jax.errors.JaxRuntimeError)
          and 'RESOURCE_EXHAUSTED' in str(error))


def _compiled_memory_gib(compiled: Any) -> float | None:
  """XLA's estimate of the step's device memory: arguments, outputs and temporaries."""
  try:
    m = compiled.memory_analysis()
  except (AttributeError, NotImplementedError, jax.errors.JaxRuntimeError):
    return None
  if m is None:
    return None
  total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
           - m.alias_size_in_bytes)
  return total / system.GIB


def _host_cost(before: Any, after: Any, steps: int) -> dict[str, float]:
  """Page faults per step and the system's share of the process's CPU time.

  A step that the kernel must fault memory in for (see ``runtime/host_memory.py``) shows
  here on any device: on a GPU host these are the input side's.
  """
  user, sys_time = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
  return {'faults_per_step': (after.ru_minflt - before.ru_minflt) / steps,
          'system_share': sys_time / max(user + sys_time, 1e-9)}


def _timed_steps(compiled: Any, state: Any, batch: Any, seconds: float,
                 max_steps: int) -> tuple[float, int, Any]:
  """Runs the step about ``seconds`` long (3 to ``max_steps`` steps); seconds per step."""
  t0 = time.perf_counter()
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  one = time.perf_counter() - t0
  count = int(min(max_steps, max(3, seconds / max(one, 1e-6))))
  t0 = time.perf_counter()
  for _ in range(count):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  return (time.perf_counter() - t0) / count, count, metrics


def measure(config: ml_collections.ConfigDict, batch_size: int, *, seconds: float = 2.0,
            max_steps: int = 200) -> dict[str, Any]:
  """Compiles and times the train step of ``config`` at ``batch_size``.

  Args:
    config: a full config (``model``, ``optim``, ``loss``, ``data.patch_size``, ``seed``).
    batch_size: the global batch.
    seconds: about how long to time the step (after one warm-up step).
    max_steps: the most steps timed.

  Returns:
    ``dtype``, ``batch``, ``patch``, ``images_per_s``, ``step_ms``, ``compile_s``,
    ``steps`` (timed), ``xla_memory_gib`` (XLA's estimate for the step) and
    ``peak_memory_gib`` (the first device's peak since the process started; None on
    the CPU), ``faults_per_step`` and ``system_share`` (of the process's CPU time, over
    the timed steps and the warm-up step before them).

  Raises:
    jax.errors.JaxRuntimeError: out of memory (see :func:`is_out_of_memory`) and others.
  """
  model = model_lib.from_config(config.model)
  mesh = steps.create_mesh()
  steps.check_batch_divisible(batch_size, jax.device_count(), 1)
  tx, _ = optim.create_optimizer(config.optim, 1000)
  state = steps.create_train_state(model, tx, config.seed, mesh)
  step = steps.make_train_step(model, tx, ssim_weight=float(config.loss.ssim_weight),
                               seed=config.seed, mesh=mesh)
  patch = config.data.patch_size
  rng = np.random.default_rng(config.seed)
  local = {k: rng.integers(0, 256, (batch_size, patch, patch, 3), dtype=np.uint8)
           for k in ('rainy', 'clean')}
  batch = steps.global_batch(local, mesh)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  before = resource.getrusage(resource.RUSAGE_SELF)
  step_s, count, metrics = _timed_steps(compiled, state, batch, seconds, max_steps)
  host = _host_cost(before, resource.getrusage(resource.RUSAGE_SELF), count + 1)
  return {'dtype': config.model.dtype, 'batch': batch_size, 'patch': f'{patch}x{patch}',
          'images_per_s': batch_size / step_s, 'step_ms': step_s * 1e3,
          'compile_s': compile_s, 'steps': count,
          'xla_memory_gib': _compiled_memory_gib(compiled),
          'peak_memory_gib': system.peak_gib(jax.devices()[0]), **host,
          'loss_finite': bool(np.isfinite(float(metrics['loss'])))}


def largest_batch(config: ml_collections.ConfigDict, *, max_batch: int, min_batch: int,
                  **kwargs: Any) -> tuple[dict[str, Any] | None, list[int]]:
  """Times the largest power-of-two batch from ``max_batch`` down that fits in memory.

  Trying from the top costs one failed compile per size that does not fit, where trying
  from the bottom would compile every size that does.

  Args:
    config: as for :func:`measure`.
    max_batch: the first size tried (a power of two).
    min_batch: the smallest size tried.
    **kwargs: passed to :func:`measure`.

  Returns:
    The row of the largest batch that ran (None if none did) and the sizes that ran
    out of memory.
  """
  refused = []
  batch = max_batch
  while batch >= min_batch:
    try:
      return measure(config, batch, **kwargs), refused
    except jax.errors.JaxRuntimeError as e:
      if not is_out_of_memory(e):
        raise
      refused.append(batch)
      batch //= 2
  return None, refused
