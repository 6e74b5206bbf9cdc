"""Tests of mh2f_jax.training.optim: the learning-rate schedules."""

import os
import sys

import jax.numpy as jnp
import numpy as np
import optax
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


def test_multistep_boundaries_are_fractions_of_all_steps_with_warmup():
  """With a warmup, each decay still lands at its fraction of all the run's steps."""
  config = train_helper.tiny_config({'optim.schedule': 'multistep',
                                     'optim.learning_rate': 1e-3,
                                     'optim.warmup_steps': 100})
  schedule = optim.create_learning_rate_schedule(config.optim, 1000)
  # Linear warmup over counts 0..100, then 1e-3 until 30 % of the 1000 steps are done;
  # divided by 5 at 30 %, 50 % and 80 % of them, warmup included.
  expected = {0: 0.0, 50: 5e-4, 99: 9.9e-4, 100: 1e-3, 299: 1e-3, 300: 2e-4, 499: 2e-4,
              500: 4e-5, 799: 4e-5, 800: 8e-6, 999: 8e-6}
  for count, lr in expected.items():
    assert float(schedule(count)) == pytest.approx(lr, rel=1e-6, abs=1e-12), count


def _adam_updates(tx, grads_seq, params):
  """The updates of ``tx`` for a sequence of gradients, applied one after another."""
  state = tx.init(params)
  out = []
  for grads in grads_seq:
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    out.append(updates)
  return out


@pytest.mark.parametrize('clip', [None, 0.5])
def test_optimizer_is_adam_with_the_configured_b1_b2_eps(clip):
  """Three updates equal optax's Adam (after the clip) with the same b1, b2 and eps."""
  lr, b1, b2, eps = 1e-2, 0.7, 0.95, 1e-2
  config = train_helper.tiny_config({'optim.learning_rate': lr, 'optim.b1': b1,
                                     'optim.b2': b2, 'optim.eps': eps,
                                     'optim.grad_clip_norm': clip})
  tx, _ = optim.create_optimizer(config.optim, 10)
  reference = optax.adam(lr, b1=b1, b2=b2, eps=eps)
  if clip is not None:
    reference = optax.chain(optax.clip_by_global_norm(clip), reference)
  rng = np.random.default_rng(0)
  params = {'w': jnp.asarray(rng.standard_normal((3, 4)), jnp.float32),
            'b': jnp.asarray(rng.standard_normal(4), jnp.float32)}
  # Gradients of changing size and sign: the second moment's decay (b2) and eps matter
  # from the second update on.
  grads_seq = [{k: jnp.asarray(rng.standard_normal(v.shape) * scale, jnp.float32)
                for k, v in params.items()} for scale in (0.05, 0.3, 0.01)]
  got = _adam_updates(tx, grads_seq, params)
  want = _adam_updates(reference, grads_seq, params)
  for step, (g, w) in enumerate(zip(got, want)):
    for key in params:
      np.testing.assert_allclose(g[key], w[key], rtol=1e-6, atol=1e-9,
                                 err_msg=f'update {step + 1}, {key}')
  # The values chosen make a difference: Adam with the defaults gives other updates.
  default = _adam_updates(optax.adam(lr), grads_seq, params)
  assert not np.allclose(default[1]['w'], want[1]['w'], rtol=1e-3)
