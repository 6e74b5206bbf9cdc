"""Tests for mh2f_jax.evaluation.evaluator, eval.py and the paper's reference numbers."""

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
from mh2f_jax.evaluation import evaluator
from mh2f_jax import inference
from mh2f_jax import metrics
from mh2f_jax.inference import forward
from mh2f_jax.evaluation import paper

from inference_helper import tiny_run  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(name='run', scope='session')
def _run_fixture(tmp_path_factory):
  return tiny_run(tmp_path_factory)


def _env():
  return {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO}


def test_evaluate_writes_reports_that_match_the_saved_images(run):
  result = evaluator.evaluate(run.workdir, save_images=True, progress=False)
  out = result['eval_dir']
  assert os.path.basename(out) == f'paired_folder-test-step{result["step"]}'
  for key in ('per_image_csv', 'summary_json', 'results_md', 'figure'):
    assert os.path.isfile(result[key]), key

  with open(result['per_image_csv']) as f:
    rows = list(csv.DictReader(f))
  assert tuple(rows[0]) == evaluator.PER_IMAGE_FIELDS
  assert sorted(r['name'] for r in rows) == sorted(run.test_pairs)
  with open(result['summary_json']) as f:
    summary = json.load(f)
  assert summary['num_images'] == len(run.test_pairs) == 3
  assert (summary['protocol'], summary['dataset'], summary['split']) == (
      'B', 'paired_folder', 'test')

  # Recompute every number from the PNGs on disk: the derained images eval saved and the
  # rainy/clean files the dataset was built from.
  recomputed = []
  derainer = inference.Derainer.from_workdir(run.workdir, 'latest')
  for row in rows:
    rainy, clean = run.test_pairs[row['name']]
    saved = np.asarray(Image.open(os.path.join(
        result['images_dir'], os.path.splitext(row['name'])[0] + '.png')))
    assert saved.shape == clean.shape and saved.dtype == np.uint8
    # The saved image is what the Python API gives for the same checkpoint.
    np.testing.assert_array_equal(saved, derainer.derain(rainy))
    ours = metrics.evaluate_pair(saved, clean, 'B')
    theirs = metrics.evaluate_pair(rainy, clean, 'B')
    for key, value in ours.items():
      assert float(row[key]) == pytest.approx(value, rel=1e-12)
    for key, value in theirs.items():
      assert float(row[f'input_{key}']) == pytest.approx(value, rel=1e-12)
    # The size buckets (padded, masked, one image ahead) score as the network run at the
    # image's own size does, to 1e-4 dB.
    own_size = forward.forward_fn(derainer.model)(derainer.params, rainy[None] / 255.0)
    plain = metrics.evaluate_pair(metrics.to_uint8(np.asarray(own_size)[0]), clean, 'B')
    for key in ('psnr_y', 'psnr_rgb'):
      assert abs(float(row[key]) - plain[key]) <= 1e-4
    recomputed.append({**ours, **{f'input_{k}': v for k, v in theirs.items()}})
  for key in ('psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb', 'input_psnr_y', 'input_ssim_y'):
    assert summary[key] == pytest.approx(np.mean([r[key] for r in recomputed]), rel=1e-12)

  with open(result['results_md']) as f:
    md = f.read()
  assert 'paired_folder' in md and 'reports no numbers' in md
  assert f'{summary["psnr_y"]:.2f}' in md
  # A run without EMA: the default params='ema' took the raw ones, and said so.
  assert summary['params'] == 'raw' and 'raw (not averaged) parameters' in md
  # The report links the run's training curves.
  assert summary['curves'] == os.path.join('..', '..', 'curves.png')
  assert '](../../curves.png)' in md
  assert os.path.isfile(os.path.join(out, summary['curves']))
  with Image.open(result['figure']) as fig:
    assert fig.format == 'PNG' and fig.width > fig.height > 0


def test_results_md_shows_the_papers_row():
  summary = {'dataset': 'rain200h', 'split': 'test', 'step': 7, 'checkpoint': 'best',
             'self_ensemble': False, 'num_images': 200, 'protocol': 'B', 'psnr_y': 27.5,
             'ssim_y': 0.91, 'psnr_rgb': 26.0, 'ssim_rgb': 0.9, 'input_psnr_y': 13.1,
             'input_ssim_y': 0.37, 'input_psnr_rgb': 12.0, 'input_ssim_rgb': 0.35}
  md = evaluator._results_markdown(summary)  # pylint: disable=protected-access
  row = paper.table2_row('rain200h')
  assert "paper's reported numbers" in md
  assert f'| {row.psnr:.2f} | {row.ssim:.4f} |' in md
  assert f'| {row.input_psnr:.2f} | {row.input_ssim:.4f} |' in md
  assert '| 27.50 | 0.9100 |' in md
  # The paper's numbers as printed in its Table 2 (see spec/DATASETS.md section 4).
  assert (row.psnr, row.ssim, row.input_psnr, row.input_ssim) == (28.35, 0.9217, 13.07, 0.3733)
  assert paper.table2_row('Rain1400').psnr == 33.51
  assert paper.table2_row('synthetic_rain/heavy') is None
  unreported = evaluator._results_markdown(  # pylint: disable=protected-access
      {**summary, 'dataset': 'synthetic_rain/heavy', 'psnr_y': math.inf})
  assert 'reports no numbers' in unreported and "paper's reported numbers" not in unreported
  assert '| inf |' in unreported


def test_results_md_says_what_the_run_trained_on_and_started_from():
  summary = {'dataset': 'rain100h', 'split': 'test', 'step': 7, 'checkpoint': 'best',
             'self_ensemble': False, 'num_images': 100, 'protocol': 'B', 'psnr_y': 27.5,
             'ssim_y': 0.91, 'psnr_rgb': 26.0, 'ssim_rgb': 0.9, 'input_psnr_y': 13.1,
             'input_ssim_y': 0.37, 'input_psnr_rgb': 12.0, 'input_ssim_rgb': 0.35}
  run = {'trained_on': [
      {'dataset': 'rain100h', 'split': 'train', 'count': 1254, 'weight': 0.5},
      {'dataset': 'rain1400', 'split': 'train[:100]', 'count': 100, 'weight': 0.5}],
         'weights': {'init_from': '/runs/a', 'kind': 'workdir', 'checkpoint': 'best',
                     'step': 1200, 'params': 'ema', 'skipped': ['rpff/conv_o/bias']}}
  md = evaluator._results_markdown({**summary, 'run': run})  # pylint: disable=protected-access
  assert ('- Trained on: rain100h train (1254 pairs, 50% of the batches); rain1400 '
          'train[:100] (100 pairs, 50% of the batches).') in md
  assert ('- Started from: /runs/a, step 1200 (ema parameters); kept at their fresh '
          'initialisation: rpff/conv_o/bias.') in md
  fresh = evaluator._results_markdown(  # pylint: disable=protected-access
      {**summary, 'run': {**run, 'weights': {'init_from': None, 'seed': 3}}})
  assert '- Started from: random initialisation (seed 3).' in fresh
  assert 'not recorded' in evaluator._results_markdown(summary)  # pylint: disable=protected-access


def test_summary_json_has_no_bare_infinity():
  text = evaluator.summary_json({'psnr_y': math.inf, 'ssim_y': 1.0, 'step': 3})
  data = json.loads(text, parse_constant=lambda c: pytest.fail(f'non-JSON constant {c}'))
  assert data == {'psnr_y': 'inf', 'ssim_y': 1.0, 'step': 3}
  assert float(data['psnr_y']) == math.inf


def test_eval_dir_names():
  assert evaluator.eval_dir_name('synthetic_rain/heavy', 'test', 5) == (
      'synthetic_rain_heavy-test-step5')
  assert evaluator.eval_dir_name('rain200h', 'test', 5, protocol='A', self_ensemble=True,
                                num_images=2) == 'rain200h-test-step5-protocolA-flips-first2'
  assert evaluator.eval_dir_name('rain200h', 'test', 5, self_ensemble='flips') == (
      'rain200h-test-step5-flips')
  assert evaluator.eval_dir_name('rain200h', 'test', 5, self_ensemble='x8') == (
      'rain200h-test-step5-x8')
  assert evaluator.eval_dir_name('rain200h', 'test', 5, self_ensemble='none') == (
      'rain200h-test-step5')


def test_evaluate_user_errors(run, tmp_path):
  with pytest.raises(errors.UserError, match='does not exist'):
    evaluator.evaluate(str(tmp_path / 'missing'), progress=False)
  with pytest.raises(errors.UserError, match='no best checkpoint'):
    evaluator.evaluate(run.workdir, checkpoint='best', progress=False)
  with pytest.raises(errors.UserError, match='protocol'):
    evaluator.evaluate(run.workdir, protocol='C', progress=False)
  no_ckpt = tmp_path / 'no_checkpoints'
  no_ckpt.mkdir()
  (no_ckpt / 'config.json').write_text(open(os.path.join(run.workdir, 'config.json')).read())
  with pytest.raises(errors.UserError, match='has no checkpoints'):
    evaluator.evaluate(str(no_ckpt), progress=False)


def test_eval_cli(run, tmp_path):
  ok = subprocess.run(
      [sys.executable, os.path.join(REPO, 'eval.py'), f'--workdir={run.workdir}',
       '--protocol=A', '--checkpoint=latest'],
      capture_output=True, text=True, env=_env(), cwd=str(tmp_path), timeout=300)
  assert ok.returncode == 0, ok.stderr
  assert 'Traceback' not in ok.stderr
  results = [line.split(': ', 1)[1] for line in ok.stdout.splitlines()
             if line.startswith(('results: ', 'figure: '))]
  assert len(results) == 2 and all(os.path.isfile(p) for p in results)
  assert results[0].endswith(os.path.join('-protocolA', 'results.md'))
  # A fresh process compiles at least the forward pass, and says so once, at the end.
  compiled = re.fullmatch(r'compiled (\d+) programs? in \d+\.\d s', ok.stdout.splitlines()[-1])
  assert compiled and int(compiled.group(1)) >= 1, ok.stdout
  with open(os.path.join(os.path.dirname(results[0]), 'summary.json')) as f:
    assert json.load(f)['protocol'] == 'A'

  bad = subprocess.run(
      [sys.executable, os.path.join(REPO, 'eval.py'), f'--workdir={tmp_path / "nowhere"}'],
      capture_output=True, text=True, env=_env(), cwd=str(tmp_path), timeout=300)
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines()[-1].startswith('error: workdir')
  assert 'Traceback' not in bad.stderr
