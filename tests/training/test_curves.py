"""Tests of mh2f_jax.training.curves: rows read back from metrics.jsonl and the figure written."""

import json
import os

from PIL import Image

from mh2f_jax.training import curves
from mh2f_jax.training import metric_writer


def _write_rows(path, rows, tail=''):
  with open(path, 'w') as f:
    for row in rows:
      f.write(json.dumps(row) + '\n')
    f.write(tail)


def test_read_rows_splits_train_and_val_and_keeps_the_last_of_a_step(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  _write_rows(path, [
      {'step': 10, 'loss': 0.5, 'l1': 0.4, 'ssim': 0.5, 'lr': 1e-3},
      {'step': 20, 'loss': 0.4, 'l1': 0.3, 'ssim': 0.5, 'lr': 1e-3},
      {'step': 20, 'psnr_y': 25.0, 'ssim_y': 0.8},
      {'step': 20, 'loss': 0.39, 'l1': 0.3, 'ssim': 0.5, 'lr': 1e-3},
  ], tail='{"step": 30, "lo')  # A line cut short by a crash.
  train, val = curves.read_rows(str(path))
  assert [r['step'] for r in train] == [10, 20] and train[1]['loss'] == 0.39
  assert val == [{'step': 20, 'psnr_y': 25.0, 'ssim_y': 0.8}]
  assert curves.read_rows(str(tmp_path / 'missing.jsonl')) == ([], [])


def test_metric_writer_draws_curves_at_validation_and_close(tmp_path):
  workdir = str(tmp_path)
  path = os.path.join(workdir, curves.CURVES_FILE)
  writer = metric_writer.MetricWriter(workdir, 0, enabled=True)
  for step in (1, 2, 3):
    writer.row({'step': step, 'loss': 1.0 / step, 'l1': 0.5 / step, 'ssim': 0.1 * step,
                'lr': 1e-3}, 'train')
  assert not os.path.exists(path)  # Train rows alone do not redraw.
  writer.row({'step': 3, 'psnr_y': 20.0, 'ssim_y': 0.7}, 'val')
  first = os.path.getmtime(path)
  with Image.open(path) as image:
    assert image.size == (800, 520)
  # A resumed run drops the rows after its step, appends its own, and redraws them all.
  writer.close()
  writer = metric_writer.MetricWriter(workdir, 2, enabled=True)
  writer.row({'step': 3, 'loss': 0.3, 'l1': 0.1, 'ssim': 0.35, 'lr': 1e-3}, 'train')
  writer.close()
  train, val = curves.read_rows(os.path.join(workdir, metric_writer.METRICS_FILE))
  assert [r['step'] for r in train] == [1, 2, 3] and train[-1]['loss'] == 0.3
  assert val == []
  assert os.path.getmtime(path) >= first


def test_no_rows_no_figure(tmp_path):
  assert curves.write_curves(str(tmp_path)) is None
  assert not os.path.exists(tmp_path / curves.CURVES_FILE)
