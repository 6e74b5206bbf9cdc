"""Test helpers for image quality: an independent float64 SSIM and synthetic streaks."""

import numpy as np


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
