"""Protocol-B PSNR/SSIM on Y in JAX, for validation inside training.

:func:`psnr_ssim_y` is jit-able and batched, and agrees with
:func:`mh2f_jax.metrics.protocols.evaluate_pair` (protocol B) on the same 8-bit images:
it rounds to 8 bits and to Y exactly as the NumPy protocol does.
"""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from mh2f_jax.metrics import protocols
from mh2f_jax.metrics import ssim_jax as ssim_lib

def _uint8_thresholds() -> np.ndarray:
  """Smallest float32 x with exact ``255 x >= k + 0.5``, for k = 0..254.

  Counting thresholds at or below x rounds exactly like :func:`mh2f_jax.metrics.protocols.to_uint8` on
  float32 input, whereas ``floor(x * 255 + 0.5)`` in float32 rounds the product
  first and can land on the other side of a .5 boundary.
  """
  out = np.empty(255, np.float32)
  for k in range(255):
    r = Fraction(2 * k + 1, 510)
    t = np.float32(float(r))
    while Fraction(float(t)) < r:
      t = np.nextafter(t, np.float32(np.inf))
    while Fraction(float(np.nextafter(t, np.float32(-np.inf)))) >= r:
      t = np.nextafter(t, np.float32(-np.inf))
    out[k] = t
  return out


# Threshold to reach level n, for n = 0..256 (-inf and +inf at the ends).
_LEVEL_START = np.concatenate(
    [[-np.inf], _uint8_thresholds(), [np.inf]]).astype(np.float32)


def _to_levels_jax(x: jax.Array) -> jax.Array:
  """8-bit levels (int32) of float images in [0, 1], exactly as to_uint8.

  NaN inputs give unspecified levels (no error inside jit).
  """
  if x.dtype == jnp.float64:  # Only with jax_enable_x64.
    return jnp.floor(jnp.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(jnp.int32)
  x = jnp.clip(x.astype(jnp.float32), 0.0, 1.0)  # Exact for bf16/f16.
  # The float32 estimate is off by at most one level near a .5 boundary;
  # one comparison with each neighbouring threshold makes it exact. (A
  # searchsorted over the 255 thresholds is exact too, but several times
  # slower on CPU.)
  start = jnp.asarray(_LEVEL_START)
  n = jnp.clip(jnp.floor(x * 255.0 + 0.5).astype(jnp.int32), 0, 255)
  n = n - (x < start[n]).astype(jnp.int32)
  return n + (x >= start[n + 1]).astype(jnp.int32)


def _rgb_levels_to_y_jax(levels: jax.Array) -> jax.Array:
  """Rounded BT.601 Y from int32 RGB levels, exactly as :func:`mh2f_jax.metrics.protocols.rgb_to_y`."""
  n = (protocols.Y_OFFSET + protocols.Y_COEFFS[0] * levels[..., 0] + protocols.Y_COEFFS[1] * levels[..., 1]
       + protocols.Y_COEFFS[2] * levels[..., 2])  # < 2**31: int32 suffices.
  return (n + protocols.Y_DENOM // 2) // protocols.Y_DENOM


def psnr_ssim_y(pred, target) -> tuple[jax.Array, jax.Array]:
  """Per-image protocol-B PSNR and SSIM on Y, in JAX (jit-able, batched).

  Both inputs are clipped to [0, 1] and rounded to 8 bits as
  :func:`mh2f_jax.metrics.protocols.to_uint8` does, converted to rounded Y, then scored with peak 255 and
  :func:`mh2f_jax.metrics.ssim_jax.ssim` with ``padding='VALID'`` (population
  statistics). Agrees with ``evaluate_pair(..., protocol='B')`` on the
  ``to_uint8`` images to float32 accuracy (well within 0.01 dB and 1e-3).

  Args:
    pred: Raw model output, float ``(B, H, W, 3)``.
    target: Clean images, float ``(B, H, W, 3)`` in [0, 1] (uint8 / 255).

  Returns:
    ``(psnr_y, ssim_y)``, float32 arrays ``(B,)``; PSNR is ``inf`` for
    identical images.

  Raises:
    ValueError: (at trace time) if the shapes differ, are not
      ``(B, H, W, 3)``, or H or W < 11.
  """
  pred = jnp.asarray(pred)
  target = jnp.asarray(target)
  if pred.shape != target.shape:
    raise ValueError(
        f'psnr_ssim_y: pred shape {pred.shape} != target shape {target.shape}')
  if pred.ndim != 4 or pred.shape[-1] != 3:
    raise ValueError(
        f'psnr_ssim_y: expected (B, H, W, 3) images, got shape {pred.shape}')
  if min(pred.shape[1:3]) < protocols.SSIM_WINDOW:
    raise ValueError(
        f'psnr_ssim_y: images of shape {pred.shape} are smaller than the '
        f'{protocols.SSIM_WINDOW}x{protocols.SSIM_WINDOW} SSIM window')
  y_pred = _rgb_levels_to_y_jax(_to_levels_jax(pred))
  y_target = _rgb_levels_to_y_jax(_to_levels_jax(target))
  # Squared differences of integers are exact in int32; the sum is float32.
  diff = (y_pred - y_target).astype(jnp.float32)
  mse = jnp.mean(diff * diff, axis=(1, 2))
  psnr_y = 10.0 * jnp.log10(255.0**2 / mse)
  ssim_y = ssim_lib.ssim(y_pred[..., None].astype(jnp.float32),
                       y_target[..., None].astype(jnp.float32),
                       padding='VALID', max_val=255.0)
  return psnr_y, ssim_y
