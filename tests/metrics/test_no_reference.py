"""Tests for mh2f_jax.metrics.no_reference: the scorer's input scale and its BRISQUE model."""

import numpy as np
import pytest

from mh2f_jax import errors
from mh2f_jax.datasets import synthetic
from mh2f_jax.metrics import brisque
from mh2f_jax.metrics import niqe
from mh2f_jax.metrics import no_reference


@pytest.fixture(name='photo', scope='module')
def _photo():
  return synthetic.test_photo('chelsea')[:200, :240]


@pytest.fixture(name='scorer', scope='module')
def _scorer():
  return no_reference.Scorer.load(brisque.MODEL_DIR)


def test_float_on_the_0_1_scale_scores_as_its_8_bits(photo, scorer):
  values, _ = scorer.score(photo)
  assert values['niqe'] == niqe.niqe(photo)
  assert values['brisque'] == brisque.brisque(photo)
  assert scorer.score(photo / 255.0)[0] == values
  assert scorer.score((photo / 255.0).astype(np.float32))[0] == values


@pytest.mark.parametrize('scale,low', [(255.0, 0.0), (1.0, -0.2), (1.0, 0.0)])
def test_float_outside_0_1_is_refused_not_clipped(photo, scorer, scale, low):
  image = photo.astype(np.float64) / 255.0 * scale + low
  if scale == 1.0 and low == 0.0:
    image[0, 0, 0] = np.inf
  with pytest.raises(ValueError, match=r'uint8, or float in \[0, 1\]'):
    scorer.score(image)


def test_the_measures_refuse_a_float_image_on_the_0_1_scale(photo):
  # niqe.niqe and brisque.brisque read float input on the releases' 0..255 scale.
  for measure in (niqe.niqe, brisque.brisque):
    with pytest.raises(ValueError, match='0..1 scale'):
      measure(photo / 255.0)
  # On the 0..255 scale a float image is scored (BRISQUE rounds colour input first).
  assert brisque.brisque(photo.astype(np.float64)) == brisque.brisque(photo)


def test_missing_model_files_leave_brisque_out_with_the_reason(tmp_path, photo):
  scorer = no_reference.Scorer.load(tmp_path)
  assert scorer.brisque_model is None and 'allmodel' in scorer.brisque_reason
  values, reasons = scorer.score(photo)
  assert values['brisque'] is None and values['niqe'] is not None
  assert 'no model files' in reasons['brisque']


def test_a_damaged_model_is_an_error_not_a_missing_measure(tmp_path):
  for name in ('allmodel', 'allrange'):
    (tmp_path / name).write_bytes((brisque.MODEL_DIR / name).read_bytes())
  lines = (tmp_path / 'allmodel').read_bytes().split(b'\n')
  (tmp_path / 'allmodel').write_bytes(b'\n'.join(lines[:-100]) + b'\n')
  with pytest.raises(errors.UserError, match='total_sv says 774'):
    no_reference.Scorer.load(tmp_path)
