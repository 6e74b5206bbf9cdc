"""The optimizer: Adam with the configured learning-rate schedule and clipping."""

import ml_collections
import optax

from mh2f_jax import config_schema
from mh2f_jax.errors import UserError


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
    raise UserError(f'config field optim.schedule: must be one of '
                    f'{", ".join(config_schema.SCHEDULES)}, got {optim.schedule!r}')
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
