"""Tests for mh2f_jax.metrics.niqe: parity with the LIVE MATLAB release.

The golden scores were produced by the release's own code (computequality.m,
computefeature.m, estimateaggdparam.m, modelparameters.mat) run in GNU Octave
7.3 with the image package, with stand-ins for what Octave lacks or does
differently: MATLAB's blkproc, nanmean and nancov, MATLAB's exact rgb2gray
weights, and MATLAB's antialiased bicubic imresize (Octave's imresize does not
antialias). They are stored to 17 digits in octave/reference.json with what
ran and where the release files came from (octave/README.md); the images are
made here, deterministically, from scikit-image's sample photos.
"""

import numpy as np
import pytest

from mh2f_jax.metrics import matlab_resize
from mh2f_jax.metrics import niqe
from parity_images import octave_reference  # pylint: disable=g-bad-import-order
from parity_images import parity_images  # pylint: disable=g-bad-import-order


# computequality.m in Octave on parity_images(): [variant 'gray', variant 'y'].
# For 'y' the release was given Y of rgb2ycbcr (MATLAB's formula, rounded on
# uint8 input) as a grey image. The two '_flat' images test the summation
# order of the MSCN filter: with scipy's correlate in its place they were off
# by up to 0.09 (see docs/evaluation.md).
NIQE_OCTAVE = octave_reference()['niqe']
# docs/evaluation.md: the largest difference from the release in Octave is
# 1.6e-13 on these images; the bound leaves room for another CPU's rounding in
# NumPy's BLAS and LAPACK (pinv), not for any other difference.
TOLERANCE = 2e-13


@pytest.fixture(name='images', scope='module')
def _images():
  return parity_images()


def test_parity_images_cover_the_golden_values(images):
  assert sorted(images) == sorted(NIQE_OCTAVE)


@pytest.mark.parametrize('name', sorted(NIQE_OCTAVE))
def test_matches_release_in_octave(images, name):
  gray, y = NIQE_OCTAVE[name]
  assert abs(niqe.niqe(images[name]) - gray) <= TOLERANCE
  assert abs(niqe.niqe(images[name], variant='y') - y) <= TOLERANCE


def test_pristine_model_is_the_release_model():
  # The vendored npz (BasicSR 1.4.2) was compared with the release's
  # modelparameters.mat: mu_prisparam and cov_prisparam are equal bit for bit.
  mu, cov = niqe.pristine_model()
  assert mu.shape == (36,) and cov.shape == (36, 36)
  np.testing.assert_array_equal(cov, cov.T)
  assert np.all(np.linalg.eigvalsh(cov) > 0)


def test_gray_input_equals_rgb_with_equal_channels(images):
  gray = images['camera']
  rgb = np.repeat(gray[..., None], 3, axis=-1)
  assert niqe.niqe(rgb) == niqe.niqe(gray)
  # Grey input is used as it is by both variants; the Y of equal channels is
  # 16 + 219/255 * grey, another image.
  assert niqe.niqe(gray, variant='y') == niqe.niqe(gray)
  assert niqe.niqe(rgb, variant='y') != niqe.niqe(gray)


def test_pixels_past_the_last_whole_block_are_ignored(images):
  img = images['chelsea'].copy()  # 300x451: blocks cover 288x384
  ref = niqe.niqe(img)
  img[288:] = 0
  img[:, 384:] = 255
  assert niqe.niqe(img) == ref
  img[287, 0] ^= 0xFF
  assert niqe.niqe(img) != ref


def test_memory_layout_does_not_matter(images):
  # uint8 colour input is rounded after the weighted sum: a value on x.5 must
  # round the same way whatever the array's strides.
  img = images['astronaut']
  assert niqe.niqe(np.asfortranarray(img), variant='y') == niqe.niqe(
      img, variant='y')


@pytest.mark.parametrize('shape', [(191, 400), (400, 191), (10, 10, 3)])
def test_too_small_raises_with_a_reason(shape):
  with pytest.raises(niqe.ImageTooSmall) as err:
    niqe.niqe(np.zeros(shape, np.uint8))
  assert isinstance(err.value, ValueError)
  assert 'at least 192x192' in err.value.reason


def test_smallest_accepted_size(images):
  assert np.isfinite(niqe.niqe(images['coffee'][:192, :192]))


@pytest.mark.parametrize('bad', [
    np.zeros((200, 200, 4), np.uint8),
    np.zeros((200, 200), np.uint16),
    np.full((200, 200), 256.0),
    np.full((200, 200), np.nan),
])
def test_bad_input_raises(bad):
  with pytest.raises(ValueError):
    niqe.niqe(bad)


def test_unknown_variant_raises(images):
  with pytest.raises(ValueError, match='variant'):
    niqe.niqe(images['camera'], variant='luma')


# MATLAB imresize, as MathWorks' answers print it.
def test_resize_matches_matlab_bilinear_examples():
  up = matlab_resize.imresize(np.array([[1.0, 2], [3, 4]]), 2, 'bilinear')
  np.testing.assert_allclose(up, [[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5],
                                  [2.5, 2.75, 3.25, 3.5], [3, 3.25, 3.75, 4]],
                             atol=1e-12)
  # Shrinking antialiases: plain bilinear sampling would give 1.375 ...
  down = matlab_resize.imresize(up, 0.5, 'bilinear')
  np.testing.assert_allclose(down, [[1.5625, 2.1875], [2.8125, 3.4375]],
                             atol=1e-12)


def test_resize_half_bicubic_weights():
  # Antialiased bicubic at scale 0.5: Keys' kernel stretched to 8 taps.
  weights, indices = matlab_resize.contributions(16, 8, 0.5)
  interior = [-0.01171875, -0.03515625, 0.11328125, 0.43359375,
              0.43359375, 0.11328125, -0.03515625, -0.01171875]
  np.testing.assert_allclose(weights[3], interior, atol=1e-15)
  # Output 3 is centred on input 6.5 (0-based): inputs 3..10.
  np.testing.assert_array_equal(indices[3], np.arange(3, 11))
  # The first output reaches past the border, mirrored (edge included).
  np.testing.assert_array_equal(indices[0], [2, 1, 0, 0, 1, 2, 3, 4])


def test_resize_shapes_and_constants():
  out = matlab_resize.imresize(np.full((9, 13), 7.0), 0.5)
  assert out.shape == (5, 7)
  np.testing.assert_allclose(out, 7.0, atol=1e-12)
  ramp = np.tile(np.arange(32.0), (4, 1))
  # The cubic kernel reproduces a straight line away from the borders.
  np.testing.assert_allclose(matlab_resize.imresize(ramp, 0.5)[:, 2:-2],
                             np.tile(np.arange(4, 28, 2) + 0.5, (2, 1)),
                             atol=1e-12)
