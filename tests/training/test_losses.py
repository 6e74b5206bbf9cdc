"""Tests for mh2f_jax.training.losses against independent NumPy/SciPy code."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mh2f_jax.training import losses
from mh2f_jax.metrics import ssim_jax as ssim_lib

from metrics_helper import numpy_ssim_same


@pytest.fixture(name='batch')
def _batch(degraded_batch):
  return degraded_batch


_hybrid = jax.jit(losses.hybrid_loss)
_loss_and_grad = jax.jit(
    jax.value_and_grad(lambda p, t: losses.hybrid_loss(p, t)[0]))


def test_hybrid_loss_matches_independent_numpy(batch):
  pred, clean = batch
  loss, parts = _hybrid(pred, clean)
  ssim_ref = numpy_ssim_same(pred, clean)
  l1_ref = np.mean(np.abs(pred.astype(np.float64) - clean))
  loss_ref = l1_ref + 0.2 * (1.0 - ssim_ref.mean())
  assert abs(float(loss) - loss_ref) < 1e-5
  assert abs(float(parts['l1']) - l1_ref) < 1e-6
  assert abs(float(parts['ssim']) - ssim_ref.mean()) < 1e-5
  per_image = ssim_lib.ssim(pred, clean)
  assert per_image.shape == (3,)
  np.testing.assert_allclose(per_image, ssim_ref, atol=1e-5)


def test_ssim_weight_is_applied(batch):
  pred, clean = batch
  loss, parts = losses.hybrid_loss(pred, clean, ssim_weight=0.7)
  expected = parts['l1'] + 0.7 * (1.0 - parts['ssim'])
  assert abs(float(loss) - float(expected)) < 1e-6
  loss0, parts0 = losses.hybrid_loss(pred, clean, ssim_weight=0.0)
  assert abs(float(loss0) - float(parts0['l1'])) < 1e-7


def test_loss_and_gradient_at_pred_equal_target(batch):
  _, clean = batch
  flat = np.full_like(clean, 0.7)
  for target in (clean, np.zeros_like(clean), flat):
    value, grad = _loss_and_grad(jnp.asarray(target), jnp.asarray(target))
    assert np.all(np.isfinite(np.asarray(grad)))
    assert abs(float(value)) < 1e-5  # l1 = 0, ssim = 1.


def test_gradient_finite_and_nonzero_away_from_target(batch):
  pred, clean = batch
  value, grad = _loss_and_grad(pred, clean)
  grad = np.asarray(grad)
  assert float(value) > 0
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_shape_errors():
  a = np.zeros((1, 16, 16, 3), np.float32)
  with pytest.raises(ValueError, match=r'\(1, 16, 16, 3\).*\(1, 16, 15, 3\)'):
    losses.hybrid_loss(a, a[:, :, :15])
