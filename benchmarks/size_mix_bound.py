"""How fast can any size-bucket scheme be on a mix of sizes? A bound from measured costs.

Reads the JSON lines of ``benchmarks/size_mix_bench.py`` run with the modes
``per_size`` and ``one_size`` (same images, same pixels) and derives two costs:

* ``program_s``: what each extra distinct input shape costs (tracing, lowering, XLA's
  compile, the first run), ``(per_size.wall - one_size.wall) / (count - 1)``;
* ``pixel_s``: the run time per pixel at the one size, ``(one_size.wall - program_s) /
  pixels``.

Then, for 1 to ``--max_programs`` buckets, it searches bucket shapes (every bucket side
one of the images' own sides, rounded up to the network's padding multiple: a bucket
larger than its largest image only adds pixels) for the lowest modelled time
``programs * program_s + pixel_s * sum(bucket pixels of each image)``, and prints it
against the one size's. The model favours buckets: it charges a padded pixel no more
than a pixel at the one size, while on a CPU larger inputs run slower per pixel. The search is a local search from
``--restarts`` random starts, so a printed ratio is the best found, not proven minimal.
Last, the smallest single canvas found that packs all the images (MaxRects), for the
other way to one program: several images per input, masked from each other.

Usage::

  python benchmarks/size_mix_bench.py --modes per_size,one_size > mix.jsonl
  python benchmarks/size_mix_bound.py mix.jsonl [--program_s 0.5]

with the same ``--count``, ``--min`` and ``--max`` as the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import size_mix_bench  # pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, size_mix_bench._REPO)  # pylint: disable=protected-access
# The network pads each side to a multiple of ALIGN itself (so do the buckets).
# pylint: disable-next=g-import-not-at-top,wrong-import-position
from mh2f_jax.model.receptive_field import ALIGN, align_up


def bucket_costs(sizes: list[tuple[int, int]]) -> np.ndarray:
  """(candidates, images) pixels of each candidate bucket for each image, inf if too small."""
  sides = np.array([(align_up(h), align_up(w)) for h, w in sizes])
  cands = np.array(sorted({(h, w) for h in sides[:, 0] for w in sides[:, 1]}))
  fits = (cands[:, None, 0] >= sides[None, :, 0]) & (cands[:, None, 1] >= sides[None, :, 1])
  return np.where(fits, (cands[:, 0] * cands[:, 1])[:, None].astype(float), np.inf)


def best_pixels(pixels: np.ndarray, programs: int, restarts: int,
                rng: np.random.Generator) -> float:
  """The fewest padded pixels found with ``programs`` buckets (local search)."""
  best = np.inf
  for _ in range(restarts):
    chosen = list(rng.choice(len(pixels), programs, replace=False))
    current = pixels[chosen].min(0).sum()
    improved = True
    while improved:
      improved = False
      for slot in range(programs):
        others = pixels[chosen[:slot] + chosen[slot + 1:]].min(0) if programs > 1 else np.inf
        totals = np.minimum(pixels, others).sum(1)  # every candidate in this slot
        j = int(np.argmin(totals))
        if totals[j] < current - 0.5:
          chosen[slot], current, improved = j, totals[j], True
    best = min(best, current)
  return float(best)


def _place(free: list, y: int, x: int, h: int, w: int) -> list:
  """MaxRects: the free rectangles (x, y, w, h) left after taking (y, x, h, w)."""
  out = []
  for fx, fy, fw, fh in free:
    if x >= fx + fw or x + w <= fx or y >= fy + fh or y + h <= fy:
      out.append((fx, fy, fw, fh))
      continue
    out += [r for r in ((fx, fy, x - fx, fh), (x + w, fy, fx + fw - x - w, fh),
                        (fx, fy, fw, y - fy), (fx, y + h, fw, fy + fh - y - h))
            if r[2] > 0 and r[3] > 0]
  inside = lambda a, b: (b[0] <= a[0] and b[1] <= a[1] and a[0] + a[2] <= b[0] + b[2]
                         and a[1] + a[3] <= b[1] + b[3])
  return [a for i, a in enumerate(out)
          if not any(inside(a, b) and (a != b or j < i) for j, b in enumerate(out) if j != i)]


def pack(items: list[tuple[int, int]], width: int, height: int
         ) -> list[tuple[int, int]] | None:
  """MaxRects (bottom-left): each (h, w) item's (y, x) in the canvas, or None if one fails."""
  free, spots = [(0, 0, width, height)], []
  for h, w in items:
    options = [(fy + h, fx, fy) for fx, fy, fw, fh in free if w <= fw and h <= fh]
    if not options:
      return None
    _, x, y = min(options)
    spots.append((y, x))
    free = _place(free, y, x, h, w)
  return spots


def tightest_canvas(sizes: list[tuple[int, int]], gap: int = ALIGN, step: int = 64,
                    max_width: int = 2048) -> tuple[int, int]:
  """The smallest canvas (height, width) found that packs every image with ``gap``.

  Each image keeps ``gap`` pixels of empty canvas to its right and below (one pixel at
  the network's quarter scale, which its 3x3 convolutions need to stay inside their own
  image); widths and heights are multiples of ``step``; four orders are tried.
  """
  items = [(align_up(h) + gap, align_up(w) + gap) for h, w in sizes]
  orders = (lambda t: t, lambda t: t[::-1], lambda t: t[0] * t[1], max)
  best = None
  for width in range(-(-max(w for _, w in items) // step) * step, max_width + 1, step):
    for order in orders:
      ranked = sorted(items, key=order, reverse=True)
      height = -(-max(h for h, _ in items) // step) * step
      while pack(ranked, width + gap, height + gap) is None:
        height += step
      if best is None or height * width < best[0] * best[1]:
        best = (height, width)
  return best


def _fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('results', help="size_mix_bench.py's output (JSON lines)")
  size_mix_bench.add_size_flags(parser)
  parser.add_argument('--program_s', type=float, default=None,
                      help='what-if: this cost per program instead of the measured one')
  parser.add_argument('--max_programs', type=int, default=8)
  parser.add_argument('--restarts', type=int, default=100)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  runs = {}
  try:
    with open(args.results, encoding='utf-8') as f:
      records = [json.loads(line) for line in f if line.strip()]
  except (OSError, ValueError) as e:
    _fail(f'cannot read {args.results}: {e}')
  for record in records:
    if isinstance(record, dict) and 'mode' in record:
      runs[record['mode']] = record
  missing = {'per_size', 'one_size'} - set(runs)
  if missing:
    _fail(f'{args.results} lacks the mode(s) {", ".join(sorted(missing))}')
  per_size, one = runs['per_size'], runs['one_size']
  count = per_size['images']
  measured_program_s = (per_size['wall_s'] - one['wall_s']) / (count - 1)
  pixel_s = (one['wall_s'] - measured_program_s) / one['pixels']
  program_s = measured_program_s if args.program_s is None else args.program_s
  sizes = size_mix_bench.sizes_for(args)  # the sizes the benchmark drew
  if len(sizes) != count or sum(h * w for h, w in sizes) != per_size['pixels']:
    _fail(f'{args.results} was run with other --count/--min/--max flags')
  reference = program_s + pixel_s * one['pixels']
  pixels = bucket_costs(sizes)
  rng = np.random.default_rng(args.seed)
  print(json.dumps({'measured_program_s': round(measured_program_s, 3),
                    'program_s': program_s, 'pixel_us': round(pixel_s * 1e6, 3)}))
  for programs in range(1, args.max_programs + 1):
    padded = best_pixels(pixels, programs, args.restarts, rng)
    modelled = programs * program_s + pixel_s * padded
    print(json.dumps({'programs': programs,
                      'padding': round(padded / per_size['pixels'] - 1, 3),
                      'time_ratio': round(modelled / reference, 3)}))
  height, width = tightest_canvas(sizes)
  print(json.dumps({'one_canvas': f'{height}x{width}',
                    'padding': round(height * width / per_size['pixels'] - 1, 3)}))


if __name__ == '__main__':
  main()
