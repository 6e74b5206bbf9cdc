"""BRISQUE, as the LIVE MATLAB release (``brisquescore.m``) computes it.

A. Mittal, A. K. Moorthy and A. C. Bovik, "No-Reference Image Quality
Assessment in the Spatial Domain", IEEE Transactions on Image Processing 21(12),
2012, and their "BRISQUE Software Release" (``brisquescore.m``,
``brisque_feature.m``, ``estimateggdparam.m``, ``estimateaggdparam.m``, and the
libsvm files ``allmodel`` and ``allrange``). Lower is better (about 0 to 100).

The release, step by step, and this module with it:

* colour input is cast to uint8 (rounded) and goes through MATLAB ``rgb2gray``;
* MSCN coefficients with a 7x7 Gaussian (sigma 7/6) and zero borders
  (``filter2(..., 'same')``; NIQE replicates its borders instead), over the
  whole image; a GGD fit and four AGGD fits of neighbour products (shifts
  (0,1), (1,0), (1,1), (-1,1), wrapping around) give 18 features; the image is
  shrunk by MATLAB's ``imresize(im, 0.5)`` and 18 more are taken;
* the features are written with ``%f`` (6 decimals), scaled to [-1, 1] by
  ``svm-scale -r allrange`` (which prints ``%g``, 6 significant digits) and
  scored by ``svm-predict`` with the epsilon-SVR model ``allmodel`` (RBF
  kernel). Both text round trips are reproduced here, since they move the
  score by up to about 1e-4; the SVR is evaluated in NumPy
  (``sum_i coef_i * exp(-gamma * |x - sv_i|^2) - rho``), so no libsvm build
  is needed.

The release's ``allmodel`` and ``allrange`` ship in
``mh2f_jax/metrics/data/brisque/`` with the release's notice (``NOTICE.txt``
there); ``$MH2F_BRISQUE_MODEL_DIR`` or ``model=load_model(directory)`` use
another copy. Both files are checked in full as they are loaded
(:mod:`.libsvm_files`): a damaged or cut copy is refused, never scored with.
"""

import dataclasses
import functools
import os
import pathlib

import numpy as np

from mh2f_jax.metrics import matlab_resize
from mh2f_jax.metrics import nss
from mh2f_jax.metrics.libsvm_files import ModelFileError
from mh2f_jax.metrics.libsvm_files import parse_libsvm_model
from mh2f_jax.metrics.libsvm_files import parse_svm_scale_range
from mh2f_jax.metrics.libsvm_files import read_text
from mh2f_jax.metrics.nss import ImageTooSmall

__all__ = ['ImageTooSmall', 'MIN_SIDE', 'MODEL_DIR', 'ModelFileError',
           'ModelUnavailable', 'NUM_FEATURES', 'SvrModel', 'brisque',
           'brisque_features', 'load_model', 'parse_libsvm_model',
           'parse_svm_scale_range', 'predict', 'to_gray']

MODEL_DIR = pathlib.Path(__file__).resolve().parent / 'data' / 'brisque'
# 18 features at full scale and 18 at half scale.
NUM_FEATURES = 36
# Each side must still hold the 7x7 window after the image is halved.
MIN_SIDE = 14
_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


class ModelUnavailable(FileNotFoundError):
  """The release's ``allmodel``/``allrange`` files are not where they were sought."""


@dataclasses.dataclass(frozen=True)
class SvrModel:
  """A libsvm epsilon-SVR with an RBF kernel, and the svm-scale ranges it expects.

  Attributes:
    gamma: RBF kernel parameter.
    rho: Offset subtracted from the kernel sum.
    coef: ``(n_sv,)`` dual coefficients.
    support: ``(n_sv, n_features)`` support vectors (absent entries are 0).
    lower: Lower end of the scaled range (-1 in the release).
    upper: Upper end of the scaled range (1 in the release).
    feature_min: ``(n_features,)`` minimum of each raw feature.
    feature_max: ``(n_features,)`` maximum of each raw feature.
  """
  gamma: float
  rho: float
  coef: np.ndarray
  support: np.ndarray
  lower: float
  upper: float
  feature_min: np.ndarray
  feature_max: np.ndarray


def _read_file(path: pathlib.Path, what: str, parse):
  """``parse`` of a file's text; a ModelFileError names the file."""
  try:
    return parse(read_text(path))
  except ModelFileError as e:
    raise ModelFileError(f'BRISQUE {what} {path}: {e}') from None


def load_model(directory=None) -> SvrModel:
  """Loads ``allmodel`` and ``allrange`` (the release's file names), checking all of both.

  Args:
    directory: Folder holding both files; if None, ``$MH2F_BRISQUE_MODEL_DIR``
      when set, else ``MODEL_DIR``.

  Returns:
    The model.

  Raises:
    ModelUnavailable: If either file is missing.
    ModelFileError: If a file cannot be read, is cut short or is not a libsvm
      epsilon-SVR model (or range file) of ``NUM_FEATURES`` features; a
      ``UserError`` whose message names the file and what is wrong.
  """
  if directory is None:
    directory = os.environ.get('MH2F_BRISQUE_MODEL_DIR') or MODEL_DIR
  folder = pathlib.Path(directory)
  paths = [folder / 'allmodel', folder / 'allrange']
  missing = [str(p) for p in paths if not p.is_file()]
  if missing:
    raise ModelUnavailable(
        'BRISQUE needs the LIVE release files allmodel and allrange; missing: '
        + ', '.join(missing))
  lower, upper, fmin, fmax = _read_file(paths[1], 'range file', parse_svm_scale_range)
  if fmin.size != NUM_FEATURES:
    raise ModelFileError(f'BRISQUE range file {paths[1]}: it has ranges for '
                         f'{fmin.size} features, BRISQUE has {NUM_FEATURES}')
  gamma, rho, coef, support = _read_file(
      paths[0], 'model file', lambda text: parse_libsvm_model(text, NUM_FEATURES))
  return SvrModel(gamma, rho, coef, support, lower, upper, fmin, fmax)


@functools.lru_cache(maxsize=1)
def _default_model() -> SvrModel:
  return load_model()


def _scale_features(model: SvrModel, feat: np.ndarray) -> np.ndarray:
  """``svm-scale -r``, including its ``%f`` input and ``%g`` output text."""
  out = np.zeros(feat.size)
  for i, raw in enumerate(feat):
    value = float('%f' % raw)  # brisquescore.m writes '%d:%f '
    lo, hi = model.feature_min[i], model.feature_max[i]
    if lo == hi:
      continue  # svm-scale drops single-valued features
    if value == lo:
      scaled = model.lower
    elif value == hi:
      scaled = model.upper
    else:
      scaled = model.lower + (model.upper - model.lower) * (value - lo) / (hi - lo)
    out[i] = float('%g' % scaled)
  return out


def predict(model: SvrModel, feat: np.ndarray) -> float:
  """Scales raw features as ``svm-scale`` does and evaluates the SVR.

  Args:
    model: The SVR and its feature ranges.
    feat: Raw features, ``(n_features,)``.

  Returns:
    The regression value ``svm-predict`` prints.

  Raises:
    ValueError: If the model expects another number of features.
  """
  feat = np.asarray(feat, np.float64)
  if feat.shape != model.feature_min.shape:
    raise ValueError(f'the model takes {model.feature_min.size} features, '
                     f'got {feat.size}')
  x = _scale_features(model, feat)
  d2 = np.sum((model.support - x)**2, axis=1)
  return float(model.coef @ np.exp(-model.gamma * d2) - model.rho)


def to_gray(image) -> np.ndarray:
  """The grey image the release scores: ``rgb2gray(uint8(image))`` on colour.

  Args:
    image: ``(H, W)`` or ``(H, W, 3)``; uint8, or float in [0, 255].

  Returns:
    ``(H, W)`` float64 array.
  """
  arr = nss.check_image(image)
  if arr.ndim == 2:
    return arr.astype(np.float64)
  # brisquescore.m casts colour input to uint8 before rgb2gray.
  return nss.rgb_to_gray(nss.round_to_uint8(arr))


def brisque_features(gray: np.ndarray) -> np.ndarray:
  """``brisque_feature.m``: the 36 features of a grey image.

  Args:
    gray: ``(H, W)`` float64 image, each side at least ``MIN_SIDE``.

  Returns:
    ``(36,)``: 18 features at full scale, then 18 at half scale.

  Raises:
    ImageTooSmall: If a side is under ``MIN_SIDE`` pixels.
  """
  h, w = gray.shape
  if h < MIN_SIDE or w < MIN_SIDE:
    raise ImageTooSmall(f'BRISQUE needs at least {MIN_SIDE}x{MIN_SIDE} pixels '
                        f'(a 7x7 window at half scale), got {h}x{w}')
  feat = []
  im = gray
  for scale in range(2):
    structdis, _ = nss.mscn(im, border='zero')
    shape, std = nss.fit_ggd(structdis.ravel())
    feat += [shape, std**2]
    for shift in _SHIFTS:
      pair = structdis * np.roll(structdis, shift, axis=(0, 1))
      alpha, leftstd, rightstd = nss.fit_aggd(pair.ravel())
      const = np.sqrt(nss.gamma(1 / alpha)) / np.sqrt(nss.gamma(3 / alpha))
      mean = (rightstd - leftstd) * (nss.gamma(2 / alpha) /
                                     nss.gamma(1 / alpha)) * const
      feat += [alpha, mean, leftstd**2, rightstd**2]
    if scale == 0:
      im = matlab_resize.imresize(im, 0.5)
  return np.array(feat)


def brisque(image, *, model: SvrModel | None = None) -> float:
  """BRISQUE score of an image, equal to the LIVE release's (lower is better).

  Args:
    image: ``(H, W)`` or ``(H, W, 3)`` RGB; uint8, or float in [0, 255]
      (float colour input is rounded to uint8 first, as the release does; float
      grey input is used as it is; a float image within [0, 1] is refused as on
      the wrong scale, see ``nss.check_image``). At least ``MIN_SIDE`` pixels each way.
    model: From ``load_model``; by default the files in
      ``$MH2F_BRISQUE_MODEL_DIR`` or ``MODEL_DIR``.

  Returns:
    The score.

  Raises:
    ImageTooSmall: If the image is under ``MIN_SIDE`` pixels high or wide.
    ModelUnavailable: If no model is given and the release files are missing.
    ValueError: On a bad shape, dtype or value range.
  """
  feat = brisque_features(to_gray(image))
  return predict(model if model is not None else _default_model(), feat)
