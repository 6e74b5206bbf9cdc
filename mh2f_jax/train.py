r"""Trains MH2F-Net: ``python train.py --config=configs/rain200l.py --workdir=runs/rain200l``.

The config is a Python file (``configs/*.py``) or a shipped config's name (``rain200l``),
optionally with a variant after a colon (``configs/rain200l.py:debug``, ``synthetic:debug``)
and field overrides (``--config.batch_size=32``). Starting
again with the same ``--workdir`` resumes from its newest checkpoint.

Several processes (hosts) train together when ``jax.distributed`` is initialised, from
flags:

  python train.py ... --coordinator_address=HOST0:1234 --num_processes=2 --process_id=0

or from the environment (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``), or, with ``--distributed``, from what JAX detects on a cluster
(SLURM, Open MPI, Kubernetes, Cloud TPU). See docs/training.md.
"""

from collections.abc import Sequence

from absl import flags
from absl import logging
import ml_collections

from mh2f_jax import cli
from mh2f_jax import config_schema
from mh2f_jax import configs
from mh2f_jax.runtime import cpu_devices
from mh2f_jax.errors import UserError


def define_flags(values: flags.FlagValues, argv: Sequence[str]) -> None:
  """Defines the training flags on ``values`` (``argv`` holds the config overrides)."""
  configs.define_flag('config', 'Training configuration: a file (configs/*.py[:variant]) '
                      'or a shipped config\'s name (rain200l, synthetic:debug, ...).',
                      values, lock_config=True, sys_argv=list(argv))
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and config.json; '
                      'an existing one is resumed.', flag_values=values)
  cli.define_distributed_flags(values)
  flags.mark_flags_as_required(['config', 'workdir'], flag_values=values)


def _config(values: flags.FlagValues) -> ml_collections.ConfigDict:
  """The parsed config; UserError for a config file that could not be loaded."""
  config = values.config
  if not isinstance(config, ml_collections.ConfigDict):
    # ml_collections stands in an object that raises its load error on first use.
    try:
      config.to_dict()
    except OSError as e:
      lines = [line.strip() for line in str(e).splitlines() if line.strip()]
      raise UserError(f'cannot load --config: {lines[-1]}') from None
    raise UserError(f'--config did not give a config: {type(config).__name__}')
  return config


def main(values: flags.FlagValues, positional: Sequence[str]) -> int:
  """Trains the run that the flags describe; returns the exit status."""
  if positional:
    raise UserError(f'unexpected arguments: {" ".join(positional)}')
  config = _config(values)
  config_schema.validate(config)  # Before the CPU devices are chosen from its batch.
  cpu_devices.split_host(config.cpu_devices, config.batch_size, config.grad_accum_steps)
  cli.init_distributed(values)
  import jax  # pylint: disable=g-import-not-at-top
  from mh2f_jax.training import trainer  # pylint: disable=g-import-not-at-top
  logging.info('JAX %s, process %d of %d, %d local / %d global devices: %s',
               jax.__version__, jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count(),
               ', '.join(str(d) for d in jax.local_devices()))
  summary = trainer.train_and_evaluate(config, values.workdir)
  if summary.get('interrupted'):
    print(f'stopped at step {summary["step"]}; run the same command again to resume')
  best = summary.get('best')
  if best and jax.process_index() == 0:
    print(f'best validation: {best["psnr_y"]:.2f} dB PSNR-Y, {best["ssim_y"]:.4f} SSIM-Y '
          f'at step {best["step"]} ({values.workdir})')
  return 0


def run(argv: Sequence[str] | None = None) -> int:
  """The ``train`` command; ``argv`` without the program name (None: ``sys.argv``)."""
  return cli.run(main, define_flags, argv, prog='train.py', doc=__doc__,
                 log_level=logging.INFO)


if __name__ == '__main__':
  cli.exit_with(run())
