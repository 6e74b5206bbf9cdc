"""PSNR/SSIM that can sit in the same table as published deraining results.

Two protocols are in use by published tables (see docs/metrics.md):

* ``'B'`` (Restormer / MPRNet / IDT / DRSformer MATLAB script, Rain200L/H, SPA):
  Y of MATLAB ``rgb2ycbcr`` on 8-bit RGB, rounded to 8 bits half away from
  zero; PSNR with peak 255; SSIM with an 11x11 Gaussian window (sigma 1.5),
  population statistics, 'valid' region, L = 255.
* ``'A'`` (PReNet / BRN / RCDNet scripts, and DRSformer for DID/DDN-Data):
  the same but with unrounded Y, and Zhou Wang's automatic downsampling before
  SSIM.

SSIM is ``skimage.metrics.structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255)``, which reproduces
Zhou Wang's ``SSIM_index`` exactly. PSNR is ``skimage``'s
``peak_signal_noise_ratio`` with ``data_range=255``.

The JAX version of protocol B used for validation inside training is
:mod:`mh2f_jax.metrics.psnr_ssim_jax`.
"""

from collections.abc import Iterable, Mapping
import math
import numbers
from typing import Any

import numpy as np
from scipy import ndimage
from skimage import metrics as skmetrics

from mh2f_jax.metrics import ssim_jax as ssim_lib

# The default (B) first.
PROTOCOLS = ('B', 'A')
METRIC_KEYS = ('psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb')
SSIM_WINDOW = ssim_lib.FILTER_SIZE

# BT.601 luma as in MATLAB rgb2ycbcr, scaled by 1000 to integers so that Y can
# be computed exactly: 255000 * Y = 4080000 + 65481 R + 128553 G + 24966 B for
# 8-bit R, G, B. Exact ties (Y = k + 0.5) do occur (194 of the 2**24 colours);
# exact integers send them away from zero, where floating-point formulas would
# break them by rounding noise.
Y_COEFFS = (65481, 128553, 24966)
Y_OFFSET = 16 * 255000
Y_DENOM = 255000


# ---------------------------------------------------------------------------
# 8-bit conversion and luma.


def to_uint8(x) -> np.ndarray:
  """Float image(s) in [0, 1] to uint8: clip, scale, round half away from 0.

  This is the one way model outputs become 8-bit (evaluation and saving).
  Rounding is ``floor(255 * x + 0.5)`` (half away from zero for non-negative
  values, like MATLAB's casts), not ``np.round`` (half to even). The product
  is formed in float64: for float32/float16/bfloat16 inputs it is exact, so
  the result is the exact value of ``255 * x`` rounded; for float64 inputs it
  is the double-precision product, as in MATLAB.

  Args:
    x: A NumPy or JAX array of any shape, floating point. A uint8 array is
      returned unchanged (as a NumPy copy), so the call is idempotent.

  Returns:
    A NumPy uint8 array of the same shape.

  Raises:
    ValueError: If ``x`` has a non-float, non-uint8 dtype, or contains NaN.
  """
  x = np.asarray(x)
  if x.dtype == np.uint8:
    return x.copy()
  if not np.issubdtype(x.dtype, np.floating) and x.dtype.name != 'bfloat16':
    raise ValueError(
        f'to_uint8: expected a float image in [0, 1] (or uint8), got dtype '
        f'{x.dtype}')
  x = x.astype(np.float64)
  if np.isnan(x).any():
    raise ValueError(
        f'to_uint8: image of shape {x.shape} contains '
        f'{int(np.isnan(x).sum())} NaN values')
  return np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def rgb_to_y(rgb, *, rounded: bool = True) -> np.ndarray:
  """Luma of 8-bit RGB as MATLAB ``rgb2ycbcr`` (BT.601), on the 0..255 scale.

  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with R, G, B in 0..255,
  so Y lies in [16, 235].

  Args:
    rgb: uint8 array ``(..., 3)``.
    rounded: True: Y rounded half away from zero to an integer, as MATLAB's
      ``rgb2ycbcr`` gives for uint8 input (protocol B). False: the exact value
      to double precision, as ``rgb2ycbcr(im2double(x)) * 255`` (protocol A).

  Returns:
    float64 array ``(...)``; integer-valued when ``rounded``.

  Raises:
    ValueError: If ``rgb`` is not uint8 with a last axis of 3.
  """
  rgb = np.asarray(rgb)
  if rgb.dtype != np.uint8 or rgb.ndim < 1 or rgb.shape[-1] != 3:
    raise ValueError(
        f'rgb_to_y: expected uint8 (..., 3), got dtype {rgb.dtype} shape '
        f'{rgb.shape}')
  r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
  n = Y_OFFSET + Y_COEFFS[0] * r + Y_COEFFS[1] * g + Y_COEFFS[2] * b
  if rounded:
    # n >= 0, so floor division is round half away from zero.
    return ((n + Y_DENOM // 2) // Y_DENOM).astype(np.float64)
  return n.astype(np.float64) / Y_DENOM


# ---------------------------------------------------------------------------
# Single-plane metrics.


def psnr(a, b, data_range: float = 255.0) -> float:
  """PSNR over the whole array, ``10 log10(peak^2 / MSE)``; inf if identical."""
  a = np.asarray(a, dtype=np.float64)
  b = np.asarray(b, dtype=np.float64)
  # Identical images give MSE 0: the value is +inf by definition, so the
  # division warning is expected and silenced.
  with np.errstate(divide='ignore'):
    return float(skmetrics.peak_signal_noise_ratio(a, b, data_range=data_range))


def downsample_factor(height: int, width: int) -> int:
  """Zhou Wang's downsampling factor ``max(1, round(min(H, W) / 256))``.

  MATLAB's ``round`` goes half away from zero (384 -> 2, 640 -> 3), unlike
  Python's ``round``.
  """
  return max(1, math.floor(min(height, width) / 256 + 0.5))


def wang_downsample(plane: np.ndarray, f: int) -> np.ndarray:
  """Zhou Wang's ``ssim.m`` (2009) downsampling of one plane by factor ``f``.

  MATLAB: ``imfilter(img, ones(f)/f^2, 'symmetric', 'same')`` then
  ``img(1:f:end, 1:f:end)``. MATLAB anchors an even-sized kernel at its first
  centre candidate (``floor((f+1)/2)``), which is SciPy's ``origin=-1``;
  SciPy's ``'reflect'`` is MATLAB's ``'symmetric'``.

  Args:
    plane: 2-D float array.
    f: Integer factor >= 1 (1 returns the plane unchanged).

  Returns:
    The float64 plane of shape ``(ceil(H / f), ceil(W / f))``.
  """
  plane = np.asarray(plane, dtype=np.float64)
  if f <= 1:
    return plane
  kernel = np.full((f, f), 1.0 / (f * f))
  origin = -1 if f % 2 == 0 else 0
  smoothed = ndimage.correlate(plane, kernel, mode='reflect', origin=origin)
  return smoothed[::f, ::f]


def ssim(a, b, *, auto_downsample: bool = False, channel_axis=None) -> float:
  """Zhou Wang SSIM (11x11 Gaussian, sigma 1.5, 'valid', L = 255), skimage.

  Args:
    a: Plane ``(H, W)`` or image ``(H, W, C)`` on the 0..255 scale.
    b: The same shape.
    auto_downsample: Apply :func:`wang_downsample` with
      :func:`downsample_factor` first (protocol A).
    channel_axis: None for a plane; the channel axis for a per-channel mean.

  Returns:
    The mean of the SSIM map (over channels too), a Python float.

  Raises:
    ValueError: If an image side (after downsampling) is shorter than 11.
  """
  a = np.asarray(a, dtype=np.float64)
  b = np.asarray(b, dtype=np.float64)
  if auto_downsample:
    f = downsample_factor(a.shape[0], a.shape[1])
    if f > 1:
      if channel_axis is None:
        a, b = wang_downsample(a, f), wang_downsample(b, f)
      else:
        a, b = (np.stack([wang_downsample(p, f)
                          for p in np.moveaxis(z, channel_axis, 0)],
                         axis=channel_axis) for z in (a, b))
  if min(a.shape[0], a.shape[1]) < SSIM_WINDOW:
    raise ValueError(
        f'ssim: image of shape {a.shape} is smaller than the '
        f'{SSIM_WINDOW}x{SSIM_WINDOW} SSIM window')
  return float(skmetrics.structural_similarity(
      a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
      data_range=255.0, channel_axis=channel_axis))


# ---------------------------------------------------------------------------
# Image pairs.


def _check_pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
  pred = np.asarray(pred)
  gt = np.asarray(gt)
  if pred.shape != gt.shape:
    raise ValueError(
        f'evaluate_pair: pred shape {pred.shape} != gt shape {gt.shape}')
  if pred.ndim != 3 or pred.shape[-1] != 3:
    raise ValueError(
        f'evaluate_pair: expected RGB images (H, W, 3), got shape {pred.shape}')
  for name, arr in (('pred', pred), ('gt', gt)):
    if arr.dtype != np.uint8:
      raise ValueError(
          f'evaluate_pair: {name} must be uint8, got dtype {arr.dtype} '
          '(convert float images in [0, 1] with metrics.to_uint8)')
  if min(pred.shape[:2]) < SSIM_WINDOW:
    raise ValueError(
        f'evaluate_pair: images of shape {pred.shape} are smaller than the '
        f'{SSIM_WINDOW}x{SSIM_WINDOW} SSIM window')
  return pred, gt


def evaluate_pair(pred, gt, protocol: str = 'B') -> dict[str, float]:
  """PSNR and SSIM of one restored image against its ground truth.

  Args:
    pred: Restored image, uint8 ``(H, W, 3)`` RGB, H and W >= 11.
    gt: Ground truth, uint8, same shape.
    protocol: ``'B'`` (rounded Y, no downsampling) or ``'A'`` (unrounded Y,
      Zhou Wang's automatic downsampling before SSIM; for the RGB SSIM too).

  Returns:
    Python floats ``{'psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb'}``. PSNR is
    ``float('inf')`` for identical planes (write it to JSON with
    :func:`mh2f_jax.files.json_safe`). ``psnr_rgb`` is over all three channels, ``ssim_rgb``
    the mean of the per-channel SSIMs.

  Raises:
    ValueError: On a shape mismatch (naming both shapes), a non-(H, W, 3)
      shape, a non-uint8 dtype, an image smaller than the 11x11 SSIM window,
      or an unknown protocol.
  """
  if protocol not in PROTOCOLS:
    raise ValueError(
        f'evaluate_pair: protocol must be one of {PROTOCOLS}, got {protocol!r}')
  pred, gt = _check_pair(pred, gt)
  down = protocol == 'A'
  y_pred = rgb_to_y(pred, rounded=not down)
  y_gt = rgb_to_y(gt, rounded=not down)
  return {
      'psnr_y': psnr(y_pred, y_gt),
      'ssim_y': ssim(y_pred, y_gt, auto_downsample=down),
      'psnr_rgb': psnr(pred, gt),
      'ssim_rgb': ssim(pred, gt, auto_downsample=down, channel_axis=-1),
  }


def mean_metrics(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
  """Dataset means of per-image metric dicts (average per image, then per set).

  Numeric entries (ints and floats, not bools) are averaged; other entries
  (an image name, say) are ignored. A PSNR of ``inf`` makes the mean ``inf``.

  Args:
    rows: Per-image dicts, e.g. from :func:`evaluate_pair`.

  Returns:
    ``{key: mean}`` over the numeric keys of the first row, Python floats.

  Raises:
    ValueError: If ``rows`` is empty or a row lacks a numeric key of the first.
  """
  rows = list(rows)
  if not rows:
    raise ValueError('mean_metrics: no rows to average')

  def numeric(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)

  keys = [k for k, v in rows[0].items() if numeric(v)]
  means = {}
  for k in keys:
    values = []
    for i, row in enumerate(rows):
      if k not in row or not numeric(row[k]):
        raise ValueError(f'mean_metrics: row {i} has no numeric {k!r}')
      values.append(float(row[k]))
    means[k] = float(np.mean(values))
  return means
