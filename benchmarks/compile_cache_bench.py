r"""What the persistent compilation cache saves: the same work in two fresh processes.

Each process compiles, exactly as the entry points do, (a) the training library's train
step for the chosen model (``lower(...).compile()``, the "compiled the train step" line
of ``train.py``: tracing and lowering included) and (b) the eval step for ``--sizes``
distinct image sizes (one executable per size, as evaluating a split of many sizes
needs). The first process starts from an empty cache folder, the second finds it
filled. One JSON line per process, then a summary line.

Usage::

  python benchmarks/compile_cache_bench.py [--features 32] [--blocks 8] [--sizes 4]
      [--scan_blocks]     # model.scan_blocks=True
      [--cache_dir DIR]   # default: a new temporary folder, removed afterwards
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sizes(count: int) -> list[tuple[int, int]]:
  # Distinct sizes around the benchmarks' 321x481, as a mixed test split has.
  return [(321 - 4 * i, 481 - 8 * i) for i in range(count)]


def child(args: argparse.Namespace) -> dict:
  """Compiles the train step and the eval steps in this process; returns the times."""
  sys.path.insert(0, _REPO)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from mh2f_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  from mh2f_jax.runtime import compile_cache
  from mh2f_jax.training import optim
  from mh2f_jax.training import steps
  compile_cache.enable(args.cache_dir)
  config = default.get_config()
  config.model.features, config.model.num_blocks = args.features, args.blocks
  config.model.scan_blocks = args.scan_blocks
  model = model_lib.from_config(config.model)
  mesh = steps.create_mesh()
  tx, _ = optim.create_optimizer(config.optim, 1000)
  t0 = time.perf_counter()
  state = steps.create_train_state(model, tx, config.seed, mesh)
  init_s = time.perf_counter() - t0
  step = steps.make_train_step(model, tx, ssim_weight=0.2, seed=0, mesh=mesh)
  shape = (config.batch_size, config.data.patch_size, config.data.patch_size, 3)
  batch = {k: np.zeros(shape, np.uint8) for k in ('rainy', 'clean')}
  t0, cpu0 = time.perf_counter(), time.process_time()
  traced = step.trace(state, batch)
  t1 = time.perf_counter()
  lowered = traced.lower()
  t2 = time.perf_counter()
  lowered.compile()  # XLA's compile, or the load from a filled cache
  t3 = time.perf_counter()
  train_s, train_cpu_s = t3 - t0, time.process_time() - cpu0
  parts = {'trace_s': t1 - t0, 'lower_s': t2 - t1, 'compile_or_load_s': t3 - t2}
  cache_bytes = sum(os.path.getsize(os.path.join(d, f))
                    for d, _, names in os.walk(args.cache_dir) for f in names)
  eval_step = steps.make_eval_step(model)
  t0, cpu0 = time.perf_counter(), time.process_time()
  for height, width in _sizes(args.sizes):
    image = np.zeros((1, height, width, 3), np.uint8)
    jax.block_until_ready(eval_step(state.params, image, image))
  eval_s, eval_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
  # CPU seconds (all threads of this process) next to wall seconds: on a shared host
  # the wall time grows with the load.
  return {'init_s': init_s, 'train_step_compile_s': train_s,
          **parts, 'cache_bytes_after_train_step': cache_bytes, 'scan_blocks': args.scan_blocks,
          'train_step_compile_cpu_s': train_cpu_s, 'eval_steps_s': eval_s,
          'eval_steps_cpu_s': eval_cpu_s, 'eval_sizes': args.sizes,
          'load_avg_1min': os.getloadavg()[0]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--features', type=int, default=32)
  parser.add_argument('--blocks', type=int, default=8)
  parser.add_argument('--sizes', type=int, default=4, help='distinct eval image sizes')
  parser.add_argument('--cache_dir', default=None)
  parser.add_argument('--scan_blocks', action='store_true',
                      help='model.scan_blocks=True: the blocks as one loop')
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(child(args)))
    return
  cache_dir = args.cache_dir or tempfile.mkdtemp(prefix='mh2f-compile-bench-')
  runs = []
  try:
    for label in ('first run (empty cache)', 'second run (cache filled)'):
      cmd = [sys.executable, os.path.abspath(__file__), '--child', '--cache_dir', cache_dir,
             '--features', str(args.features), '--blocks', str(args.blocks),
             '--sizes', str(args.sizes)] + (['--scan_blocks'] if args.scan_blocks else [])
      out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=_REPO)
      runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
      print(label, json.dumps(runs[-1]), flush=True)
  finally:
    if args.cache_dir is None:
      shutil.rmtree(cache_dir, ignore_errors=True)
  print(json.dumps({key: [r[key] for r in runs] for key in (
      'train_step_compile_s', 'train_step_compile_cpu_s', 'trace_s', 'lower_s',
      'compile_or_load_s', 'cache_bytes_after_train_step', 'eval_steps_s',
      'eval_steps_cpu_s', 'init_s')}))


if __name__ == '__main__':
  main()
