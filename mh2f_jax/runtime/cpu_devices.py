"""CPU devices: a CPU host's cores split into JAX devices that each train on a share of the batch.

On a CPU, JAX gives one device by default, and XLA spreads each operation of the train
step over the cores. Split into one device per core, the same global batch runs as a
data-parallel step (the gradients averaged over the devices, the same math): each device
runs its own copy of the step on its share at the same time. For the default model on a
2-core CPU this was faster and needed less memory than one device; for the demo's small
model it was a little slower (docs/performance.md).

``config.cpu_devices`` chooses: 0 (the default) one device per core, as many as divide
the batch (and its micro-batches); 1: JAX's one device; a number: that many. The demo
config keeps one device. It takes effect only before JAX starts its backends
(``train.py`` and ``train_and_evaluate`` ask first), and never overrides
``jax_num_cpu_devices`` or ``XLA_FLAGS``' ``--xla_force_host_platform_device_count`` set
by the user. An accelerator's devices are not affected: the setting shapes JAX's CPU
backend only.
"""

from __future__ import annotations

import os

from absl import logging


def cores() -> int:
  """The CPU cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not on Linux.
    return os.cpu_count() or 1


def count(setting: int, batch_size: int, grad_accum_steps: int = 1,
          available: int | None = None) -> int:
  """How many CPU devices ``setting`` gives for this batch.

  Args:
    setting: ``config.cpu_devices``: 0 for one per core, else that number.
    batch_size: the global batch.
    grad_accum_steps: micro-batches per device share.
    available: the cores (None: :func:`cores`).

  Returns:
    ``setting`` when it is not 0; else the largest number up to the cores that divides
    the batch into per-device shares that split into ``grad_accum_steps`` micro-batches.
  """
  if setting:
    return setting
  most = available or cores()
  # 1 when none divides: the trainer then refuses the batch with its own message.
  return max((n for n in range(1, most + 1)
              if batch_size % n == 0 and (batch_size // n) % grad_accum_steps == 0), default=1)


def split_host(setting: int, batch_size: int, grad_accum_steps: int = 1) -> int | None:
  """Sets JAX's CPU device count before its backends start; the count set, or None.

  None when the user set the count already, or JAX runs already (then the devices it
  has are used, as before).
  """
  import jax  # pylint: disable=g-import-not-at-top
  if setting == 1:
    return None  # JAX's default.
  if (jax.config.jax_num_cpu_devices != -1
      or 'xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', '')):
    return None
  wanted = count(setting, batch_size, grad_accum_steps)
  try:
    jax.config.update('jax_num_cpu_devices', wanted)
  except RuntimeError:  # Backends started (a notebook that ran JAX before, a test).
    logging.debug('cpu_devices: JAX started already; its devices are used')
    return None
  return wanted
