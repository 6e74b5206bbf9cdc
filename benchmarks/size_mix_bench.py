"""The JAX forward pass over a mix of image sizes: size buckets against one program per size.

One fresh process per mode, the persistent compilation cache off (a cold start). Each
derains ``--count`` images of distinct sizes (``--min`` to ``--max`` pixels a side,
drawn with a fixed seed) with the default MH2F-Net, and, for the reference, the same
number of pixels as ``--count`` images of one size. Modes: ``stream`` (the library's JAX
path as eval runs it: ``inference.derain_stream``, size buckets with each image's program
started before the previous output is waited for), ``buckets`` (``inference.size_buckets``
one image at a time), ``per_size`` (the jitted network at each image's own size, as
before buckets) and ``one_size``. One JSON line per mode: wall and CPU
seconds, programs compiled and their seconds (``runtime.compile_count``), the machine's
load; then the ratios per pixel to ``one_size``.

Usage::

  python benchmarks/size_mix_bench.py [--count 20] [--min 200] [--max 520]
      [--features 32] [--blocks 8] [--modes stream,buckets,per_size,one_size]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_size_flags(parser: argparse.ArgumentParser) -> None:
  """The flags that choose the images' sizes (``size_mix_bound.py`` takes them too)."""
  parser.add_argument('--count', type=int, default=20)
  parser.add_argument('--min', type=int, default=200)
  parser.add_argument('--max', type=int, default=520)


def sizes_for(args: argparse.Namespace) -> list[tuple[int, int]]:
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  sizes = set()
  while len(sizes) < args.count:
    sizes.add(tuple(int(v) for v in rng.integers(args.min, args.max + 1, 2)))
  return sorted(sizes)


def child(args: argparse.Namespace) -> dict:
  """Derains the images of one mode in this process; returns the figures."""
  os.environ['MH2F_COMPILATION_CACHE'] = 'off'
  sys.path.insert(0, _REPO)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mh2f_jax import inference  # pylint: disable=g-import-not-at-top
  from mh2f_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  from mh2f_jax.inference import forward  # pylint: disable=g-import-not-at-top
  from mh2f_jax.inference import size_buckets  # pylint: disable=g-import-not-at-top
  from mh2f_jax.runtime import compile_count  # pylint: disable=g-import-not-at-top
  model = model_lib.MH2FNet(features=args.features, num_blocks=args.blocks)
  # Time does not depend on the parameter values: zeros, without compiling an init.
  params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                        model_lib.abstract_params(model))
  sizes = sizes_for(args)
  if args.mode == 'one_size':
    side = int(math.sqrt(sum(h * w for h, w in sizes) / len(sizes)))
    sizes = [(side, side)] * len(sizes)
  per_size = forward.forward_fn(model)
  derainer = inference.Derainer(model, params, backend='jax') if args.mode == 'stream' else None
  rng = np.random.default_rng(1)
  images = (rng.uniform(0, 1, (1, h, w, 3)).astype(np.float32) for h, w in sizes)
  t0, cpu0 = time.perf_counter(), time.process_time()
  with compile_count.counting() as seen:
    if args.mode == 'stream':
      for _ in inference.derain_stream(derainer, (x[0] for x in images)):
        pass
    for x in images:  # (empty after 'stream')
      if args.mode == 'buckets':
        size_buckets.forward(model, params, x)
      else:
        np.asarray(per_size(params, x))
  return {'mode': args.mode, 'images': len(sizes),
          'pixels': sum(h * w for h, w in sizes), 'wall_s': time.perf_counter() - t0,
          'cpu_s': time.process_time() - cpu0, 'programs': seen.programs,
          'forward_programs': sum('jit(run)' in n or 'jit(<lambda>)' in n
                                  for n in seen.names),
          'compile_s': seen.seconds, 'load_avg_1min': os.getloadavg()[0]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  add_size_flags(parser)
  parser.add_argument('--features', type=int, default=32)
  parser.add_argument('--blocks', type=int, default=8)
  parser.add_argument('--modes', default='stream,buckets,per_size,one_size')
  parser.add_argument('--mode', help=argparse.SUPPRESS)
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(child(args)))
    return
  results = {}
  for mode in args.modes.split(','):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', '--mode', mode] + [
        f'--{k}={getattr(args, k)}' for k in ('count', 'min', 'max', 'features', 'blocks')]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=_REPO)
    results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(results[mode]), flush=True)
  if 'one_size' in results:
    # Per pixel, against one size; CPU seconds too, as the wall time grows with the load.
    print(json.dumps({f'{m}_{k}_ratio': round(
        r[k] / r['pixels'] / (results['one_size'][k] / results['one_size']['pixels']), 3)
                      for m, r in results.items() for k in ('wall_s', 'cpu_s')}))


if __name__ == '__main__':
  main()
