"""Tests for mh2f_jax.metrics.libsvm_files: libsvm's model and range files, read strictly."""

import numpy as np
import pytest

from mh2f_jax import errors
from mh2f_jax.metrics import libsvm_files

# What libsvm's svm_save_model writes for an epsilon-SVR with an RBF kernel (-b 1).
MODEL = """svm_type epsilon_svr
kernel_type rbf
gamma 0.5
nr_class 2
total_sv 3
rho -1.25
probA 0.75
SV
2.5 1:0.1 2:-0.4 3:0.9 
-1.75 1:-0.6 3:0.2 
0.5 2:0.8 3:-0.3 
"""
RANGE = 'x\n-1 1\n1 0.5 2.5\n2 -1 1\n3 0 10\n'


def test_a_whole_model_parses():
  gamma, rho, coef, support = libsvm_files.parse_libsvm_model(MODEL, 3)
  assert (gamma, rho) == (0.5, -1.25)
  np.testing.assert_array_equal(coef, [2.5, -1.75, 0.5])
  np.testing.assert_array_equal(support, [[0.1, -0.4, 0.9], [-0.6, 0, 0.2],
                                          [0, 0.8, -0.3]])
  # Windows line ends, as in the release's allmodel, read the same.
  crlf = libsvm_files.parse_libsvm_model(MODEL.replace('\n', '\r\n'), 3)
  np.testing.assert_array_equal(crlf[3], support)


@pytest.mark.parametrize('text,match', [
    # Cut at a line boundary: the remaining lines parse, total_sv does not agree.
    (MODEL.rsplit('0.5 2:', 1)[0], 'total_sv says 3 support vectors, the file has 2'),
    (MODEL[:-4], 'no newline'),                              # cut inside a line
    (MODEL.replace('total_sv 3', 'total_sv 4'), 'total_sv says 4'),
    (MODEL.replace('total_sv 3', 'total_sv three'), 'not an integer'),
    (MODEL.replace('total_sv 3\n', ''), 'no total_sv'),
    (MODEL.replace('nr_class 2', 'nr_class 3'), 'nr_class of a regression model is 2'),
    (MODEL.replace('rho -1.25', 'rho -1.25 0.5'), 'rho takes one value'),
    (MODEL.replace('rho -1.25', 'rho nan'), 'not finite'),
    (MODEL.replace('gamma 0.5', 'gamma 0'), 'gamma must be positive'),
    (MODEL.replace('probA 0.75', 'probA'), 'probA takes one value'),
    (MODEL.replace('probA 0.75', 'label 1 2'), 'unexpected header line'),
    (MODEL.replace('gamma 0.5\n', 'gamma 0.5\ngamma 0.5\n'), 'gamma given twice'),
    (MODEL.replace('kernel_type rbf', 'kernel_type linear'), 'epsilon_svr model with an rbf'),
    (MODEL.replace('\nSV\n', '\n'), 'no SV line'),
    (MODEL.replace('1:0.1 2:-0.4', '2:-0.4 1:0.1'), 'line 9: feature index 1 out of order'),
    (MODEL.replace('3:0.9', '4:0.9'), 'line 9: feature index 4 out of order or outside 1..3'),
    (MODEL.replace('1:0.1', '0:0.1'), 'feature index 0'),
    (MODEL.replace('1:0.1', '1:0.1x'), "line 9: '0.1x' is not a number"),
    (MODEL.replace('1:0.1', '1'), "line 9: '1' is not index:value"),
    (MODEL.replace('2.5 1:0.1', 'inf 1:0.1'), 'not finite'),
    (MODEL.replace('0.5 2:0.8 3:-0.3 \n', '\n0.5 2:0.8 3:-0.3 \n'), 'total_sv says 3'),
])
def test_a_damaged_model_is_refused(text, match):
  with pytest.raises(libsvm_files.ModelFileError, match=match) as err:
    libsvm_files.parse_libsvm_model(text, 3)
  assert isinstance(err.value, errors.UserError) and isinstance(err.value, ValueError)


def test_an_empty_line_among_the_support_vectors_is_refused():
  text = MODEL.replace('total_sv 3', 'total_sv 4').replace('-1.75', '\n-1.75')
  with pytest.raises(libsvm_files.ModelFileError, match='line 10: empty'):
    libsvm_files.parse_libsvm_model(text, 3)


def test_a_whole_range_file_parses():
  lower, upper, fmin, fmax = libsvm_files.parse_svm_scale_range(RANGE)
  assert (lower, upper) == (-1, 1)
  np.testing.assert_array_equal(fmin, [0.5, -1, 0])
  np.testing.assert_array_equal(fmax, [2.5, 1, 10])
  # Rows in another order are put in feature order.
  shuffled = 'x\n-1 1\n3 0 10\n1 0.5 2.5\n2 -1 1\n'
  np.testing.assert_array_equal(libsvm_files.parse_svm_scale_range(shuffled)[2], fmin)


@pytest.mark.parametrize('text,match', [
    (RANGE[:-3], 'no newline'),
    ('y\n0 1\n' + RANGE, 'starting with "x"'),
    ('x\n-1 1\n', 'one row per feature'),
    (RANGE.replace('-1 1\n', '1 -1\n', 1), 'the scaled range 1.0 -1.0 is empty'),
    (RANGE.replace('2 -1 1\n', ''), 'features 1..3 need a row each; 1 have none'),
    (RANGE.replace('2 -1 1\n', '1 -1 1\n'), 'feature 1 below 1 or given twice'),
    (RANGE.replace('3 0 10', '3 10 0'), 'min > max'),
    (RANGE.replace('3 0 10', '3 0'), 'expected "index min max"'),
    (RANGE.replace('3 0 10', '3 0 ten'), "'ten' is not a number"),
])
def test_a_damaged_range_file_is_refused(text, match):
  with pytest.raises(libsvm_files.ModelFileError, match=match):
    libsvm_files.parse_svm_scale_range(text)


def test_read_text_refuses_what_is_not_a_text_file(tmp_path):
  for data, match in ((b'', 'empty'), (b' \n\n', 'empty'),
                      (b'svm_type \xff\n', 'byte 0xff at offset 9'),
                      (b'svm_type\x00\n', 'NUL')):
    (tmp_path / 'f').write_bytes(data)
    with pytest.raises(libsvm_files.ModelFileError, match=match):
      libsvm_files.read_text(tmp_path / 'f')
  with pytest.raises(libsvm_files.ModelFileError, match='cannot be read'):
    libsvm_files.read_text(tmp_path)  # a folder
  (tmp_path / 'f').write_bytes(MODEL.encode())
  assert libsvm_files.read_text(tmp_path / 'f') == MODEL
