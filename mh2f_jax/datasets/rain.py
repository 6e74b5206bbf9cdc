"""Synthetic rain: motion-blurred streaks of random look composited over a clean photo.

The renderer follows the recipe behind the common synthetic deraining sets (Rain100/200,
Rain1400): random seed points, stretched by a motion-blur line kernel into streaks,
widened by a small Gaussian, then blended over the photo with a screen blend (which
brightens like light scattered by drops and never exceeds white). A model trained on one
narrow look of rain learns that look only, so every image draws its own look: one or
more streak layers, each with its own direction (up to ``angle`` degrees off vertical,
either way: 45 in the presets, as wind slants real rain), streak width (1 to 6 pixels in
the presets), length and density, a random brightness per streak, a random defocus of
the whole rain, and sometimes a veil (the fog of distant drops). Some layers are drawn
as aliased one-pixel lines that skip the defocus: the hard, jagged streaks of a short
exposure or a resized photo, which a renderer that always anti-aliases and blurs never
shows.

Everything is drawn from the ``numpy.random.Generator`` passed in, so the same generator
state gives the same rainy image (for the same NumPy/SciPy versions).

Example::

  import numpy as np
  from mh2f_jax.datasets import rain
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

# Full width at half maximum of a Gaussian, in units of its sigma.
_FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


@dataclasses.dataclass(frozen=True)
class RainPreset:
  """The ranges one kind of rain is drawn from. Lengths and widths are in pixels.

  Ranges are (min, max); a value is drawn uniformly in it unless said otherwise.

  Attributes:
    layers: (min, max) number of streak layers of an image, inclusive. Every layer
      draws its own direction, length, width and density.
    coverage: (min, max) fraction of the image a layer's streaks cover, drawn
      log-uniformly per layer; the number of streaks (density) is
      ``coverage * pixels / (length * width)``, so short or thin streaks come in
      larger numbers.
    length: (min, max) streak length, drawn log-uniformly per layer.
    width: (min, max) streak width (full width at half maximum; 1 is a one-pixel
      line), drawn per layer. A streak keeps its peak brightness when widened.
    angle: every layer's direction is within ``angle`` degrees of vertical, either way.
    spread: layers of one image differ from the image's base direction by up to
      ``spread`` degrees (the base is drawn within ``angle - spread``).
    brightness: (min, max) peak intensity of a streak, drawn per streak, in [0, 1].
    opacity: (min, max) blend strength of the whole rain, drawn per image.
    tint: (min, max) fraction of streak colour taken from the blurred photo instead of
      white, drawn per image (streaks refract their surroundings, so they are not of one
      fixed colour).
    blur: (min, max) Gaussian sigma of a defocus of the whole rain, drawn per image.
    veil: probability that an image gets a veil towards a light grey.
    haze: (min, max) strength of that veil, drawn per veiled image.
    aliased: probability that a layer is drawn as aliased one-pixel lines (no
      anti-aliasing, no widening) that the defocus of the whole rain leaves sharp.
  """

  layers: tuple[int, int]
  coverage: tuple[float, float]
  length: tuple[float, float]
  width: tuple[float, float]
  angle: float
  spread: float
  brightness: tuple[float, float]
  opacity: tuple[float, float]
  tint: tuple[float, float] = (0.0, 0.0)
  blur: tuple[float, float] = (0.0, 0.0)
  veil: float = 0.0
  haze: tuple[float, float] = (0.0, 0.0)
  aliased: float = 0.0

  def __post_init__(self):
    for field in ('layers', 'coverage', 'length', 'width', 'brightness', 'opacity', 'tint',
                  'blur', 'haze'):
      lo, hi = getattr(self, field)
      if lo > hi or lo < 0:
        raise ValueError(f'RainPreset.{field} must be a (min, max) range with 0 <= min <= '
                         f'max, got {(lo, hi)}')
    if self.layers[0] < 1 or self.coverage[0] <= 0:
      raise ValueError('RainPreset.layers must be >= 1 and RainPreset.coverage > 0')
    if self.length[0] < 1 or self.width[0] < 1:
      raise ValueError('RainPreset.length and RainPreset.width must be >= 1 pixel')
    if not 0 <= self.spread <= self.angle < 90:
      raise ValueError(f'RainPreset needs 0 <= spread <= angle < 90, got spread '
                       f'{self.spread}, angle {self.angle}')
    for field in ('veil', 'aliased'):
      if not 0 <= getattr(self, field) <= 1:
        raise ValueError(f'RainPreset.{field} is a probability, got {getattr(self, field)}')


PRESETS: dict[str, RainPreset] = {
    # One layer of sparse streaks; rainy inputs about as hard as Rain200L's.
    'light': RainPreset(
        layers=(1, 1),
        coverage=(0.09, 0.22),
        length=(8.0, 48.0),
        width=(1.0, 2.5),
        angle=45.0,
        spread=0.0,
        brightness=(0.3, 0.8),
        opacity=(0.7, 0.9),
        tint=(0.0, 0.2),
        blur=(0.0, 0.5),
        aliased=0.1,
    ),
    # Two or three layers of any look, from short drizzle to long wide streaks and jagged
    # one-pixel lines, often defocused, half of the images veiled; rainy inputs score
    # about 17 dB PSNR-Y on average (docs/synthetic_rain.md).
    'heavy': RainPreset(
        layers=(2, 3),
        coverage=(0.1, 0.3),
        length=(4.0, 64.0),
        width=(1.0, 6.0),
        angle=45.0,
        spread=12.0,
        brightness=(0.3, 1.0),
        opacity=(0.7, 0.95),
        tint=(0.0, 0.25),
        blur=(0.0, 1.0),
        veil=0.5,
        haze=(0.03, 0.12),
        aliased=0.25,
    ),
}


def line_kernel(length: float, angle: float, width: float,
                aliased: bool = False) -> np.ndarray:
  """A motion-blur kernel: an anti-aliased line with tapered ends, peak value 1.

  Args:
    length: line length in pixels (>= 1).
    angle: direction in degrees from vertical, positive leaning right (top to the right).
    width: line width in pixels, the full width at half maximum of its cross-section
      (<= 1: a one-pixel line).
    aliased: draw a jagged one-pixel line of constant value instead (``width`` and the
      taper are ignored).

  Returns:
    A square float64 kernel of odd size with maximum 1.
  """
  half = length / 2
  theta = math.radians(angle)
  # A one-pixel anti-aliased line widened by a Gaussian of this sigma has about the
  # requested width at half maximum.
  sigma = math.sqrt(max(width ** 2 - 1.0, 0.0)) / _FWHM_PER_SIGMA
  # Row grows downwards: a streak leaning right goes up-right from its centre.
  dr, dc = -half * math.cos(theta), half * math.sin(theta)
  radius = int(math.ceil(max(abs(dr), abs(dc)) + 3 * sigma)) + 1
  size = 2 * radius + 1
  kernel = np.zeros((size, size))
  if aliased:
    rr, cc = draw.line(int(round(radius - dr)), int(round(radius - dc)),
                       int(round(radius + dr)), int(round(radius + dc)))
    kernel[rr, cc] = 1.0
    return kernel
  rr, cc, val = draw.line_aa(int(round(radius - dr)), int(round(radius - dc)),
                             int(round(radius + dr)), int(round(radius + dc)))
  # Taper the ends (a raised-cosine profile along the line), as a drop's trace fades in
  # and out during the exposure; hard-ended streaks look stamped.
  t = np.hypot(rr - radius, cc - radius) / max(half, 1.0)
  kernel[rr, cc] = val * (0.5 + 0.5 * np.cos(np.pi * np.clip(t, 0.0, 1.0))) ** 0.5
  if sigma > 0:
    kernel = ndimage.gaussian_filter(kernel, sigma, mode='constant')
  return kernel / kernel.max()


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
  return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _streaks(height: int, width: int, rng: np.random.Generator, preset: RainPreset,
             angle: float, aliased: bool) -> np.ndarray:
  """One layer: seeds of random brightness convolved with one line kernel."""
  length = _log_uniform(rng, *preset.length)
  streak_width = 1.0 if aliased else rng.uniform(*preset.width)
  coverage = _log_uniform(rng, *preset.coverage)
  kernel = line_kernel(length, angle, streak_width, aliased)
  # Seeds over a margin as large as the kernel, so streaks enter from the borders
  # instead of thinning out near them.
  pad = kernel.shape[0] // 2
  seeds = np.zeros((height + 2 * pad, width + 2 * pad), np.float32)
  n = rng.poisson(coverage * seeds.size / (length * streak_width))
  flat = rng.integers(0, seeds.size, size=n)
  np.maximum.at(seeds.reshape(-1), flat, rng.uniform(*preset.brightness, size=n))
  # FFT convolution in float32: the streak map needs no more precision, and it halves
  # the cost of the largest step.
  streaks = signal.fftconvolve(seeds, kernel.astype(np.float32), mode='same')
  # FFT round-off leaves tiny negative values where there is no streak.
  return np.clip(streaks[pad:pad + height, pad:pad + width], 0.0, None)


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
  num_layers = int(rng.integers(preset.layers[0], preset.layers[1] + 1))
  base_angle = rng.uniform(-1, 1) * (preset.angle - preset.spread)
  total = np.zeros((height, width), np.float32)
  sharp = np.zeros((height, width), np.float32)
  for _ in range(num_layers):
    angle = base_angle + rng.uniform(-1, 1) * preset.spread
    # Draw the kind only when the preset has aliased layers, so presets without them
    # consume the generator as before.
    aliased = preset.aliased > 0 and rng.uniform() < preset.aliased
    layer = _streaks(height, width, rng, preset, angle, aliased)
    if aliased:
      sharp += layer
    else:
      total += layer
  blur = rng.uniform(*preset.blur)
  if blur > 0:
    total = ndimage.gaussian_filter(total, blur)
  return np.clip(total + sharp, 0.0, 1.0)


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

  veiled = rng.uniform() < preset.veil
  haze = np.float32(rng.uniform(*preset.haze)) if veiled else np.float32(0)
  if haze > 0:
    veil = np.float32(rng.uniform(0.75, 0.9))
    rainy = (1.0 - haze) * rainy + haze * veil
  rainy = np.clip(rainy, 0.0, 1.0)

  if np.asarray(clean).dtype == np.uint8:
    return np.floor(rainy * np.float32(255) + np.float32(0.5)).astype(np.uint8)
  return rainy.astype(np.asarray(clean).dtype)
