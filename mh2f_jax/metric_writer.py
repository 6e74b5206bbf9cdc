"""The run's record on disk: ``metrics.jsonl`` rows and TensorBoard scalars and images.

Only process 0 writes. ``metrics.jsonl`` holds one JSON object per line, ``{"step": N,
...}``, train rows (loss, l1, ssim, grad_norm, lr, throughput) and validation rows
(psnr_y, ssim_y, best_psnr_y, ...); TensorBoard gets the same numbers under ``train/``
and ``val/``. ``curves.png`` (``mh2f_jax.curves``) is redrawn from ``metrics.jsonl``
after each validation row and when the writer closes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import json
import os
from typing import Any

from absl import logging
import numpy as np

from mh2f_jax import curves
from mh2f_jax import files

METRICS_FILE = 'metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'


class MetricWriter:
  """Process-0 outputs: ``metrics.jsonl`` and TensorBoard. No-ops on other processes."""

  def __init__(self, workdir: str, start_step: int, enabled: bool):
    """Opens the record of a run that continues after ``start_step``.

    Args:
      workdir: the run's directory.
      start_step: rows past this step are dropped (a resumed run recomputes them).
      enabled: False on every process but 0.
    """
    self.enabled = enabled
    self._workdir = workdir
    self.writer = None
    self._file = None
    if not enabled:
      return
    path = os.path.join(workdir, METRICS_FILE)
    truncate_metrics(path, start_step)
    self._file = open(path, 'a')
    import tensorboardX  # pylint: disable=g-import-not-at-top
    self.writer = tensorboardX.SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR))

  def row(self, row: Mapping[str, Any], prefix: str) -> None:
    """Appends ``row`` (with a 'step') to metrics.jsonl; numbers also to TensorBoard."""
    if not self.enabled:
      return
    self._file.write(json.dumps(row, sort_keys=True) + '\n')
    self._file.flush()
    step = row['step']
    for key, value in row.items():
      if key != 'step' and isinstance(value, (int, float)):
        self.writer.add_scalar(f'{prefix}/{key}', value, step)
    self.writer.flush()
    if prefix == 'val':
      self.write_curves()

  def write_curves(self) -> None:
    """Redraws ``curves.png``; a failed write is logged, training goes on."""
    if not self.enabled:
      return
    try:
      curves.write_curves(self._workdir, METRICS_FILE)
    except OSError as e:
      logging.warning('could not write %s: %s', curves.CURVES_FILE, e)

  def images(self, step: int, grids: Sequence[np.ndarray]) -> None:
    """Writes uint8 HWC image grids to TensorBoard."""
    if not self.enabled:
      return
    for i, grid in enumerate(grids):
      self.writer.add_image(f'val/rainy_derained_clean_{i}', grid, step, dataformats='HWC')
    self.writer.flush()

  def close(self) -> None:
    """Closes the file and the TensorBoard writer, after a last ``curves.png``."""
    if self._file is not None:
      self._file.close()
      self._file = None
      self.write_curves()
    if self.writer is not None:
      self.writer.close()
      self.writer = None


def truncate_metrics(path: str, start_step: int) -> None:
  """Drops rows past ``start_step``: a resumed run recomputes (and relogs) them."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      continue  # a line cut short by a crash
    if isinstance(row, dict) and row.get('step', 0) <= start_step:
      kept.append(json.dumps(row, sort_keys=True) + '\n')
  if len(kept) != len(lines):
    files.write_atomic(path, ''.join(kept).encode())
