"""Side-by-side figures (rainy | derained | clean) with scores in the panel titles.

Used by evaluation (``figure.png`` of one held-out image) and by the demo. Drawn with
matplotlib's object API on an Agg canvas (no pyplot state, no display needed) and
written atomically as PNG.
"""

import io
import os
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mh2f_jax import files

# Each panel is drawn between these widths in pixels (at 100 dpi): larger images are
# shown downscaled, which keeps figures of 4000x3000 photos small.
_MIN_PANEL_PIXELS = 240
_MAX_PANEL_PIXELS = 640
_DPI = 100


def _as_uint8(image: Any) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  from mh2f_jax import metrics  # Lazy: only float inputs need the shared rounding rule.
  return metrics.to_uint8(image)


def psnr_y(image: Any, clean: Any) -> float:
  """PSNR on the Y channel (protocol B) of ``image`` against ``clean``.

  Args:
    image: (H, W, 3) uint8, or float in [0, 1].
    clean: the ground truth, same shape.

  Returns:
    PSNR-Y in dB (inf for identical images).
  """
  from mh2f_jax import metrics
  return metrics.evaluate_pair(_as_uint8(image), _as_uint8(clean), protocol='B')['psnr_y']


def _db(value: float) -> str:
  return 'inf dB' if np.isinf(value) else f'{value:.2f} dB'


def comparison_figure(rainy: Any, derained: Any, clean: Any | None = None, *,
                      title: str | None = None) -> Figure:
  """Builds the rainy | derained | clean figure.

  Args:
    rainy: (H, W, 3) uint8 or float in [0, 1].
    derained: the derained image, same shape.
    clean: the ground truth, same shape; None for a photo without one (two panels and no
      PSNR).
    title: optional figure title.

  Returns:
    A matplotlib ``Figure`` on an Agg canvas.
  """
  rainy, derained = _as_uint8(rainy), _as_uint8(derained)
  panels = [('Rainy', rainy), ('Derained', derained)]
  if clean is not None:
    clean = _as_uint8(clean)
    panels[0] = (f'Rainy: PSNR-Y {_db(psnr_y(rainy, clean))}', rainy)
    panels[1] = (f'Derained: PSNR-Y {_db(psnr_y(derained, clean))}', derained)
    panels.append(('Clean (ground truth)', clean))
  height, width = rainy.shape[:2]
  # Small images are enlarged (nearest neighbour) so the titles fit above them.
  panel_w = min(max(width, _MIN_PANEL_PIXELS), _MAX_PANEL_PIXELS) / _DPI
  panel_h = panel_w * height / width
  # Room for the titles: about 0.5 inch above the panels (more with a figure title).
  top = 0.5 + (0.35 if title else 0.0)
  fig = Figure(figsize=(panel_w * len(panels), panel_h + top), dpi=_DPI)
  FigureCanvasAgg(fig)
  for i, (label, image) in enumerate(panels):
    ax = fig.add_subplot(1, len(panels), i + 1)
    ax.imshow(image, interpolation='nearest' if max(height, width) <= 64 else 'antialiased')
    ax.set_title(label, fontsize=9)
    ax.set_axis_off()
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig


def save_comparison(path: str | os.PathLike[str], rainy: Any, derained: Any,
                    clean: Any | None = None, *, title: str | None = None) -> str:
  """Draws :func:`comparison_figure` and writes it atomically as a PNG.

  Args:
    path: output PNG path; parent folders are created.
    rainy: (H, W, 3) uint8 or float in [0, 1].
    derained: the derained image, same shape.
    clean: the ground truth or None.
    title: optional figure title.

  Returns:
    The path written, as a string.
  """
  fig = comparison_figure(rainy, derained, clean, title=title)
  buf = io.BytesIO()
  fig.savefig(buf, format='png')
  files.write_atomic(path, buf.getvalue())
  return os.fspath(path)


def save_grid(path: str | os.PathLike[str], rows: list[tuple[str, list[tuple[str, Any]]]],
              *, title: str | None = None) -> str:
  """Draws rows of titled panels (e.g. rainy | derained of several photos) as a PNG.

  Args:
    path: output PNG path; parent folders are created.
    rows: ``(row label, [(panel title, image), ...])``; every row has as many panels, and
      the row label heads its first panel's title. Images are (H, W, 3) uint8 or float
      in [0, 1].
    title: optional figure title.

  Returns:
    The path written, as a string.
  """
  columns = max(len(panels) for _, panels in rows)
  height, width = _as_uint8(rows[0][1][0][1]).shape[:2]
  panel_w = min(max(width, _MIN_PANEL_PIXELS), _MAX_PANEL_PIXELS) / _DPI
  panel_h = panel_w * height / width
  fig = Figure(figsize=(panel_w * columns, (panel_h + 0.5) * len(rows)
                        + (0.35 if title else 0.0)), dpi=_DPI)
  FigureCanvasAgg(fig)
  for r, (label, panels) in enumerate(rows):
    for c, (panel_title, image) in enumerate(panels):
      image = _as_uint8(image)
      ax = fig.add_subplot(len(rows), columns, r * columns + c + 1)
      ax.imshow(image, interpolation='nearest' if max(image.shape[:2]) <= 64
                else 'antialiased')
      ax.set_title(f'{label}\n{panel_title}' if c == 0 else f'\n{panel_title}', fontsize=9)
      ax.set_axis_off()
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format='png')
  files.write_atomic(path, buf.getvalue())
  return os.fspath(path)
