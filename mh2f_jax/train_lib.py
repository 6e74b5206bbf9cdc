"""Training MH2F-Net: sharded data parallelism, exact resumption, validation and logging.

:func:`train_and_evaluate` runs the paper's protocol (``configs/default.py``) on every
device of every process:

* One mesh axis ``'data'`` over all devices (``AxisType.Auto``: plain data parallelism
  needs no explicit sharding annotations inside the model). Parameters and optimizer
  state are replicated; each global batch is split over the devices. The state is
  created already replicated by ``jit(init, out_shardings=...)``, and the step is one
  ``jit`` with the state donated. XLA inserts the gradient all-reduce: the gradient of
  the mean loss over the global batch is already global.
* Each process reads its own slice of every global batch (Grain) and hands it to
  ``jax.make_array_from_process_local_data``, which assembles the global array without
  any process holding all of it.
* The workdir is the unit of resumption (see ``mh2f_jax.checkpointing`` for the layout):
  a run started on a workdir that has checkpoints continues from the newest, model
  state and data iterator together, so a resumed run gives bit-identical parameters to
  an uninterrupted one.
* Process 0 logs: tensorboardX scalars and image grids, ``metrics.jsonl``, a tqdm bar.

Everything random is derived from ``config.seed``: the initial parameters, the data order
and crops (Grain), and a per-step key ``fold_in(key, step)``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import logging
from flax import struct
import grain
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

from mh2f_jax import checkpointing
from mh2f_jax import input_pipeline
from mh2f_jax import losses
from mh2f_jax import metrics as metrics_lib
from mh2f_jax import model as model_lib
from mh2f_jax.errors import UserError

SCHEDULES = ('multistep', 'cosine', 'constant')
# Config fields a resumed run must share with the run that wrote the workdir: they define
# the network in the checkpoint ('model') and the data stream the saved iterator state
# indexes into. Everything else (steps, epochs, schedule, intervals, validation, paths)
# may change on resume; see docs/training.md.
FROZEN_FIELDS = ('model', 'seed', 'batch_size', 'data.dataset', 'data.train_split',
                 'data.num_workers')
# Inside the frozen blocks, but free to change on resume: how the same network is
# computed (and absent from workdirs written before the field existed).
UNFROZEN_FIELDS = ('model.conv_kernel_grad',)
METRICS_FILE = 'metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'
# Eval images shown as rainy | derained | clean grids.
NUM_GRID_IMAGES = 2


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


class NonFiniteLossError(UserError):
  """The loss became NaN or infinite; training stopped without saving the bad state."""


# ----------------------------------------------------------------------------- config


def _get(config: Any, dotted: str) -> Any:
  value = config
  for part in dotted.split('.'):
    value = value[part]
  return value


def _require(condition: bool, field: str, message: str) -> None:
  if not condition:
    raise UserError(f'config field {field}: {message}')


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks the config's values before anything expensive happens.

  Args:
    config: a config with the schema of ``configs/default.py``.

  Raises:
    UserError: a missing field or a bad value; the message names the field and what is
      allowed.
  """
  required = ('seed', 'batch_size', 'num_epochs', 'num_train_steps', 'log_every_steps',
              'checkpoint_every_steps', 'eval_every_steps', 'image_every_steps',
              'max_to_keep', 'num_eval_images', 'model', 'data.dataset',
              'data.data_dir', 'data.manual_dir', 'data.train_split', 'data.eval_split',
              'data.patch_size', 'data.hflip', 'data.num_workers', 'data.cache',
              'data.cache_max_gb', 'optim.learning_rate',
              'optim.b1', 'optim.b2', 'optim.eps', 'optim.schedule', 'optim.decay_at',
              'optim.decay_factor', 'optim.warmup_steps', 'optim.grad_clip_norm',
              'loss.ssim_weight')
  for field in required:
    try:
      _get(config, field)
    except (KeyError, AttributeError):
      raise UserError(f'config has no field {field} (see configs/default.py)') from None

  _require(_is_int(config.seed), 'seed', f'must be an integer, got {config.seed!r}')
  _require(_is_int(config.batch_size) and config.batch_size >= 1, 'batch_size',
           f'must be a positive integer (the global batch), got {config.batch_size!r}')
  if config.num_train_steps is None:
    _require(isinstance(config.num_epochs, (int, float)) and config.num_epochs > 0,
             'num_epochs', f'must be > 0 when num_train_steps is None, got '
             f'{config.num_epochs!r}')
  else:
    _require(_is_int(config.num_train_steps) and config.num_train_steps >= 1,
             'num_train_steps', f'must be a positive integer or None, got '
             f'{config.num_train_steps!r}')
  for field in ('log_every_steps', 'checkpoint_every_steps'):
    value = config[field]
    _require(_is_int(value) and value >= 1, field, f'must be an integer >= 1, got {value!r}')
  for field in ('eval_every_steps', 'image_every_steps'):
    value = config[field]
    _require(_is_int(value) and value >= 0, field,
             f'must be an integer >= 0 (0 disables), got {value!r}')
  _require(config.max_to_keep is None or (_is_int(config.max_to_keep)
                                          and config.max_to_keep >= 1),
           'max_to_keep', f'must be an integer >= 1 or None (keep all), got '
           f'{config.max_to_keep!r}')
  _require(config.num_eval_images is None or (_is_int(config.num_eval_images)
                                              and config.num_eval_images >= 0),
           'num_eval_images', f'must be an integer >= 0 or None (all), got '
           f'{config.num_eval_images!r}')

  data = config.data
  _require(isinstance(data.dataset, str) and data.dataset, 'data.dataset',
           f'must name a dataset (e.g. rain200l, synthetic_rain/heavy), got {data.dataset!r}')
  _require(_is_int(data.patch_size) and data.patch_size >= 1, 'data.patch_size',
           f'must be a positive integer, got {data.patch_size!r}')
  _require(_is_int(data.num_workers) and data.num_workers >= 0, 'data.num_workers',
           f'must be an integer >= 0, got {data.num_workers!r}')
  _require(data.cache in input_pipeline.CACHE_CHOICES, 'data.cache',
           f'must be one of {", ".join(input_pipeline.CACHE_CHOICES)}, got {data.cache!r}')
  _require(isinstance(data.cache_max_gb, (int, float)) and not isinstance(
      data.cache_max_gb, bool) and data.cache_max_gb >= 0, 'data.cache_max_gb',
           f'must be a number of GB >= 0, got {data.cache_max_gb!r}')

  optim = config.optim
  _require(optim.schedule in SCHEDULES, 'optim.schedule',
           f'must be one of {", ".join(SCHEDULES)}, got {optim.schedule!r}')
  _require(isinstance(optim.learning_rate, (int, float)) and optim.learning_rate > 0,
           'optim.learning_rate', f'must be > 0, got {optim.learning_rate!r}')
  for field in ('b1', 'b2'):
    value = optim[field]
    _require(isinstance(value, (int, float)) and 0 <= value < 1, f'optim.{field}',
             f'must be in [0, 1), got {value!r}')
  _require(isinstance(optim.eps, (int, float)) and optim.eps >= 0, 'optim.eps',
           f'must be >= 0, got {optim.eps!r}')
  _require(_is_int(optim.warmup_steps) and optim.warmup_steps >= 0, 'optim.warmup_steps',
           f'must be an integer >= 0, got {optim.warmup_steps!r}')
  _require(optim.grad_clip_norm is None or (isinstance(optim.grad_clip_norm, (int, float))
                                            and optim.grad_clip_norm > 0),
           'optim.grad_clip_norm', f'must be > 0 or None, got {optim.grad_clip_norm!r}')
  # Checked whatever the schedule, so a later switch to 'multistep' cannot fail mid-run.
  decay_at = optim.decay_at
  _require(isinstance(decay_at, (tuple, list)) and all(
      isinstance(f, (int, float)) and 0 < f < 1 for f in decay_at), 'optim.decay_at',
           f'must be a sequence of fractions of the steps in (0, 1), got {decay_at!r}')
  _require(isinstance(optim.decay_factor, (int, float)) and optim.decay_factor > 0,
           'optim.decay_factor', f'must be > 0, got {optim.decay_factor!r}')
  _require(isinstance(config.loss.ssim_weight, (int, float)) and config.loss.ssim_weight >= 0,
           'loss.ssim_weight', f'must be >= 0, got {config.loss.ssim_weight!r}')
  # The model validates its own block (field names and allowed values).
  model_lib.from_config(config.model)


def resolve_num_train_steps(config: ml_collections.ConfigDict, num_train_examples: int) -> int:
  """Returns ``num_train_steps``, or ``ceil(num_epochs * examples / batch_size)`` if None."""
  if config.num_train_steps is not None:
    return int(config.num_train_steps)
  return max(1, math.ceil(config.num_epochs * num_train_examples / config.batch_size))


def config_differences(saved: Mapping[str, Any], given: Mapping[str, Any],
                       fields: Sequence[str] = FROZEN_FIELDS) -> list[str]:
  """Lists the frozen fields that differ, as ``'model.features: saved 8, given 16'``.

  Args:
    saved: the workdir's ``config.json`` as a dict.
    given: the new config as a dict.
    fields: dotted field names; a field naming a block compares every entry in it.

  Returns:
    One line per differing leaf field, sorted.
  """
  missing = object()

  def flatten(prefix, value, out):
    if isinstance(value, Mapping):
      for k, v in value.items():
        flatten(f'{prefix}.{k}', v, out)
    else:
      out[prefix] = value

  def lookup(tree, dotted):
    value = tree
    for part in dotted.split('.'):
      if not isinstance(value, Mapping) or part not in value:
        return missing
      value = value[part]
    return value

  def norm(v):
    # JSON turns tuples into lists.
    return list(v) if isinstance(v, tuple) else v

  lines = []
  for field in fields:
    a, b = {}, {}
    flatten(field, lookup(saved, field), a)
    flatten(field, lookup(given, field), b)
    for key in sorted((set(a) | set(b)) - set(UNFROZEN_FIELDS)):
      va, vb = a.get(key, missing), b.get(key, missing)
      if norm(va) != norm(vb):
        show = lambda v: '(absent)' if v is missing else json.dumps(norm(v))
        lines.append(f'{key}: saved {show(va)}, given {show(vb)}')
  return sorted(lines)


# -------------------------------------------------------------------------- optimizer


def create_learning_rate_schedule(optim: ml_collections.ConfigDict,
                                  num_train_steps: int) -> optax.Schedule:
  """Returns the learning rate as a function of the number of completed steps.

  'multistep' multiplies the rate by ``decay_factor`` once ``decay_at[i] *
  num_train_steps`` steps are done (fractions of the whole run, warmup included);
  'cosine' decays to 0 over the steps after the warmup; 'constant' keeps it. A warmup
  of ``warmup_steps`` ramps linearly from 0 first.

  Args:
    optim: the ``config.optim`` block.
    num_train_steps: total steps of the run.

  Returns:
    An optax schedule.
  """
  lr = float(optim.learning_rate)
  warmup = int(optim.warmup_steps)
  if optim.schedule == 'constant':
    main = optax.constant_schedule(lr)
  elif optim.schedule == 'cosine':
    main = optax.cosine_decay_schedule(lr, decay_steps=max(1, num_train_steps - warmup))
  elif optim.schedule == 'multistep':
    scales: dict[int, float] = {}
    for fraction in optim.decay_at:
      # Boundaries count from the end of the warmup, which join_schedules subtracts.
      boundary = max(0, int(fraction * num_train_steps) - warmup)
      # Fractions that round to the same step (very short runs) compound.
      scales[boundary] = scales.get(boundary, 1.0) * float(optim.decay_factor)
    main = optax.piecewise_constant_schedule(lr, scales)
  else:
    raise UserError(f'config field optim.schedule: must be one of {", ".join(SCHEDULES)}, '
                    f'got {optim.schedule!r}')
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def create_optimizer(optim: ml_collections.ConfigDict,
                     num_train_steps: int) -> tuple[optax.GradientTransformation,
                                                    optax.Schedule]:
  """Returns Adam with the configured schedule (and clipping), and the schedule.

  The optimizer state has the same structure whatever the schedule or clipping, so those
  may change when a run is resumed.
  """
  schedule = create_learning_rate_schedule(optim, num_train_steps)
  clip = (optax.clip_by_global_norm(float(optim.grad_clip_norm))
          if optim.grad_clip_norm is not None else optax.identity())
  tx = optax.chain(clip, optax.adam(schedule, b1=float(optim.b1), b2=float(optim.b2),
                                    eps=float(optim.eps)))
  return tx, schedule


# ---------------------------------------------------------------------------- sharding


def create_mesh() -> jax.sharding.Mesh:
  """Returns a 1-D mesh ``('data',)`` over all devices of all processes.

  Auto axes: with ``make_mesh``'s default Explicit axes, reshapes inside the model
  (pooling, upsampling) fail with ``ShardingTypeError``.
  """
  return jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))


def check_batch_divisible(batch_size: int, num_devices: int) -> None:
  """Raises UserError unless the global batch splits evenly over the devices."""
  if batch_size % num_devices:
    raise UserError(
        f'batch_size {batch_size} (the global batch) is not divisible by the number of '
        f'devices {num_devices}; set --config.batch_size to a multiple of {num_devices}')


def _init_fn(model, tx, seed: int) -> Callable[[], TrainState]:
  def init() -> TrainState:
    init_key = jax.random.fold_in(jax.random.key(seed), 0)
    # Convolution parameters do not depend on the spatial size: initialise on a small
    # image.
    params = model.init(init_key, jnp.zeros((1, 8, 8, 3), jnp.float32))['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params))
  return init


# The initialiser runs once and takes microseconds, but XLA's CPU backend spends tens of
# seconds optimising its hundred-odd random draws (measured: 50 s at the default level,
# 13 s with these options, for a 2-block model on 2 cores).
_CPU_INIT_COMPILER_OPTIONS = {'xla_backend_optimization_level': 0,
                              'xla_llvm_disable_expensive_passes': True}


def create_train_state(model, tx, seed: int, mesh: jax.sharding.Mesh) -> TrainState:
  """Returns the initial state, created directly replicated over ``mesh``."""
  repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  lowered = jax.jit(_init_fn(model, tx, seed), out_shardings=repl).lower()
  on_cpu = all(d.platform == 'cpu' for d in mesh.devices.flat)
  return lowered.compile(_CPU_INIT_COMPILER_OPTIONS if on_cpu else None)()


def abstract_train_state(model, tx, seed: int, mesh: jax.sharding.Mesh) -> TrainState:
  """Returns the state's shapes and dtypes, each leaf carrying the replicated sharding.

  Orbax restores onto these shardings, so a checkpoint saved on another device count
  restores onto this mesh (without shardings it fails with "Topology mismatch").
  """
  repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  shapes = jax.eval_shape(_init_fn(model, tx, seed))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
                      shapes)


def make_train_step(model, tx, *, ssim_weight: float, seed: int,
                    mesh: jax.sharding.Mesh) -> Callable[[TrainState, dict], tuple]:
  """Returns the jitted step ``(state, batch) -> (state, metrics)``, state donated.

  ``batch`` holds uint8 ``'rainy'`` and ``'clean'`` ``(B, P, P, 3)`` sharded on 'data'
  (uint8 moves a quarter of the bytes of float32 to the devices); ``metrics`` holds
  replicated scalars ``loss``, ``l1``, ``ssim``, ``grad_norm``.
  """
  repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  step_key = jax.random.fold_in(jax.random.key(seed), 1)

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    rainy = batch['rainy'].astype(jnp.float32) / 255.0
    clean = batch['clean'].astype(jnp.float32) / 255.0
    # The network is deterministic today; the per-step key keeps any stochastic variant
    # (dropout, stochastic depth) reproducible across a resume.
    rng = jax.random.fold_in(step_key, state.step)

    def loss_fn(params):
      pred = model.apply({'params': params}, rainy, rngs={'dropout': rng})
      # The loss is computed in float32 whatever the computation dtype.
      loss, parts = losses.hybrid_loss(pred.astype(jnp.float32), clean, ssim_weight)
      return loss, parts

    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    out = {'loss': loss, 'l1': parts['l1'], 'ssim': parts['ssim'],
           'grad_norm': optax.global_norm(grads)}
    return new_state, out

  return jax.jit(train_step, donate_argnums=0, out_shardings=(repl, repl))


def make_eval_step(model) -> Callable:
  """Returns the jitted ``(params, rainy_u8, clean_u8) -> (pred, psnr_y, ssim_y)``.

  Images are ``(1, H, W, 3)`` uint8 at full size (the model pads internally);
  ``pred`` is clipped to [0, 1]. One compilation per distinct image size.
  """
  @jax.jit
  def eval_step(params, rainy, clean):
    pred = model.apply({'params': params}, rainy.astype(jnp.float32) / 255.0)
    pred = pred.astype(jnp.float32)
    psnr_y, ssim_y = metrics_lib.psnr_ssim_y(pred, clean.astype(jnp.float32) / 255.0)
    return jnp.clip(pred, 0.0, 1.0), psnr_y, ssim_y
  return eval_step


def _local_copy(tree: Any) -> Any:
  """Returns the tree's shard on this process's first device (replicated leaves)."""
  return jax.tree.map(lambda x: x.addressable_data(0), tree)


# ------------------------------------------------------------------------------- data


def get_sources(config: ml_collections.ConfigDict) -> tuple[Any, Any]:
  """Returns the (train, eval) random-access sources named by ``config.data``.

  The eval source is None when validation is off (``num_eval_images == 0``). With
  several processes, process 0 prepares (builds) the dataset first while the others wait.
  """
  from mh2f_jax import datasets  # pylint: disable=g-import-not-at-top  (TFDS is slow to import)
  data = config.data
  kwargs = dict(data_dir=data.data_dir, manual_dir=data.manual_dir)
  if jax.process_count() > 1:
    if jax.process_index() == 0:
      datasets.prepare(data.dataset, **kwargs)
    multihost_utils.sync_global_devices('mh2f_prepare_dataset')
  train = datasets.get_source(data.dataset, data.train_split, **kwargs)
  evaluation = None
  if config.num_eval_images != 0:
    evaluation = datasets.get_source(data.dataset, data.eval_split, **kwargs)
  return train, evaluation


# ---------------------------------------------------------------------------- signals


class _StopRequest:
  """Turns SIGTERM/SIGINT into a flag the loop checks between steps.

  The loop then finishes the current step, saves a checkpoint and returns. A second
  SIGINT (Ctrl-C twice) interrupts at once.
  """

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signum = signum
    logging.warning('received %s: finishing the current step, then saving a checkpoint',
                    signal.Signals(signum).name)

  def __enter__(self):
    # Signal handlers can only be installed from the main thread.
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()


# ---------------------------------------------------------------------------- logging


class _Logger:
  """Process-0 outputs: metrics.jsonl, tensorboardX, absl log. No-ops elsewhere."""

  def __init__(self, workdir: str, start_step: int, enabled: bool):
    self.enabled = enabled
    self.writer = None
    self._file = None
    if not enabled:
      return
    path = os.path.join(workdir, METRICS_FILE)
    _truncate_metrics(path, start_step)
    self._file = open(path, 'a')
    import tensorboardX  # pylint: disable=g-import-not-at-top
    self.writer = tensorboardX.SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR))

  def row(self, row: Mapping[str, Any], prefix: str) -> None:
    if not self.enabled:
      return
    self._file.write(json.dumps(row, sort_keys=True) + '\n')
    self._file.flush()
    step = row['step']
    for key, value in row.items():
      if key != 'step' and isinstance(value, (int, float)):
        self.writer.add_scalar(f'{prefix}/{key}', value, step)
    self.writer.flush()

  def images(self, step: int, grids: Sequence[np.ndarray]) -> None:
    if not self.enabled:
      return
    for i, grid in enumerate(grids):
      self.writer.add_image(f'val/rainy_derained_clean_{i}', grid, step, dataformats='HWC')
    self.writer.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    if self.writer is not None:
      self.writer.close()
      self.writer = None


def _truncate_metrics(path: str, start_step: int) -> None:
  """Drops rows past ``start_step``: a resumed run recomputes (and relogs) them."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      continue  # a line cut short by a crash
    if isinstance(row, dict) and row.get('step', 0) <= start_step:
      kept.append(json.dumps(row, sort_keys=True) + '\n')
  if len(kept) != len(lines):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.writelines(kept)
    os.replace(tmp, path)


def _param_count(params: Any) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


# ------------------------------------------------------------------------------- loop


def _evaluate(eval_step, params, eval_source, num_images: int | None,
              grids: int = 0) -> tuple[dict[str, float], list[np.ndarray]]:
  """Mean PSNR/SSIM (Y) over the first ``num_images`` eval images, and image grids."""
  psnrs, ssims, grid_list = [], [], []
  for i, example in enumerate(input_pipeline.create_eval_iterator(
      eval_source, num_images=num_images)):
    pred, psnr_y, ssim_y = eval_step(params, example['rainy'][None], example['clean'][None])
    psnrs.append(float(psnr_y[0]))
    ssims.append(float(ssim_y[0]))
    if i < grids:
      derained = metrics_lib.to_uint8(np.asarray(pred[0]))
      grid_list.append(np.concatenate([example['rainy'], derained, example['clean']], 1))
  if not psnrs:
    return {}, grid_list
  return ({'psnr_y': float(np.mean(psnrs)), 'ssim_y': float(np.mean(ssims)),
           'num_images': len(psnrs)}, grid_list)


def _grids(eval_step, params, eval_source) -> list[np.ndarray]:
  """Returns rainy | derained | clean grids of the first few eval images."""
  out = []
  for example in input_pipeline.create_eval_iterator(eval_source,
                                                     num_images=NUM_GRID_IMAGES):
    pred, _, _ = eval_step(params, example['rainy'][None], example['clean'][None])
    derained = metrics_lib.to_uint8(np.asarray(pred[0]))
    out.append(np.concatenate([example['rainy'], derained, example['clean']], 1))
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       step_callbacks: Sequence[Callable[[int], None]] = ()
                       ) -> dict[str, Any]:
  """Trains (or resumes training) and validates; see the module docstring.

  Args:
    config: a config with the schema of ``configs/default.py``.
    workdir: the run's directory. If it holds checkpoints, training resumes from the
      newest; its ``config.json`` must then agree on ``FROZEN_FIELDS``.
    step_callbacks: functions called with the step number after every step, on every
      process (e.g. a notebook's live display).

  Returns:
    A summary: ``step`` (reached), ``num_train_steps``, the last logged ``loss``, ``l1``,
    ``ssim``, the final validation ``psnr_y``/``ssim_y`` (if run), ``best`` (the best
    record or None), ``interrupted`` (stopped by a signal) and ``workdir``.

  Raises:
    UserError: a bad config, a config that differs from the workdir's in a frozen field
      (every differing field is listed), a batch that does not split over the devices, a
      missing dataset, or a non-finite loss (:class:`NonFiniteLossError`, naming the
      step; checkpoints written before it are kept).
  """
  if isinstance(config, Mapping):
    config = ml_collections.ConfigDict(config)
  validate_config(config)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)

  # Refuse a mismatched resume before any expensive work.
  config_path = os.path.join(workdir, checkpointing.CONFIG_FILE)
  if os.path.exists(config_path):
    saved = checkpointing.load_config(workdir).to_dict()
    diffs = config_differences(saved, config.to_dict())
    if diffs:
      raise UserError(
          f'workdir {workdir} was trained with a different config; these fields must '
          'match to resume (use a new --workdir to start another run):\n  '
          + '\n  '.join(diffs))

  mesh = create_mesh()
  check_batch_divisible(config.batch_size, jax.device_count())
  model = model_lib.from_config(config.model)

  train_source, eval_source = get_sources(config)
  num_train_examples = len(train_source)
  num_train_steps = resolve_num_train_steps(config, num_train_examples)
  resolved = ml_collections.ConfigDict(config.to_dict())
  resolved.num_train_steps = num_train_steps
  if is_main:
    checkpointing.save_config(workdir, resolved)

  tx, schedule = create_optimizer(config.optim, num_train_steps)
  train_source = input_pipeline.cache_source(train_source, config.data.cache,
                                             config.data.cache_max_gb)
  train_iter = input_pipeline.create_train_iterator(
      train_source, global_batch_size=config.batch_size,
      patch_size=config.data.patch_size, hflip=config.data.hflip, seed=config.seed,
      num_workers=config.data.num_workers)
  manager = checkpointing.create_train_manager(workdir, max_to_keep=config.max_to_keep)
  best_manager = None
  latest = manager.latest_step()
  if latest is not None:
    abstract = abstract_train_state(model, tx, config.seed, mesh)
    restored = manager.restore(latest, args=ocp.args.Composite(**{
        checkpointing.STATE_ITEM: ocp.args.StandardRestore(abstract),
        checkpointing.DATA_ITEM: grain.checkpoint.CheckpointRestore(train_iter)}))
    state = restored[checkpointing.STATE_ITEM]
    logging.info('resumed from %s/checkpoints/%d', workdir, latest)
  else:
    state = create_train_state(model, tx, config.seed, mesh)
  start_step = int(jax.device_get(state.step))
  best = checkpointing.read_best(workdir)

  logging.info('processes: %d, devices: %d (%d local), per-device batch: %d',
               jax.process_count(), jax.device_count(), jax.local_device_count(),
               config.batch_size // jax.device_count())
  logging.info('model: %s parameters, %s', f'{_param_count(state.params):,}',
               json.dumps(config.model.to_dict(), sort_keys=True))
  logging.info('training examples: %d, steps: %d (%.3g epochs of batch %d), from step %d',
               num_train_examples, num_train_steps,
               num_train_steps * config.batch_size / num_train_examples,
               config.batch_size, start_step)

  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))

  def next_batch() -> dict[str, jax.Array]:
    local = next(train_iter)
    return {k: jax.make_array_from_process_local_data(batch_sharding, np.asarray(local[k]))
            for k in ('rainy', 'clean')}

  train_step = make_train_step(model, tx, ssim_weight=float(config.loss.ssim_weight),
                               seed=config.seed, mesh=mesh)
  eval_step = make_eval_step(model)
  validate = eval_source is not None and config.num_eval_images != 0
  logger = _Logger(workdir, start_step, enabled=is_main)
  summary: dict[str, Any] = {'step': start_step, 'num_train_steps': num_train_steps,
                             'best': best, 'interrupted': False, 'workdir': workdir}
  pending: list[tuple[int, dict[str, jax.Array]]] = []
  interval = {'start': time.perf_counter(), 'steps': 0}

  def flush_pending() -> list[dict[str, float]]:
    """Fetches the metrics of the steps since the last flush; stops on a non-finite loss."""
    rows = [(s, {k: float(v) for k, v in jax.device_get(m).items()}) for s, m in pending]
    pending.clear()
    for s, row in rows:
      if not math.isfinite(row['loss']):
        last = manager.latest_step()
        kept = (f'the last good checkpoint is step {last} in {manager.directory}'
                if last is not None else 'no checkpoint had been saved yet')
        raise NonFiniteLossError(
            f'non-finite loss ({row["loss"]}) at step {s}; training stopped and nothing '
            f'after it was saved ({kept}). Lower optim.learning_rate or set '
            'optim.grad_clip_norm.')
    return [row for _, row in rows]

  def run_validation(step: int, grids: bool) -> dict[str, float]:
    nonlocal best
    params = _local_copy(state.params)
    t0 = time.perf_counter()
    result, grid_images = _evaluate(eval_step, params, eval_source, config.num_eval_images,
                                    grids=NUM_GRID_IMAGES if grids and is_main else 0)
    if not result:
      return {}
    if jax.process_count() > 1:
      # Every process evaluated the same images; take process 0's numbers so that all
      # agree on whether this is a new best (the save below is collective).
      values = multihost_utils.broadcast_one_to_all(
          np.array([result['psnr_y'], result['ssim_y']], np.float32))
      result['psnr_y'], result['ssim_y'] = float(values[0]), float(values[1])
    is_best = best is None or result['psnr_y'] > best['psnr_y']
    if is_best:
      nonlocal best_manager
      if best_manager is None:
        best_manager = checkpointing.create_best_manager(workdir)
      best = checkpointing.save_best(best_manager, workdir, step, state.params,
                                     result['psnr_y'], result['ssim_y'])
    row = {'step': step, **result, 'best_psnr_y': best['psnr_y'], 'best_step': best['step'],
           'eval_sec': time.perf_counter() - t0}
    logger.row(row, 'val')
    if grid_images:
      logger.images(step, grid_images)
    logging.info('step %d: validation PSNR-Y %.3f dB, SSIM-Y %.4f on %d images%s', step,
                 result['psnr_y'], result['ssim_y'], result['num_images'],
                 ' (best so far)' if is_best else f' (best {best["psnr_y"]:.3f} dB at step '
                 f'{best["step"]})')
    summary.update(psnr_y=result['psnr_y'], ssim_y=result['ssim_y'], best=best)
    return result

  def save(step: int) -> None:
    manager.save(step, args=ocp.args.Composite(**{
        checkpointing.STATE_ITEM: ocp.args.StandardSave(state),
        checkpointing.DATA_ITEM: grain.checkpoint.CheckpointSave(train_iter)}), force=True)

  step = start_step
  bar = None
  try:
    with _StopRequest() as stop:
      if step < num_train_steps:
        batch = next_batch()
        t0 = time.perf_counter()
        compiled_step = train_step.lower(state, batch).compile()
        logging.info('compiled the train step in %.1f s', time.perf_counter() - t0)
      elif is_main:
        logging.info('workdir already trained to step %d of %d: nothing to train', step,
                     num_train_steps)
      # Created after the compilation, so that its rate and ETA are the steps'.
      bar = tqdm.tqdm(total=num_train_steps, initial=start_step, unit='step',
                      dynamic_ncols=True, mininterval=1.0, smoothing=0.1,
                      disable=not is_main)
      interval['start'] = time.perf_counter()
      while step < num_train_steps:
        if step > start_step:
          batch = next_batch()
        with jax.profiler.StepTraceAnnotation('train', step_num=step):
          state, step_metrics = compiled_step(state, batch)
        step += 1
        interval['steps'] += 1
        pending.append((step, step_metrics))
        for callback in step_callbacks:
          callback(step)
        bar.update(1)

        is_last = step == num_train_steps
        log_now = step % config.log_every_steps == 0 or is_last
        stopping = stop.signum is not None
        if jax.process_count() > 1 and log_now:
          # All processes must agree to stop (the save is collective); they compare
          # flags at each log step.
          stopping = bool(np.max(multihost_utils.process_allgather(
              np.int32(stopping))))
        elif jax.process_count() > 1:
          stopping = False
        # The final validation runs before the final checkpoint: a run killed in between
        # redoes both when resumed.
        eval_now = validate and not stopping and (is_last or bool(
            config.eval_every_steps and step % config.eval_every_steps == 0))
        image_now = (validate and config.image_every_steps and is_main
                     and step % config.image_every_steps == 0 and not stopping)
        save_now = step % config.checkpoint_every_steps == 0 or is_last or stopping
        if log_now or eval_now or image_now or save_now:
          rows = flush_pending()
          if log_now:
            now = time.perf_counter()
            elapsed = max(now - interval['start'], 1e-9)
            means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            row = {'step': step, **means, 'lr': float(schedule(step - 1)),
                   'steps_per_sec': interval['steps'] / elapsed,
                   'images_per_sec': interval['steps'] * config.batch_size / elapsed}
            logger.row(row, 'train')
            bar.set_postfix(loss=f'{means["loss"]:.4f}', refresh=False)
            summary.update(step=step, loss=means['loss'], l1=means['l1'],
                           ssim=means['ssim'])
            interval.update(start=time.perf_counter(), steps=0)
        summary['step'] = step
        if eval_now:
          run_validation(step, grids=image_now)
        elif image_now:
          logger.images(step, _grids(eval_step, _local_copy(state.params), eval_source))
        if save_now:
          save(step)
        if eval_now or image_now or save_now:
          # Keep validation and checkpoint time out of the throughput figures.
          interval.update(start=time.perf_counter(), steps=0)
        if stopping:
          summary['interrupted'] = True
          logging.warning('stopped at step %d by %s; checkpoint saved in %s', step,
                          signal.Signals(stop.signum).name if stop.signum else 'a signal',
                          manager.directory)
          break
  finally:
    if bar is not None:
      bar.close()
    manager.wait_until_finished()
    manager.close()
    if best_manager is not None:
      best_manager.close()
    logger.close()
  logging.info('done: step %d, best %s', step, summary['best'])
  return summary
