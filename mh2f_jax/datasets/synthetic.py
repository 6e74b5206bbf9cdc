"""``synthetic_rain``: rain rendered over photos that ship with the installed packages.

Needs no download, so a fresh machine has a deraining dataset at once. Two configs,
``synthetic_rain/light`` and ``synthetic_rain/heavy``, use the presets of the same name
in :mod:`mh2f_jax.datasets.rain`; a third, ``synthetic_rain/clear``, holds the same
photos without rain (each input is its clean image), to mix into training.

Clean photos (train and test are different photos of unrelated scenes):

* train: scikit-image's ``astronaut``, ``coffee``, ``rocket``, ``retina``,
  ``hubble_deep_field``, ``immunohistochemistry``, the left view of
  ``stereo_motorcycle``, and the greyscale ``camera``, ``brick``, ``grass``, ``gravel``
  and ``page`` (textures and thin lines that are not rain), and ``PATTERNS`` drawn
  pattern images (``pattern_0`` ...: stripes, bars and flat bright areas, see
  :func:`pattern`), each scaled so its longer side is at most 512 pixels, with
  ``TRAIN_DRAWS`` rain renderings each, cut into ``TRAIN_TILE`` x ``TRAIN_TILE`` tiles
  (a grid covering the whole photo; training takes random crops of the tiles);
* test: scikit-image's ``chelsea`` (the cat) and matplotlib's sample photo
  ``grace_hopper.jpg``, each cut to one ``TEST_SIZE`` crop (the same size for all, so a
  model compiles once for evaluation), with ``TEST_DRAWS`` renderings each.

(The right view of ``stereo_motorcycle`` is the same scene as the left one, so it is used
nowhere.) Every rendering draws from its own generator seeded by
``(SEED, config, split, photo, draw)``, and images are stored as PNG, so every build
with the same library versions writes the same records.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterator

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from mh2f_jax import files
from mh2f_jax.datasets import rain
from mh2f_jax.datasets import builders

# Fixed seed of every rendering; changing it changes the dataset (bump VERSION).
SEED = 20210419
# Longer side of every photo after scaling (keeps streak size relative to the scene
# alike across photos of very different resolutions).
MAX_SIDE = 512
TRAIN_DRAWS = 5
# Train examples are tiles of the rendered photos: the training pipeline decodes a whole
# example for every 64x64 crop, and decoding whole photos would cost more than the demo's
# train step spends on a crop (docs/architecture.md, Design measurements).
TRAIN_TILE = 128
TEST_DRAWS = 2
# (height, width) of every test image.
TEST_SIZE = (288, 432)

# The greyscale photos (from 'camera' on) are fine bright texture and thin dark and bright
# lines, the patterns stripes and flat white: without them the model learns that any thin
# bright line or bright area is rain, and erases grass, text and stripes and greys white
# (docs/synthetic_rain.md, Do no harm).
PATTERNS = 6
TRAIN_PHOTOS = ('astronaut', 'coffee', 'rocket', 'retina', 'hubble_deep_field',
                'immunohistochemistry', 'motorcycle_left', 'camera', 'brick', 'grass',
                'gravel', 'page') + tuple(f'pattern_{i}' for i in range(PATTERNS))
TEST_PHOTOS = ('chelsea', 'grace_hopper')

# Top-left row/column of each test crop in the scaled photo, chosen to keep the subject
# (the cat's face, Grace Hopper's face) in view.
_TEST_CROP_ORIGIN = {'chelsea': (6, 9), 'grace_hopper': (88, 2)}
_CONFIG_INDEX = {'light': 0, 'heavy': 1}
# The config whose 'rainy' images are the clean ones: mixed into training, it teaches that
# an image without rain is to be left as it is.
CLEAR = 'clear'
_SPLIT_INDEX = {'train': 0, 'test': 1}


def rgb(photo: np.ndarray) -> np.ndarray:
  """``photo`` with three channels: a greyscale one repeated, others as they are."""
  return np.stack([photo] * 3, axis=-1) if photo.ndim == 2 else photo


def _skimage(name: str) -> Callable[[], np.ndarray]:
  def load() -> np.ndarray:
    from skimage import data  # pylint: disable=g-import-not-at-top
    return rgb(getattr(data, name)())
  return load


def pattern(index: int, size: int = 512, cell: int = 128) -> np.ndarray:
  """A drawn image of scene content that looks like streaks but is not rain.

  A grid of ``cell`` x ``cell`` squares (the train tiles' size, so a crop sees one), each
  filled with one of: a flat colour; hard-edged stripes; a sine grating; a few wide bars
  (railings, poles, trunks). Grounds are bright (white or grey in three squares of ten)
  except in three squares of ten, whose lines are bright on a dark ground. Stripes lie within
  about 15 degrees of vertical in three squares of four, at any angle otherwise, with
  periods of 4 to 40 pixels.

  Args:
    index: which image (its own seeded generator).
    size: side of the image.
    cell: side of a square.

  Returns:
    uint8 (size, size, 3).
  """
  rng = np.random.default_rng([SEED, 1000, index])
  yy, xx = np.mgrid[0:cell, 0:cell].astype(np.float32)
  image = np.empty((size, size, 3), np.float32)
  for top in range(0, size, cell):
    for left in range(0, size, cell):
      ground, ink = rng.uniform(150, 255, 3), rng.uniform(0, 255, 3)
      if rng.uniform() < 0.3:  # White or light grey, as paper, sky, paint.
        ground[:] = rng.uniform(200, 255)
      if rng.uniform() < 0.3:  # Bright lines on a dark ground: the most rain-like.
        ground, ink = rng.uniform(0, 100, 3), rng.uniform(180, 255, 3)
      tilt = rng.normal(0, 15) if rng.uniform() < 0.75 else rng.uniform(-90, 90)
      across = xx * np.cos(np.radians(tilt)) + yy * np.sin(np.radians(tilt))
      period, kind = rng.uniform(4, 40), rng.integers(4)
      if kind == 0:
        t = np.zeros_like(across)
      elif kind == 1:
        t = ((across % period) < rng.uniform(0.15, 0.6) * period).astype(np.float32)
      elif kind == 2:
        t = 0.5 + 0.5 * np.sin(2 * np.pi * across / period)
      else:
        t = np.zeros_like(across)
        for centre in rng.uniform(across.min(), across.max(), rng.integers(1, 5)):
          t[np.abs(across - centre) < rng.uniform(2, 10)] = 1
      image[top:top + cell, left:left + cell] = ground * (1 - t[..., None]) + ink * t[..., None]
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _motorcycle_left() -> np.ndarray:
  from skimage import data  # pylint: disable=g-import-not-at-top
  return data.stereo_motorcycle()[0]


def _grace_hopper() -> np.ndarray:
  from matplotlib import cbook  # pylint: disable=g-import-not-at-top
  with Image.open(cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)) as img:
    return np.asarray(img.convert('RGB'))


_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    'astronaut': _skimage('astronaut'),
    'coffee': _skimage('coffee'),
    'rocket': _skimage('rocket'),
    'retina': _skimage('retina'),
    'hubble_deep_field': _skimage('hubble_deep_field'),
    'immunohistochemistry': _skimage('immunohistochemistry'),
    'motorcycle_left': _motorcycle_left,
    **{name: _skimage(name) for name in ('camera', 'brick', 'grass', 'gravel', 'page')},
    **{f'pattern_{i}': functools.partial(pattern, i) for i in range(PATTERNS)},
    'chelsea': _skimage('chelsea'),
    'grace_hopper': _grace_hopper,
}


def load_photo(name: str) -> np.ndarray:
  """Returns a clean photo, uint8 (H, W, 3), scaled so its longer side <= MAX_SIDE.

  Args:
    name: one of ``TRAIN_PHOTOS`` or ``TEST_PHOTOS``.

  Returns:
    The photo. Scaling uses Pillow's Lanczos filter (integer arithmetic on uint8, so it
    gives the same pixels everywhere).
  """
  return scaled(_LOADERS[name]())


def scaled(photo: np.ndarray) -> np.ndarray:
  """``photo``'s first three channels, scaled (Lanczos) so its longer side <= MAX_SIDE."""
  photo = np.ascontiguousarray(photo[..., :3])
  height, width = photo.shape[:2]
  scale = MAX_SIDE / max(height, width)
  if scale < 1:
    size = (round(width * scale), round(height * scale))
    photo = np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS))
  return photo


def test_photo(name: str) -> np.ndarray:
  """The clean ``TEST_SIZE`` crop of a test photo, as the test split holds it.

  Args:
    name: one of ``TEST_PHOTOS``.

  Returns:
    uint8 (height, width, 3).
  """
  return _test_crop(name, load_photo(name))


def _test_crop(name: str, photo: np.ndarray) -> np.ndarray:
  top, left = _TEST_CROP_ORIGIN[name]
  height, width = TEST_SIZE
  crop = photo[top:top + height, left:left + width]
  assert crop.shape[:2] == TEST_SIZE, (name, photo.shape)
  return crop


def _tile_origins(length: int, tile: int) -> list[int]:
  # Fewest tiles covering the axis, spread evenly (the last ones overlap a little).
  count = -(-length // tile)
  return sorted({round(i * (length - tile) / max(count - 1, 1)) for i in range(count)})


def generate_pairs(preset: str, split: str) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
  """Yields ``(name, rainy, clean)`` uint8 pairs of one split, in a fixed order.

  Args:
    preset: 'light', 'heavy', or CLEAR ('clear': the clean image as the input).
    split: 'train' or 'test'.

  Yields:
    ``name`` and the two (H, W, 3) uint8 images. Test names are like
    ``'chelsea_r1.png'`` (photo, rendering); train names like
    ``'coffee_r3_y128_x256.png'`` (photo, rendering, tile origin).
  """
  photos = TRAIN_PHOTOS if split == 'train' else TEST_PHOTOS
  draws = TRAIN_DRAWS if split == 'train' else TEST_DRAWS
  if preset == CLEAR:
    draws = 1  # Nothing is drawn: more copies would be the same pairs.
  for photo_index, photo_name in enumerate(photos):
    clean = load_photo(photo_name)
    if split == 'test':
      clean = _test_crop(photo_name, clean)
    for draw in range(draws):
      if preset == CLEAR:
        rainy = clean
      else:
        rng = np.random.default_rng(
            [SEED, _CONFIG_INDEX[preset], _SPLIT_INDEX[split], photo_index, draw])
        rainy = rain.add_rain(clean, rng, preset)
      if split == 'test':
        yield f'{photo_name}_r{draw}.png', rainy, clean
        continue
      # Rain is rendered over the whole photo first, so streaks run across tile borders
      # as they would in a crop of a larger image.
      for top in _tile_origins(clean.shape[0], TRAIN_TILE):
        for left in _tile_origins(clean.shape[1], TRAIN_TILE):
          window = np.s_[top:top + TRAIN_TILE, left:left + TRAIN_TILE]
          yield (f'{photo_name}_r{draw}_y{top}_x{left}.png', np.ascontiguousarray(rainy[window]),
                 np.ascontiguousarray(clean[window]))


def _encode(image: np.ndarray) -> bytes:
  # Level 1: a few times faster than the default, files about 10 % larger.
  return files.encode_png(image, compress_level=1)


@dataclasses.dataclass
class SyntheticRainConfig(tfds.core.BuilderConfig):
  """A config names the :data:`mh2f_jax.datasets.rain.PRESETS` entry it renders."""
  preset: str = 'heavy'


class SyntheticRain(builders.LocalBuildMessages, tfds.core.GeneratorBasedBuilder):
  """Synthetic rain over bundled photos; configs ``light``, ``heavy`` and ``clear``."""

  name = 'synthetic_rain'
  VERSION = tfds.core.Version('5.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'First release.',
      '2.0.0': 'Rain of random look per image: direction up to 35 degrees off vertical '
               'either way, streak width 1-4 px, length, density, brightness, defocus '
               'and an optional veil (mh2f_jax.datasets.rain presets of this version).',
      '3.0.0': 'Rain closer to real rain: direction up to 45 degrees off vertical, '
               'streaks up to 6 px wide, and layers of aliased one-pixel lines that the '
               'defocus leaves sharp; heavy rain covers more of every image (0.10-0.30 '
               'per layer).',
      '4.0.0': 'Five greyscale train photos of texture and thin lines (camera, brick, '
               'grass, gravel, page) and two drawn images of stripes, bars and flat '
               'bright areas, so the model learns what is not rain; 5 renderings per '
               'train photo instead of 8.',
      '5.0.0': 'Six drawn pattern images instead of two (the light and heavy train splits '
               'change); the clear config, whose inputs are the clean images.',
  }
  BUILDER_CONFIGS = [
      SyntheticRainConfig(
          name='light', preset='light',
          description='One layer of sparse streaks of random direction, width and length '
                      '(about Rain200L difficulty).'),
      SyntheticRainConfig(
          name='heavy', preset='heavy',
          description='Two or three layers of streaks of random direction, width, length '
                      'and density, defocus, a veil on half of the images '
                      '(rainy input about 17 dB PSNR-Y on average).'),
      SyntheticRainConfig(
          name=CLEAR, preset=CLEAR,
          description='No rain: each input is its clean image (one copy per photo), for '
                      'mixing into training so that a model learns to leave an image '
                      'without rain as it is.'),
  ]
  DEFAULT_CONFIG_NAME = 'heavy'

  def __init__(self, *, file_format=None, **kwargs):
    # array_record is the only format that builds and reads without TensorFlow.
    super().__init__(file_format=file_format or 'array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Synthetic rain (mh2f_jax.datasets.rain) over photos bundled with scikit-image and '
            f'matplotlib. Train photos: {", ".join(TRAIN_PHOTOS)} ({TRAIN_DRAWS} '
            f'renderings each, cut into {TRAIN_TILE}x{TRAIN_TILE} tiles). Test photos: '
            f'{", ".join(TEST_PHOTOS)} ({TEST_DRAWS} renderings each of a '
            f'{TEST_SIZE[0]}x{TEST_SIZE[1]} crop).'),
        features=tfds.features.FeaturesDict({
            'rainy': tfds.features.Image(shape=(None, None, 3), dtype=np.uint8),
            'clean': tfds.features.Image(shape=(None, None, 3), dtype=np.uint8),
            'name': tfds.features.Text(),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split) for split in ('train', 'test')}

  def _generate_examples(self, split: str) -> Iterator[tuple[str, dict]]:
    # Encoded PNG bytes, never arrays: arrays would make TFDS encode with TensorFlow.
    for name, rainy, clean in generate_pairs(self.builder_config.preset, split):
      yield name, {'rainy': _encode(rainy), 'clean': _encode(clean), 'name': name}
