r"""Trains MH2F-Net: ``python train.py --config=configs/rain200l.py --workdir=runs/rain200l``.

The config is a Python file (``configs/*.py``), optionally with a variant after a colon
(``configs/rain200l.py:debug``) and field overrides (``--config.batch_size=32``). Starting
again with the same ``--workdir`` resumes from its newest checkpoint.

Several processes (hosts) train together when ``jax.distributed`` is initialised, from
flags:

  python train.py ... --coordinator_address=HOST0:1234 --num_processes=2 --process_id=0

or from the environment (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``), or, with ``--distributed``, from what JAX detects on a cluster
(SLURM, Open MPI, Kubernetes, Cloud TPU). See docs/training.md.
"""

import logging as pylogging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Training configuration file (configs/*.py[:variant]).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for checkpoints, logs and config.json; an existing one '
    'is resumed.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', os.environ.get('JAX_COORDINATOR_ADDRESS'),
    'host:port of process 0, for multi-process training '
    '(default: $JAX_COORDINATOR_ADDRESS).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', int(os.environ['JAX_NUM_PROCESSES'])
    if os.environ.get('JAX_NUM_PROCESSES') else None,
    'Number of processes (default: $JAX_NUM_PROCESSES).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', int(os.environ['JAX_PROCESS_ID'])
    if os.environ.get('JAX_PROCESS_ID') else None,
    'Index of this process, 0 .. num_processes-1 (default: $JAX_PROCESS_ID).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Initialise jax.distributed from the cluster environment '
    '(SLURM, Open MPI, Kubernetes, Cloud TPU) when no coordinator is given.')
flags.mark_flags_as_required(['config', 'workdir'])


def _initialize_distributed() -> None:
  """Joins the process group when asked to; a single process needs nothing."""
  import jax  # pylint: disable=g-import-not-at-top
  given = {'--coordinator_address': _COORDINATOR.value,
           '--num_processes': _NUM_PROCESSES.value, '--process_id': _PROCESS_ID.value}
  if any(v is not None for v in given.values()):
    missing = [name for name, v in given.items() if v is None]
    if missing:
      from mh2f_jax.errors import UserError  # pylint: disable=g-import-not-at-top
      raise UserError(f'multi-process training needs {", ".join(given)}; missing '
                      f'{", ".join(missing)} (flags or JAX_COORDINATOR_ADDRESS, '
                      'JAX_NUM_PROCESSES, JAX_PROCESS_ID)')
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  elif _DISTRIBUTED.value:
    jax.distributed.initialize()


class _QuietLibraries(pylogging.Filter):
  """Drops the INFO lines Orbax writes for every save and restore; keeps its warnings."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    return record.levelno >= pylogging.WARNING or (
        f'{os.sep}orbax{os.sep}' not in record.pathname)


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_handler().addFilter(_QuietLibraries())
  from mh2f_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    _initialize_distributed()
    import jax  # pylint: disable=g-import-not-at-top
    from mh2f_jax import compile_cache  # pylint: disable=g-import-not-at-top
    from mh2f_jax import train_lib  # pylint: disable=g-import-not-at-top
    logging.info('compilation cache: %s', compile_cache.enable() or 'off')
    logging.info('JAX %s, process %d of %d, %d local / %d global devices: %s',
                 jax.__version__, jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count(),
                 ', '.join(str(d) for d in jax.local_devices()))
    summary = train_lib.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if summary.get('interrupted'):
    print(f'stopped at step {summary["step"]}; run the same command again to resume')
  best = summary.get('best')
  if best and jax.process_index() == 0:
    print(f'best validation: {best["psnr_y"]:.2f} dB PSNR-Y, {best["ssim_y"]:.4f} SSIM-Y '
          f'at step {best["step"]} ({_WORKDIR.value})')
  return 0


if __name__ == '__main__':
  # Logs at INFO to stderr unless --verbosity/--stderrthreshold say otherwise.
  flags.FLAGS.set_default('stderrthreshold', 'info')
  app.run(main)
