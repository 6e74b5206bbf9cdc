"""Prepares an offline install for a GPU image: the wheels it lacks, and the project's own.

A GPU image built for JAX or PyTorch has jax with its CUDA plugin and often flax, optax,
numpy, scipy and more, but not every package the project needs, and it may not reach
PyPI. On a connected machine, this script resolves requirements.txt for the image's
Python and platform and keeps the wheels of that set the image lacks: not those it
already has (``--have``, the output of ``pip list --format=freeze`` there), and never
jax or jaxlib, which stay the image's own. It adds the project's wheel, all in one new
folder. On the image, one command installs it without any index::

  python3 -m pip install --no-index --find-links DIR mh2f-jax

The resolution takes the image's own versions (from ``--have``) of the packages the
project needs, so a version the project cannot use is reported here, not on the image.

Usage::

  python tools/gpu_wheels.py --output=gpu-wheels --have=image-packages.txt
      [--python=3.12] [--platform=manylinux_2_28_x86_64] [--dry_run]

Run it from an environment with pip and ``packaging`` (the project's has both).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from packaging.utils import canonicalize_name
from packaging.utils import parse_wheel_filename

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Never brought: the image's own JAX must stay (its CUDA plugin matches it exactly).
KEEP = frozenset({'jax', 'jaxlib'})
PROJECT = 'mh2f-jax'
# The files a wheel of the project is built from (a copy: the checkout gets no build/).
_SOURCES = ('pyproject.toml', 'README.md', 'LICENSE', 'requirements.txt')


class Failure(Exception):
  """A problem the user can fix; printed as one ``error:`` line, exit status 2."""


def install_command(folder: str) -> str:
  """The command that installs the prepared folder on the image."""
  return f'python3 -m pip install --no-index --find-links {folder} {PROJECT}'


def platform_tags(platform: str) -> list[str]:
  """The platform tags a machine of ``platform`` accepts, for ``pip --platform``.

  pip matches manylinux tags exactly, so ``manylinux_2_28_x86_64`` becomes every glibc
  from 2.28 down, with the legacy aliases (manylinux2014 = 2.17, 2010 = 2.12, 1 = 2.5).
  Any other tag (macosx_..., win_amd64) is taken as it is.

  Args:
    platform: a wheel platform tag such as ``manylinux_2_28_x86_64``.

  Returns:
    The tags, most specific first.
  """
  match = re.fullmatch(r'manylinux_2_(\d+)_(\w+)', platform)
  if not match:
    return [platform]
  newest, arch = int(match.group(1)), match.group(2)
  tags = [f'manylinux_2_{minor}_{arch}' for minor in range(newest, 4, -1)]
  for alias, minor in (('manylinux2014', 17), ('manylinux2010', 12), ('manylinux1', 5)):
    if minor <= newest:
      tags.append(f'{alias}_{arch}')
  return tags


def read_have(lines: list[str]) -> tuple[set[str], list[str]]:
  """Parses ``pip list --format=freeze`` (or ``pip freeze``) output of the image.

  Args:
    lines: the file's lines: ``name==version``, ``name @ url``, a bare ``name``;
      ``#`` comments, blank lines and ``-e`` lines are ignored.

  Returns:
    (the canonical names the image has, a ``name==version`` pin for each versioned
    line).
  """
  names, pins = set(), []
  for raw in lines:
    line = raw.split('#', 1)[0].strip()
    if not line or line.startswith('-'):
      continue
    match = re.fullmatch(r'([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*(\S+)|@\s*\S+)?', line)
    if not match:
      raise Failure(f'--have: cannot read the line {raw.strip()!r} (expected name==version)')
    names.add(canonicalize_name(match.group(1)))
    if match.group(2):
      pins.append(f'{match.group(1)}=={match.group(2)}')
  return names, pins


def to_bring(wheels: list[str], have: set[str]) -> list[str]:
  """The wheel files (names) of a resolved set that the image lacks, sorted."""
  return sorted(w for w in wheels
                if parse_wheel_filename(w)[0] not in have | KEEP)


def _target(python: str, platform: str) -> list[str]:
  """pip's options that select wheels for another Python and platform."""
  options = ['--only-binary=:all:', '--implementation', 'cp', '--python-version', python]
  for tag in platform_tags(platform):
    options += ['--platform', tag]
  return options


def _pip(args: list[str], what: str) -> None:
  """Runs pip with this interpreter; a failure is a Failure with pip's error lines."""
  done = subprocess.run([sys.executable, '-m', 'pip', *args], capture_output=True,
                        text=True, check=False)
  if done.returncode != 0:
    lines = done.stderr.strip().splitlines()
    tail = '\n'.join([l for l in lines if l.startswith('ERROR')] or lines[-12:])
    raise Failure(f'{what} failed (pip exit status {done.returncode}):\n{tail}')


def _here(tmp: str) -> dict:
  """pip's report of requirements.txt resolved for this interpreter, nothing installed."""
  report = os.path.join(tmp, 'report.json')
  _pip(['install', '--dry-run', '--ignore-installed', '--quiet', '--report', report,
        '--target', os.path.join(tmp, 'unused'), '-r',
        os.path.join(REPO, 'requirements.txt')], 'resolving requirements.txt here')
  with open(report) as f:
    return json.load(f)


def build_pure_wheels(report: dict, tmp: str) -> str:
  """Builds wheels of the packages of ``report`` published only as sources.

  pip picks files for another Python or platform only where every package has a wheel.
  A package published only as sources is built here; its wheel must be pure Python
  (``-none-any``) to serve the target.

  Returns:
    The folder of the built wheels (empty when none were needed).
  """
  built = os.path.join(tmp, 'built')
  os.makedirs(built)
  sources = sorted(f"{item['metadata']['name']}=={item['metadata']['version']}"
                   for item in report['install']
                   if not item['download_info']['url'].endswith('.whl'))
  if sources:
    _pip(['wheel', '--no-deps', '--quiet', '--wheel-dir', built, *sources],
         f'building wheels of {", ".join(sources)}')
  impure = [f for f in os.listdir(built) if not f.endswith('-none-any.whl')]
  if impure:
    raise Failure(f'{", ".join(impure)}: built here for this platform only; the target '
                  'needs a wheel of its own')
  return built


def download_all(args: argparse.Namespace, pins: list[str], built: str, tmp: str) -> str:
  """Downloads the whole resolved set for the target into a folder; returns it.

  pip's download (not ``install --dry-run``, which checks Requires-Python against the
  running interpreter) resolves for the target's Python. The image's versions
  (``pins``) join the requirements so the rest is chosen to go with them.
  """
  folder = os.path.join(tmp, 'all')
  what = f'resolving requirements.txt for Python {args.python} on {args.platform}'
  if pins:
    what += " with the image's " + ' '.join(pins)
  _pip(['download', '--quiet', '--dest', folder, '--find-links', built,
        *_target(args.python, args.platform), '-r',
        os.path.join(REPO, 'requirements.txt'), *pins], what)
  return folder


def build_project_wheel(folder: str, tmp: str) -> None:
  """Builds the project's wheel into ``folder``, from a copy of its sources."""
  src = os.path.join(tmp, 'src')
  os.makedirs(src)
  for name in _SOURCES:
    shutil.copy(os.path.join(REPO, name), src)
  shutil.copytree(os.path.join(REPO, 'mh2f_jax'), os.path.join(src, 'mh2f_jax'),
                  ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
  _pip(['wheel', '--no-deps', '--quiet', '--wheel-dir', folder, src],
       "building the project's wheel")


def _check_output(folder: str) -> None:
  """Refuses a folder that holds files already, before anything is downloaded."""
  if os.path.exists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
    raise Failure(f'--output {folder} exists and is not an empty folder: name a new one')
  parent = os.path.dirname(os.path.abspath(folder))
  if not os.access(parent, os.W_OK):
    raise Failure(f'--output {folder}: cannot write in {parent}')


def _fill(output: str, wheels: list[str], source: str, tmp: str) -> None:
  """Fills a folder beside ``output`` and renames it to ``output`` once complete."""
  parent = os.path.dirname(os.path.abspath(output))
  partial = tempfile.mkdtemp(prefix='.gpu-wheels-partial-', dir=parent)
  try:
    for wheel in wheels:
      shutil.copy(os.path.join(source, wheel), partial)
    build_project_wheel(partial, tmp)
    os.replace(partial, output)  # an empty folder there is replaced; see _check_output
  finally:
    shutil.rmtree(partial, ignore_errors=True)


def _read_have(path: str | None) -> tuple[set[str], list[str]]:
  if not path:
    return set(), []
  try:
    with open(path) as f:
      return read_have(f.readlines())
  except OSError as e:
    raise Failure(f'--have {path}: {e.strerror}') from e


def prepare(args: argparse.Namespace) -> int:
  """Resolves, downloads and builds; prints what it brings and the install command."""
  have, pins = _read_have(args.have)
  if not args.dry_run:
    _check_output(args.output)
  with tempfile.TemporaryDirectory(prefix='mh2f-gpu-wheels-') as tmp:
    here = _here(tmp)
    needed = {canonicalize_name(item['metadata']['name']) for item in here['install']}
    pins = [pin for pin in pins if canonicalize_name(pin.split('==')[0]) in needed]
    source = download_all(args, pins, build_pure_wheels(here, tmp), tmp)
    bring = to_bring(os.listdir(source), have)
    print(f'{len(bring)} wheels to bring for Python {args.python} on {args.platform} '
          f'(not jax or jaxlib, nor what the image has):')
    print('  ' + ' '.join(bring))
    if args.dry_run:
      return 0
    _fill(args.output, bring, source, tmp)
  files = os.listdir(args.output)
  size = sum(os.path.getsize(os.path.join(args.output, f)) for f in files)
  print(f'{len(files)} wheels, {size / 2**20:.1f} MiB, in {args.output}. On the image:')
  print(f'  {install_command(args.output)}')
  return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description='Wheels a GPU image lacks, and the project, for an offline install.')
  parser.add_argument('--output', required=True, help='New folder for the wheels.')
  parser.add_argument('--have', help="The image's `python3 -m pip list --format=freeze` "
                      'output, saved to a file: those packages are not brought.')
  parser.add_argument('--python', default='3.12', help="The image's Python (default 3.12).")
  parser.add_argument('--platform', default='manylinux_2_28_x86_64',
                      help="The image's newest manylinux tag (default manylinux_2_28_x86_64"
                      ': glibc 2.28 or newer), or another wheel platform tag.')
  parser.add_argument('--dry_run', action='store_true',
                      help='List what would be brought; write no --output folder.')
  return parser.parse_args(argv)


def main(argv: list[str]) -> int:
  args = parse_args(argv)
  try:
    return prepare(args)
  except Failure as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print('error: interrupted', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
