"""Tests for mh2f_jax.metrics.nss: the MSCN filter equals GNU Octave's bit for bit.

The golden values come from Octave 7.3 (image package 2.14, OpenBLAS), running
what the releases run: ``fspecial('gaussian', 7, 7/6)`` divided by
``sum(sum(window))``, ``imfilter(im, window, 'replicate')`` (NIQE) and
``filter2(window, im, 'same')`` (BRISQUE). The filtered images are held as
SHA-256 digests of their float64 bytes, because only equality to the last bit
says that the summation order is Octave's.
"""

from fractions import Fraction
import hashlib

import numpy as np
import pytest
from scipy import ndimage

from mh2f_jax.metrics import nss

# The window's distinct weights, by (|row offset|, |column offset|) from the
# centre, as Octave stores them.
WINDOW_OCTAVE = {
    (0, 0): '0x1.e0db00311d7f1p-4',
    (0, 1): '0x1.4d06977d8ad64p-4',
    (0, 2): '0x1.ba83b9de5989ep-6',
    (0, 3): '0x1.1a0917e5476acp-8',
    (1, 1): '0x1.cd496e1480e87p-5',
    (1, 2): '0x1.3278d5665da90p-6',
    (1, 3): '0x1.86a8865c4c6d2p-9',
    (2, 2): '0x1.973b1202ace5bp-8',
    (2, 3): '0x1.038c273f9a49cp-10',
    (3, 3): '0x1.4ad805ce81344p-13',
}

# SHA-256 of Octave's output (float64, little-endian, row-major) on
# _small_image() / divisor, squared or not: integers take a shorter path here.
FILTER_OCTAVE = {
    ('replicate', 1, 1): '82f27ef660d6f04c1d89e3893b855e55bef913cfa1e8c8014283c82d7d3426dc',
    ('replicate', 1, 2): '457717dbfa95f07f395801fa64b9def8d13cd047ea42b80fa943eb649bb1c27e',
    ('zero', 1, 1): 'c903bb12eff1de0e6d44949e2502e74ac5b7bdc9d41ce7b1bf36e28127f9876d',
    ('zero', 1, 2): '105911b7f8785a397d293baac9bc079931dcbb82d2585ffccc8da6e4c31461bb',
    ('replicate', 7, 1): 'a3ffc6b73ddcdac1d35207d33b9ebbf140ac4b7ef26bcbb97176cd97133c5a09',
    ('replicate', 7, 2): 'b901f5173cc54489711e8864ea92bbf961f3418f77d6eb2b5d1e36bb5c7b95e0',
    ('zero', 7, 1): '3d24952ca202b18ad4c9e61d3c28d12df4c6b18d994d5b647aa4a56e7e0f663e',
    ('zero', 7, 2): 'd688370f8208c43c397085de31e9a2fdc7517e952feff11db4291875b420fa3b',
}


def _small_image():
  """20x23 grey levels with a flat area of 187, where image - mu is noise."""
  y, x = np.mgrid[0:20, 0:23]
  im = ((x * 37 + y * 91 + x * y * 13) % 256).astype(np.float64)
  im[4:15, 6:19] = 187.0
  return im


def test_gaussian_window_is_octaves_bit_for_bit():
  expected = np.array([[
      float.fromhex(WINDOW_OCTAVE[tuple(sorted((abs(i), abs(j))))])
      for j in range(-3, 4)] for i in range(-3, 4)])
  np.testing.assert_array_equal(nss.gaussian_window(), expected)


@pytest.mark.parametrize('border', ['replicate', 'zero'])
@pytest.mark.parametrize('divisor', [1, 7])
@pytest.mark.parametrize('power', [1, 2])
def test_filter_is_octaves_bit_for_bit(border, divisor, power):
  image = (_small_image() / divisor)**power
  out = nss.octave_filter(image, nss.gaussian_window(), border)
  digest = hashlib.sha256(out.astype('<f8').tobytes()).hexdigest()
  assert digest == FILTER_OCTAVE[border, divisor, power]


@pytest.mark.parametrize('border', ['replicate', 'zero'])
def test_filter_is_a_gaussian_filter(border):
  # Up to rounding, the same as scipy's correlation with the same borders;
  # long strips exercise the splitting into strips of rows.
  image = np.random.default_rng(0).random((300, 150)) * 255
  window = nss.gaussian_window()
  mode = {'replicate': 'nearest', 'zero': 'constant'}[border]
  np.testing.assert_allclose(nss.octave_filter(image, window, border),
                             ndimage.correlate(image, window, mode=mode),
                             rtol=1e-13, atol=1e-12)


def test_filter_refuses_an_asymmetric_window():
  window = np.zeros((7, 7))
  window[0, 0] = 1
  with pytest.raises(ValueError, match='symmetric'):
    nss.octave_filter(np.ones((8, 8)), window, 'zero')


@pytest.mark.parametrize('integers', [False, True])
def test_fused_multiply_add_is_correctly_rounded(integers):
  rng = np.random.default_rng(1)
  n = 3000
  w = rng.standard_normal(n) * np.exp2(rng.integers(-20, 20, n))
  x = (rng.integers(1, 2**16, n).astype(np.float64) if integers else
       rng.standard_normal(n) * 255)
  # Accumulators of every kind: unrelated; nearly cancelling the product
  # (where a separate rounding of the product shows most); putting w * x + acc
  # next to a midpoint between two floats (where rounding the low part to
  # nearest instead of to odd would round twice); and zero.
  acc = rng.standard_normal(n) * 100
  quarter = n // 4
  near = slice(quarter, 2 * quarter)
  acc[near] = -(w * x)[near] * (
      1 + rng.integers(-8, 9, quarter) * 2.0**-52)
  # For the midpoints, w * x rounds to half the spacing of the floats at acc.
  ties = slice(2 * quarter, 3 * quarter)
  half = np.spacing(np.abs(acc)) / 2 * rng.choice([-1.0, 1.0], n)
  w[ties] = half[ties] / x[ties]
  acc[3 * quarter:] = 0.0
  got = np.empty(n)
  for k in range(n):  # one weight per call, as in the filter
    # pylint: disable-next=protected-access
    fused = nss._FusedAccumulator((1,))
    fused.acc[0] = acc[k]
    x_split = () if integers else nss._split(x[k:k + 1])  # pylint: disable=protected-access
    fused.add(float(w[k]), x[k:k + 1], *x_split)
    got[k] = fused.acc[0]
  exact = [float(Fraction(wi) * Fraction(xi) + Fraction(ai))
           for wi, xi, ai in zip(w, x, acc)]
  np.testing.assert_array_equal(got, exact)


def test_fused_accumulator_keeps_adding():
  rng = np.random.default_rng(2)
  x = rng.standard_normal((5, 50)) * 255
  weights = rng.random(5)
  fused = nss._FusedAccumulator((50,))  # pylint: disable=protected-access
  exact = [Fraction(0)] * 50
  for wk, xk in zip(weights, x):
    fused.add(float(wk), xk, *nss._split(xk))  # pylint: disable=protected-access
    exact = [Fraction(float(Fraction(wk) * Fraction(xi) + e))
             for xi, e in zip(xk, exact)]
  np.testing.assert_array_equal(fused.acc, [float(e) for e in exact])
