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

from mh2f_jax import losses
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
  """
  step: jax.Array
  params: Any
  opt_state: Any


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


def check_batch_divisible(batch_size: int, num_devices: int) -> None:
  """Raises UserError unless the global batch splits evenly over the devices."""
  if batch_size % num_devices:
    raise UserError(
        f'batch_size {batch_size} (the global batch) is not divisible by the number of '
        f'devices {num_devices}; set --config.batch_size to a multiple of {num_devices}')


def init_state(model, tx: optax.GradientTransformation, seed: int) -> TrainState:
  """The initial state (a pure function of the seed; run under jit)."""
  init_key = jax.random.fold_in(jax.random.key(seed), 0)
  # Convolution parameters do not depend on the spatial size: initialise on a small image.
  params = model.init(init_key, jnp.zeros((1, 8, 8, 3), jnp.float32))['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def create_train_state(model, tx: optax.GradientTransformation, seed: int,
                       mesh: jax.sharding.Mesh) -> TrainState:
  """Returns the initial state, created directly replicated over ``mesh``."""
  init = functools.partial(init_state, model, tx, seed)
  lowered = jax.jit(init, out_shardings=replicated(mesh)).lower()
  on_cpu = all(d.platform == 'cpu' for d in mesh.devices.flat)
  return lowered.compile(_CPU_INIT_COMPILER_OPTIONS if on_cpu else None)()


def abstract_train_state(model, tx: optax.GradientTransformation, seed: int,
                         mesh: jax.sharding.Mesh) -> TrainState:
  """Returns the state's shapes and dtypes, each leaf carrying the replicated sharding.

  Orbax restores onto these shardings, so a checkpoint saved on another device count
  restores onto this mesh (without shardings it fails with "Topology mismatch").
  """
  repl = replicated(mesh)
  shapes = jax.eval_shape(functools.partial(init_state, model, tx, seed))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
                      shapes)


def train_step(model, tx: optax.GradientTransformation, ssim_weight: float,
               step_key: jax.Array, state: TrainState,
               batch: Mapping[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on a global batch.

  Args:
    model: the Flax module.
    tx: the optimizer.
    ssim_weight: the loss's SSIM weight.
    step_key: the run's step key; each step uses ``fold_in(step_key, state.step)``.
    state: the current state.
    batch: uint8 ``'rainy'`` and ``'clean'`` ``(B, P, P, 3)`` (uint8 moves a quarter of
      the bytes of float32 to the devices).

  Returns:
    ``(new_state, metrics)``: scalars ``loss``, ``l1``, ``ssim``, ``grad_norm``.
  """
  rainy = batch['rainy'].astype(jnp.float32) / 255.0
  clean = batch['clean'].astype(jnp.float32) / 255.0
  # The network is deterministic today; the per-step key keeps any stochastic variant
  # (dropout, stochastic depth) reproducible across a resume.
  rng = jax.random.fold_in(step_key, state.step)

  def loss_fn(params):
    pred = model.apply({'params': params}, rainy, rngs={'dropout': rng})
    # The loss is computed in float32 whatever the computation dtype.
    return losses.hybrid_loss(pred.astype(jnp.float32), clean, ssim_weight)

  (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  metrics = {'loss': loss, 'l1': parts['l1'], 'ssim': parts['ssim'],
             'grad_norm': optax.global_norm(grads)}
  return new_state, metrics


def make_train_step(model, tx: optax.GradientTransformation, *, ssim_weight: float,
                    seed: int, mesh: jax.sharding.Mesh) -> Callable:
  """Returns the jitted ``(state, batch) -> (state, metrics)``, state donated.

  ``batch`` is sharded on 'data'; the new state and the metrics come back replicated.
  """
  step_key = jax.random.fold_in(jax.random.key(seed), 1)
  repl = replicated(mesh)
  step = functools.partial(train_step, model, tx, float(ssim_weight), step_key)
  return jax.jit(step, donate_argnums=0, out_shardings=(repl, repl))


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
