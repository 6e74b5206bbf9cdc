"""Training loss of MH2F-Net: L1 plus a weighted structural-similarity term.

The paper (section 3.5, eqs. 5-7) trains with ``L = L1 + lambda * (1 - SSIM)``,
``lambda = 0.2``. SSIM is :func:`mh2f_jax.metrics.ssim_jax.ssim` with zero ('SAME') padding and
data range 1 (see that module for the convention).
"""

import jax
import jax.numpy as jnp

from mh2f_jax.metrics import ssim_jax as ssim_lib


def l1(pred, target) -> jax.Array:
  """Mean absolute error over all pixels, channels and images (a scalar)."""
  pred = ssim_lib.as_compute_float(pred)
  target = ssim_lib.as_compute_float(target)
  if pred.shape != target.shape:
    raise ValueError(
        f'l1: pred shape {pred.shape} != target shape {target.shape}')
  return jnp.mean(jnp.abs(pred - target))


def hybrid_loss(pred, target, ssim_weight: float = 0.2
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The paper's loss ``L1 + ssim_weight * (1 - SSIM)`` on images in [0, 1].

  SSIM here is :func:`mh2f_jax.metrics.ssim_jax.ssim` with zero 'SAME' padding and data range 1,
  averaged over the batch (all images of a batch share one size, so this is
  also the mean over all SSIM-map entries, as in the PyTorch reference).

  Args:
    pred: Model output ``(B, H, W, 3)``, raw (not clipped).
    target: Clean images ``(B, H, W, 3)`` in [0, 1].
    ssim_weight: The weight lambda of the SSIM term (0.2 in the paper).

  Returns:
    ``(loss, {'l1': l1, 'ssim': ssim})``: float32 scalars; ``ssim`` is the
    batch-mean SSIM (not ``1 - SSIM``), for logging.

  Raises:
    ValueError: If the shapes differ or are not rank 4.
  """
  l1_value = l1(pred, target)
  ssim_value = jnp.mean(ssim_lib.ssim(pred, target, padding='SAME', max_val=1.0))
  loss = l1_value + ssim_weight * (1.0 - ssim_value)
  return loss, {'l1': l1_value, 'ssim': ssim_value}
