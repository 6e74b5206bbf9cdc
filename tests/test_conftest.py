"""Tests for tests/conftest.py's setup under pytest-xdist, the README's way to run the suite.

A copy of conftest.py (with the helper it imports) runs a small suite in a subprocess
with two workers, each of which records the compilation cache folder it was given.
"""

import os
import shutil
import subprocess
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
_PROBE = '''
import os

def test_where():
  folder = os.environ['MH2F_COMPILATION_CACHE']
  assert os.path.isdir(folder)
  with open(os.path.join(os.environ['PROBE_OUT'], os.environ['PYTEST_XDIST_WORKER']), 'w') as f:
    f.write(folder)
'''


def _folders(tmp_path, **env):
  """{worker: cache folder} of a two-worker run of the probe under the copied conftest."""
  suite, out = tmp_path / 'suite', tmp_path / 'out'
  suite.mkdir()
  out.mkdir()
  for name in ('conftest.py', 'metrics_helper.py'):
    shutil.copy(os.path.join(TESTS, name), suite / name)
  (suite / 'test_probe.py').write_text(_PROBE)
  clean = {k: v for k, v in os.environ.items()
           if k not in ('MH2F_COMPILATION_CACHE', 'MH2F_TEST_COMPILATION_CACHE')}
  done = subprocess.run(
      [sys.executable, '-m', 'pytest', '-q', '-n', '2', '--dist', 'each', '-p',
       'no:cacheprovider', str(suite)], cwd=suite, capture_output=True, text=True,
      timeout=300, check=False, env={**clean, 'PROBE_OUT': str(out), **env})
  assert done.returncode == 0, done.stdout + done.stderr
  return {worker.name: worker.read_text() for worker in out.iterdir()}


def test_each_worker_has_its_own_compilation_cache_removed_at_the_end(tmp_path):
  folders = _folders(tmp_path)
  assert sorted(folders) == ['gw0', 'gw1']
  assert folders['gw0'] != folders['gw1']
  assert not any(os.path.exists(folder) for folder in folders.values())


def test_a_folder_the_user_set_is_kept(tmp_path):
  mine = tmp_path / 'my_cache'
  mine.mkdir()
  assert _folders(tmp_path, MH2F_COMPILATION_CACHE=str(mine)) == {
      'gw0': str(mine), 'gw1': str(mine)}
  assert mine.is_dir()
