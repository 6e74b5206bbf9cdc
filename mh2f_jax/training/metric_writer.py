"""The run's record on disk: ``metrics.jsonl`` rows and TensorBoard scalars and images.

Only process 0 writes. ``metrics.jsonl`` holds one JSON object per line, ``{"step": N,
...}``, train rows (loss, l1, ssim, grad_norm, lr, throughput) and validation rows
(psnr_y, ssim_y, best_psnr_y, ...); TensorBoard gets the same numbers under ``train/``
and ``val/``. ``curves.png`` (``mh2f_jax.training.curves``) is redrawn from ``metrics.jsonl``
after each validation row and when the writer closes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import json
import os
import time
from typing import Any

from absl import logging
import numpy as np

from mh2f_jax.training import curves
from mh2f_jax import files
from mh2f_jax.workdir import checkpoints

METRICS_FILE = checkpoints.METRICS_FILE  # Where the workdir keeps it.
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
    self.writer = EventFile(os.path.join(workdir, TENSORBOARD_DIR))

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
      self.writer.add_image(f'val/rainy_derained_clean_{i}', grid, step)
    self.writer.flush()

  def close(self) -> None:
    """Closes the file and the TensorBoard writer, after a last ``curves.png`` (both
    close even if one fails: a full disk)."""
    file, self._file = self._file, None
    writer, self.writer = self.writer, None
    try:
      if file is not None:
        file.close()
        self.write_curves()
    finally:
      if writer is not None:
        writer.close()


class EventFile:
  """A TensorBoard event file written in the calling thread.

  tensorboardX's ``SummaryWriter`` writes from a background thread: when a write fails
  (a full disk), that thread dies, and the next ``flush`` or ``close``, and interpreter
  exit, wait forever on its queue. Here every event is written before the call returns,
  so a failed write raises ``OSError`` where it happened and nothing is left to wait on.
  """

  def __init__(self, logdir: str):
    from tensorboardX import event_file_writer  # pylint: disable=g-import-not-at-top
    os.makedirs(logdir, exist_ok=True)
    self._events = event_file_writer.EventsWriter(os.path.join(logdir, 'events'))

  def _add(self, summary: Any, step: int) -> None:
    from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
    self._events.write_event(event_pb2.Event(summary=summary, step=int(step),
                                             wall_time=time.time()))

  def add_scalar(self, tag: str, value: float, step: int) -> None:
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    self._add(summary.scalar(tag, value), step)

  def add_image(self, tag: str, image: np.ndarray, step: int) -> None:
    """Adds a uint8 (H, W, C) image."""
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    self._add(summary.image(tag, image, dataformats='HWC'), step)

  def flush(self) -> None:
    self._events.flush()

  def close(self) -> None:
    self._events.close()


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
