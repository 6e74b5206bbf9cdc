"""Shared pytest setup: keep JAX on the CPU and quiet, and make the repo importable."""

import atexit
import os
import shutil
import sys
import tempfile

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The entry points turn JAX's persistent compilation cache on; under the tests it lives in
# a temporary folder (shared by the subprocesses the tests start), never in ~/.cache.
if "MH2F_COMPILATION_CACHE" not in os.environ:
  _cache_dir = tempfile.mkdtemp(prefix="mh2f-test-jax-cache-")
  os.environ["MH2F_COMPILATION_CACHE"] = _cache_dir
  atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)


# Shared by the loss and SSIM tests: photo crops and degraded versions of them, and an
# independent float64 SSIM to check against.
_H, _W = 48, 64


def _window_2d(size=11, sigma=1.5):
  """MATLAB fspecial('gaussian', 11, 1.5), built directly in 2-D."""
  r = np.arange(size) - size // 2
  yy, xx = np.meshgrid(r, r, indexing='ij')
  w = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
  return w / w.sum()


def numpy_ssim_same(pred, target):
  """Per-image SSIM with zero 'SAME' padding, float64, no clamping."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
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


def streaks(img, rng, n=60, length=12, slope=0.3, strength=0.5):
  """Bright slanted line segments blended towards white; img float in [0, 1]."""
  h, w = img.shape[:2]
  t = np.arange(length)[None, :]
  y = (rng.integers(0, h, (n, 1)) + t).clip(0, h - 1)
  x = (rng.integers(0, w, (n, 1)) + slope * t).astype(int).clip(0, w - 1)
  mask = np.zeros((h, w))
  mask[y, x] = 1.0
  return img + strength * mask[..., None] * (1.0 - img)


@pytest.fixture(scope='session')
def degraded_batch():
  """Clean photo crops and degraded versions (noise, blur, streaks), float32."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  from skimage import data  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  clean = np.stack([
      data.astronaut()[150:150 + _H, 180:180 + _W],
      data.coffee()[100:100 + _H, 200:200 + _W],
      data.chelsea()[80:80 + _H, 150:150 + _W],
  ]).astype(np.float64) / 255.0
  noisy = clean[0] + rng.normal(0.0, 0.08, clean[0].shape)  # leaves [0, 1]
  blurred = ndimage.gaussian_filter(clean[1], sigma=(1.5, 1.5, 0))
  streaked = streaks(clean[2], rng)
  pred = np.stack([noisy, blurred, streaked])
  return pred.astype(np.float32), clean.astype(np.float32)


# The inference tests share one Derainer per module. It lives here, not in a
# tests/inference/conftest.py: the test folders are not packages, so a second conftest.py
# would be imported under the same module name and hide this one's helpers.
@pytest.fixture(name='hadb_derainer', scope='module')
def _hadb_derainer():
  """A Derainer of a random tiny model with HADB (one per test module)."""
  from mh2f_jax import inference  # pylint: disable=g-import-not-at-top
  from inference_helper import _tiny_model_and_params  # pylint: disable=g-import-not-at-top
  return inference.Derainer(*_tiny_model_and_params('hadb'))
