"""The images both no-reference parity tests score: photos that ship with scikit-image,
and blurred and noisy versions of them like a deraining output, and what the LIVE
releases, run in GNU Octave, give for exactly these images (octave/reference.json,
made by octave/make_reference.py; octave/README.md says how).
"""

import functools
import json
import pathlib

import numpy as np
from scipy import ndimage
from skimage import data as skdata


def _blur(img, sigma):
  out = np.stack([ndimage.gaussian_filter(img[..., c].astype(np.float64), sigma)
                  for c in range(img.shape[-1])], axis=-1)
  return out


def _noise(img, std, seed):
  rng = np.random.default_rng(seed)
  return img.astype(np.float64) + std * rng.standard_normal(img.shape)


def _u8(x):
  return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _flat(img, rows, cols, value):
  """A copy of img with a rectangle of one grey level."""
  out = img.copy()
  out[rows, cols] = value
  return out


def parity_images():
  """Name -> image: photos, and blurred/noisy ones like a deraining output."""
  astro, coffee = skdata.astronaut(), skdata.coffee()
  return {
      'camera': skdata.camera(),
      'astronaut': astro,
      'coffee': coffee,
      'chelsea': skdata.chelsea(),  # 300x451: cropped to 288x384
      'rocket': skdata.rocket(),
      'astronaut_blur2': _u8(_blur(astro, 2.0)),
      'astronaut_noise12': _u8(_noise(astro, 12.0, 0)),
      'coffee_blur1_noise5': _u8(_noise(_blur(coffee, 1.0), 5.0, 1)),
      # Float input: no rounding anywhere, as for a MATLAB double image.
      'astronaut_blur1_float': np.clip(_blur(astro, 1.0), 0, 255),
      # Wide flat areas (grey 203 and 190, Y 190 and 179), where image - mu is
      # rounding noise and the scores depend on the order of the filter's sums
      # (see nss.octave_filter).
      'astronaut_flat': _flat(astro, slice(300, None), slice(330, None), 203),
      'coffee_flat': _flat(coffee, slice(None, 170), slice(None, 260), 190),
  }


@functools.lru_cache(maxsize=1)
def octave_reference():
  """The releases' scores of parity_images() in Octave, to 17 digits.

  Returns:
    ``{'niqe': {name: [gray, y]}, 'brisque': {name: score},
    'brisque_features': {name: [36 values]}, 'setup': ..., ...}``.
  """
  path = pathlib.Path(__file__).resolve().parent / 'octave' / 'reference.json'
  return json.loads(path.read_text())
