"""The package installs from a wheel and its commands work outside the checkout.

One wheel is built from a copy of the package's files (so the checkout gets no build
folders) and installed, without dependencies, into a throwaway environment whose
dependencies come from the running interpreter's site-packages via a ``.pth`` file:
a real ``pip install`` of this project, without downloading its heavy dependencies again.
Building the wheel fetches setuptools through pip's isolated build (from pip's cache).
"""

import configparser
import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ('mh2f-train', 'mh2f-eval', 'mh2f-derain', 'mh2f-datasets', 'mh2f-export',
            'mh2f-app', 'mh2f-bench')


def _run(args, cwd, timeout=240, **kwargs):
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['JAX_PLATFORMS'] = 'cpu'
  return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=timeout, check=False, **kwargs)


@pytest.fixture(name='env', scope='module')
def _installed(tmp_path_factory):
  """(python, bin folder, wheel path, empty working folder) of a fresh install."""
  tmp = tmp_path_factory.mktemp('install')
  src = _mkdir(tmp / 'src')
  for name in ('pyproject.toml', 'README.md', 'LICENSE', 'requirements.txt'):
    shutil.copy(os.path.join(REPO, name), src / name)
  shutil.copytree(os.path.join(REPO, 'mh2f_jax'), src / 'mh2f_jax',
                  ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
  build = _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q', '-w',
                str(tmp / 'dist'), str(src)], cwd=tmp)
  assert build.returncode == 0, build.stdout + build.stderr
  (wheel,) = (tmp / 'dist').glob('mh2f_jax-*.whl')
  venv = tmp / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
  python = venv / 'bin' / 'python'
  purelib = _run([str(python), '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
                 cwd=tmp).stdout.strip()
  # The dependencies: this interpreter's site-packages, after the environment's own.
  with open(os.path.join(purelib, 'deps.pth'), 'w') as f:
    f.write('\n'.join(site.getsitepackages()) + '\n')
  install = _run([sys.executable, '-m', 'pip', '--python', str(python), 'install',
                  '--no-deps', '-q', str(wheel)], cwd=tmp)
  assert install.returncode == 0, install.stdout + install.stderr
  return python, venv / 'bin', wheel, _mkdir(tmp / 'elsewhere')


def _mkdir(path):
  path.mkdir(parents=True, exist_ok=True)
  return path


def test_wheel_holds_the_configs_license_and_commands(env):
  _, _, wheel, _ = env
  with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    entry_points = z.read(next(n for n in names if n.endswith('entry_points.txt'))).decode()
  for config in ('default', 'synthetic', 'rain200l', 'ablation_no_hadb'):
    assert f'mh2f_jax/configs/{config}.py' in names
  assert any(n.endswith('LICENSE') and '.dist-info/' in n for n in names)
  # The no-reference measures' models, each with its notice.
  for data in ('niqe_pris_params.npz', 'niqe_pris_params.NOTICE.txt', 'brisque/allmodel',
               'brisque/allrange', 'brisque/NOTICE.txt'):
    assert f'mh2f_jax/metrics/data/{data}' in names
  scripts = configparser.ConfigParser()
  scripts.read_string(entry_points)
  assert sorted(scripts['console_scripts']) == sorted(COMMANDS)


def test_the_package_comes_from_the_install_not_the_checkout(env):
  python, _, _, elsewhere = env
  out = _run([str(python), '-c', 'import mh2f_jax; print(mh2f_jax.__file__)'], cwd=elsewhere)
  assert out.returncode == 0, out.stderr
  assert not out.stdout.strip().startswith(REPO + os.sep)
  assert str(python.parent.parent) in out.stdout


@pytest.mark.parametrize('command', COMMANDS)
def test_every_command_answers_help(env, command):
  _, bin_dir, _, elsewhere = env
  out = _run([str(bin_dir / command), '--help'], cwd=elsewhere, timeout=120)
  # absl's --help (train, eval) exits with status 1; argparse's with 0.
  expected = (0, 1) if command in ('mh2f-train', 'mh2f-eval') else (0,)
  assert out.returncode in expected, out.stdout + out.stderr
  if command == 'mh2f-bench':
    assert '--output' in out.stdout and '--quick' in out.stdout, out.stdout
  else:
    assert '--workdir' in out.stdout or 'prepare' in out.stdout, out.stdout


def test_python_m_runs_outside_the_checkout(env):
  python, _, _, elsewhere = env
  out = _run([str(python), '-m', 'mh2f_jax.derain', '--help'], cwd=elsewhere)
  assert out.returncode == 0, out.stderr
  assert '--workdir' in out.stdout and '--input' in out.stdout


def test_shipped_config_by_name(env):
  python, bin_dir, _, elsewhere = env
  code = ('from mh2f_jax import configs; c = configs.get_config("synthetic:debug"); '
          'print(c.model.features, c.data.dataset, configs.config_path("rain200l"))')
  out = _run([str(python), '-c', code], cwd=elsewhere)
  assert out.returncode == 0, out.stderr
  features, dataset, path = out.stdout.split()
  assert (features, dataset) == (
      '8', 'synthetic_rain/heavy:3,synthetic_rain/light:1,synthetic_rain/clear:0.5')
  assert path.startswith(str(python.parent.parent)) and path.endswith('rain200l.py')
  # Through the command's flag: the name loads, the override applies, and the
  # validation that follows rejects the override before any training.
  out = _run([str(bin_dir / 'mh2f-train'), '--config=synthetic:debug',
              '--config.batch_size=0', f'--workdir={elsewhere / "run"}'], cwd=elsewhere)
  assert out.returncode == 2, out.stdout + out.stderr
  assert 'batch_size' in out.stderr and 'Traceback' not in out.stderr
  out = _run([str(bin_dir / 'mh2f-train'), '--config=rain300l', f'--workdir={elsewhere}'],
             cwd=elsewhere)
  assert out.returncode != 0
  assert 'rain300l' in out.stderr and 'rain200l' in out.stderr  # names the shipped ones


# The lock files (locks/, written by .ci/lock) against the ranges they were made from: a
# range edited without refreshing the locks fails here, without any download.
LOCKS = os.path.join(REPO, 'locks')


def _pins(name):
  """{canonical name: version} of a lock file; every pin carries its hashes."""
  with open(os.path.join(LOCKS, name)) as f:
    text = f.read()
  pins = {}
  for block in re.split(r'\n(?=\S)', text):
    match = re.match(r'([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)', block)
    if match:
      assert '--hash=sha256:' in block, f'{name}: {match.group(0)} has no hash'
      pins[canonicalize_name(match.group(1))] = Version(match.group(2))
  assert pins, name
  return pins


def _ranges(*files, extra=None):
  """The requirements of requirements files (and of one extra of pyproject.toml)."""
  lines = []
  for name in files:
    with open(os.path.join(REPO, name)) as f:
      lines += [line.strip() for line in f if line.strip() and not line.startswith('#')]
  if extra:
    with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
      lines += tomllib.load(f)['project']['optional-dependencies'][extra]
  return [Requirement(line) for line in lines]


LOCKED = {'core.txt': (('requirements.txt',), None),
          'app.txt': (('requirements.txt',), 'app'),
          'export.txt': (('requirements.txt',), 'export'),
          'tensorboard.txt': (('requirements.txt',), 'tensorboard'),
          'tests.txt': (('requirements.txt', 'tests/requirements.txt'), None)}


@pytest.mark.parametrize('lock', sorted(LOCKED))
def test_each_lock_pins_every_requirement_within_its_range(lock):
  pins = _pins(lock)
  files, extra = LOCKED[lock]
  for req in _ranges(*files, extra=extra):
    name = canonicalize_name(req.name)
    assert name in pins, f'{lock} lacks {req}: run .ci/lock'
    assert req.specifier.contains(pins[name], prereleases=True), (
        f'{lock} pins {name}=={pins[name]}, outside {req}: run .ci/lock')


def test_locks_give_a_package_one_version():
  """The locks are parts of one resolution: each is a part of what CI tested."""
  seen = {}
  for lock in LOCKED:
    for name, version in _pins(lock).items():
      seen.setdefault(name, {})[lock] = version
  differ = {name: v for name, v in seen.items() if len(set(v.values())) > 1}
  assert not differ, differ


def test_floors_lock_pins_each_requirement_at_its_floor():
  pins = _pins('floors.txt')
  for req in _ranges('requirements.txt'):
    (floor,) = [s.version for s in req.specifier if s.operator == '>=']
    assert pins[canonicalize_name(req.name)] == Version(floor), (
        f'floors.txt pins {req.name}=={pins[canonicalize_name(req.name)]}, not the floor of '
        f'{req}: raise the floor to a version that resolves, or run .ci/lock')
