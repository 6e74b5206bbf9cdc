"""Places a command cannot write to, for the tests that a command checks before its work."""

import contextlib
import os
import shutil
import subprocess

import pytest


@contextlib.contextmanager
def read_only_folder(path):
  """A read-only folder at ``path`` (made if missing; an existing one is covered).

  Root ignores file modes, so as root it is a read-only tmpfs mounted there (the test is
  skipped where that cannot be done); otherwise a folder of mode 555.
  """
  os.makedirs(path, exist_ok=True)
  if os.geteuid() != 0:
    os.chmod(path, 0o555)
    try:
      yield path
    finally:
      os.chmod(path, 0o755)
    return
  if shutil.which('mount') is None or subprocess.run(
      ['mount', '-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', path], capture_output=True,
      check=False).returncode != 0:
    pytest.skip('needs a read-only mount as root')
  try:
    yield path
  finally:
    subprocess.run(['umount', '-l', path], capture_output=True, check=False)
