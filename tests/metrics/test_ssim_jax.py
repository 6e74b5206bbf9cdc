"""Tests for mh2f_jax.metrics.ssim_jax against scikit-image."""

import jax
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from mh2f_jax.metrics import ssim_jax as ssim_lib

_ssim_valid = jax.jit(lambda p, t: ssim_lib.ssim(p, t, padding='VALID'))


@pytest.fixture(name='batch')
def _batch(degraded_batch):
  return degraded_batch


def test_ssim_valid_matches_skimage(batch):
  pred, clean = batch
  got = _ssim_valid(pred, clean)
  for i in range(pred.shape[0]):
    ref = structural_similarity(
        pred[i].astype(np.float64), clean[i].astype(np.float64),
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=1.0, channel_axis=-1)
    assert abs(float(got[i]) - ref) < 1e-5


def test_shape_errors():
  a = np.zeros((1, 16, 16, 3), np.float32)
  with pytest.raises(ValueError, match='smaller than'):
    ssim_lib.ssim(a[:, :10], a[:, :10], padding='VALID')
  with pytest.raises(ValueError, match='padding'):
    ssim_lib.ssim(a, a, padding='REFLECT')
  with pytest.raises(ValueError, match='B, H, W, C'):
    ssim_lib.ssim(a[0], a[0])
