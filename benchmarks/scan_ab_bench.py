"""Train-step time of the scanned blocks against the unrolled ones, alternating in one process.

Both forms of the default model's train step (``model.scan_blocks`` True and False) are
compiled in the same process, then run one step each in turn, ``--rounds`` times, on the
same fixed random batch: both see the same machine load. Reports the median wall and
process-CPU seconds per step of each form and their ratio. One JSON line.

Usage::

  python benchmarks/scan_ab_bench.py [--rounds 7] [--features 32] [--blocks 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from configs import default  # pylint: disable=wrong-import-position
from mh2f_jax import model as model_lib  # pylint: disable=wrong-import-position
from mh2f_jax.training import optim  # pylint: disable=wrong-import-position
from mh2f_jax.training import steps  # pylint: disable=wrong-import-position


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rounds', type=int, default=7)
  parser.add_argument('--features', type=int, default=32)
  parser.add_argument('--blocks', type=int, default=8)
  args = parser.parse_args()
  config = default.get_config()
  mesh = steps.create_mesh()
  tx, _ = optim.create_optimizer(config.optim, 1000)
  shape = (config.batch_size, config.data.patch_size, config.data.patch_size, 3)
  rng = np.random.default_rng(0)
  batch = {k: rng.integers(0, 256, shape, dtype=np.uint8) for k in ('rainy', 'clean')}
  forms = {}
  for scan in (True, False):
    model = model_lib.MH2FNet(features=args.features, num_blocks=args.blocks,
                              scan_blocks=scan)
    state = steps.create_train_state(model, tx, config.seed, mesh)
    step = steps.make_train_step(model, tx, ssim_weight=0.2, seed=0, mesh=mesh)
    compiled = step.lower(state, batch).compile()
    state, metrics = compiled(state, batch)  # warm-up
    jax.block_until_ready(metrics)
    forms['scan' if scan else 'unrolled'] = [compiled, state, [], []]
  for _ in range(args.rounds):
    for form in forms.values():
      compiled, state, walls, cpus = form
      t0, c0 = time.perf_counter(), time.process_time()
      state, metrics = compiled(state, batch)
      jax.block_until_ready(metrics)
      walls.append(time.perf_counter() - t0)
      cpus.append(time.process_time() - c0)
      form[1] = state
  result = {'batch': shape[0], 'patch': shape[1], 'rounds': args.rounds}
  for name, (_, _, walls, cpus) in forms.items():
    result[f'{name}_wall_s'] = statistics.median(walls)
    result[f'{name}_cpu_s'] = statistics.median(cpus)
  for k in ('wall_s', 'cpu_s'):
    result[f'scan_over_unrolled_{k}'] = result[f'scan_{k}'] / result[f'unrolled_{k}']
  result['load_avg_1min'] = os.getloadavg()[0]
  print(json.dumps(result))


if __name__ == '__main__':
  main()
