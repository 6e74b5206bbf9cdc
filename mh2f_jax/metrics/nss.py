"""Natural-scene statistics shared by NIQE and BRISQUE, as the LIVE releases compute them.

Both measures normalise an image by its local mean and contrast (the "MSCN"
coefficients) and fit generalised Gaussian distributions to the result by
looking the moment ratio up in a table of shapes 0.2, 0.201, ..., 10. Every
step here follows the MATLAB code of the releases, including how it treats
empty selections (NaN) and ties (the first minimum), because the scores
compared across papers are those of the MATLAB code.
"""

import functools
import math

import numpy as np
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
      [0, 255], the scale on which the MATLAB releases read a double image.

  Returns:
    The image as a float64 array of shape ``(H, W)`` or ``(H, W, 3)``.

  Raises:
    ValueError: On another shape, dtype or value range, and on a float image
      whose values all lie in [0, 1]: that is the 0..1 scale of the rest of the
      package, which the releases would score as a nearly black image.
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
    if arr.size and arr.max() <= 1:
      raise ValueError(
          'float images are read on the 0..255 scale, as the MATLAB releases read a '
          f'double image; this one lies in [{arr.min():.4g}, {arr.max():.4g}], the '
          '0..1 scale: multiply it by 255, pass uint8, or use no_reference.Scorer')
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


def _sequential_sum(values: np.ndarray) -> float:
  """``sum`` of a vector as MATLAB and Octave add it: left to right."""
  total = 0.0
  for v in np.asarray(values, np.float64).ravel():
    total = total + v
  return total


def gaussian_window() -> np.ndarray:
  """``fspecial('gaussian', 7, 7/6)`` normalised again by ``sum(sum(.))``.

  Both releases divide ``fspecial``'s window (already normalised by the sum of
  its elements in column order) by ``sum(sum(window))``; the sums are taken in
  Octave's order, so the 49 weights are those of the release bit for bit.
  """
  # The C library's exp, which Octave calls too (NumPy's vectorised exp may
  # differ from it in the last bit).
  g = np.array([[math.exp(-(x * x + y * y) / (2 * (7 / 6)**2))
                 for x in range(-3, 4)] for y in range(-3, 4)])
  g = g / _sequential_sum(g.T)  # f(:) is column-major
  return g / _sequential_sum([_sequential_sum(col) for col in g.T])


_STRIP_ELEMENTS = 32768
_SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp's constant for float64


def _split(x):
  """Veltkamp's split: ``x == hi + lo`` exactly, each with at most 26 bits."""
  t = _SPLITTER * x
  hi = t - (t - x)
  return hi, x - hi


def _two_sum(a: np.ndarray, b: np.ndarray, out: np.ndarray, z: np.ndarray) -> None:
  """Knuth's TwoSum in place: ``out = fl(a + b)``, ``b`` becomes its exact error.

  ``z`` is scratch space; all four arrays have one shape.
  """
  np.add(a, b, out=out)
  np.subtract(out, a, out=z)    # z = s - a
  b -= z                        # b - z
  np.subtract(out, z, out=z)    # s - z
  np.subtract(a, z, out=z)      # a - (s - z)
  b += z                        # the error


class _FusedAccumulator:
  """A float64 array to which ``w * x`` is added as by a fused multiply-add.

  ``add`` rounds ``acc + w * x`` once, as a hardware fused multiply-add does.
  NumPy has none, so it is emulated exactly: the product is split into its
  rounded value and its error (Dekker), and the three parts are added with one
  rounding to odd before the last (S. Boldo and G. Melquiond, "Emulation of
  FMA and correctly rounded sums: proved algorithms using rounding to odd",
  IEEE Trans. Computers 57(4), 2008). Scratch arrays are kept between calls.
  """

  def __init__(self, shape):
    self.acc = np.zeros(shape)
    self._p, self._e, self._u, self._z = (np.empty(shape) for _ in range(4))

  def add(self, w: float, x: np.ndarray, x_hi=None, x_lo=None) -> None:
    """``acc = fl(acc + w * x)`` with a single rounding.

    Args:
      w: The weight.
      x: float64 array of the accumulator's shape.
      x_hi: Veltkamp's split of ``x`` (made once for all weights); may be
        left out where ``x`` has at most 26 significant bits (integers below
        2**26), whose products with the halves of ``w`` are exact.
      x_lo: The other half of the split.
    """
    acc, p, e, u, z = self.acc, self._p, self._e, self._u, self._z
    w_hi, w_lo = _split(w)
    np.multiply(w, x, out=p)
    # e = w * x - p exactly: ((w_hi x_hi - p) + w_hi x_lo + w_lo x_hi) + w_lo x_lo.
    if x_hi is None:
      np.multiply(w_hi, x, out=e)
      e -= p
      np.multiply(w_lo, x, out=z)
      e += z
    else:
      np.multiply(w_hi, x_hi, out=e)
      e -= p
      for a, b in ((w_hi, x_lo), (w_lo, x_hi), (w_lo, x_lo)):
        np.multiply(a, b, out=z)
        e += z
    _two_sum(acc, p, u, z)  # u = fl(acc + p), p = its error t
    _two_sum(p, e, acc, z)  # acc is free now: s = fl(t + e), e = its error r
    # Round s + r to odd: where s is inexact and even, step to the odd
    # neighbour on r's side (few elements, if any, on images).
    fix = np.flatnonzero((e != 0) & ((acc.view(np.int64) & 1) == 0))
    if fix.size:
      s, r = acc.reshape(-1)[fix], e.reshape(-1)[fix]
      acc.reshape(-1)[fix] = np.nextafter(s, np.where(r > 0, np.inf, -np.inf))
    # The sum of the high part and the rounded-to-odd low part.
    np.add(u, acc, out=u)
    self.acc, self._u = u, acc


def octave_filter(image: np.ndarray, window: np.ndarray,
                  border: str) -> np.ndarray:
  """``imfilter(image, window, 'replicate')`` or ``filter2(window, image, 'same')``.

  Equal bit for bit to GNU Octave's, not only up to rounding. Why the order of
  the sums matters: where an image is flat, the local mean equals the pixel
  up to rounding, so the MSCN value ``image - mu`` is noise of +-1e-13 whose
  sign decides on which side of the asymmetric generalised Gaussian it is
  counted. The NIQE release's image3 has wide flat areas; with scipy's
  ``correlate`` (another order) its NIQE was 0.1 and its BRISQUE 0.11 away
  from the release's in Octave, with this order they agree to 1e-11.

  Octave's order: ``filter2`` calls ``conv2(image, rot90(window, 2), shape)``
  (the window is symmetric, so the rotation changes nothing), and ``imfilter``
  pads with ``padarray`` and calls ``filter2`` with shape 'valid'. ``conv2``'s
  Fortran kernels (``dconv2i`` for 'valid', ``dconv2o`` for 'full', which
  'same' crops) add one tap at a time to a whole column of output pixels with
  BLAS ``daxpy``. For each output pixel the taps come down each column of the
  window, the columns from the left for 'valid' and from the right for
  'full'. OpenBLAS's ``daxpy`` on x86-64 rounds each step once, as a fused
  multiply-add, which is emulated here. (MATLAB's own ``conv2`` adds in yet
  another order; its scores on flat images differ from Octave's.)

  Args:
    image: ``(H, W)`` float64 image.
    window: ``(7, 7)`` window, symmetric under a half turn
      (``gaussian_window()``).
    border: 'replicate' (imfilter) or 'zero' (filter2 'same').

  Returns:
    ``(H, W)`` float64 filtered image.

  Raises:
    ValueError: If the window is not symmetric under a half turn.
  """
  mb, nb = window.shape
  if not np.array_equal(window, window[::-1, ::-1]):
    raise ValueError('the window must be symmetric under a half turn')
  mode = {'replicate': 'edge', 'zero': 'constant'}[border]
  padded = np.pad(np.asarray(image, np.float64),
                  ((mb // 2, mb // 2), (nb // 2, nb // 2)), mode=mode)
  p_hi, p_lo = _split(padded)
  if not p_lo.any():
    p_hi = p_lo = None  # 26-bit values (uint8 grey levels and their squares)
  h, w = image.shape
  columns = range(nb) if border == 'replicate' else reversed(range(nb))
  taps = [(i, j) for j in columns for i in range(mb)]
  out = np.empty((h, w))
  # Strips of rows small enough for the cache: the emulated fused
  # multiply-add makes some 20 passes over the data for each tap.
  strip = max(1, _STRIP_ELEMENTS // max(w, 1))
  for r0 in range(0, h, strip):
    r1 = min(h, r0 + strip)
    out[r0:r1] = _filter_strip(window, taps, (padded, p_hi, p_lo), (r0, r1), w)
  return out


def _filter_strip(window: np.ndarray, taps, padded_split, rows: tuple[int, int],
                  w: int) -> np.ndarray:
  """Output rows ``rows[0]:rows[1]`` of :func:`octave_filter`, taps in ``taps`` order."""
  padded, p_hi, p_lo = padded_split
  mb, nb = window.shape
  r0, r1 = rows
  acc = _FusedAccumulator((r1 - r0, w))
  for i, j in taps:
    # A convolution: output (r, c) takes window[i, j] * padded[r + mb-1-i,
    # c + nb-1-j]. With zero borders the 'full' kernel meets the padding
    # zeros too; adding them changes nothing.
    at = (slice(r0 + mb - 1 - i, r1 + mb - 1 - i), slice(nb - 1 - j, nb - 1 - j + w))
    if p_hi is None:
      acc.add(float(window[i, j]), padded[at])
    else:
      acc.add(float(window[i, j]), padded[at], p_hi[at], p_lo[at])
  return acc.acc


def mscn(image: np.ndarray, border: str) -> tuple[np.ndarray, np.ndarray]:
  """Mean-subtracted contrast-normalised coefficients and the local deviation.

  Args:
    image: ``(H, W)`` float64 image.
    border: 'replicate' (NIQE's ``imfilter(..., 'replicate')``) or 'zero'
      (BRISQUE's ``filter2(..., 'same')``).

  Returns:
    ``(structdis, sigma)``: ``(image - mu) / (sigma + 1)`` and ``sigma``.
  """
  window = gaussian_window()
  mu = octave_filter(image, window, border)
  var = octave_filter(image * image, window, border) - mu * mu
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


def _nan_mean(v: np.ndarray) -> np.float64:
  """MATLAB ``mean`` of a possibly empty vector (NaN when empty).

  A NumPy scalar, not a Python float, so that 0 / 0 (a block of exact zeros)
  gives NaN, as in MATLAB, instead of raising.
  """
  return np.float64(v.sum() / v.size) if v.size else np.float64(np.nan)


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
