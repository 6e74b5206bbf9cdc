"""libsvm's two text files that BRISQUE's release reads: an epsilon-SVR model and a range file.

``brisquescore.m`` scales its features with ``svm-scale -r allrange`` and scores them
with ``svm-predict ... allmodel``. This module reads both files strictly, because a
file that is cut short or damaged can still parse line by line into a smaller model
that scores every image, wrongly. Every header field is checked against the content
(``total_sv`` against the support-vector lines, ``nr_class`` and the one ``rho`` of a
regression model), every support vector's ``index:value`` pairs (indices increasing
within 1..n_features, finite values), and the last line's end (libsvm ends every line
with a newline, so a file without one was cut). What is wrong is raised as
:class:`ModelFileError`, a :class:`~mh2f_jax.errors.UserError`.
"""

import math

import numpy as np

from mh2f_jax import errors

__all__ = ['ModelFileError', 'parse_libsvm_model', 'parse_svm_scale_range', 'read_text']

# The header lines libsvm's svm_save_model writes for an epsilon-SVR with an RBF kernel.
_REQUIRED = ('svm_type', 'kernel_type', 'gamma', 'nr_class', 'total_sv', 'rho')
_OPTIONAL = ('probA',)  # written when the model was trained with -b 1, as the release's


class ModelFileError(errors.UserError, ValueError):
  """A model or range file that is not what libsvm writes; the message says what is wrong."""


def read_text(path) -> str:
  """The text of a libsvm file, which is ASCII.

  Args:
    path: the file (a ``pathlib.Path`` or str).

  Returns:
    The text as it is.

  Raises:
    ModelFileError: the file cannot be read, is empty or is not text.
  """
  try:
    data = open(path, 'rb').read()  # pylint: disable=consider-using-with
  except OSError as e:
    raise ModelFileError(f'cannot be read ({e.strerror or e})') from e
  if not data.strip():
    raise ModelFileError('the file is empty')
  try:
    text = data.decode('ascii')
  except UnicodeDecodeError as e:
    raise ModelFileError(f'not a libsvm text file (byte 0x{data[e.start]:02x} '
                         f'at offset {e.start})') from e
  if '\x00' in text:
    raise ModelFileError('not a libsvm text file (it holds NUL bytes)')
  return text


def _lines(text: str) -> list[str]:
  """The lines of a file libsvm wrote, which ends every line with a newline."""
  text = text.replace('\r', '')
  if not text.endswith('\n'):
    raise ModelFileError('the last line has no newline: the file was cut short')
  return text.split('\n')[:-1]


def _number(token: str, what: str, *, integer: bool = False) -> float:
  """A finite float (or a non-negative int) from a token, or a ModelFileError."""
  try:
    value = int(token) if integer else float(token)
  except ValueError:
    raise ModelFileError(f'{what}: {token!r} is not {"an integer" if integer else "a number"}'
                         ) from None
  if not integer and not math.isfinite(value):
    raise ModelFileError(f'{what}: {token!r} is not finite')
  return value


def _header(lines: list[str]) -> dict[str, list[str]]:
  """The header's fields, each checked for an epsilon-SVR with an RBF kernel."""
  fields = {}
  for number, line in enumerate(lines, 1):
    if not line.strip():
      raise ModelFileError(f'line {number}: empty, in the header')
    key, *values = line.split()
    if key in fields:
      raise ModelFileError(f'line {number}: {key} given twice')
    if key not in _REQUIRED + _OPTIONAL:
      raise ModelFileError(f'line {number}: unexpected header line {line[:40]!r} (before '
                           'the SV line of an epsilon_svr model with an rbf kernel)')
    fields[key] = values
  if fields.get('svm_type') != ['epsilon_svr'] or fields.get('kernel_type') != ['rbf']:
    got = '/'.join(' '.join(fields.get(k, ['(none)'])) for k in ('svm_type', 'kernel_type'))
    raise ModelFileError(f'expected an epsilon_svr model with an rbf kernel, got {got}')
  missing = [k for k in _REQUIRED if k not in fields]
  if missing:
    raise ModelFileError(f'the header has no {", ".join(missing)}')
  for key in ('gamma', 'nr_class', 'total_sv', 'rho') + tuple(k for k in _OPTIONAL
                                                               if k in fields):
    if len(fields[key]) != 1:
      raise ModelFileError(f'{key} takes one value for an epsilon_svr model, got '
                           f'{len(fields[key])}')
  return fields


def _support_vector(line: str, number: int, n_features: int) -> tuple[float, np.ndarray]:
  """One SV line: its coefficient and its dense support vector."""
  coef, *pairs = line.split()
  where = f'line {number}'
  row = np.zeros(n_features)
  last = 0
  for pair in pairs:
    index, sep, value = pair.partition(':')
    if not sep:
      raise ModelFileError(f'{where}: {pair!r} is not index:value')
    i = _number(index, where, integer=True)
    if not last < i <= n_features:
      raise ModelFileError(f'{where}: feature index {i} out of order or outside '
                           f'1..{n_features}')
    row[i - 1], last = _number(value, where), i
  return _number(coef, where), row


def parse_libsvm_model(text: str, n_features: int) -> tuple[float, float, np.ndarray,
                                                            np.ndarray]:
  """Reads an epsilon-SVR/RBF model in libsvm's text format, checking all of it.

  Args:
    text: Contents of the model file.
    n_features: Feature count; support vectors are stored densely (absent entries 0).

  Returns:
    ``(gamma, rho, coef, support)``.

  Raises:
    ModelFileError: If the model is not an epsilon-SVR with an RBF kernel, its
      header and its support vectors disagree, a line is malformed (the message
      names the line) or the last line has no newline (the file was cut).
  """
  lines = _lines(text)
  if 'SV' not in lines:
    raise ModelFileError('no SV line: not a libsvm model, or one cut in its header')
  split = lines.index('SV')
  fields = _header(lines[:split])
  gamma = _number(fields['gamma'][0], 'gamma')
  if gamma <= 0:
    raise ModelFileError(f'gamma must be positive, got {gamma}')
  if _number(fields['nr_class'][0], 'nr_class', integer=True) != 2:
    raise ModelFileError(f'nr_class of a regression model is 2, got {fields["nr_class"][0]}')
  total_sv = _number(fields['total_sv'][0], 'total_sv', integer=True)
  if total_sv < 1:
    raise ModelFileError(f'total_sv must be at least 1, got {total_sv}')
  rho = _number(fields['rho'][0], 'rho')
  if 'probA' in fields:
    _number(fields['probA'][0], 'probA')
  body = lines[split + 1:]
  if len(body) != total_sv:
    raise ModelFileError(f'total_sv says {total_sv} support vectors, the file has '
                         f'{len(body)} lines after SV (cut short or joined?)')
  coef, support = np.zeros(total_sv), np.zeros((total_sv, n_features))
  for k, line in enumerate(body):
    if not line.strip():
      raise ModelFileError(f'line {split + k + 2}: empty, where a support vector belongs')
    coef[k], support[k] = _support_vector(line, split + k + 2, n_features)
  return gamma, rho, coef, support


def parse_svm_scale_range(text: str) -> tuple[float, float, np.ndarray, np.ndarray]:
  """Reads an ``svm-scale -s`` range file (``x``, ``lower upper``, ``index min max`` rows).

  Args:
    text: Contents of the range file.

  Returns:
    ``(lower, upper, feature_min, feature_max)``, indexed from feature 1.

  Raises:
    ModelFileError: If it does not start with ``x``, the bounds are not ``lower <
      upper``, a row is malformed, the rows do not cover features 1..n once each,
      or the last line has no newline (the file was cut).
  """
  lines = [(number, line.split()) for number, line in enumerate(_lines(text), 1)
           if line.strip()]
  if not lines or lines[0][1] != ['x']:
    raise ModelFileError('expected a feature range file starting with "x"')
  if len(lines) < 3 or len(lines[1][1]) != 2:
    raise ModelFileError('expected "lower upper" after "x", then one row per feature')
  where = f'line {lines[1][0]}'
  lower, upper = (_number(v, where) for v in lines[1][1])
  if not lower < upper:
    raise ModelFileError(f'{where}: the scaled range {lower} {upper} is empty')
  rows = {}
  for number, row in lines[2:]:
    if len(row) != 3:
      raise ModelFileError(f'line {number}: expected "index min max", got {" ".join(row)!r}')
    index = _number(row[0], f'line {number}', integer=True)
    lo, hi = (_number(v, f'line {number}') for v in row[1:])
    if index < 1 or index in rows or lo > hi:
      raise ModelFileError(f'line {number}: feature {index} below 1 or given twice, '
                           'or min > max')
    rows[index] = (lo, hi)
  missing = sorted(set(range(1, max(rows) + 1)) - set(rows))
  if missing:
    raise ModelFileError(f'features 1..{max(rows)} need a row each; {len(missing)} have '
                         f'none (the first: {missing[0]})')
  return (lower, upper, np.array([rows[i][0] for i in sorted(rows)]),
          np.array([rows[i][1] for i in sorted(rows)]))
