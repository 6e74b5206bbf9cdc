"""Tests for mh2f_jax.datasets.rain: determinism, dtypes, randomised looks, and difficulty."""

import dataclasses

import numpy as np
import pytest
from skimage import data

from mh2f_jax import metrics
from mh2f_jax.datasets import rain
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
  assert rain.PRESETS['light'].veil == 0
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


def test_line_kernel_direction_and_width():
  kernel = rain.line_kernel(21, 0.0, 1.0)
  rows, cols = np.nonzero(kernel > 0.2)
  assert np.ptp(rows) >= 15 and np.ptp(cols) == 0  # A one-pixel vertical line.
  tilted = rain.line_kernel(21, 30.0, 1.0)
  rows, cols = np.nonzero(tilted > 0.2)
  # Leaning right: the top end of the streak is to the right of its bottom end.
  assert cols[np.argmin(rows)] > cols[np.argmax(rows)]
  for width in (1.0, 2.0, 3.0, 4.0):
    kernel = rain.line_kernel(41, 0.0, width)
    middle = kernel[kernel.shape[0] // 2]
    # Width at half maximum, counted in whole pixels of the cross-section.
    assert abs(np.sum(middle >= 0.5 * middle.max()) - width) <= 1.0, width


def _drawn_looks(preset, images):
  """(angle, length, width) of every layer drawn for ``images`` tiny images."""
  looks = []
  original = rain.line_kernel

  def record(length, angle, width, aliased=False):
    looks.append((angle, length, width))
    return original(length, angle, width, aliased)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(rain, 'line_kernel', record)
    for seed in range(images):
      rain.rain_layer(8, 8, np.random.default_rng(seed), preset)
  return np.array(looks)


@pytest.mark.parametrize('name', sorted(rain.PRESETS))
def test_each_image_draws_its_own_look(name):
  preset = rain.PRESETS[name]
  angle, length, width = _drawn_looks(preset, 300).T
  # Directions both ways, up to the preset's limit from vertical.
  assert np.abs(angle).max() <= preset.angle
  assert angle.min() < -0.8 * preset.angle and angle.max() > 0.8 * preset.angle
  # Thin and wide, short and long streaks, over each preset's whole range.
  assert width.min() >= preset.width[0] and width.max() <= preset.width[1]
  assert np.ptp(width) > 0.8 * np.ptp(preset.width)
  assert length.min() >= preset.length[0] and length.max() <= preset.length[1]
  assert np.ptp(length) > 0.7 * np.ptp(preset.length)


def test_heavy_mixes_layers_of_different_looks():
  heavy = rain.PRESETS['heavy']
  # The demo's rain: up to 45 degrees off vertical, streaks 1 to 6 pixels wide.
  assert heavy.angle == 45 and heavy.width == (1.0, 6.0)
  assert heavy.layers[1] >= 2 and heavy.spread > 0
  # Without aliased layers, which are all one pixel wide.
  looks = _drawn_looks(dataclasses.replace(heavy, layers=(2, 2), aliased=0.0),
                       50).reshape(50, 2, 3)
  # The two layers of one image differ in direction, length and width.
  assert np.all(np.abs(looks[:, 0] - looks[:, 1]) > 0)
  assert np.abs(looks[:, 0, 0] - looks[:, 1, 0]).max() <= 2 * heavy.spread


def test_veil_is_optional_and_blur_varies():
  # Almost no streaks: a black image stays black unless veiled.
  faint = dataclasses.replace(rain.PRESETS['heavy'], coverage=(1e-9, 1e-9))
  black = np.zeros((8, 8, 3), np.uint8)
  veiled = [rain.add_rain(black, np.random.default_rng(s), faint).max() > 0 for s in range(60)]
  assert 0.25 < np.mean(veiled) < 0.75
  assert rain.PRESETS['heavy'].blur[0] < rain.PRESETS['heavy'].blur[1]


def test_custom_preset_and_errors(photo):
  sparse = dataclasses.replace(rain.PRESETS['light'], coverage=(1e-3, 1e-3))
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
  with pytest.raises(ValueError, match='spread'):
    dataclasses.replace(rain.PRESETS['heavy'], spread=50.0)
  with pytest.raises(ValueError, match='probability'):
    dataclasses.replace(rain.PRESETS['heavy'], veil=1.5)
  with pytest.raises(ValueError, match='aliased is a probability'):
    dataclasses.replace(rain.PRESETS['heavy'], aliased=-0.1)


def test_aliased_kernel_is_a_jagged_one_pixel_line():
  for angle in (0.0, 30.0, -45.0):
    kernel = rain.line_kernel(41, angle, 4.0, aliased=True)
    assert set(np.unique(kernel)) == {0.0, 1.0}
    rows = np.nonzero(kernel.any(axis=1))[0]
    # At most 45 degrees off vertical: exactly one pixel in every row the line crosses.
    assert np.all(kernel[rows].sum(axis=1) == 1), angle
  smooth = rain.line_kernel(41, 30.0, 1.0)
  assert len(np.unique(smooth)) > 2  # the default line is anti-aliased


def test_aliased_layers_skip_the_defocus():
  aliased = dataclasses.replace(rain.PRESETS['heavy'], aliased=1.0, blur=(3.0, 3.0))
  sharp = dataclasses.replace(aliased, blur=(0.0, 0.0))
  a = rain.rain_layer(64, 64, np.random.default_rng(4), aliased)
  b = rain.rain_layer(64, 64, np.random.default_rng(4), sharp)
  np.testing.assert_array_equal(a, b)
  blurred = dataclasses.replace(aliased, aliased=0.0)
  plain = dataclasses.replace(blurred, blur=(0.0, 0.0))
  assert not np.array_equal(rain.rain_layer(64, 64, np.random.default_rng(4), blurred),
                            rain.rain_layer(64, 64, np.random.default_rng(4), plain))


@pytest.mark.parametrize('name', sorted(rain.PRESETS))
def test_presets_draw_some_aliased_layers(name):
  preset = rain.PRESETS[name]
  kinds = []
  original = rain.line_kernel

  def record(length, angle, width, aliased=False):
    kinds.append(aliased)
    return original(length, angle, width, aliased)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(rain, 'line_kernel', record)
    for seed in range(200):
      rain.rain_layer(8, 8, np.random.default_rng(seed), preset)
  assert abs(np.mean(kinds) - preset.aliased) < 0.08
  assert 0 < preset.aliased < 0.5
