"""Tests for mh2f_jax.metrics against scikit-image and direct code."""

from fractions import Fraction
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from skimage import color, data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mh2f_jax import files
from mh2f_jax import metrics
from mh2f_jax.metrics import psnr_ssim_jax

from metrics_helper import streaks


def _wang_ssim(a, b):
  return structural_similarity(
      np.asarray(a, np.float64), np.asarray(b, np.float64),
      gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
      data_range=255)


def _psnr255(a, b):
  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64))**2)
  return 10 * np.log10(255.0**2 / mse)


def _y(img, rounded):
  """Y on the 0..255 scale from scikit-image's BT.601 conversion."""
  y = color.rgb2ycbcr(img)[..., 0]
  return np.floor(y + 0.5) if rounded else y


def _quantize(x):
  return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _degrade(gt, kind, rng):
  """Float degradation (may leave [0, 1]) of a uint8 image."""
  x = gt / 255.0
  if kind == 'noise':
    return x + rng.normal(0.0, 0.06, x.shape)
  if kind == 'blur':
    return ndimage.gaussian_filter(x, sigma=(2.0, 2.0, 0))
  return streaks(x, rng, n=400, length=25, slope=0.25, strength=0.6)


_PHOTOS = ('astronaut', 'coffee', 'chelsea')
_KINDS = ('noise', 'blur', 'streaks')


@pytest.fixture(scope='module')
def photos():
  return {name: getattr(data, name)() for name in _PHOTOS}


@pytest.mark.parametrize('photo', _PHOTOS)
@pytest.mark.parametrize('kind', _KINDS)
def test_protocol_b_matches_scikit_image(photos, photo, kind):
  gt = photos[photo]
  pred = _quantize(_degrade(gt, kind, np.random.default_rng(1)))
  got = metrics.evaluate_pair(pred, gt, protocol='B')
  assert set(got) == {'psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb'}
  assert all(type(v) is float for v in got.values())
  y_pred, y_gt = _y(pred, True), _y(gt, True)
  assert abs(got['psnr_y']
             - peak_signal_noise_ratio(y_gt, y_pred, data_range=255)) < 1e-4
  assert abs(got['ssim_y'] - _wang_ssim(y_pred, y_gt)) < 1e-4
  assert abs(got['psnr_rgb'] - _psnr255(pred, gt)) < 1e-4
  ssim_rgb = np.mean([_wang_ssim(pred[..., c], gt[..., c]) for c in range(3)])
  assert abs(got['ssim_rgb'] - ssim_rgb) < 1e-4


def _matlab_downsample(plane, f):
  """imfilter(x, ones(f)/f^2, 'symmetric', 'same') then x(1:f:end, 1:f:end).

  MATLAB anchors the kernel at element floor((f+1)/2) (1-based), so output
  (i, j) averages input rows i-a .. i-a+f-1 with a = floor((f+1)/2) - 1.
  """
  a = (f + 1) // 2 - 1
  h, w = plane.shape
  padded = np.pad(plane, ((a, f - 1 - a), (a, f - 1 - a)), mode='symmetric')
  acc = np.zeros((h, w))
  for u in range(f):
    for v in range(f):
      acc += padded[u:u + h, v:v + w]
  return (acc / (f * f))[::f, ::f]


def test_downsample_factor_rounds_half_away_from_zero():
  assert metrics.downsample_factor(481, 321) == 1
  assert metrics.downsample_factor(512, 512) == 2
  assert metrics.downsample_factor(383, 1000) == 1  # 1.496
  assert metrics.downsample_factor(384, 1000) == 2  # 1.5
  assert metrics.downsample_factor(700, 640) == 3  # 2.5; Python round gives 2
  assert metrics.downsample_factor(20, 30) == 1


def test_wang_downsample_matches_matlab_rule():
  plane = np.random.default_rng(3).uniform(0, 255, (37, 50))
  for f in (2, 3, 4):
    np.testing.assert_allclose(metrics.wang_downsample(plane, f),
                               _matlab_downsample(plane, f), atol=1e-10)
  # For f = 2 on even sizes the rule is a plain 2x2 block mean.
  even = plane[:36, :50]
  blocks = even.reshape(18, 2, 25, 2).mean(axis=(1, 3))
  np.testing.assert_allclose(metrics.wang_downsample(even, 2), blocks,
                             atol=1e-10)


@pytest.mark.parametrize('size', [(512, 512), (640, 700)])
def test_protocol_a_matches_direct_implementation(size):
  h, w = size
  gt = data.hubble_deep_field()[:h, :w] if h != 512 else data.astronaut()
  f = 2 if h == 512 else 3
  pred = _quantize(_degrade(gt, 'noise', np.random.default_rng(2)))
  got = metrics.evaluate_pair(pred, gt, protocol='A')
  y_pred, y_gt = _y(pred, False), _y(gt, False)
  assert abs(got['psnr_y'] - _psnr255(y_pred, y_gt)) < 1e-4
  ssim_y = _wang_ssim(_matlab_downsample(y_pred, f), _matlab_downsample(y_gt, f))
  assert abs(got['ssim_y'] - ssim_y) < 1e-4
  assert abs(got['psnr_rgb'] - _psnr255(pred, gt)) < 1e-4
  ssim_rgb = np.mean([
      _wang_ssim(_matlab_downsample(pred[..., c].astype(float), f),
                 _matlab_downsample(gt[..., c].astype(float), f))
      for c in range(3)])
  assert abs(got['ssim_rgb'] - ssim_rgb) < 1e-4
  # The protocols differ here (unrounded Y, downsampling).
  got_b = metrics.evaluate_pair(pred, gt, protocol='B')
  assert got_b['ssim_y'] != got['ssim_y']
  assert got_b['psnr_y'] != got['psnr_y']


_psnr_ssim_y = jax.jit(metrics.psnr_ssim_y)


def test_jax_psnr_ssim_y_agrees_with_protocol_b(photos):
  rng = np.random.default_rng(4)
  h, w = 120, 150
  gts = [photos[p][60:60 + h, 90:90 + w] for p in _PHOTOS]
  preds = [_degrade(g, k, rng) for g, k in zip(gts, _KINDS)]
  assert min(p.min() for p in preds) < 0 and max(p.max() for p in preds) > 1
  gts.append(gts[0])  # An identical pair: PSNR inf.
  preds.append(gts[0] / 255.0)
  pred = np.stack(preds).astype(np.float32)
  gt = np.stack(gts)
  psnr_y, ssim_y = _psnr_ssim_y(jnp.asarray(pred), jnp.asarray(gt / 255.0,
                                                               jnp.float32))
  assert psnr_y.shape == ssim_y.shape == (4,)
  for i in range(3):
    ref = metrics.evaluate_pair(metrics.to_uint8(pred[i]), gt[i], protocol='B')
    assert abs(float(psnr_y[i]) - ref['psnr_y']) < 0.01
    assert abs(float(ssim_y[i]) - ref['ssim_y']) < 1e-3
  assert math.isinf(float(psnr_y[3])) and float(psnr_y[3]) > 0
  assert abs(float(ssim_y[3]) - 1.0) < 1e-6


def test_psnr_ssim_y_errors():
  a = jnp.zeros((2, 16, 16, 3))
  with pytest.raises(ValueError, match=r'\(2, 16, 16, 3\).*\(1, 16, 16, 3\)'):
    metrics.psnr_ssim_y(a, a[:1])
  with pytest.raises(ValueError, match='smaller than'):
    metrics.psnr_ssim_y(a[:, :10], a[:, :10])
  with pytest.raises(ValueError, match=r'\(2, 16, 16\)'):
    metrics.psnr_ssim_y(a[..., 0], a[..., 0])


def test_to_uint8_rounds_half_away_from_zero():
  x = np.array([0.5, 1.5, 2.5, 127.5, 254.5, 0.49, 1.49, 3.0]) / 255.0
  expected = [1, 2, 3, 128, 255, 0, 1, 3]  # np.round would give 0, 2, 2, 128
  out = metrics.to_uint8(x)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, expected)
  clipped = metrics.to_uint8(np.array([-0.1, -0.0001, 1.2, 1.0001, 0.0, 1.0]))
  np.testing.assert_array_equal(clipped, [0, 0, 255, 255, 0, 255])
  # JAX input and shape are kept.
  img = np.linspace(-0.2, 1.2, 60).reshape(4, 5, 3)
  np.testing.assert_array_equal(metrics.to_uint8(jnp.asarray(img, jnp.float32)),
                                metrics.to_uint8(img.astype(np.float32)))
  assert metrics.to_uint8(img).shape == (4, 5, 3)
  u = np.arange(256, dtype=np.uint8)
  np.testing.assert_array_equal(metrics.to_uint8(u), u)


def test_float32_rounding_is_exact_in_numpy_and_jax():
  """float32 values next to every .5 boundary round by their exact value."""
  k = np.arange(255)
  near = ((k + 0.5) / 255).astype(np.float32)
  x = np.concatenate([near, np.nextafter(near, np.float32(0)),
                      np.nextafter(near, np.float32(1)),
                      np.float32([0.0, 1.0, 0.5])])
  expected = [math.floor(Fraction(float(v)) * 255 + Fraction(1, 2)) for v in x]
  np.testing.assert_array_equal(metrics.to_uint8(x), expected)
  levels = jax.jit(psnr_ssim_jax._to_levels_jax)(jnp.asarray(x))
  np.testing.assert_array_equal(np.asarray(levels), expected)


def test_to_uint8_errors():
  with pytest.raises(ValueError, match='int64'):
    metrics.to_uint8(np.array([1, 2]))
  with pytest.raises(ValueError, match='NaN'):
    metrics.to_uint8(np.array([0.5, np.nan]))


def test_rgb_to_y_matches_bt601():
  rng = np.random.default_rng(5)
  rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
  r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
  y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
  np.testing.assert_allclose(metrics.rgb_to_y(rgb, rounded=False), y, atol=1e-9)
  np.testing.assert_array_equal(metrics.rgb_to_y(rgb), np.floor(y + 0.5))
  assert metrics.rgb_to_y(np.zeros((1, 3), np.uint8))[0] == 16
  assert metrics.rgb_to_y(np.full((1, 3), 255, np.uint8))[0] == 235


def test_identical_images_give_inf_psnr_and_json_helper():
  img = data.chelsea()[:64, :64]
  got = metrics.evaluate_pair(img, img.copy(), protocol='B')
  assert math.isinf(got['psnr_y']) and got['psnr_y'] > 0
  assert math.isinf(got['psnr_rgb'])
  assert got['ssim_y'] == pytest.approx(1.0) and got['ssim_rgb'] == pytest.approx(1.0)
  text = json.dumps(files.json_safe({'a': got, 'b': [np.float32(np.nan)]}),
                    allow_nan=False)
  assert json.loads(text)['a']['psnr_y'] == 'inf'
  assert json.loads(text)['b'] == ['nan']


def test_mean_metrics():
  rows = [{'name': 'a', 'psnr_y': 30.0, 'ssim_y': 0.9},
          {'name': 'b', 'psnr_y': 34.0, 'ssim_y': 0.8}]
  assert metrics.mean_metrics(rows) == pytest.approx({'psnr_y': 32.0,
                                                      'ssim_y': 0.85})
  assert math.isinf(metrics.mean_metrics(rows + [{'psnr_y': math.inf,
                                                  'ssim_y': 1.0}])['psnr_y'])
  with pytest.raises(ValueError, match='no rows'):
    metrics.mean_metrics([])
  with pytest.raises(ValueError, match='ssim_y'):
    metrics.mean_metrics(rows + [{'psnr_y': 1.0}])


def test_evaluate_pair_errors():
  a = np.zeros((32, 32, 3), np.uint8)
  with pytest.raises(ValueError, match=r'\(32, 32, 3\).*\(32, 31, 3\)'):
    metrics.evaluate_pair(a, a[:, :31])
  with pytest.raises(ValueError, match=r'\(32, 32\)'):
    metrics.evaluate_pair(a[..., 0], a[..., 0])
  rgba = np.zeros((32, 32, 4), np.uint8)
  with pytest.raises(ValueError, match=r'\(32, 32, 4\)'):
    metrics.evaluate_pair(rgba, rgba)
  with pytest.raises(ValueError, match='float64'):
    metrics.evaluate_pair(a / 255.0, a)
  with pytest.raises(ValueError, match='smaller than'):
    metrics.evaluate_pair(a[:10], a[:10])
  with pytest.raises(ValueError, match='protocol'):
    metrics.evaluate_pair(a, a, protocol='C')
