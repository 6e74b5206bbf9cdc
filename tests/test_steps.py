"""Tests of mh2f_jax.steps (the sharded paths run in tests/test_train_lib.py)."""

import pytest

from mh2f_jax import steps
from mh2f_jax.errors import UserError


def test_check_batch_divisible():
  steps.check_batch_divisible(16, 8)
  with pytest.raises(UserError, match='batch_size 12 .* devices 8'):
    steps.check_batch_divisible(12, 8)
