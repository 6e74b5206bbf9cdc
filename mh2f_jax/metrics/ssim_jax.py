"""Structural similarity (SSIM) in JAX, shared by the training loss and the metrics.

The convention of the PyTorch SSIM used by PReNet-era deraining code: each channel on
its own, an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, and the mean
over the map and the channels. Zero ('SAME') padding gives the training loss's map;
'VALID' gives the convention of published SSIM values (validation metrics).

This is dm-pix's ``pix.ssim`` with our own ``filter_fn``: dm-pix's built-in filter
only computes the 'valid' region, while the loss needs zero 'SAME' padding.
"""

import functools
from typing import Literal

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

FILTER_SIZE = 11
FILTER_SIGMA = 1.5
K1 = 0.01
K2 = 0.03

Padding = Literal['SAME', 'VALID']


def gaussian_window_1d(size: int = FILTER_SIZE,
                       sigma: float = FILTER_SIGMA) -> np.ndarray:
  """Normalised 1-D Gaussian; its outer product is MATLAB's fspecial window.

  Args:
    size: Number of taps (odd).
    sigma: Standard deviation in pixels.

  Returns:
    A float64 array of ``size`` weights summing to 1.
  """
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-(x**2) / (2.0 * sigma**2))
  return g / g.sum()


@functools.lru_cache(maxsize=64)
def _band_matrix(n: int, padding: Padding) -> np.ndarray:
  """Rows of the 1-D Gaussian filter along an axis of length ``n`` as a matrix.

  Row i holds the window centred on input i ('SAME': i = 0..n-1, taps that
  fall outside the image are dropped, which is exactly zero padding) or on
  input i + 5 ('VALID': i = 0..n-11).
  """
  g = gaussian_window_1d()
  half = FILTER_SIZE // 2
  rows = n if padding == 'SAME' else n - 2 * half
  offset = 0 if padding == 'SAME' else half
  m = np.zeros((rows, n), np.float64)
  for i in range(rows):
    for k in range(FILTER_SIZE):
      j = i + offset - half + k
      if 0 <= j < n:
        m[i, j] = g[k]
  return m


def _gaussian_filter_fn(padding: Padding, dtype):
  """A separable 11x11 Gaussian filter, per channel, for dm-pix's ``filter_fn``.

  The filter is applied as two products with banded matrices rather than as a
  depthwise convolution: on XLA:CPU a single-channel convolution is much slower
  than the matrix form (docs/architecture.md, Design measurements), and matrix
  products run on the fast units of every backend.
  The matrices are (H x H) and (W x W), so the cost grows as H*W*(H+W); that
  is fine for training patches and benchmark-sized images.
  """

  def filter_fn(z: jax.Array) -> jax.Array:
    rows = jnp.asarray(_band_matrix(z.shape[-3], padding), dtype=dtype)
    cols = jnp.asarray(_band_matrix(z.shape[-2], padding), dtype=dtype)
    # HIGHEST precision: on accelerators the default may use bf16 or TF32
    # passes, and SSIM's variance terms cancel catastrophically under them.
    hi = jax.lax.Precision.HIGHEST
    z = jnp.einsum('ih,...hwc->...iwc', rows, z, precision=hi)
    return jnp.einsum('jw,...iwc->...ijc', cols, z, precision=hi)

  return filter_fn


def as_compute_float(x) -> jax.Array:
  """At least float32: bfloat16 or float16 would ruin SSIM's variance terms."""
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def ssim(pred, target, *, padding: Padding = 'SAME',
         max_val: float = 1.0) -> jax.Array:
  """Per-image SSIM with an 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03.

  Statistics are population (weighted) moments, channels are treated
  independently, and the value is the mean of the SSIM map over pixels and
  channels. dm-pix clamps variances at float32 eps**2 and the covariance by
  Cauchy-Schwarz; both only change values at rounding level and keep the
  gradient finite where ``pred == target`` or the image is flat.

  Args:
    pred: Images ``(B, H, W, C)``, float.
    target: Images of the same shape.
    padding: ``'SAME'`` (zero padding, map of size H x W: the training loss)
      or ``'VALID'`` (map of size (H-10) x (W-10): the convention of published
      SSIM values).
    max_val: Dynamic range of the inputs (1 for [0, 1], 255 for 8-bit values).

  Returns:
    Float array ``(B,)`` (at least float32).

  Raises:
    ValueError: If the shapes differ, are not rank 4, the padding is unknown,
      or ``padding='VALID'`` and an image side is shorter than 11.
  """
  pred = as_compute_float(pred)
  target = as_compute_float(target)
  if pred.shape != target.shape:
    raise ValueError(
        f'ssim: pred shape {pred.shape} != target shape {target.shape}')
  if pred.ndim != 4:
    raise ValueError(
        f'ssim: expected (B, H, W, C) images, got shape {pred.shape}')
  if padding not in ('SAME', 'VALID'):
    raise ValueError(
        f"ssim: padding must be 'SAME' or 'VALID', got {padding!r}")
  if padding == 'VALID' and min(pred.shape[1:3]) < FILTER_SIZE:
    raise ValueError(
        f'ssim: images of shape {pred.shape} are smaller than the '
        f'{FILTER_SIZE}x{FILTER_SIZE} SSIM window')
  dtype = jnp.promote_types(pred.dtype, target.dtype)
  return pix.ssim(
      pred.astype(dtype), target.astype(dtype), max_val=max_val,
      filter_size=FILTER_SIZE, filter_sigma=FILTER_SIGMA, k1=K1, k2=K2,
      filter_fn=_gaussian_filter_fn(padding, dtype))
