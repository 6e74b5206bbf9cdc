"""Time and peak memory of deraining one 4000x3000 photo with the default MH2F-Net, tiled.

Usage:
  python benchmarks/derain_bench.py [--height=3000] [--width=4000] [--tile=512]
      [--tiling=exact|approx] [--overlap=64] [--self_ensemble] [--backend=auto|jax|onnxruntime]

The parameters are random (drawn with NumPy, with the MHEB scales ``gamma`` nonzero):
time and memory do not depend on the values, only on the architecture and the image
size. The photo is scikit-image's astronaut resized to the requested size. Reported: the
warm-up (compiling the tile shapes, or building the ONNX Runtime sessions, and deraining
one tile), the wall time of the tiled
derain (compilation excluded) and its CPU time, the number of output tiles, and the
process's peak resident memory (``resource.getrusage(...).ru_maxrss``) before deraining
and at the end.
"""

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from PIL import Image  # pylint: disable=wrong-import-position
import skimage.data  # pylint: disable=wrong-import-position

from mh2f_jax import inference  # pylint: disable=wrong-import-position
from mh2f_jax import model as model_lib  # pylint: disable=wrong-import-position
from mh2f_jax.inference import blended_tiling  # pylint: disable=wrong-import-position
from mh2f_jax.model import receptive_field  # pylint: disable=wrong-import-position


def peak_rss_mib() -> float:
  # Linux reports ru_maxrss in KiB.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--height', type=int, default=3000)
  parser.add_argument('--width', type=int, default=4000)
  parser.add_argument('--tile', type=int, default=inference.DEFAULT_TILE_SIZE)
  parser.add_argument('--overlap', type=int, default=inference.DEFAULT_TILE_OVERLAP)
  parser.add_argument('--tiling', default=inference.DEFAULT_TILING,
                      choices=inference.TILING_CHOICES)
  parser.add_argument('--self_ensemble', action='store_true')
  parser.add_argument('--backend', default='auto', choices=('auto', 'jax', 'onnxruntime'),
                      help="as the derain CLI's --backend (default auto)")
  args = parser.parse_args()

  model = model_lib.MH2FNet()  # The default (paper) configuration.
  rng = np.random.default_rng(0)

  def make(path, leaf):
    # The values do not change the cost; these keep the output in a sane range
    # (kernels of variance 0.5 / fan_in, MHEB gamma nonzero so every block computes).
    name = jax.tree_util.keystr(path)
    if 'gamma' in name:
      return np.full(leaf.shape, 0.1, np.float32)
    if 'kernel' in name:
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) * np.sqrt(0.5 / fan_in)).astype(np.float32)
    return np.zeros(leaf.shape, np.float32)

  params = jax.tree_util.tree_map_with_path(make, model_lib.abstract_params(model))
  derainer = inference.Derainer(model, params, tile_size=args.tile,
                                tile_overlap=args.overlap, tiling=args.tiling,
                                backend=args.backend)
  photo = np.asarray(Image.fromarray(skimage.data.astronaut()).resize(
      (args.width, args.height), Image.BICUBIC))
  rss_before = peak_rss_mib()

  ph, pw = receptive_field.align_up(args.height), receptive_field.align_up(args.width)
  tile = min(args.tile, ph), min(args.tile, pw)
  start = time.perf_counter()
  if args.tiling == 'exact':
    # Compiles every stage's window shape (they depend on the tile size only), or builds
    # the stage sessions of the onnxruntime backend.
    derainer._run_tiled(np.zeros((*tile, 3), np.float32))  # pylint: disable=protected-access
  else:
    derainer._run(np.zeros((1, *tile, 3), np.float32))  # pylint: disable=protected-access
  compile_s = time.perf_counter() - start

  tiled = derainer.will_tile(args.height, args.width)
  if args.tiling == 'exact':
    tiles = -(-ph // tile[0]) * -(-pw // tile[1])
  else:
    tiles = (len(blended_tiling.tile_starts(ph, args.tile, args.overlap))
             * len(blended_tiling.tile_starts(pw, args.tile, args.overlap)))
  start, cpu_start = time.perf_counter(), time.process_time()
  out = derainer.derain(photo, self_ensemble=args.self_ensemble)
  seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
  assert out.shape == photo.shape and out.dtype == np.uint8
  result = {
      'image': f'{args.width}x{args.height}',
      'tiling': args.tiling, 'tile': args.tile, 'overlap': args.overlap,
      'tiles': tiles if tiled else 1,
      'self_ensemble': args.self_ensemble,
      'tiled': tiled,
      'backend': derainer.backend,
      'warmup_seconds': round(compile_s, 1),
      'derain_seconds': round(seconds, 1),
      's_per_mp': round(seconds / (args.height * args.width / 1e6), 2),
      # CPU time of all the process's threads: less sensitive than wall time to other
      # jobs sharing the machine.
      'derain_cpu_seconds': round(cpu_seconds, 1),
      'load_average': os.getloadavg()[0],
      'peak_rss_mib_before': round(rss_before),
      'peak_rss_mib': round(peak_rss_mib()),
      'device': str(jax.devices()[0]),
      'cpu_count': os.cpu_count(),
  }
  print(json.dumps(result))


if __name__ == '__main__':
  main()
