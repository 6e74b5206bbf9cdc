"""Memory of one compiled train step with and without gradient accumulation.

Usage:
  python benchmarks/grad_accum_memory.py [--batch_size=16] [--patch_size=64]
      [--grad_accum_steps=1,4] [--features=32] [--num_blocks=8] [--ema_decay=0.999]

For each ``grad_accum_steps`` the default MH2F-Net's train step (``steps.make_train_step``,
as training runs it) is lowered on abstract inputs of the given batch on one device,
compiled, and XLA's memory analysis of the compiled program is printed
(``compiled.memory_analysis()``): the arguments (state and batch), the outputs, the
temporaries (activations kept for the backward pass, gradients, workspace), and the
peak ``arguments + outputs + temporaries - aliased`` (the donated state is aliased to
the new one). Nothing is run, so the figures do not depend on the machine's load; they
are those of the backend the process runs on (CPU here, a GPU's where there is one).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from mh2f_jax import config_schema  # pylint: disable=wrong-import-position
from mh2f_jax import model as model_lib  # pylint: disable=wrong-import-position
from mh2f_jax.training import optim  # pylint: disable=wrong-import-position
from mh2f_jax.training import steps  # pylint: disable=wrong-import-position

_MIB = 2.0**20


def step_memory(config, grad_accum_steps: int) -> dict:
  """Compiles the train step for ``grad_accum_steps`` and returns its memory in MiB."""
  model = model_lib.from_config(config.model)
  tx, _ = optim.create_optimizer(config.optim, 1000)
  mesh = steps.create_mesh()
  ema = config.ema_decay is not None
  state = steps.abstract_train_state(model, tx, config.seed, mesh, ema)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  shape = (config.batch_size, config.data.patch_size, config.data.patch_size, 3)
  batch = {k: jax.ShapeDtypeStruct(shape, np.uint8, sharding=sharding)
           for k in ('rainy', 'clean')}
  train_step = steps.make_train_step(
      model, tx, ssim_weight=config.loss.ssim_weight, seed=config.seed, mesh=mesh,
      grad_accum_steps=grad_accum_steps, ema_decay=config.ema_decay)
  start = time.perf_counter()
  compiled = train_step.lower(state, batch).compile()
  seconds = time.perf_counter() - start
  stats = compiled.memory_analysis()
  sizes = {name: getattr(stats, f'{name}_size_in_bytes') / _MIB
           for name in ('argument', 'output', 'temp', 'alias')}
  peak = sizes['argument'] + sizes['output'] + sizes['temp'] - sizes['alias']
  return {'grad_accum_steps': grad_accum_steps,
          **{f'{k}_mib': round(v, 1) for k, v in sizes.items()},
          'peak_mib': round(peak, 1), 'compile_s': round(seconds, 1)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--patch_size', type=int, default=64)
  parser.add_argument('--grad_accum_steps', default='1,4')
  parser.add_argument('--features', type=int, default=32)
  parser.add_argument('--num_blocks', type=int, default=8)
  parser.add_argument('--ema_decay', type=float, default=None)
  args = parser.parse_args()
  config = config_schema.default_config()
  config.batch_size = args.batch_size
  config.data.patch_size = args.patch_size
  config.model.features = args.features
  config.model.num_blocks = args.num_blocks
  config.ema_decay = args.ema_decay
  print(f'backend: {jax.default_backend()}, devices: {jax.device_count()}, batch '
        f'{args.batch_size} of {args.patch_size}x{args.patch_size}, model '
        f'{args.features} features, {args.num_blocks} MHEBs', flush=True)
  for k in (int(v) for v in args.grad_accum_steps.split(',')):
    print(json.dumps(step_memory(config, k)), flush=True)


if __name__ == '__main__':
  main()
