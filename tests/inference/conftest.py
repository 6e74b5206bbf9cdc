"""Fixtures the inference tests share."""

import pytest

from mh2f_jax import inference

from inference_helper import _tiny_model_and_params  # pylint: disable=g-bad-import-order


@pytest.fixture(name='hadb_derainer', scope='module')
def _hadb_derainer():
  """A Derainer of a random tiny model with HADB (one per test module)."""
  return inference.Derainer(*_tiny_model_and_params('hadb'))
