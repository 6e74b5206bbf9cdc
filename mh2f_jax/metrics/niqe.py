"""NIQE, the Naturalness Image Quality Evaluator, as the LIVE MATLAB release computes it.

A. Mittal, R. Soundararajan and A. C. Bovik, "Making a Completely Blind Image
Quality Analyzer", IEEE Signal Processing Letters 20(3), 2013, and their "NIQE
Software Release" (``computequality.m``, ``computefeature.m``,
``estimateaggdparam.m``, ``modelparameters.mat``). Lower is better.

What the release does, and this module with it:

* colour input goes through MATLAB ``rgb2gray`` (variant ``'gray'``); on uint8
  input the grey image is rounded to integers, as MATLAB returns uint8;
* the image is cropped at the bottom and the right to a multiple of 96 pixels
  in each direction (the top-left corner is kept; nothing is padded);
* MSCN coefficients with a 7x7 Gaussian (sigma 7/6) and replicated borders;
  18 AGGD features per 96x96 block (no overlap), and again per 48x48 block of
  the image shrunk by MATLAB's ``imresize(im, 0.5)`` (bicubic, antialiased);
* the 36-dimensional features of all blocks are fitted with a Gaussian
  (``nanmean``, ``nancov``: a block with a NaN feature, e.g. a flat one, is left
  out of the covariance), and the score is the distance
  ``sqrt((mu_p - mu_d) pinv((S_p + S_d) / 2) (mu_p - mu_d)^T)`` to the pristine
  model.

Variant ``'y'`` feeds the release Y of MATLAB ``rgb2ycbcr`` instead (rounded
on uint8 input), which is what BasicSR's ``calculate_niqe`` and the
super-resolution and deraining papers that use it report.

The pristine model is ``data/niqe_pris_params.npz`` from BasicSR (Apache-2.0),
whose ``mu_pris_param`` and ``cov_pris_param`` are bit for bit the
``mu_prisparam`` and ``cov_prisparam`` of the release's ``modelparameters.mat``.
"""

import functools
import pathlib
import warnings

import numpy as np

from mh2f_jax.metrics import matlab_resize
from mh2f_jax.metrics import nss
from mh2f_jax.metrics.nss import ImageTooSmall

__all__ = ['BLOCK', 'ImageTooSmall', 'VARIANTS', 'niqe', 'niqe_features',
           'pristine_model', 'to_gray']

BLOCK = 96
VARIANTS = ('gray', 'y')
_DATA = pathlib.Path(__file__).resolve().parent / 'data'


@functools.lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
  """The release's pristine model: mean ``(36,)`` and covariance ``(36, 36)``."""
  with np.load(_DATA / 'niqe_pris_params.npz') as params:
    return (params['mu_pris_param'].reshape(-1).astype(np.float64),
            params['cov_pris_param'].astype(np.float64))


def _block_features(block: np.ndarray) -> np.ndarray:
  """``computefeature.m``: 18 AGGD parameters of one block of MSCN values."""
  feat = []
  alpha, betal, betar = _aggd_betas(block.ravel())
  feat += [alpha, (betal + betar) / 2]
  # circshift by (rows, cols), wrapping inside the block, as the release does.
  for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
    pair = block * np.roll(block, shift, axis=(0, 1))
    alpha, betal, betar = _aggd_betas(pair.ravel())
    # The release leaves out BRISQUE's sqrt(gamma(1/a) / gamma(3/a)) factor
    # here, because betal and betar are already scaled by it.
    mean = (betar - betal) * (nss.gamma(2 / alpha) / nss.gamma(1 / alpha))
    feat += [alpha, mean, betal, betar]
  return np.array(feat)


def _aggd_betas(vec: np.ndarray) -> tuple[float, float, float]:
  """AGGD shape and scale parameters (deviations times the release's factor)."""
  alpha, leftstd, rightstd = nss.fit_aggd(vec)
  factor = np.sqrt(nss.gamma(1 / alpha) / nss.gamma(3 / alpha))
  return alpha, leftstd * factor, rightstd * factor


def _scale_features(image: np.ndarray, block: int) -> np.ndarray:
  """Features of every ``block`` x ``block`` tile of ``image``'s MSCN map."""
  structdis, _ = nss.mscn(image, border='replicate')
  rows, cols = image.shape[0] // block, image.shape[1] // block
  # blkproc's order (down the columns of blocks) only matters to rounding.
  return np.stack([
      _block_features(structdis[r * block:(r + 1) * block,
                                c * block:(c + 1) * block])
      for c in range(cols) for r in range(rows)
  ])


def to_gray(image, variant: str = 'gray') -> np.ndarray:
  """The grey image the release scores, before cropping.

  Args:
    image: ``(H, W)`` or ``(H, W, 3)``; uint8 or float in [0, 255].
    variant: 'gray' (MATLAB ``rgb2gray``) or 'y' (Y of MATLAB ``rgb2ycbcr``).

  Returns:
    ``(H, W)`` float64 array. Grey input is returned as it is in both variants.

  Raises:
    ValueError: On a bad shape, dtype, value range or variant.
  """
  if variant not in VARIANTS:
    raise ValueError(f'variant must be one of {VARIANTS}, got {variant!r}')
  arr = nss.check_image(image)
  if arr.ndim == 2:
    return arr.astype(np.float64)
  return nss.rgb_to_gray(arr) if variant == 'gray' else nss.rgb_to_y(arr)


def niqe_features(gray: np.ndarray) -> np.ndarray:
  """The release's 36 features of each 96x96 block of a grey image.

  Args:
    gray: ``(H, W)`` float64 image, H and W at least ``2 * BLOCK``.

  Returns:
    ``(blocks, 36)``: 18 features at full scale, then 18 at half scale.

  Raises:
    ImageTooSmall: If H or W is below ``2 * BLOCK``.
  """
  h, w = gray.shape
  if h < 2 * BLOCK or w < 2 * BLOCK:
    # One block in a direction leaves the covariance of the blocks degenerate;
    # the release would still print a number, but not a meaningful one.
    raise ImageTooSmall(
        f'NIQE needs at least {2 * BLOCK}x{2 * BLOCK} pixels '
        f'(two {BLOCK}-pixel blocks each way), got {h}x{w}')
  # The release crops to whole blocks: bottom rows and right columns go.
  im = gray[:h // BLOCK * BLOCK, :w // BLOCK * BLOCK]
  full = _scale_features(im, BLOCK)
  half = _scale_features(matlab_resize.imresize(im, 0.5), BLOCK // 2)
  return np.concatenate([full, half], axis=1)


def _nancov(x: np.ndarray) -> np.ndarray:
  """MATLAB ``nancov``: covariance (N - 1) of the rows without any NaN."""
  rows = x[~np.isnan(x).any(axis=1)]
  if rows.shape[0] < 2:
    # MATLAB's cov of a single row is 0 and of none is NaN.
    fill = 0.0 if rows.shape[0] == 1 else np.nan
    return np.full((x.shape[1], x.shape[1]), fill)
  return np.cov(rows, rowvar=False)


def niqe(image, *, variant: str = 'gray') -> float:
  """NIQE score of an image, equal to the LIVE release's (lower is better).

  Args:
    image: ``(H, W)`` or ``(H, W, 3)`` RGB; uint8, or float in [0, 255] (float
      colour input is converted without rounding, as MATLAB treats a double
      image; a float image within [0, 1] is refused as on the wrong scale, see
      ``nss.check_image``). At least 192x192 pixels; bottom rows and right columns beyond a
      multiple of 96 are ignored, as in the release.
    variant: 'gray' (the release: MATLAB ``rgb2gray``) or 'y' (Y of MATLAB
      ``rgb2ycbcr``, as BasicSR's ``calculate_niqe``). Grey input scores the
      same in both.

  Returns:
    The score; NaN where the release gives NaN (e.g. a flat image).

  Raises:
    ImageTooSmall: If the image is under 192 pixels high or wide.
    ValueError: On a bad shape, dtype, value range or variant.
  """
  feats = niqe_features(to_gray(image, variant))
  mu_p, cov_p = pristine_model()
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN columns
    mu_d = np.nanmean(feats, axis=0)
  cov_d = _nancov(feats)
  if not np.all(np.isfinite(cov_d)) or not np.all(np.isfinite(mu_d)):
    return float('nan')
  # MATLAB's pinv tolerance: max(size) * largest singular value * eps.
  inv = np.linalg.pinv((cov_p + cov_d) / 2, rcond=36 * np.finfo(float).eps)
  d = mu_p - mu_d
  return float(np.sqrt(d @ inv @ d))
