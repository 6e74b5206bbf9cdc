"""mh2f-export meeting a full disk or Ctrl-C: one line naming the file, nothing half-written."""

import errno
import os

import pytest

from mh2f_jax import files
from mh2f_jax.export import __main__ as export_cli

from inference_helper import tiny_run  # pylint: disable=g-bad-import-order


@pytest.fixture(name='run', scope='session')
def _run_fixture(tmp_path_factory):
  return tiny_run(tmp_path_factory)


class _FailingFile:
  """A file whose write fails as a full disk's does: an OSError without a file name."""

  def __init__(self, path, error):
    self.path, self.error = path, error
    open(path, 'xb').close()  # pylint: disable=consider-using-with

  def write(self, data):
    del data
    raise self.error

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def _export(run, output, monkeypatch, error):
  def failing_open(path, mode):
    # The folder's write probe, before the work, still passes: the disk fills later.
    if os.path.basename(path).startswith('.write-probe-'):
      return open(path, mode)  # pylint: disable=consider-using-with,unspecified-encoding
    return _FailingFile(path, error)

  monkeypatch.setattr(files, 'open', failing_open, raising=False)
  return export_cli.run([f'--workdir={run.workdir}', '--format=jax', '--platforms=cpu',
                         '--checkpoint=latest', f'--output={output}'])


def test_a_full_disk_names_the_file_being_written(run, tmp_path, monkeypatch, capsys):
  output = tmp_path / 'model.jax'
  status = _export(run, output, monkeypatch,
                   OSError(errno.ENOSPC, 'No space left on device'))
  assert status == 2
  assert capsys.readouterr().err.strip().splitlines()[-1] == (
      f'error: cannot write {output}: No space left on device')
  assert os.listdir(tmp_path) == []  # Neither the output nor its temporary file.


def test_ctrl_c_is_one_line_exit_130_and_leaves_no_partial_file(
    run, tmp_path, monkeypatch, capsys):
  try:
    status = _export(run, tmp_path / 'model.jax', monkeypatch, KeyboardInterrupt())
  except KeyboardInterrupt:
    pytest.fail('Ctrl-C escaped the command with a traceback')
  assert status == 130
  assert capsys.readouterr().err.strip().splitlines() == ['python -m mh2f_jax.export: interrupted']
  assert os.listdir(tmp_path) == []
