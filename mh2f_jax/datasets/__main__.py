"""Prepares a dataset, or lists the datasets and the layouts they accept.

  python -m mh2f_jax.datasets prepare NAME [--manual_dir=DIR] [--data_dir=DIR]
      [--max_pixels=N]
  python -m mh2f_jax.datasets list
"""

from __future__ import annotations

from collections.abc import Sequence
import sys
import warnings

from absl import flags

from mh2f_jax import cli
from mh2f_jax import files
from mh2f_jax.errors import UserError

_USAGE = 'commands: prepare NAME [--manual_dir=DIR] [--data_dir=DIR], or list'


def define_flags(values: flags.FlagValues, argv: Sequence[str]) -> None:
  """Defines the dataset tool's flags on ``values``."""
  del argv  # No config overrides.
  flags.DEFINE_string('manual_dir', None, 'Folder holding the downloaded data '
                      '(benchmarks, paired_folder).', flag_values=values)
  flags.DEFINE_string('data_dir', None, 'TFDS data folder (default: ~/tensorflow_datasets).',
                      flag_values=values)
  cli.define_max_pixels_flag(values, 'Refuse images')


def _show_warning(message, category, filename, lineno, file=None, line=None):
  del category, filename, lineno, line
  print(f'warning: {message}', file=file or sys.stderr)


def main(values: flags.FlagValues, positional: Sequence[str]) -> int:
  """Runs ``prepare NAME`` or ``list``; returns the exit status.

  Raises:
    UserError: an unknown command, a missing name, or a dataset that cannot be built.
  """
  if not positional or positional[0] not in ('prepare', 'list'):
    raise UserError(f'expected a command; {_USAGE}')
  command, args = positional[0], positional[1:]
  if (command == 'list' and args) or (command == 'prepare' and len(args) != 1):
    raise UserError(f'wrong arguments for {command}: {" ".join(args) or "(none)"}; {_USAGE}')
  # Imported after parsing so that --help answers without loading TFDS.
  from mh2f_jax import datasets  # pylint: disable=g-import-not-at-top
  warnings.showwarning = _show_warning
  if command == 'list':
    print(datasets.describe_all())
    return 0
  with files.pixel_limit(values.max_pixels):
    counts = datasets.prepare(args[0], data_dir=values.data_dir, manual_dir=values.manual_dir)
  for split, count in counts.items():
    print(f'{split}: {count}')
  return 0


def run(argv: Sequence[str] | None = None) -> int:
  """The ``datasets`` command; ``argv`` without the program name (None: ``sys.argv``)."""
  return cli.run(main, define_flags, argv, prog='python -m mh2f_jax.datasets', doc=__doc__,
                 compile_cache=False)


if __name__ == '__main__':
  cli.exit_with(run())
