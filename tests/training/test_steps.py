"""Tests of mh2f_jax.training.steps (the sharded paths run in tests/training/test_trainer.py)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mh2f_jax import config_schema
from mh2f_jax import model as model_lib
from mh2f_jax.training import optim
from mh2f_jax.training import steps
from mh2f_jax.errors import UserError


def test_check_batch_divisible():
  steps.check_batch_divisible(16, 8)
  with pytest.raises(UserError, match='batch_size 12 .* devices 8'):
    steps.check_batch_divisible(12, 8)
  steps.check_batch_divisible(16, 2, grad_accum_steps=4)
  with pytest.raises(UserError, match='grad_accum_steps 3 does not divide the per-device '
                     'batch 8'):
    steps.check_batch_divisible(16, 2, grad_accum_steps=3)


def test_split_micro_batches_keeps_each_devices_examples():
  x = np.arange(16)
  micro = np.asarray(steps.split_micro_batches(jnp.asarray(x), 2, num_shards=4))
  # Devices hold 0-3, 4-7, 8-11, 12-15; each micro-batch takes two of each's examples.
  np.testing.assert_array_equal(micro, [[0, 1, 4, 5, 8, 9, 12, 13],
                                        [2, 3, 6, 7, 10, 11, 14, 15]])


def _tiny_run(grad_accum_steps: int, ema_decay: float | None, num_steps: int = 10):
  """Trains the tiny model ``num_steps`` steps on fixed random batches of 8 16x16 crops."""
  model = model_lib.MH2FNet(features=8, num_blocks=2)
  optim_config = config_schema.default_config().optim
  optim_config.update({'learning_rate': 2e-3, 'schedule': 'constant'})
  tx = optim.create_optimizer(optim_config, num_steps)[0]
  mesh = steps.create_mesh()
  state = steps.create_train_state(model, tx, 0, mesh, ema=ema_decay is not None)
  step = steps.make_train_step(model, tx, ssim_weight=0.2, seed=0, mesh=mesh,
                               grad_accum_steps=grad_accum_steps, ema_decay=ema_decay)
  rng = np.random.default_rng(0)
  losses = []
  for _ in range(num_steps):
    batch = {k: rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
             for k in ('rainy', 'clean')}
    state, metrics = step(state, steps.global_batch(batch, mesh))
    losses.append(float(metrics['loss']))
  return np.array(losses), jax.device_get(state)


@pytest.fixture(scope='module')
def tiny_runs():
  return {'plain': _tiny_run(1, None), 'accum': _tiny_run(4, 0.9)}


def _assert_trees_close(a, b, rtol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-7)


def test_grad_accumulation_gives_the_same_losses_and_params(tiny_runs):
  (losses, plain), (accum_losses, accum) = tiny_runs['plain'], tiny_runs['accum']
  np.testing.assert_allclose(accum_losses, losses, rtol=1e-5)
  assert int(accum.step) == int(plain.step) == 10
  _assert_trees_close(accum.params, plain.params, rtol=1e-5)
  # Training moved the parameters: the comparison is not of the initial values.
  initial = steps.init_state(model_lib.MH2FNet(features=8, num_blocks=2),
                             optax.adam(1e-3), 0).params
  assert not np.allclose(jax.tree.leaves(plain.params)[0], jax.tree.leaves(initial)[0])


def test_ema_follows_the_params_without_changing_them(tiny_runs):
  plain, accum = tiny_runs['plain'][1], tiny_runs['accum'][1]
  assert plain.ema_params is None
  # The EMA lags behind: between the initial and the current parameters, not equal to
  # either.
  initial = steps.init_state(model_lib.MH2FNet(features=8, num_blocks=2),
                             optax.adam(1e-3), 0).params
  for ema, now, start in zip(jax.tree.leaves(accum.ema_params),
                             jax.tree.leaves(accum.params), jax.tree.leaves(initial)):
    assert ema.shape == now.shape and ema.dtype == now.dtype
  ema, now, start = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
                     for t in (accum.ema_params, accum.params, initial))
  assert 0 < np.linalg.norm(ema - start) < np.linalg.norm(now - start)
  assert not np.allclose(ema, now)


class _OneConv(nn.Module):
  """A 3x3 conv: the accumulation's arithmetic, at a fraction of the network's compile time."""

  @nn.compact
  def __call__(self, x):
    return nn.Conv(3, (3, 3))(x)


def test_accumulated_grads_with_fewer_micro_batches_than_shards_are_the_batch_grads():
  """K = 2 micro-batches of a batch split over 4 shards: the whole batch's mean gradient."""
  model = _OneConv()
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))['params']
  rng = np.random.default_rng(1)
  batch = {k: jnp.asarray(rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
           for k in ('rainy', 'clean')}
  key = jax.random.key(0)
  grads, metrics = jax.jit(functools.partial(steps.loss_and_grads, model, 0.2, key))(
      params, batch['rainy'], batch['clean'])
  accumulated = functools.partial(steps.accumulated_grads, model, 0.2, key,
                                  grad_accum_steps=2, num_shards=4)
  acc_grads, acc_metrics = jax.jit(accumulated)(params, batch)
  for name in ('loss', 'l1', 'ssim'):
    np.testing.assert_allclose(acc_metrics[name], metrics[name], rtol=1e-5, err_msg=name)
  for (path, g), a in zip(jax.tree.leaves_with_path(grads), jax.tree.leaves(acc_grads),
                          strict=True):
    np.testing.assert_allclose(a, g, rtol=1e-5, atol=1e-8,
                               err_msg=jax.tree_util.keystr(path))
  assert any(np.abs(g).max() > 0 for g in jax.tree.leaves(grads))
