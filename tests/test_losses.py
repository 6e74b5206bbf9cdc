"""Tests for mh2f_jax.losses against independent NumPy/SciPy and skimage code."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from skimage import data
from skimage.metrics import structural_similarity

from mh2f_jax import losses

_H, _W = 48, 64


def _window_2d(size=11, sigma=1.5):
  """MATLAB fspecial('gaussian', 11, 1.5), built directly in 2-D."""
  r = np.arange(size) - size // 2
  yy, xx = np.meshgrid(r, r, indexing='ij')
  w = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
  return w / w.sum()


def _numpy_ssim_same(pred, target):
  """Per-image SSIM with zero 'SAME' padding, float64, no clamping."""
  w = _window_2d()
  c1, c2 = 0.01**2, 0.03**2
  out = []
  for p_img, t_img in zip(pred, target):
    maps = []
    for c in range(p_img.shape[-1]):
      a = p_img[..., c].astype(np.float64)
      b = t_img[..., c].astype(np.float64)
      filt = lambda z: ndimage.correlate(z, w, mode='constant', cval=0.0)
      mu_a, mu_b = filt(a), filt(b)
      var_a = filt(a * a) - mu_a**2
      var_b = filt(b * b) - mu_b**2
      cov = filt(a * b) - mu_a * mu_b
      maps.append((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                  / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    out.append(np.mean(maps))
  return np.array(out)


def _streaks(img, rng, n=60, length=12):
  """Bright slanted line segments, blended towards white."""
  h, w = img.shape[:2]
  t = np.arange(length)[None, :]
  y = (rng.integers(0, h, (n, 1)) + t).clip(0, h - 1)
  x = (rng.integers(0, w, (n, 1)) + 0.3 * t).astype(int).clip(0, w - 1)
  mask = np.zeros((h, w))
  mask[y, x] = 1.0
  return img + 0.5 * mask[..., None] * (1.0 - img)


@pytest.fixture(scope='module')
def batch():
  """Clean photo crops and degraded versions (noise, blur, streaks), float32."""
  rng = np.random.default_rng(0)
  clean = np.stack([
      data.astronaut()[150:150 + _H, 180:180 + _W],
      data.coffee()[100:100 + _H, 200:200 + _W],
      data.chelsea()[80:80 + _H, 150:150 + _W],
  ]).astype(np.float64) / 255.0
  noisy = clean[0] + rng.normal(0.0, 0.08, clean[0].shape)  # leaves [0, 1]
  blurred = ndimage.gaussian_filter(clean[1], sigma=(1.5, 1.5, 0))
  streaked = _streaks(clean[2], rng)
  pred = np.stack([noisy, blurred, streaked])
  return pred.astype(np.float32), clean.astype(np.float32)


_hybrid = jax.jit(losses.hybrid_loss)
_ssim_valid = jax.jit(lambda p, t: losses.ssim(p, t, padding='VALID'))
_loss_and_grad = jax.jit(
    jax.value_and_grad(lambda p, t: losses.hybrid_loss(p, t)[0]))


def test_hybrid_loss_matches_independent_numpy(batch):
  pred, clean = batch
  loss, parts = _hybrid(pred, clean)
  ssim_ref = _numpy_ssim_same(pred, clean)
  l1_ref = np.mean(np.abs(pred.astype(np.float64) - clean))
  loss_ref = l1_ref + 0.2 * (1.0 - ssim_ref.mean())
  assert abs(float(loss) - loss_ref) < 1e-5
  assert abs(float(parts['l1']) - l1_ref) < 1e-6
  assert abs(float(parts['ssim']) - ssim_ref.mean()) < 1e-5
  per_image = losses.ssim(pred, clean)
  assert per_image.shape == (3,)
  np.testing.assert_allclose(per_image, ssim_ref, atol=1e-5)


def test_ssim_weight_is_applied(batch):
  pred, clean = batch
  loss, parts = losses.hybrid_loss(pred, clean, ssim_weight=0.7)
  expected = parts['l1'] + 0.7 * (1.0 - parts['ssim'])
  assert abs(float(loss) - float(expected)) < 1e-6
  loss0, parts0 = losses.hybrid_loss(pred, clean, ssim_weight=0.0)
  assert abs(float(loss0) - float(parts0['l1'])) < 1e-7


def test_ssim_valid_matches_skimage(batch):
  pred, clean = batch
  got = _ssim_valid(pred, clean)
  for i in range(pred.shape[0]):
    ref = structural_similarity(
        pred[i].astype(np.float64), clean[i].astype(np.float64),
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=1.0, channel_axis=-1)
    assert abs(float(got[i]) - ref) < 1e-5


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
  with pytest.raises(ValueError, match='smaller than'):
    losses.ssim(a[:, :10], a[:, :10], padding='VALID')
  with pytest.raises(ValueError, match='padding'):
    losses.ssim(a, a, padding='REFLECT')
  with pytest.raises(ValueError, match='B, H, W, C'):
    losses.ssim(a[0], a[0])
