"""Natural-scene statistics shared by NIQE and BRISQUE, as the LIVE releases compute them.

Both measures normalise an image by its local mean and contrast (the "MSCN"
coefficients) and fit generalised Gaussian distributions to the result by
looking the moment ratio up in a table of shapes 0.2, 0.201, ..., 10. Every
step here follows the MATLAB code of the releases, including how it treats
empty selections (NaN) and ties (the first minimum), because the scores
compared across papers are those of the MATLAB code.
"""

import functools

import numpy as np
from scipy import ndimage
from scipy import special

# MATLAB's rgb2gray weights (the first row of the inverse NTSC matrix, to the
# precision MATLAB stores them).
RGB2GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
# MATLAB's rgb2ycbcr, Y row, for 8-bit data (ITU-R BT.601, studio range),
# scaled as MATLAB scales it (a product with 1/255, not a division).
RGB2Y = (1 / 255) * np.array([65.481, 128.553, 24.966])
Y_OFFSET = 16.0


class ImageTooSmall(ValueError):
  """The image is too small for the measure; ``reason`` says why.

  Attributes:
    reason: A one-line explanation fit for a results table.
  """

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


def _round_half_away(x: np.ndarray) -> np.ndarray:
  """MATLAB's conversion to uint8: round half away from zero, saturate."""
  return np.clip(np.floor(x + 0.5), 0, 255)


def round_to_uint8(arr: np.ndarray) -> np.ndarray:
  """MATLAB ``uint8(arr)`` as a uint8 array (a no-op on uint8 input)."""
  if arr.dtype == np.uint8:
    return arr
  return _round_half_away(arr).astype(np.uint8)


def check_image(image) -> np.ndarray:
  """Validates an image and returns it as float64, with its uint8-ness noted.

  Args:
    image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``; uint8, or float in
      [0, 255].

  Returns:
    The image as a float64 array of shape ``(H, W)`` or ``(H, W, 3)``.

  Raises:
    ValueError: On another shape, dtype or value range.
  """
  arr = np.asarray(image)
  if arr.ndim == 3 and arr.shape[2] == 1:
    arr = arr[..., 0]
  if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
    raise ValueError(f'expected an HxW or HxWx3 image, got shape {arr.shape}')
  if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
    raise ValueError(f'expected uint8 or float in [0, 255], got {arr.dtype}')
  if arr.dtype != np.uint8:
    if not np.all(np.isfinite(arr)):
      raise ValueError('image has NaN or infinite values')
    if arr.size and (arr.min() < 0 or arr.max() > 255):
      raise ValueError('float images must lie in [0, 255] '
                       f'(got {arr.min():.4g}..{arr.max():.4g})')
  return arr


def _weighted_sum(arr: np.ndarray, weights: np.ndarray,
                  offset: float = 0.0) -> np.ndarray:
  """``w0*R + w1*G + w2*B + offset``, in that order, as MATLAB's imlincomb.

  A matrix product would be quicker, but its rounding depends on the memory
  layout; uint8 results are rounded to integers afterwards, so a value that
  lands on x.5 must come out the same every time.
  """
  rgb = arr.astype(np.float64)
  out = weights[0] * rgb[..., 0] + weights[1] * rgb[..., 1]
  out = out + weights[2] * rgb[..., 2]
  return out + offset if offset else out


def rgb_to_gray(arr: np.ndarray) -> np.ndarray:
  """MATLAB ``rgb2gray``: on uint8 input the result is rounded to uint8 values.

  Args:
    arr: ``(H, W, 3)`` uint8 or float array.

  Returns:
    ``(H, W)`` float64 grey values.
  """
  gray = _weighted_sum(arr, RGB2GRAY)
  return _round_half_away(gray) if arr.dtype == np.uint8 else gray


def rgb_to_y(arr: np.ndarray) -> np.ndarray:
  """Y of MATLAB ``rgb2ycbcr`` (16..235); rounded on uint8 input, as MATLAB does.

  Args:
    arr: ``(H, W, 3)`` uint8 or float array in [0, 255].

  Returns:
    ``(H, W)`` float64 Y values.
  """
  y = _weighted_sum(arr, RGB2Y, Y_OFFSET)
  return _round_half_away(y) if arr.dtype == np.uint8 else y


def gaussian_window() -> np.ndarray:
  """MATLAB ``fspecial('gaussian', 7, 7/6)``, normalised to sum 1."""
  x = np.arange(-3, 4, dtype=np.float64)
  g = np.exp(-(x[:, None]**2 + x[None, :]**2) / (2 * (7 / 6)**2))
  return g / g.sum()


def mscn(image: np.ndarray, border: str) -> tuple[np.ndarray, np.ndarray]:
  """Mean-subtracted contrast-normalised coefficients and the local deviation.

  Args:
    image: ``(H, W)`` float64 image.
    border: 'replicate' (NIQE's ``imfilter(..., 'replicate')``) or 'zero'
      (BRISQUE's ``filter2(..., 'same')``).

  Returns:
    ``(structdis, sigma)``: ``(image - mu) / (sigma + 1)`` and ``sigma``.
  """
  mode = {'replicate': 'nearest', 'zero': 'constant'}[border]
  window = gaussian_window()
  mu = ndimage.correlate(image, window, mode=mode, cval=0.0)
  var = ndimage.correlate(image * image, window, mode=mode, cval=0.0) - mu * mu
  sigma = np.sqrt(np.abs(var))
  return (image - mu) / (sigma + 1), sigma


@functools.lru_cache(maxsize=1)
def _shape_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The releases' table ``gam = 0.2:0.001:10`` and its two moment ratios."""
  # MATLAB's colon operator builds the table from both ends; the values agree
  # to the last bit or so, which moves no minimum but an exact tie.
  gam = 0.2 + np.arange(9801) * 0.001
  g1, g2, g3 = (special.gamma(k / gam) for k in (1.0, 2.0, 3.0))
  return gam, g2**2 / (g1 * g3), g1 * g3 / g2**2


def _argmin(values: np.ndarray) -> int:
  """MATLAB ``[~, i] = min(v)``: NaNs ignored, first minimum, 1st if all NaN."""
  if np.all(np.isnan(values)):
    return 0
  return int(np.nanargmin(values))


def _nan_mean(v: np.ndarray) -> float:
  """MATLAB ``mean`` of a possibly empty vector (NaN when empty)."""
  return float(v.sum() / v.size) if v.size else float('nan')


def fit_aggd(vec: np.ndarray) -> tuple[float, float, float]:
  """``estimateaggdparam.m``: shape and left/right deviations of an AGGD.

  Args:
    vec: 1-D samples.

  Returns:
    ``(alpha, leftstd, rightstd)``; the deviations are NaN when one side has no
    samples, and alpha is then 0.2, as in MATLAB.
  """
  gam, r_gam, _ = _shape_table()
  with np.errstate(divide='ignore', invalid='ignore'):
    leftstd = np.sqrt(_nan_mean(vec[vec < 0]**2))
    rightstd = np.sqrt(_nan_mean(vec[vec > 0]**2))
    gammahat = leftstd / rightstd
    rhat = _nan_mean(np.abs(vec))**2 / _nan_mean(vec**2)
    rhatnorm = (rhat * (gammahat**3 + 1) * (gammahat + 1)) / (gammahat**2 + 1)**2
    alpha = gam[_argmin((r_gam - rhatnorm)**2)]
  return float(alpha), float(leftstd), float(rightstd)


def fit_ggd(vec: np.ndarray) -> tuple[float, float]:
  """``estimateggdparam.m`` (BRISQUE): shape and deviation of a GGD.

  Args:
    vec: 1-D samples.

  Returns:
    ``(shape, sigma)``.
  """
  gam, _, r_gam = _shape_table()
  with np.errstate(divide='ignore', invalid='ignore'):
    sigma_sq = _nan_mean(vec**2)
    rho = sigma_sq / _nan_mean(np.abs(vec))**2
    shape = gam[_argmin(np.abs(rho - r_gam))]
  return float(shape), float(np.sqrt(sigma_sq))


def gamma(x: float) -> float:
  """The Gamma function of a scalar, as a Python float."""
  return float(special.gamma(x))
