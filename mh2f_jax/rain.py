"""Synthetic rain: bright, thin, motion-blurred streaks composited over a clean photo.

The renderer follows the recipe behind the common synthetic deraining sets (Rain100/200,
Rain1400): random seed points, stretched by a motion-blur line kernel into streaks,
thickened by a small Gaussian, then blended over the photo with a screen blend (which
brightens like light scattered by drops and never exceeds white). The heavy preset adds
several streak layers in different directions and a faint rain veil (the accumulated
fog of distant drops), as in heavy-rain renderings.

Everything is drawn from the ``numpy.random.Generator`` passed in, so the same generator
state gives the same rainy image (for the same NumPy/SciPy versions).

Example::

  import numpy as np
  from mh2f_jax import rain
  rainy = rain.add_rain(clean_uint8, np.random.default_rng(0), preset='heavy')
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage
from scipy import signal
from skimage import draw

from mh2f_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class RainPreset:
  """How to draw one kind of rain. Lengths and widths are in pixels.

  Attributes:
    density: expected number of streaks per pixel, per layer.
    length: (min, max) streak length; each layer draws its own length in this range.
    width: (min, max) Gaussian sigma across a streak; drawn per layer. The streak keeps
      its peak brightness when widened.
    angles: one entry per streak layer: the layer's direction in degrees from vertical
      (positive leans right), added to a per-image base angle.
    angle_jitter: the per-image base angle is uniform in [-angle_jitter, angle_jitter],
      and each layer gets a further uniform jitter of a fifth of that.
    brightness: (min, max) peak intensity of a streak, drawn per streak, in [0, 1].
    opacity: (min, max) blend strength of the whole rain layer, drawn per image.
    tint: (min, max) fraction of streak colour taken from the blurred photo instead of
      white, drawn per image (streaks refract their surroundings, so they are not of one
      fixed colour).
    blur: Gaussian sigma of a final defocus of the rain layer (0 = none).
    haze: (min, max) strength of a uniform veil towards a light grey, drawn per image
      (0 = none).
  """

  density: float
  length: tuple[float, float]
  width: tuple[float, float]
  angles: tuple[float, ...]
  angle_jitter: float
  brightness: tuple[float, float]
  opacity: tuple[float, float]
  tint: tuple[float, float] = (0.0, 0.0)
  blur: float = 0.0
  haze: tuple[float, float] = (0.0, 0.0)

  def __post_init__(self):
    if not self.angles:
      raise ValueError('RainPreset.angles must name at least one layer direction')
    for field in ('length', 'width', 'brightness', 'opacity', 'tint', 'haze'):
      lo, hi = getattr(self, field)
      if lo > hi or lo < 0:
        raise ValueError(f'RainPreset.{field} must be a (min, max) range with 0 <= min <= '
                         f'max, got {(lo, hi)}')
    if self.density <= 0 or self.length[0] < 1:
      raise ValueError('RainPreset.density must be > 0 and RainPreset.length >= 1')


PRESETS: dict[str, RainPreset] = {
    # Sparse, thin streaks in one direction; rainy inputs about as hard as Rain200L's.
    'light': RainPreset(
        density=0.0034,
        length=(18.0, 32.0),
        width=(0.4, 0.6),
        angles=(0.0,),
        angle_jitter=20.0,
        brightness=(0.3, 0.75),
        opacity=(0.75, 0.9),
        tint=(0.0, 0.2),
    ),
    # Dense streaks in three directions of different lengths (near drops long, far
    # ones short) and a faint veil; rainy inputs score below 22 dB PSNR-Y.
    'heavy': RainPreset(
        density=0.0022,
        length=(20.0, 44.0),
        width=(0.5, 1.0),
        angles=(-18.0, 0.0, 14.0),
        angle_jitter=25.0,
        brightness=(0.4, 0.9),
        opacity=(0.8, 0.95),
        tint=(0.0, 0.25),
        blur=0.5,
        haze=(0.04, 0.1),
    ),
}


def line_kernel(length: float, angle: float, width: float) -> np.ndarray:
  """A motion-blur kernel: an anti-aliased line with tapered ends, peak value 1.

  Args:
    length: line length in pixels (>= 1).
    angle: direction in degrees from vertical, positive leaning right (top to the right).
    width: Gaussian sigma across the line in pixels (0 = one-pixel line).

  Returns:
    A square float64 kernel of odd size with maximum 1.
  """
  half = length / 2
  theta = math.radians(angle)
  # Row grows downwards: a streak leaning right goes up-right from its centre.
  dr, dc = -half * math.cos(theta), half * math.sin(theta)
  radius = int(math.ceil(max(abs(dr), abs(dc)) + 3 * width)) + 1
  size = 2 * radius + 1
  kernel = np.zeros((size, size))
  rr, cc, val = draw.line_aa(int(round(radius - dr)), int(round(radius - dc)),
                             int(round(radius + dr)), int(round(radius + dc)))
  # Taper the ends (a raised-cosine profile along the line), as a drop's trace fades in
  # and out during the exposure; hard-ended streaks look stamped.
  t = np.hypot(rr - radius, cc - radius) / max(half, 1.0)
  kernel[rr, cc] = val * (0.5 + 0.5 * np.cos(np.pi * np.clip(t, 0.0, 1.0))) ** 0.5
  if width > 0:
    kernel = ndimage.gaussian_filter(kernel, width, mode='constant')
  return kernel / kernel.max()


def rain_layer(height: int, width: int, rng: np.random.Generator,
               preset: RainPreset) -> np.ndarray:
  """Draws the rain streak intensity map of one image, before blending.

  Args:
    height: image height.
    width: image width.
    rng: the random generator (consumed).
    preset: the kind of rain.

  Returns:
    float32 array (height, width) in [0, 1].
  """
  base_angle = rng.uniform(-preset.angle_jitter, preset.angle_jitter)
  total = np.zeros((height, width), np.float32)
  for layer_angle in preset.angles:
    angle = base_angle + layer_angle + rng.uniform(-1, 1) * preset.angle_jitter / 5
    length = rng.uniform(*preset.length)
    sigma = rng.uniform(*preset.width)
    kernel = line_kernel(length, angle, sigma)
    # Seeds over a margin as large as the kernel, so streaks enter from the borders
    # instead of thinning out near them.
    pad = kernel.shape[0] // 2
    seeds = np.zeros((height + 2 * pad, width + 2 * pad), np.float32)
    n = rng.poisson(preset.density * seeds.size)
    flat = rng.integers(0, seeds.size, size=n)
    np.maximum.at(seeds.reshape(-1), flat, rng.uniform(*preset.brightness, size=n))
    # FFT convolution in float32: the streak map needs no more precision, and it halves
    # the cost of the largest step.
    streaks = signal.fftconvolve(seeds, kernel.astype(np.float32), mode='same')
    # FFT round-off leaves tiny negative values where there is no streak.
    total += np.clip(streaks[pad:pad + height, pad:pad + width], 0.0, None)
  if preset.blur > 0:
    total = ndimage.gaussian_filter(total, preset.blur)
  return np.clip(total, 0.0, 1.0)


def _as_float(clean: np.ndarray) -> np.ndarray:
  clean = np.asarray(clean)
  if clean.ndim != 3 or clean.shape[-1] != 3:
    raise UserError(f'add_rain needs an RGB image of shape (H, W, 3), got {clean.shape}')
  if clean.dtype == np.uint8:
    return clean.astype(np.float32) / 255.0
  if np.issubdtype(clean.dtype, np.floating):
    return clean.astype(np.float32)
  raise UserError(f'add_rain needs a uint8 or float image, got dtype {clean.dtype}')


def add_rain(clean: np.ndarray, rng: np.random.Generator,
             preset: str | RainPreset = 'heavy') -> np.ndarray:
  """Renders synthetic rain over a clean RGB image.

  Args:
    clean: (H, W, 3) image, uint8 or float in [0, 1].
    rng: random generator; the same state gives the same output.
    preset: a name in :data:`PRESETS` (``'light'``, ``'heavy'``) or a
      :class:`RainPreset`.

  Returns:
    The rainy image, same shape and dtype as ``clean`` (floats clipped to [0, 1], uint8
    rounded).

  Raises:
    UserError: for an unknown preset name or an image that is not (H, W, 3) uint8/float.
  """
  if isinstance(preset, str):
    if preset not in PRESETS:
      raise UserError(f'unknown rain preset {preset!r}; allowed: {", ".join(PRESETS)}')
    preset = PRESETS[preset]
  image = _as_float(clean)
  height, width = image.shape[:2]
  streaks = rain_layer(height, width, rng, preset)[..., None]

  # Streak colour: white mixed with the blurred photo, so rain picks up the scene's
  # colour a little, as drops refract it.
  tint = np.float32(rng.uniform(*preset.tint))
  # A box blur costs the same for any size, unlike a wide Gaussian.
  surround = ndimage.uniform_filter(image, (17, 17, 1))
  colour = (1.0 - tint) + tint * surround
  opacity = np.float32(rng.uniform(*preset.opacity))
  # Screen blend: brightens, saturates at white, keeps dark detail visible through.
  rainy = 1.0 - (1.0 - image) * (1.0 - opacity * streaks * colour)

  haze = np.float32(rng.uniform(*preset.haze))
  if haze > 0:
    veil = np.float32(rng.uniform(0.75, 0.9))
    rainy = (1.0 - haze) * rainy + haze * veil
  rainy = np.clip(rainy, 0.0, 1.0)

  if np.asarray(clean).dtype == np.uint8:
    return np.floor(rainy * np.float32(255) + np.float32(0.5)).astype(np.uint8)
  return rainy.astype(np.asarray(clean).dtype)
