"""Tests for benchmarks/size_mix_bound.py: the bucket search and the canvas packing.

docs/performance.md rests its bound for issue-style size mixes on these two searches; the
tests check them on cases whose answer is known, and the script's handling of bad input.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
import size_mix_bench  # pylint: disable=g-import-not-at-top,wrong-import-position
import size_mix_bound  # pylint: disable=g-import-not-at-top,wrong-import-position

SCRIPT = os.path.join(REPO, 'benchmarks', 'size_mix_bound.py')


def test_one_bucket_per_size_pads_nothing_and_one_bucket_is_the_largest():
  sizes = [(200, 300), (300, 200), (248, 248)]
  pixels = size_mix_bound.bucket_costs(sizes)
  rng = np.random.default_rng(0)
  exact = sum(h * w for h, w in sizes)
  assert size_mix_bound.best_pixels(pixels, 3, 5, rng) == exact
  # One bucket must hold all three: 300 x 300 for each image.
  assert size_mix_bound.best_pixels(pixels, 1, 5, rng) == 3 * 300 * 300


def test_two_buckets_found_by_the_search_are_the_best_pair():
  sizes = [(200, 212), (228, 300), (304, 240), (400, 400), (416, 204)]
  pixels = size_mix_bound.bucket_costs(sizes)
  brute = min(pixels[list(pair)].min(0).sum()
              for pair in itertools.combinations(range(len(pixels)), 2))
  found = size_mix_bound.best_pixels(pixels, 2, 20, np.random.default_rng(1))
  assert found == brute


def test_packing_places_every_item_inside_without_overlap():
  items = [(104, 204), (204, 104), (64, 64), (128, 96), (96, 128), (40, 200)]
  spots = size_mix_bound.pack(items, 360, 360)
  assert spots is not None
  cover = np.zeros((360, 360), int)
  for (h, w), (y, x) in zip(items, spots):
    assert y + h <= 360 and x + w <= 360
    cover[y:y + h, x:x + w] += 1
  assert cover.max() == 1


def test_packing_fails_when_the_area_is_too_small():
  assert size_mix_bound.pack([(100, 100)] * 5, 200, 200) is None


def test_tightest_canvas_of_four_squares_is_their_square():
  # Four 96-pixel images (100 with the gap) fill a 200 x 200 canvas minus the outer gap.
  assert size_mix_bound.tightest_canvas([(96, 96)] * 4, step=4) == (196, 196)


def _run(*args):
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        check=False, timeout=120)


def test_reads_the_benchmark_lines_and_rejects_other_flags(tmp_path):
  sizes = size_mix_bench.sizes_for(argparse.Namespace(count=4, min=40, max=80))
  pixels = sum(h * w for h, w in sizes)
  side = int(np.sqrt(pixels / 4))
  results = tmp_path / 'mix.jsonl'
  results.write_text(
      json.dumps({'mode': 'per_size', 'images': 4, 'pixels': pixels, 'wall_s': 10.0}) + '\n'
      + json.dumps({'mode': 'one_size', 'images': 4, 'pixels': 4 * side * side,
                    'wall_s': 4.0}) + '\n')
  done = _run(str(results), '--count=4', '--min=40', '--max=80', '--max_programs=2')
  assert done.returncode == 0, done.stderr
  lines = [json.loads(line) for line in done.stdout.splitlines()]
  assert lines[0]['measured_program_s'] == 2.0  # (10 - 4) / 3
  assert [line.get('programs') for line in lines[1:3]] == [1, 2]
  assert 'one_canvas' in lines[-1]
  # The default sizes are not the ones this file was made with.
  wrong = _run(str(results))
  assert wrong.returncode == 2 and wrong.stderr.startswith('error: ')
  missing = _run(str(tmp_path / 'absent.jsonl'))
  assert missing.returncode == 2 and 'absent.jsonl' in missing.stderr
