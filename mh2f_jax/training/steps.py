"""The training state, the device mesh, and the jitted train and eval steps.

* One mesh axis ``'data'`` over all devices of all processes (``AxisType.Auto``: plain
  data parallelism needs no sharding annotations inside the model). Parameters and
  optimizer state are replicated; each global batch is split over the devices. The
  state is created already replicated by ``jit(init, out_shardings=...)``, and the step
  is one ``jit`` with the state donated. XLA inserts the gradient all-reduce: the
  gradient of the mean loss over the global batch is already global.
* Each process hands its own slice of a global batch to :func:`global_batch`
  (``jax.make_array_from_process_local_data``), which assembles the global array without
  any process holding all of it.
* :func:`train_step` and :func:`eval_step` are pure module-level functions;
  :func:`make_train_step` and :func:`make_eval_step` bind the model (and optimizer) and
  jit them.
* Gradient accumulation: with ``grad_accum_steps = k`` the global batch is split into
  ``k`` micro-batches that run one after another (``lax.scan``) inside the one jitted
  step, their float32 gradients summed; one optimizer update follows. Each micro-batch
  takes every device's next ``per-device batch / k`` examples, so it stays spread over
  all devices and no example moves between them. The micro-batches are equal in size,
  so the mean of their mean losses and gradients is the full batch's: ``k`` changes
  memory, not the result (to float rounding).
* EMA: with ``ema_decay = d`` the state also holds ``ema_params``, updated after each
  step as ``d * ema + (1 - d) * params`` (from the initial parameters, no bias
  correction, as in BasicSR's trainers). It is None when off, and then the checkpoint
  has the layout it had before EMA existed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import functools
from typing import Any

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mh2f_jax.training import losses
from mh2f_jax import metrics as metrics_lib
from mh2f_jax.errors import UserError

# The initialiser runs once and takes microseconds, but XLA's CPU backend spends long
# optimising its hundred-odd random draws; these options cut that to a fraction
# (docs/architecture.md, Design measurements).
_CPU_INIT_COMPILER_OPTIONS = {'xla_backend_optimization_level': 0,
                              'xla_llvm_disable_expensive_passes': True}


@struct.dataclass
class TrainState:
  """Everything a step updates; saved as the checkpoint item 'state'.

  Attributes:
    step: number of completed optimizer steps (int32 scalar).
    params: the Flax ``params`` collection.
    opt_state: the optax state.
    ema_params: the exponential moving average of ``params``, or None (EMA off).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any = None


def create_mesh() -> jax.sharding.Mesh:
  """Returns a 1-D mesh ``('data',)`` over all devices of all processes.

  Auto axes: with ``make_mesh``'s default Explicit axes, reshapes inside the model
  (pooling, upsampling) fail with ``ShardingTypeError``.
  """
  return jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """The sharding of parameters, optimizer state and metrics: a full copy per device."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def check_batch_divisible(batch_size: int, num_devices: int,
                          grad_accum_steps: int = 1) -> None:
  """Raises UserError unless the batch splits over the devices, then into micro-batches.

  Args:
    batch_size: the global batch.
    num_devices: the devices of all processes.
    grad_accum_steps: the micro-batches each device's share is split into.
  """
  if batch_size % num_devices:
    raise UserError(
        f'batch_size {batch_size} (the global batch) is not divisible by the number of '
        f'devices {num_devices}; set --config.batch_size to a multiple of {num_devices}')
  per_device = batch_size // num_devices
  if per_device % grad_accum_steps:
    raise UserError(
        f'grad_accum_steps {grad_accum_steps} does not divide the per-device batch '
        f'{per_device} (batch_size {batch_size} over {num_devices} devices); choose a '
        f'divisor of {per_device} or change batch_size')


def init_state(model, tx: optax.GradientTransformation, seed: int,
               ema: bool = False) -> TrainState:
  """The initial state (a pure function of the seed; run under jit).

  ``ema``: also hold ``ema_params``, starting equal to the parameters.
  """
  init_key = jax.random.fold_in(jax.random.key(seed), 0)
  # Convolution parameters do not depend on the spatial size: initialise on a small image.
  params = model.init(init_key, jnp.zeros((1, 8, 8, 3), jnp.float32))['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    ema_params=jax.tree.map(jnp.copy, params) if ema else None)


def create_train_state(model, tx: optax.GradientTransformation, seed: int,
                       mesh: jax.sharding.Mesh, ema: bool = False) -> TrainState:
  """Returns the initial state, created directly replicated over ``mesh``."""
  init = functools.partial(init_state, model, tx, seed, ema)
  lowered = jax.jit(init, out_shardings=replicated(mesh)).lower()
  on_cpu = all(d.platform == 'cpu' for d in mesh.devices.flat)
  return lowered.compile(_CPU_INIT_COMPILER_OPTIONS if on_cpu else None)()


def abstract_train_state(model, tx: optax.GradientTransformation, seed: int,
                         mesh: jax.sharding.Mesh, ema: bool = False) -> TrainState:
  """Returns the state's shapes and dtypes, each leaf carrying the replicated sharding.

  Orbax restores onto these shardings, so a checkpoint saved on another device count
  restores onto this mesh (without shardings it fails with "Topology mismatch").
  """
  repl = replicated(mesh)
  shapes = jax.eval_shape(functools.partial(init_state, model, tx, seed, ema))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
                      shapes)


def split_micro_batches(x: jax.Array, grad_accum_steps: int, num_shards: int) -> jax.Array:
  """Splits a batch ``(B, ...)`` into ``(grad_accum_steps, B / grad_accum_steps, ...)``.

  Micro-batch ``i`` takes, from each of the ``num_shards`` contiguous device slices of the
  batch, its ``i``-th run of ``B / (num_shards * grad_accum_steps)`` examples: every
  micro-batch stays spread over all devices, so the split moves no data between them.
  """
  per_shard = x.shape[0] // num_shards
  x = x.reshape((num_shards, grad_accum_steps, per_shard // grad_accum_steps) + x.shape[1:])
  x = jnp.swapaxes(x, 0, 1)
  return x.reshape((grad_accum_steps, x.shape[1] * x.shape[2]) + x.shape[3:])


def loss_and_grads(model, ssim_weight: float, rng: jax.Array, params: Any,
                   rainy_u8: jax.Array, clean_u8: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
  """The gradient of the mean loss over a (micro-)batch, and ``loss``, ``l1``, ``ssim``."""
  rainy = rainy_u8.astype(jnp.float32) / 255.0
  clean = clean_u8.astype(jnp.float32) / 255.0

  def loss_fn(params):
    pred = model.apply({'params': params}, rainy, rngs={'dropout': rng})
    # The loss is computed in float32 whatever the computation dtype.
    return losses.hybrid_loss(pred.astype(jnp.float32), clean, ssim_weight)

  (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  return grads, {'loss': loss, 'l1': parts['l1'], 'ssim': parts['ssim']}


def accumulated_grads(model, ssim_weight: float, rng: jax.Array, params: Any,
                      batch: Mapping[str, jax.Array], grad_accum_steps: int, num_shards: int,
                      micro_sharding: jax.sharding.Sharding | None = None
                      ) -> tuple[Any, dict[str, jax.Array]]:
  """Like :func:`loss_and_grads` on the whole batch, in ``grad_accum_steps`` micro-batches.

  The micro-batches run one after another in a ``lax.scan`` (only one micro-batch's
  activations are alive at a time); gradients and losses are summed in float32 and
  divided by the count (the micro-batches are of equal size).
  """
  if grad_accum_steps == 1:
    return loss_and_grads(model, ssim_weight, rng, params, batch['rainy'], batch['clean'])
  micro = {}
  for key in ('rainy', 'clean'):
    micro[key] = split_micro_batches(batch[key], grad_accum_steps, num_shards)
    if micro_sharding is not None:
      micro[key] = jax.lax.with_sharding_constraint(micro[key], micro_sharding)

  def body(carry, inputs):
    index, mb = inputs
    grads, metrics = loss_and_grads(model, ssim_weight, jax.random.fold_in(rng, index),
                                    params, mb['rainy'], mb['clean'])
    return jax.tree.map(lambda a, b: a + b.astype(jnp.float32), carry, (grads, metrics)), None

  zeros = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.float32),
                       (params, {'loss': 0.0, 'l1': 0.0, 'ssim': 0.0}))
  (grad_sum, metric_sum), _ = jax.lax.scan(
      body, zeros, (jnp.arange(grad_accum_steps), micro))
  grads = jax.tree.map(lambda g, p: (g / grad_accum_steps).astype(p.dtype), grad_sum, params)
  return grads, jax.tree.map(lambda m: m / grad_accum_steps, metric_sum)


def train_step(model, tx: optax.GradientTransformation, ssim_weight: float,
               step_key: jax.Array, state: TrainState,
               batch: Mapping[str, jax.Array], *, grad_accum_steps: int = 1,
               num_shards: int = 1, ema_decay: float | None = None,
               micro_sharding: jax.sharding.Sharding | None = None
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on a global batch.

  Args:
    model: the Flax module.
    tx: the optimizer.
    ssim_weight: the loss's SSIM weight.
    step_key: the run's step key; each step uses ``fold_in(step_key, state.step)``.
    state: the current state.
    batch: uint8 ``'rainy'`` and ``'clean'`` ``(B, P, P, 3)`` (uint8 moves a quarter of
      the bytes of float32 to the devices).
    grad_accum_steps: micro-batches the batch is split into (see the module docstring).
    num_shards: the devices the batch is split over (for the micro-batch split).
    ema_decay: the EMA decay; None when ``state.ema_params`` is None.
    micro_sharding: the sharding of the ``(grad_accum_steps, B / grad_accum_steps, ...)``
      micro-batches; None leaves it to XLA.

  Returns:
    ``(new_state, metrics)``: scalars ``loss``, ``l1``, ``ssim``, ``grad_norm``.
  """
  # The network is deterministic today; the per-step key keeps any stochastic variant
  # (dropout, stochastic depth) reproducible across a resume.
  rng = jax.random.fold_in(step_key, state.step)
  grads, metrics = accumulated_grads(model, ssim_weight, rng, state.params, batch,
                                     grad_accum_steps, num_shards, micro_sharding)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema_params = None
  if ema_decay is not None:
    ema_params = optax.incremental_update(params, state.ema_params, 1.0 - ema_decay)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema_params)
  return new_state, {**metrics, 'grad_norm': optax.global_norm(grads)}


def make_train_step(model, tx: optax.GradientTransformation, *, ssim_weight: float,
                    seed: int, mesh: jax.sharding.Mesh, grad_accum_steps: int = 1,
                    ema_decay: float | None = None) -> Callable:
  """Returns the jitted ``(state, batch) -> (state, metrics)``, state donated.

  ``batch`` is sharded on 'data'; the new state and the metrics come back replicated.
  """
  step_key = jax.random.fold_in(jax.random.key(seed), 1)
  repl = replicated(mesh)
  micro_sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(None, 'data'))
  step = functools.partial(
      train_step, model, tx, float(ssim_weight), step_key,
      grad_accum_steps=int(grad_accum_steps), num_shards=mesh.size,
      ema_decay=None if ema_decay is None else float(ema_decay),
      micro_sharding=micro_sharding)
  return jax.jit(step, donate_argnums=0, out_shardings=(repl, repl))


def eval_params(state: TrainState) -> Any:
  """The parameters validation scores: the EMA ones when the run keeps them."""
  return state.params if state.ema_params is None else state.ema_params


def eval_step(model, params: Any, rainy: jax.Array,
              clean: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Derains ``(1, H, W, 3)`` uint8 images and scores them (protocol B on Y).

  Returns:
    ``(pred, psnr_y, ssim_y)``; ``pred`` is clipped to [0, 1].
  """
  pred = model.apply({'params': params}, rainy.astype(jnp.float32) / 255.0)
  pred = pred.astype(jnp.float32)
  psnr_y, ssim_y = metrics_lib.psnr_ssim_y(pred, clean.astype(jnp.float32) / 255.0)
  return jnp.clip(pred, 0.0, 1.0), psnr_y, ssim_y


def make_eval_step(model) -> Callable:
  """Returns the jitted ``(params, rainy_u8, clean_u8) -> (pred, psnr_y, ssim_y)``.

  Images are full size (the model pads internally): one compilation per distinct size.
  """
  return jax.jit(functools.partial(eval_step, model))


def global_batch(local: Mapping[str, Any], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Assembles this process's slice of a batch into global arrays sharded on 'data'."""
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(local[k]))
          for k in ('rainy', 'clean')}


def local_copy(tree: Any) -> Any:
  """Returns the tree's shard on this process's first device (replicated leaves)."""
  return jax.tree.map(lambda x: x.addressable_data(0), tree)
