"""Tests for mh2f_jax.rain: determinism, dtypes, and the difficulty of each preset."""

import dataclasses

import numpy as np
import pytest
from skimage import data

from mh2f_jax import metrics
from mh2f_jax import rain
from mh2f_jax.errors import UserError


@pytest.fixture(scope='module')
def photo():
  # A 256x256 crop keeps the tests fast; the cat is a natural, textured photo.
  return np.ascontiguousarray(data.chelsea()[20:276, 100:356])


@pytest.mark.parametrize('preset', sorted(rain.PRESETS))
def test_same_seed_same_rain_other_seed_other_rain(photo, preset):
  a = rain.add_rain(photo, np.random.default_rng(7), preset)
  b = rain.add_rain(photo, np.random.default_rng(7), preset)
  c = rain.add_rain(photo, np.random.default_rng(8), preset)
  np.testing.assert_array_equal(a, b)
  assert np.mean(a != c) > 0.01


def test_uint8_in_uint8_out(photo):
  out = rain.add_rain(photo, np.random.default_rng(0), 'heavy')
  assert out.dtype == np.uint8 and out.shape == photo.shape
  assert not np.array_equal(out, photo)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_float_in_same_float_out(photo, dtype):
  clean = photo.astype(dtype) / 255
  out = rain.add_rain(clean, np.random.default_rng(0), 'light')
  assert out.dtype == dtype and out.shape == clean.shape
  assert out.min() >= 0 and out.max() <= 1


def test_float_and_uint8_render_the_same_rain(photo):
  as_u8 = rain.add_rain(photo, np.random.default_rng(3), 'heavy')
  as_float = rain.add_rain(photo.astype(np.float32) / 255, np.random.default_rng(3), 'heavy')
  assert np.abs(metrics.to_uint8(as_float).astype(int) - as_u8).max() <= 1


def test_non_square_and_tiny_images():
  clean = np.full((5, 37, 3), 0.25, np.float32)
  out = rain.add_rain(clean, np.random.default_rng(0), 'heavy')
  assert out.shape == clean.shape


def test_rain_only_brightens_apart_from_the_veil(photo):
  # Screen blending never darkens; the light preset has no veil.
  assert max(rain.PRESETS['light'].haze) == 0
  out = rain.add_rain(photo, np.random.default_rng(1), 'light')
  assert np.all(out.astype(int) >= photo.astype(int))


def test_heavy_is_below_22db_and_light_is_easier(photo):
  scores = {}
  for preset in ('light', 'heavy'):
    rows = [metrics.evaluate_pair(rain.add_rain(photo, np.random.default_rng(s), preset), photo)
            for s in range(3)]
    scores[preset] = (np.mean([r['psnr_y'] for r in rows]), np.mean([r['ssim_y'] for r in rows]))
  assert scores['heavy'][0] <= 22.0
  assert scores['light'][0] > scores['heavy'][0] + 5
  assert scores['light'][1] > scores['heavy'][1]


def test_heavy_streaks_run_in_several_directions():
  preset = rain.PRESETS['heavy']
  assert len(set(preset.angles)) >= 2
  # A layer of one long vertical streak seed, rendered on its own, is a vertical line.
  kernel = rain.line_kernel(21, 0.0, 0.0)
  rows, cols = np.nonzero(kernel > 0.2)
  assert np.ptp(rows) >= 15 and np.ptp(cols) == 0
  tilted = rain.line_kernel(21, 30.0, 0.0)
  rows, cols = np.nonzero(tilted > 0.2)
  # Leaning right: the top end of the streak is to the right of its bottom end.
  assert cols[np.argmin(rows)] > cols[np.argmax(rows)]


def test_custom_preset_and_errors(photo):
  sparse = dataclasses.replace(rain.PRESETS['light'], density=1e-4)
  out = rain.add_rain(photo, np.random.default_rng(0), sparse)
  assert np.mean(out != photo) < np.mean(
      rain.add_rain(photo, np.random.default_rng(0), 'light') != photo)
  with pytest.raises(UserError, match='drizzle'):
    rain.add_rain(photo, np.random.default_rng(0), 'drizzle')
  with pytest.raises(UserError, match=r'\(H, W, 3\)'):
    rain.add_rain(photo[..., 0], np.random.default_rng(0))
  with pytest.raises(UserError, match='dtype'):
    rain.add_rain(photo.astype(np.int32), np.random.default_rng(0))
  with pytest.raises(ValueError, match='length'):
    dataclasses.replace(rain.PRESETS['light'], length=(10.0, 5.0))
