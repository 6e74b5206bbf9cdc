"""The PyTorch peer deraining one whole photo (default 4000x3000): time and peak memory.

The counterpart of ``derain_bench.py`` for the peer network (``--peer_dir``, the
directory holding ``torch_mh2f.py``): the same scikit-image photo resized to the same
size, one forward pass of the whole image in float32 under ``torch.no_grad()`` after a
warm-up pass on a 512x512 image, as one JSON line with ``derain_seconds``, ``s_per_mp``
and the process's peak resident memory. Needs torch, which is not a dependency of the
project (install it in a separate virtualenv).

Usage::

  python benchmarks/peer_photo.py --peer_dir ../shared/peer [--height 3000] [--width 4000]
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
from PIL import Image
import skimage.data
import torch


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--peer_dir', required=True)
  parser.add_argument('--height', type=int, default=3000)
  parser.add_argument('--width', type=int, default=4000)
  args = parser.parse_args()
  sys.path.insert(0, os.path.abspath(args.peer_dir))
  from torch_mh2f import MH2FNet  # pylint: disable=import-outside-toplevel

  torch.manual_seed(0)
  net = MH2FNet(32, 8).eval()
  photo = np.asarray(Image.fromarray(skimage.data.astronaut()).resize(
      (args.width, args.height), Image.BICUBIC), np.float32) / 255.0
  x = torch.from_numpy(photo).permute(2, 0, 1)[None].contiguous()
  with torch.no_grad():
    net(torch.rand(1, 3, 512, 512))  # Warm-up: the kernels' first-call set-up.
    start, cpu_start = time.perf_counter(), time.process_time()
    out = net(x)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
  assert out.shape == x.shape
  print(json.dumps({
      'peer': 'pytorch', 'torch': torch.__version__, 'threads': torch.get_num_threads(),
      'image': f'{args.width}x{args.height}', 'derain_seconds': round(seconds, 1),
      's_per_mp': round(seconds / (args.height * args.width / 1e6), 2),
      'derain_cpu_seconds': round(cpu_seconds, 1), 'load_average': os.getloadavg()[0],
      # Linux reports ru_maxrss in KiB.
      'peak_rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == '__main__':
  main()
