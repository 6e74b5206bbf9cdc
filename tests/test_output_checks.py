"""Every command that writes results checks that it can write them before its work.

Each place here cannot be written (a read-only folder) and the command's work is
replaced by a failure: the command must stop with one ``error:`` line naming the place,
exit status 2, before that work starts. (train.py's workdir: tests/test_faults.py;
mh2f-bench's --output: tests/test_bench.py.)
"""

import os
import shutil

import pytest

from mh2f_jax import inference
from mh2f_jax.evaluation import evaluator

import faults_helper  # pylint: disable=g-bad-import-order
from inference_helper import tiny_run  # pylint: disable=g-bad-import-order


@pytest.fixture(name='run', scope='module')
def _run_fixture(tmp_path_factory):
  return tiny_run(tmp_path_factory)


def _work(what):
  def ran(*args, **kwargs):
    raise AssertionError(f'{what} started before the output was checked')
  return ran


def _one_error_line(capsys, status, fragment):
  err = capsys.readouterr().err
  errors = [line for line in err.splitlines() if line.startswith('error:')]
  assert status == 2, err
  assert len(errors) == 1 and fragment in errors[0], err
  assert 'Traceback' not in err


def test_eval_checks_its_report_folder_before_scoring(run, tmp_path, capsys, monkeypatch):
  from mh2f_jax import eval as eval_tool  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  shutil.copytree(run.workdir, workdir)
  # The report folder of an earlier evaluation, now read-only.
  report = os.path.join(workdir, 'eval', evaluator.eval_dir_name('paired_folder', 'test', 1))
  monkeypatch.setattr(evaluator, '_score_images', _work('scoring'))
  with faults_helper.read_only_folder(report):
    _one_error_line(capsys, eval_tool.run([f'--workdir={workdir}']),
                    f'cannot write to the output folder {report}')


def test_export_checks_its_output_folder_before_exporting(run, tmp_path, capsys,
                                                          monkeypatch):
  from mh2f_jax.export import __main__ as export_cli  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(inference.Derainer, 'from_workdir', _work('the export'))
  with faults_helper.read_only_folder(str(tmp_path / 'ro')) as folder:
    output = os.path.join(folder, 'model.jax')
    _one_error_line(capsys, export_cli.run([f'--workdir={run.workdir}', '--format=jax',
                                            f'--output={output}']),
                    f'cannot write to the output folder {folder}')
    assert os.listdir(folder) == []


def test_prepare_checks_its_data_dir_before_building(run, tmp_path, capsys, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from mh2f_jax.datasets import __main__ as datasets_cli  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', _work('the build'))
  with faults_helper.read_only_folder(str(tmp_path / 'ro')) as folder:
    _one_error_line(capsys, datasets_cli.run(['prepare', 'paired_folder',
                                              f'--manual_dir={run.manual_dir}',
                                              f'--data_dir={folder}']),
                    f'cannot write {folder}')
    assert os.listdir(folder) == []
