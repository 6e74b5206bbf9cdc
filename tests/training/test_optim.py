"""Tests of mh2f_jax.training.optim: the learning-rate schedules."""

import os
import sys

import pytest

from mh2f_jax.training import optim

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'tests'))
import train_helper  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_multistep_schedule_divides_by_five_at_30_50_80_percent():
  config = train_helper.tiny_config({'optim.schedule': 'multistep',
                                     'optim.learning_rate': 1e-3})
  schedule = optim.create_learning_rate_schedule(config.optim, 1000)
  # Counts are completed steps: the 301st step (count 300) uses the first decayed rate.
  expected = {0: 1e-3, 299: 1e-3, 300: 2e-4, 499: 2e-4, 500: 4e-5, 799: 4e-5, 800: 8e-6,
              999: 8e-6}
  for count, lr in expected.items():
    assert float(schedule(count)) == pytest.approx(lr, rel=1e-6), count


def test_warmup_then_cosine_schedule():
  config = train_helper.tiny_config({'optim.schedule': 'cosine', 'optim.learning_rate': 2e-3,
                                     'optim.warmup_steps': 10})
  schedule = optim.create_learning_rate_schedule(config.optim, 110)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(1e-3)
  assert float(schedule(10)) == pytest.approx(2e-3)
  assert float(schedule(60)) == pytest.approx(1e-3, rel=1e-5)  # half-way down the cosine
  assert float(schedule(110)) == pytest.approx(0.0, abs=1e-9)
