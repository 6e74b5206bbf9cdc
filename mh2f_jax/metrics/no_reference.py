"""No-reference quality of a photo without a clean twin: NIQE and BRISQUE, or why not.

A photo of real rain has no ground truth, so PSNR and SSIM cannot score its deraining;
deraining papers score such photos with NIQE and BRISQUE (lower is better for both).
:func:`score` gives three numbers for one image:

* ``niqe``: NIQE of the LIVE release as written (``rgb2gray`` grey; :mod:`.niqe`);
* ``niqe_y``: the same NIQE on Y of YCbCr, what BasicSR's ``calculate_niqe`` reports;
* ``brisque``: BRISQUE of the LIVE release (:mod:`.brisque`), with the release's model
  files shipped in the package (or those of ``MH2F_BRISQUE_MODEL_DIR``).

A measure that cannot score an image (NIQE needs two 96-pixel blocks each way) gives
None and its reason instead of raising, so one small photo never stops a report.

Scales: :meth:`Scorer.score` takes uint8 or float in [0, 1], as the rest of the package;
``niqe.niqe`` and ``brisque.brisque`` take uint8 or float in [0, 255], as the MATLAB
releases. A float outside the expected range is refused with a ValueError, never
clipped.

Example::

  from mh2f_jax.metrics import no_reference
  scorer = no_reference.Scorer.load()
  values, reasons = scorer.score(photo_uint8)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mh2f_jax.metrics import brisque as brisque_lib
from mh2f_jax.metrics import niqe as niqe_lib
from mh2f_jax.metrics import nss
from mh2f_jax.metrics import protocols

# The measures in the order reports show them.
MEASURES = ('niqe', 'niqe_y', 'brisque')
LABELS = {'niqe': 'NIQE', 'niqe_y': 'NIQE-Y', 'brisque': 'BRISQUE'}


def _to_uint8(image) -> np.ndarray:
  """8-bit RGB, as both releases read a photo file (float [0, 1] input is rounded).

  Raises:
    ValueError: float values outside [0, 1] (e.g. an image on the 0..255 scale, which
      would otherwise be clipped to white), NaN, or a dtype other than uint8 or float.
  """
  arr = np.asarray(image)
  if arr.dtype == np.uint8:
    return arr
  if np.issubdtype(arr.dtype, np.floating) and arr.size and not (
      arr.min() >= 0 and arr.max() <= 1) and not np.isnan(arr).any():
    raise ValueError(
        'Scorer.score takes uint8, or float in [0, 1] (the scale of the model\'s '
        f'images); got float values in [{arr.min():.4g}, {arr.max():.4g}]. For the 0..255 '
        'scale pass uint8, or call niqe.niqe and brisque.brisque, which take float in '
        '[0, 255]')
  return protocols.to_uint8(arr)


@dataclasses.dataclass(frozen=True)
class Scorer:
  """Scores images with every measure; BRISQUE only when its model was found.

  Attributes:
    brisque_model: the BRISQUE model, or None.
    brisque_reason: why BRISQUE is unavailable (one line), or None when it is available.
  """
  brisque_model: brisque_lib.SvrModel | None
  brisque_reason: str | None = None

  @classmethod
  def load(cls, brisque_dir=None) -> Scorer:
    """A scorer with the BRISQUE model of ``brisque_dir`` (default: as ``brisque.load_model``).

    Args:
      brisque_dir: folder with the release's ``allmodel`` and ``allrange``; None looks in
        ``$MH2F_BRISQUE_MODEL_DIR``, then the package's data folder.

    Returns:
      The scorer; when the model files are missing, BRISQUE gives None with the reason.

    Raises:
      brisque.ModelFileError: the model files are there but damaged, cut short or not
        the release's kind of model (a ``UserError`` naming the file and the fault).
    """
    try:
      return cls(brisque_lib.load_model(brisque_dir))
    except brisque_lib.ModelUnavailable as e:
      return cls(None, f'{e} (set MH2F_BRISQUE_MODEL_DIR to a folder holding them)')

  def score(self, image) -> tuple[dict[str, float | None], dict[str, str]]:
    """Scores one image with every measure.

    Args:
      image: (H, W, 3) RGB, uint8, or float in [0, 1] (rounded to 8 bits first). This
        is the scale of the rest of the package (``metrics.to_uint8``, the model's
        input and output), not that of :func:`niqe.niqe` and :func:`brisque.brisque`,
        whose float input is on the 0..255 scale of the MATLAB releases.

    Returns:
      ``(values, reasons)``: ``{measure: score or None}`` over :data:`MEASURES`, and
      ``{measure: why it is None}`` for the measures that gave None.

    Raises:
      ValueError: float values outside [0, 1] (a 0..255 float image is refused, not
        clipped), NaN, or another dtype or shape.
    """
    pixels = _to_uint8(image)
    measures = {
        'niqe': lambda: niqe_lib.niqe(pixels, variant='gray'),
        'niqe_y': lambda: niqe_lib.niqe(pixels, variant='y'),
        'brisque': lambda: brisque_lib.brisque(pixels, model=self.brisque_model),
    }
    values, reasons = {}, {}
    for name, measure in measures.items():
      if name == 'brisque' and self.brisque_model is None:
        values[name], reasons[name] = None, 'no model files (MH2F_BRISQUE_MODEL_DIR)'
        continue
      try:
        values[name] = float(measure())
      except nss.ImageTooSmall as e:
        values[name], reasons[name] = None, e.reason
    return values, reasons
