"""Command line: prepare a dataset, or list the datasets and the layouts they accept.

  python -m mh2f_jax.datasets prepare NAME --manual_dir DIR [--data_dir DIR]
  python -m mh2f_jax.datasets list
"""

from __future__ import annotations

import argparse
import sys
import warnings


def _show_warning(message, category, filename, lineno, file=None, line=None):
  del category, filename, lineno, line
  print(f'warning: {message}', file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
  """Runs the command line; returns the exit status (2 for a user error)."""
  parser = argparse.ArgumentParser(
      prog='python -m mh2f_jax.datasets',
      description='Prepare deraining datasets (TFDS, array_record) or list them.')
  commands = parser.add_subparsers(dest='command', required=True)
  prep = commands.add_parser('prepare', help='build a dataset and print its split sizes')
  prep.add_argument('name', help='e.g. rain200h, spa_data, paired_folder, synthetic_rain/heavy')
  prep.add_argument('--manual_dir', default=None,
                    help='folder holding the downloaded data (benchmarks, paired_folder)')
  prep.add_argument('--data_dir', default=None,
                    help='TFDS data folder (default: ~/tensorflow_datasets)')
  commands.add_parser('list', help='show the datasets and the folder layouts they accept')
  args = parser.parse_args(argv)

  # Imported after parsing so that --help answers without loading TFDS.
  from mh2f_jax import datasets  # pylint: disable=g-import-not-at-top
  from mh2f_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from mh2f_jax import logs  # pylint: disable=g-import-not-at-top

  logs.quiet_libraries()
  warnings.showwarning = _show_warning
  try:
    if args.command == 'list':
      print(datasets.describe_all())
      return 0
    counts = datasets.prepare(args.name, data_dir=args.data_dir, manual_dir=args.manual_dir)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  for split, count in counts.items():
    print(f'{split}: {count}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
