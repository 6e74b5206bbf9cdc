"""Tests for the no-reference report of photos without ground truth (eval.py --photos)."""

import csv
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mh2f_jax import errors
from mh2f_jax import eval as eval_command
from mh2f_jax import inference
from mh2f_jax.datasets import rain
from mh2f_jax.datasets import synthetic
from mh2f_jax.evaluation import photos_report
from mh2f_jax.metrics import brisque
from mh2f_jax.metrics import niqe
from mh2f_jax.metrics import no_reference

from inference_helper import tiny_run  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(name='run', scope='module')
def _run_fixture(tmp_path_factory):
  return tiny_run(tmp_path_factory)


def _rainy_photo(name, height, width, seed):
  photo = synthetic.test_photo(name)[:height, :width]
  return rain.add_rain(photo, np.random.default_rng(seed), 'light')


@pytest.fixture(name='folder')
def _folder(tmp_path):
  """Two scoreable photos, one too small for NIQE and one that is not an image."""
  folder = tmp_path / 'street'
  folder.mkdir()
  Image.fromarray(_rainy_photo('chelsea', 200, 256, 0)).save(folder / 'cat.png')
  Image.fromarray(_rainy_photo('grace_hopper', 200, 256, 1)).save(folder / 'grace.png')
  Image.fromarray(_rainy_photo('chelsea', 120, 150, 2)).save(folder / 'small.png')
  (folder / 'broken.jpg').write_bytes(b'not a jpeg')
  return folder


@pytest.fixture(name='model_dir')
def _model_dir(tmp_path):
  """A made-up BRISQUE model of the release's shape, in libsvm's text formats."""
  rng = np.random.default_rng(7)
  lines = ['svm_type epsilon_svr', 'kernel_type rbf', 'gamma 0.05', 'nr_class 2',
           'total_sv 5', 'rho -1.5', 'SV']
  for coef in rng.uniform(-5, 5, 5):
    lines.append(f'{coef} ' + ' '.join(f'{i + 1}:{v}' for i, v in
                                      enumerate(rng.uniform(-1, 1, 36))))
  folder = tmp_path / 'brisque_model'
  folder.mkdir()
  (folder / 'allmodel').write_text('\n'.join(lines) + '\n')
  (folder / 'allrange').write_text('x\n-1 1\n' + ''.join(
      f'{i + 1} 0 {2 + i}\n' for i in range(36)))
  return folder


def _read_csv(path):
  with open(path, newline='') as f:
    return {row['name']: row for row in csv.DictReader(f)}


def test_report_scores_input_and_output_and_explains_the_rest(run, folder):
  result = photos_report.evaluate_photos(run.workdir, str(folder), progress=False)
  assert re.fullmatch(r'photos-street-[0-9a-f]{8}-step1', os.path.basename(result['eval_dir']))
  rows = _read_csv(result['per_image_csv'])
  assert set(rows) == {'cat.png', 'grace.png', 'small.png', 'broken.jpg'}
  derainer = inference.Derainer.from_workdir(run.workdir, 'latest')
  for name in ('cat.png', 'grace.png'):
    rainy = np.asarray(Image.open(folder / name))
    derained = derainer.derain(rainy)
    row = rows[name]
    assert float(row['input_niqe']) == pytest.approx(niqe.niqe(rainy), abs=1e-9)
    assert float(row['input_niqe_y']) == pytest.approx(niqe.niqe(rainy, variant='y'),
                                                       abs=1e-9)
    assert float(row['derained_niqe']) == pytest.approx(niqe.niqe(derained), abs=1e-6)
    assert float(row['change_niqe']) == pytest.approx(
        float(row['derained_niqe']) - float(row['input_niqe']))
    # The release's model ships with the package: BRISQUE is scored by default.
    assert float(row['input_brisque']) == pytest.approx(brisque.brisque(rainy), abs=1e-9)
    assert row['note'] == ''
  assert rows['small.png']['input_niqe'] == '' and '192x192' in rows['small.png']['note']
  assert rows['small.png']['width'] == '150'
  assert rows['broken.jpg']['note'].startswith('cannot read')
  summary = json.loads(open(result['summary_json']).read())
  assert summary['niqe']['photos'] == 2 and summary['num_photos'] == 4
  assert summary['niqe']['input'] == pytest.approx(
      np.mean([float(rows[n]['input_niqe']) for n in ('cat.png', 'grace.png')]))
  # BRISQUE needs less than NIQE's two 96x96 blocks a side: the small photo has it.
  assert rows['small.png']['input_brisque'] != ''
  assert summary['brisque_unavailable'] is None and summary['brisque']['photos'] == 3
  text = open(result['results_md']).read()
  assert 'BRISQUE not scored' not in text and 'small.png' in text and 'broken.jpg' in text
  assert Image.open(result['figure']).size[0] > 200


def test_missing_brisque_files_leave_its_columns_empty_and_say_why_once(
    run, folder, tmp_path, monkeypatch):
  monkeypatch.setenv('MH2F_BRISQUE_MODEL_DIR', str(tmp_path / 'elsewhere'))
  result = photos_report.evaluate_photos(run.workdir, str(folder), progress=False)
  rows = _read_csv(result['per_image_csv'])
  assert rows['cat.png']['input_brisque'] == '' and rows['cat.png']['note'] == ''
  assert rows['cat.png']['input_niqe'] != ''
  summary = json.loads(open(result['summary_json']).read())
  assert 'allmodel' in summary['brisque_unavailable']
  assert open(result['results_md']).read().count('BRISQUE not scored') == 1


def test_brisque_is_scored_when_its_model_is_supplied(run, folder, model_dir):
  for name in ('small.png', 'broken.jpg'):
    os.remove(folder / name)
  result = photos_report.evaluate_photos(run.workdir, str(folder), progress=False,
                                         brisque_dir=str(model_dir))
  rows = _read_csv(result['per_image_csv'])
  model = brisque.load_model(model_dir)
  rainy = np.asarray(Image.open(folder / 'cat.png'))
  assert float(rows['cat.png']['input_brisque']) == pytest.approx(
      brisque.brisque(rainy, model=model), abs=1e-9)
  assert result['brisque_unavailable'] is None and result['brisque']['photos'] == 2
  assert 'BRISQUE not scored' not in open(result['results_md']).read()


def test_scorer_reasons_for_a_small_image():
  image = np.full((100, 300, 3), 128, np.uint8)
  values, reasons = no_reference.Scorer(None, 'no model').score(image)
  assert values == {'niqe': None, 'niqe_y': None, 'brisque': None}
  assert '192x192' in reasons['niqe'] and reasons['brisque']


def test_best_and_worst_are_the_extremes_of_the_niqe_change():
  rows = [{'name': n, 'change_niqe': c} for n, c in
          (('a', 0.5), ('b', -1.0), ('c', None), ('d', math.nan), ('e', 2.0))]
  assert photos_report._extremes(rows) == ('b', 'e')  # pylint: disable=protected-access
  assert photos_report._extremes(rows[2:4]) is None  # pylint: disable=protected-access


def test_bad_folders_are_user_errors(run, tmp_path):
  with pytest.raises(errors.UserError, match='does not exist'):
    photos_report.evaluate_photos(run.workdir, str(tmp_path / 'nowhere'), progress=False)
  with pytest.raises(errors.UserError, match='no image files'):
    photos_report.evaluate_photos(run.workdir, str(tmp_path), progress=False)


def _eval(args, cwd):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO}
  return subprocess.run([sys.executable, os.path.join(REPO, 'eval.py'), *args],
                        capture_output=True, text=True, env=env, cwd=str(cwd), timeout=300)


def test_eval_cli_photos(run, folder, tmp_path):
  ok = _eval([f'--workdir={run.workdir}', f'--photos={folder}'], tmp_path)
  assert ok.returncode == 0, ok.stderr
  assert 'NIQE' in ok.stdout and 'BRISQUE  rainy' in ok.stdout and 'not scored' not in ok.stdout
  results = [line.split(': ', 1)[1] for line in ok.stdout.splitlines()
             if line.startswith(('results: ', 'figure: '))]
  assert len(results) == 2 and all(os.path.isfile(p) for p in results)
  bad = _eval([f'--workdir={run.workdir}', f'--photos={tmp_path / "nowhere"}'], tmp_path)
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines()[-1].startswith('error: --photos')
  assert 'Traceback' not in bad.stderr


def test_test_split_flags_are_refused_with_photos(run, folder, capsys):
  for flag in ('--split=train', '--protocol=A', '--data_dir=/tmp'):
    assert eval_command.run([f'--workdir={run.workdir}', f'--photos={folder}', flag]) == 2
    assert capsys.readouterr().err.strip() == (
        f'error: {flag.split("=")[0]} applies to the test split, not to --photos')


def _one_photo_folder(path, name='one.png', photo='chelsea', size=(200, 256), seed=0):
  os.makedirs(path, exist_ok=True)
  Image.fromarray(_rainy_photo(photo, *size, seed)).save(os.path.join(path, name))
  return str(path)


def test_report_folders_of_different_photo_folders_never_meet(run, tmp_path):
  folders = [_one_photo_folder(tmp_path / 'trip1' / 'photos', 'one.png'),
             _one_photo_folder(tmp_path / 'trip2' / 'photos', 'two.png'),
             _one_photo_folder(tmp_path / 'régen', 'three.png'),
             _one_photo_folder(tmp_path / 'rägen', 'four.png')]
  results = [photos_report.evaluate_photos(run.workdir, f, progress=False) for f in folders]
  assert len({r['eval_dir'] for r in results}) == 4
  for result, name in zip(results, ('one.png', 'two.png', 'three.png', 'four.png')):
    assert set(_read_csv(result['per_image_csv'])) == {name}  # No report replaced.
  assert os.path.basename(results[0]['eval_dir']).startswith('photos-photos-')
  # The same folder, by another path, is the same report.
  again = photos_report.evaluate_photos(run.workdir, str(tmp_path / 'trip1' / '.' / 'photos'),
                                        progress=False)
  assert again['eval_dir'] == results[0]['eval_dir']


def test_a_rerun_leaves_no_file_of_the_previous_run(run, tmp_path):
  folder = _one_photo_folder(tmp_path / 'rerun')
  first = photos_report.evaluate_photos(run.workdir, folder, progress=False, save_images=True)
  assert sorted(os.listdir(first['eval_dir'])) == [
      'figure.png', 'images', 'per_image.csv', 'results.md', 'summary.json']
  os.remove(os.path.join(folder, 'one.png'))
  _one_photo_folder(folder, 'small.png', size=(120, 150))  # No NIQE: no figure.
  second = photos_report.evaluate_photos(run.workdir, folder, progress=False)
  assert second['eval_dir'] == first['eval_dir'] and second['figure'] is None
  assert sorted(os.listdir(second['eval_dir'])) == ['per_image.csv', 'results.md',
                                                    'summary.json']


def test_an_interrupted_run_leaves_nothing_half_written(run, tmp_path, monkeypatch):
  folder = _one_photo_folder(tmp_path / 'interrupted')
  _one_photo_folder(folder, 'two.png', seed=1)
  eval_root = os.path.join(run.workdir, 'eval')
  before = sorted(os.listdir(eval_root)) if os.path.isdir(eval_root) else []
  real, calls = photos_report._score_photo, []  # pylint: disable=protected-access

  def score_photo(*args):
    calls.append(args)
    if len(calls) == 2:
      raise KeyboardInterrupt  # Ctrl-C while the second photo is scored.
    return real(*args)

  monkeypatch.setattr(photos_report, '_score_photo', score_photo)
  with pytest.raises(KeyboardInterrupt):
    photos_report.evaluate_photos(run.workdir, folder, progress=False, save_images=True)
  assert sorted(os.listdir(eval_root)) == before


def test_a_folder_with_a_long_name_gets_a_report(run, tmp_path):
  folder = _one_photo_folder(tmp_path / ('f' * 245))
  result = photos_report.evaluate_photos(run.workdir, folder, progress=False)
  assert len(os.path.basename(result['eval_dir']).encode()) <= 255
  assert set(_read_csv(result['per_image_csv'])) == {'one.png'}


def test_a_photo_with_a_long_valid_name_is_saved(run, tmp_path):
  name = 'p' * 220 + '.png'
  folder = _one_photo_folder(tmp_path / 'long', name)
  result = photos_report.evaluate_photos(run.workdir, folder, progress=False,
                                         save_images=True)
  assert os.listdir(result['images_dir']) == [name]


def _eval_in_process(capsys, *args):
  status = eval_command.run(list(args))
  out, err = capsys.readouterr()
  assert 'Traceback' not in err
  return status, out, err


def _report_of(stdout):
  results = [line.split(': ', 1)[1] for line in stdout.splitlines()
             if line.startswith('results: ')]
  return os.path.dirname(results[0])


def test_photos_above_max_pixels_are_named_in_the_projects_words(run, tmp_path, capsys):
  folder = _one_photo_folder(tmp_path / 'big')
  status, out, err = _eval_in_process(capsys, f'--workdir={run.workdir}',
                                      f'--photos={folder}', '--max_pixels=1000')
  assert status == 0, err
  note = _read_csv(os.path.join(_report_of(out), 'per_image.csv'))['one.png']['note']
  assert note == ('cannot read: image of 51,200 pixels is above --max_pixels=1,000 (pass a '
                  'larger --max_pixels, or 0 for no cap, to read it)')


def test_entries_that_are_not_regular_files_are_noted(run, tmp_path, capsys):
  folder = _one_photo_folder(tmp_path / 'odd')
  os.symlink(tmp_path / 'gone.png', os.path.join(folder, 'dangling.png'))
  os.mkfifo(os.path.join(folder, 'pipe.png'))
  status, _, err = _eval_in_process(capsys, f'--workdir={run.workdir}', f'--photos={folder}')
  assert status == 0, err
  assert f'note: skipped {os.path.join(folder, "dangling.png")}: a dangling symbolic link' in err
  assert f'note: skipped {os.path.join(folder, "pipe.png")}: a FIFO (named pipe)' in err


def test_a_flat_photo_says_why_it_has_no_score(run, tmp_path):
  folder = tmp_path / 'flat'
  folder.mkdir()
  Image.fromarray(np.full((200, 256, 3), 128, np.uint8)).save(folder / 'grey.png')
  result = photos_report.evaluate_photos(run.workdir, str(folder), progress=False)
  row = _read_csv(result['per_image_csv'])['grey.png']
  assert row['input_niqe'] == 'nan'
  assert 'rainy photo: NIQE' in row['note'] and 'no score (NaN)' in row['note']
  assert 'flat' in row['note']


def test_the_backend_flag_is_honoured_with_photos(run, folder, capsys):
  pytest.importorskip('onnxruntime', reason='onnxruntime is not installed (the [export] extra)')
  status, out, err = _eval_in_process(capsys, f'--workdir={run.workdir}', f'--photos={folder}',
                                      '--backend=onnxruntime')
  assert status == 0, err
  summary = json.loads(open(os.path.join(_report_of(out), 'summary.json')).read())
  assert summary['backend'] == 'onnxruntime'
  assert 'backend onnxruntime' in out


def test_an_unwritable_report_location_is_refused_before_the_photos_are_derained(
    run, folder, tmp_path, capsys, monkeypatch):
  import shutil  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / 'run'
  shutil.copytree(run.workdir, workdir, ignore=shutil.ignore_patterns('eval'))
  (workdir / 'eval').write_text('not a folder')
  monkeypatch.setattr(photos_report, '_score_all',
                      lambda *args, **kwargs: pytest.fail('the photos were derained first'))
  status, _, err = _eval_in_process(capsys, f'--workdir={workdir}', f'--photos={folder}')
  assert status == 2
  assert err.strip().splitlines() == [
      f'error: cannot write to the output folder {workdir / "eval"}: File exists']


def test_improved_counts_the_photos_whose_score_went_down():
  rows = [{'name': n, 'width': 1, **{f'{k}_{m}': v for m in photos_report.MEASURES
                                     for k, v in (('input', 5.0), ('derained', 5.0 + c),
                                                  ('change', c))}}
          for n, c in (('a', -1.0), ('b', 2.0), ('c', -0.5), ('d', -0.25), ('e', 0.0))]
  summary = photos_report.summarise(rows)
  assert [summary[m]['improved'] for m in photos_report.MEASURES] == [3, 3, 3]
  assert '3 of 5 improved' in photos_report.format_summary(
      {**summary, 'folder': 'f', 'step': 1, 'backend': 'jax', 'brisque_unavailable': None})


def test_a_damaged_brisque_model_stops_the_run_before_any_work(run, folder, tmp_path,
                                                               monkeypatch, capsys):
  # The release's allmodel cut at a line boundary: the rest of it still parses.
  model_dir = tmp_path / 'cut_model'
  model_dir.mkdir()
  lines = (brisque.MODEL_DIR / 'allmodel').read_bytes().split(b'\n')
  (model_dir / 'allmodel').write_bytes(b'\n'.join(lines[:400]) + b'\n')
  (model_dir / 'allrange').write_bytes((brisque.MODEL_DIR / 'allrange').read_bytes())
  monkeypatch.setenv('MH2F_BRISQUE_MODEL_DIR', str(model_dir))
  eval_dir = os.path.join(run.workdir, 'eval')
  before = sorted(os.listdir(eval_dir)) if os.path.isdir(eval_dir) else []
  assert eval_command.run([f'--workdir={run.workdir}', f'--photos={folder}']) == 2
  err = capsys.readouterr().err
  assert err.strip() == (f'error: BRISQUE model file {model_dir / "allmodel"}: total_sv '
                         'says 774 support vectors, the file has 392 lines after SV (cut '
                         'short or joined?)')
  assert (sorted(os.listdir(eval_dir)) if os.path.isdir(eval_dir) else []) == before
