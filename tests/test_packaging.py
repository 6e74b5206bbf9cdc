"""The package installs from a wheel and its commands work outside the checkout.

One wheel is built from a copy of the package's files (so the checkout gets no build
folders) and installed, without dependencies, into a throwaway environment whose
dependencies come from the running interpreter's site-packages via a ``.pth`` file:
a real ``pip install`` of this project, without downloading its heavy dependencies again.
Building the wheel fetches setuptools through pip's isolated build (from pip's cache).
"""

import configparser
import os
import shutil
import site
import subprocess
import sys
import zipfile

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
  if command == 'mh2f-export' and not os.path.exists(os.path.join(REPO, 'mh2f_jax',
                                                                  'export.py')):
    pytest.skip('mh2f_jax/export/__main__.py (the export command) is not in this checkout')
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
  assert (features, dataset) == ('8', 'synthetic_rain/heavy:3,synthetic_rain/light:1')
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
