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
  """8-bit RGB, as both releases read a photo file (float [0, 1] input is rounded)."""
  arr = np.asarray(image)
  return arr if arr.dtype == np.uint8 else protocols.to_uint8(arr)


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
    """
    try:
      return cls(brisque_lib.load_model(brisque_dir))
    except brisque_lib.ModelUnavailable as e:
      return cls(None, f'{e} (set MH2F_BRISQUE_MODEL_DIR to a folder holding them)')

  def score(self, image) -> tuple[dict[str, float | None], dict[str, str]]:
    """Scores one image with every measure.

    Args:
      image: (H, W, 3) RGB, uint8 or float in [0, 1] (rounded to 8 bits first).

    Returns:
      ``(values, reasons)``: ``{measure: score or None}`` over :data:`MEASURES`, and
      ``{measure: why it is None}`` for the measures that gave None.
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
