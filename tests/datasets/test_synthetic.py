"""Tests for the synthetic_rain TFDS builder: determinism, splits, counts, photos."""

import math
import os

import numpy as np
from PIL import Image
import pytest
from skimage import data
import tensorflow_datasets as tfds

from mh2f_jax import metrics
from mh2f_jax.datasets import synthetic


def _build(data_dir, config):
  builder = synthetic.SyntheticRain(config=config, data_dir=os.fspath(data_dir))
  builder.download_and_prepare()
  return builder


def _records(builder):
  folder = builder.data_dir
  names = sorted(f for f in os.listdir(folder) if '.array_record' in f)
  return {f: open(os.path.join(folder, f), 'rb').read() for f in names}


@pytest.fixture(scope='module')
def two_builds(tmp_path_factory):
  """Two independent builds of the heavy config, with one rendering per train photo."""
  # Fewer train renderings keep the test quick; the code path is the full one.
  patch = pytest.MonkeyPatch()
  patch.setattr(synthetic, 'TRAIN_DRAWS', 1)
  try:
    builds = [_build(tmp_path_factory.mktemp(f'data{i}'), 'heavy') for i in range(2)]
  finally:
    patch.undo()
  return builds


def test_two_builds_write_identical_records(two_builds):
  first, second = (_records(b) for b in two_builds)
  assert set(first) == {'synthetic_rain-train.array_record-00000-of-00001',
                        'synthetic_rain-test.array_record-00000-of-00001'}
  assert first == second


def test_splits_counts_and_features(two_builds):
  builder = two_builds[0]
  assert builder.info.file_format.value == 'array_record'
  tile = synthetic.TRAIN_TILE
  # The fewest tiles covering each scaled photo, one rendering each (see two_builds).
  tiles = sum(math.ceil(h / tile) * math.ceil(w / tile)
              for h, w, _ in (synthetic.load_photo(p).shape for p in synthetic.TRAIN_PHOTOS))
  assert builder.info.splits['train'].num_examples == tiles
  assert (builder.info.splits['test'].num_examples
          == len(synthetic.TEST_PHOTOS) * synthetic.TEST_DRAWS)
  source = tfds.data_source('synthetic_rain/heavy', data_dir=builder.data_dir_root,
                            split='test')
  names = set()
  for example in source:
    assert example['rainy'].dtype == np.uint8
    assert example['rainy'].shape == example['clean'].shape == (*synthetic.TEST_SIZE, 3)
    name = example['name']
    names.add(name.decode() if isinstance(name, bytes) else name)
    # Heavy rain: every test image is hard (protocol B, the metric the demo reports).
    assert metrics.evaluate_pair(example['rainy'], example['clean'])['psnr_y'] <= 22.0
  assert names == {f'{p}_r{d}.png' for p in synthetic.TEST_PHOTOS
                   for d in range(synthetic.TEST_DRAWS)}
  train = tfds.data_source('synthetic_rain/heavy', data_dir=builder.data_dir_root,
                           split='train')
  train_names = set()
  for i in range(0, len(train), 7):
    example = train[i]
    assert example['rainy'].shape == example['clean'].shape == (tile, tile, 3)
    assert not np.array_equal(example['rainy'], example['clean'])
    train_names.add(example['name'])
  assert len(train_names) == len(range(0, len(train), 7))


def test_records_hold_what_the_generator_renders(two_builds):
  source = tfds.data_source('synthetic_rain/heavy', data_dir=two_builds[0].data_dir_root,
                            split='test')
  stored = {}
  for example in source:
    name = example['name']
    stored[name.decode() if isinstance(name, bytes) else name] = example
  for name, rainy, clean in synthetic.generate_pairs('heavy', 'test'):
    np.testing.assert_array_equal(stored[name]['rainy'], rainy)
    np.testing.assert_array_equal(stored[name]['clean'], clean)


def _thumbnail(photo):
  grey = photo.mean(-1)
  h, w = grey.shape
  return grey[:h - h % 8, :w - w % 8].reshape(8, h // 8, 8, w // 8).mean((1, 3)).ravel()


def _same_scene(a, b):
  # Correlation of 8x8 grey thumbnails: robust to rescaling, recompression, small shifts.
  return np.corrcoef(_thumbnail(a), _thumbnail(b))[0, 1] > 0.9


def test_train_and_test_photos_are_disjoint():
  assert not set(synthetic.TRAIN_PHOTOS) & set(synthetic.TEST_PHOTOS)
  photos = {name: synthetic.load_photo(name)
            for name in synthetic.TRAIN_PHOTOS + synthetic.TEST_PHOTOS}
  for name, photo in photos.items():
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[-1] == 3, name
    assert max(photo.shape[:2]) <= synthetic.MAX_SIDE, name
  # Different scenes, not merely different names.
  for test_name in synthetic.TEST_PHOTOS:
    for train_name in synthetic.TRAIN_PHOTOS:
      assert not _same_scene(photos[test_name], photos[train_name]), (test_name, train_name)


def test_same_scene_check_catches_the_other_stereo_view():
  # The right view of the motorcycle (excluded from the dataset) is the left view's scene.
  right = data.stereo_motorcycle()[1]
  left = synthetic.load_photo('motorcycle_left')
  right = np.asarray(Image.fromarray(right).resize(left.shape[1::-1], Image.Resampling.LANCZOS))
  assert _same_scene(left, right)


def test_light_and_heavy_differ_and_rain_depends_on_the_draw():
  heavy = list(synthetic.generate_pairs('heavy', 'test'))
  light = list(synthetic.generate_pairs('light', 'test'))
  assert [n for n, _, _ in heavy] == [n for n, _, _ in light]
  for (_, rainy_h, clean_h), (_, rainy_l, clean_l) in zip(heavy, light):
    np.testing.assert_array_equal(clean_h, clean_l)
    assert (metrics.evaluate_pair(rainy_l, clean_l)['psnr_y']
            > metrics.evaluate_pair(rainy_h, clean_h)['psnr_y'])
  # Two draws over the same photo differ.
  assert not np.array_equal(heavy[0][1], heavy[1][1])
  np.testing.assert_array_equal(heavy[0][2], heavy[1][2])


def test_patterns_are_fixed_drawings_of_stripes_and_bright_grounds():
  first, again, second = synthetic.pattern(0), synthetic.pattern(0), synthetic.pattern(1)
  np.testing.assert_array_equal(first, again)
  assert first.shape == (512, 512, 3) and first.dtype == np.uint8
  assert not np.array_equal(first, second)
  cells = first.reshape(4, 128, 4, 128, 3).transpose(0, 2, 1, 3, 4).reshape(16, 128, 128, 3)
  # Some squares are one flat colour, others striped.
  spread = [c.reshape(-1, 3).std(0).max() for c in cells]
  flat = [s for s in spread if s == 0]
  striped = [s for s in spread if s > 20]
  assert flat and striped
  np.testing.assert_array_equal(synthetic.load_photo('pattern_1'), second)


def test_clear_pairs_are_the_clean_images_once_each():
  heavy = {name: clean for name, _, clean in synthetic.generate_pairs('heavy', 'test')}
  clear = list(synthetic.generate_pairs(synthetic.CLEAR, 'test'))
  # One copy per test photo (nothing is drawn), each the clean crop the heavy split holds.
  assert [name for name, _, _ in clear] == [f'{p}_r0.png' for p in synthetic.TEST_PHOTOS]
  for name, rainy, clean in clear:
    np.testing.assert_array_equal(rainy, clean)
    np.testing.assert_array_equal(clean, heavy[name])
  assert synthetic.CLEAR in {c.name for c in synthetic.SyntheticRain.BUILDER_CONFIGS}
