"""``curves.png``: a run's training and validation curves, drawn from ``metrics.jsonl``.

Four panels against the step: the training loss with its L1 and ``1 - SSIM`` parts (log
scale), validation PSNR-Y, validation SSIM-Y, and the learning rate. Everything is read
back from ``metrics.jsonl``, so a resumed run continues the curves of the run it resumes
(the metric writer drops the rows a resume recomputes before appending new ones).

Drawn like ``figures.py``: matplotlib's object API on an Agg canvas (no pyplot state, no
display) and written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
import io
import json
import os
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mh2f_jax import files

CURVES_FILE = 'curves.png'
# 800 x 520 pixels: readable at a glance, a few tens of kB.
_SIZE_INCHES = (10.0, 6.5)
_DPI = 80


def read_rows(path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
  """Reads ``metrics.jsonl`` into training rows and validation rows, each by step.

  Lines cut short by a crash are skipped; a step logged twice keeps its last row.

  Args:
    path: the ``metrics.jsonl`` file (a missing file has no rows).

  Returns:
    ``(train, val)``: rows holding ``loss`` and rows holding ``psnr_y``, ascending.
  """
  train, val = {}, {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          row = json.loads(line)
        except ValueError:
          continue
        if not isinstance(row, dict) or 'step' not in row:
          continue
        if 'loss' in row:
          train[row['step']] = row
        elif 'psnr_y' in row:
          val[row['step']] = row
  return ([train[s] for s in sorted(train)], [val[s] for s in sorted(val)])


def _plot(ax: Any, rows: Sequence[dict[str, Any]], series: Sequence[tuple[str, str]],
          title: str, *, log: bool = False, transform: Any = None) -> None:
  """Draws ``(key, label)`` series of ``rows`` on ``ax``; a note when there is none."""
  ax.set_title(title, fontsize=10)
  ax.tick_params(labelsize=8)
  ax.grid(True, alpha=0.3)
  drawn = False
  for key, label in series:
    points = [(r['step'], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    if transform is not None:
      points = [(s, transform(key, v)) for s, v in points]
    if points:
      steps, values = zip(*points)
      ax.plot(steps, values, label=label, marker='.' if len(points) < 20 else None)
      drawn = True
  if not drawn:
    ax.text(0.5, 0.5, 'no rows yet', ha='center', va='center', transform=ax.transAxes,
            color='gray')
    return
  if log and all(v > 0 for line in ax.get_lines() for v in line.get_ydata()):
    ax.set_yscale('log')
  if len(series) > 1:
    ax.legend(fontsize=8)


def curves_figure(train: Sequence[dict[str, Any]], val: Sequence[dict[str, Any]],
                  title: str | None = None) -> Figure:
  """The four-panel figure of :func:`read_rows`'s rows."""
  fig = Figure(figsize=_SIZE_INCHES, dpi=_DPI, layout='constrained')
  FigureCanvasAgg(fig)
  # One step axis for all four panels, so that a validation point lines up with the loss.
  (loss_ax, psnr_ax), (lr_ax, ssim_ax) = fig.subplots(2, 2, sharex=True)
  # The loss is L1 + w (1 - SSIM): its parts are drawn as they enter it, up to w.
  _plot(loss_ax, train, [('loss', 'loss'), ('l1', 'L1'), ('ssim', '1 − SSIM')],
        'training loss', log=True,
        transform=lambda key, v: 1.0 - v if key == 'ssim' else v)
  _plot(psnr_ax, val, [('psnr_y', 'PSNR-Y')], 'validation PSNR-Y (dB)')
  _plot(lr_ax, train, [('lr', 'learning rate')], 'learning rate')
  _plot(ssim_ax, val, [('ssim_y', 'SSIM-Y')], 'validation SSIM-Y')
  loss_ax.set_xlim(left=0)
  for ax in (lr_ax, ssim_ax):
    ax.set_xlabel('step', fontsize=9)
  if title:
    fig.suptitle(title, fontsize=11)
  return fig


def write_curves(workdir: str, metrics_file: str = 'metrics.jsonl') -> str | None:
  """Draws ``WORKDIR/curves.png`` from ``WORKDIR/metrics.jsonl``, atomically.

  Args:
    workdir: the run's directory.
    metrics_file: the metrics file's name in it.

  Returns:
    The path written, or None when the run has logged no rows yet.
  """
  train, val = read_rows(os.path.join(workdir, metrics_file))
  if not train and not val:
    return None
  fig = curves_figure(train, val, title=os.path.basename(os.path.normpath(workdir)))
  buf = io.BytesIO()
  fig.savefig(buf, format='png')
  path = os.path.join(workdir, CURVES_FILE)
  files.write_atomic(path, buf.getvalue())
  return path
