"""Measures how many training crops per second the input pipeline delivers.

Sources measured:
  * ``memory``: random 321x481 uint8 pairs held decoded in memory (crop, flip, shuffle
    and batching cost only);
  * ``png``: 321x481 pairs cut from scikit-image's bundled photos and held PNG-encoded,
    decoded on every access like a tfds data source does (``data.cache='none'``); the
    rate is also given per Grain worker (``--num_workers``; 0 means the training
    process's own threads, counted as one);
  * ``png cached``: the same PNG source decoded once by ``memory_cache.cache_source``
    (``data.cache='memory'``), with the time the decoding took;
  * ``tfds`` (``--tfds NAME``): a built dataset through ``mh2f_jax.datasets.get_source``.

``--num_images 1800`` gives a Rain200H-sized split (1,800 pairs; the PNG source repeats
``--unique_pngs`` encoded pairs, which decode at the same cost). With ``--with_model`` it
also times a default-model (features 32, 8 blocks) train step on the same batch shape, so
the two rates can be compared.

Usage::

  python benchmarks/input_pipeline_bench.py [--num_images 1800] [--num_batches 250]
      [--with_model] [--tfds rain200l]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from mh2f_jax.datasets import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position

from mh2f_jax.datasets import memory_cache  # pylint: disable=g-import-not-at-top,wrong-import-position

_HEIGHT, _WIDTH = 321, 481  # the size of Rain200L/Rain100L images


def _random_source(count: int, rng: np.random.Generator) -> list[dict]:
  shape = (_HEIGHT, _WIDTH, 3)
  return [{'rainy': rng.integers(0, 256, shape, dtype=np.uint8),
           'clean': rng.integers(0, 256, shape, dtype=np.uint8),
           'name': f'random/{i:03d}.png'} for i in range(count)]


class _PngSource:
  """Random-access source that decodes PNG bytes on every read, as tfds sources do."""

  def __init__(self, count: int, rng: np.random.Generator, unique: int):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    from skimage import data  # pylint: disable=g-import-not-at-top
    photos = [data.astronaut(), data.coffee(), data.rocket(), data.hubble_deep_field(),
              data.immunohistochemistry()]
    self._count = count
    self._pairs = []
    for i in range(min(count, unique)):
      photo = photos[i % len(photos)]
      top = int(rng.integers(0, photo.shape[0] - _HEIGHT + 1))
      left = int(rng.integers(0, photo.shape[1] - _WIDTH + 1))
      clean = photo[top:top + _HEIGHT, left:left + _WIDTH]
      streaks = (rng.random(clean.shape[:2]) < 0.02)[..., None] * 120
      rainy = np.clip(clean.astype(np.int16) + streaks, 0, 255).astype(np.uint8)
      encoded = []
      for image in (rainy, clean):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format='PNG')
        encoded.append(buffer.getvalue())
      self._pairs.append((encoded, f'photo/{i:03d}.png'.encode()))

  def __len__(self) -> int:
    return self._count

  def __getitem__(self, index: int) -> dict:
    from PIL import Image  # pylint: disable=g-import-not-at-top
    (rainy, clean), name = self._pairs[index % len(self._pairs)]
    decode = lambda b: np.asarray(Image.open(io.BytesIO(b)).convert('RGB'))
    return {'rainy': decode(rainy), 'clean': decode(clean), 'name': name}


def _tfds_source(name: str, data_dir: str | None):
  """Returns the train split of a built dataset, or None (with the reason printed)."""
  try:
    from mh2f_jax import datasets  # pylint: disable=g-import-not-at-top
    return datasets.get_source(name, 'train', data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except  (optional part: report and go on)
    print(f'tfds {name}: skipped ({type(e).__name__}: {e})')
    return None


def measure_pipeline(source, args, num_batches: int | None = None) -> tuple[float, float]:
  """Returns crops per second of wall time and per second of this process's CPU time.

  Both are taken after one warm-up batch (thread start-up excluded). On a host shared
  with other work the wall-time rate drops with the load; the CPU-time rate (all threads
  of this process) says what the pipeline costs whatever the load.
  """
  num_batches = num_batches or args.num_batches
  it = input_pipeline.create_train_iterator(
      source, global_batch_size=args.batch_size, patch_size=args.patch_size,
      num_workers=args.num_workers, process_index=0, process_count=1)
  next(it)
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(num_batches):
    next(it)
  crops = num_batches * args.batch_size
  return (crops / (time.perf_counter() - start),
          crops / max(time.process_time() - cpu_start, 1e-9))


def measure_train_step(args) -> float | None:
  """Returns seconds per default-model train step, or None if the model is absent."""
  try:
    import jax  # pylint: disable=g-import-not-at-top
    import optax  # pylint: disable=g-import-not-at-top
    from mh2f_jax import model  # pylint: disable=g-import-not-at-top
    from mh2f_jax.training import losses
  except ImportError as e:
    print(f'model: skipped ({e})')
    return None
  net = model.MH2FNet()  # the default model: features 32, 8 blocks
  shape = (args.batch_size, args.patch_size, args.patch_size, 3)
  rng = np.random.default_rng(0)
  rainy = jax.numpy.asarray(rng.random(shape, dtype=np.float32))
  clean = jax.numpy.asarray(rng.random(shape, dtype=np.float32))
  params = net.init(jax.random.key(0), rainy[:1])
  tx = optax.adam(1e-3)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, rainy, clean):
    loss_fn = lambda p: losses.hybrid_loss(net.apply(p, rainy), clean)[0]
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  start = time.perf_counter()
  params, opt_state, loss = step(params, opt_state, rainy, clean)
  loss.block_until_ready()
  print(f'model: first step (compile + run) {time.perf_counter() - start:.1f} s')
  start = time.perf_counter()
  for _ in range(args.model_steps):
    params, opt_state, loss = step(params, opt_state, rainy, clean)
  loss.block_until_ready()
  return (time.perf_counter() - start) / args.model_steps


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--batch_size', type=int, default=16, help='global batch size')
  parser.add_argument('--patch_size', type=int, default=64)
  parser.add_argument('--num_images', type=int, default=50, help='pairs in each source')
  parser.add_argument('--unique_pngs', type=int, default=100,
                      help='distinct encoded pairs the PNG source repeats')
  parser.add_argument('--num_batches', type=int, default=250, help='batches timed')
  parser.add_argument('--num_workers', type=int, default=0)
  parser.add_argument('--tfds', default=None, help='also measure this built dataset')
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--with_model', action='store_true',
                      help='also time a default-model train step')
  parser.add_argument('--model_steps', type=int, default=3)
  args = parser.parse_args()

  print(f'batch {args.batch_size} x {args.patch_size}x{args.patch_size}, '
        f'{args.num_images} pairs, {os.cpu_count()} CPUs, load average '
        f'{os.getloadavg()[0]:.1f} (shared with anything else running)')
  rng = np.random.default_rng(0)
  png = _PngSource(args.num_images, rng, args.unique_pngs)
  rates = {'memory': measure_pipeline(_random_source(args.num_images, rng), args),
           # Decoding is slow and steady: a tenth of the batches measures it.
           'png': measure_pipeline(png, args, max(5, args.num_batches // 10))}
  start = time.perf_counter()
  cached = memory_cache.cache_source(png, 'memory')
  print(f'png cached: decoded {len(cached)} pairs ({cached.nbytes / 1e9:.2f} GB) in '
        f'{time.perf_counter() - start:.1f} s')
  rates['png cached'] = measure_pipeline(cached, args)
  if args.tfds:
    source = _tfds_source(args.tfds, args.data_dir)
    if source is not None:
      rates[f'tfds {args.tfds}'] = measure_pipeline(source, args)
  for name, (rate, cpu_rate) in rates.items():
    print(f'pipeline [{name}]: {rate:.0f} crops/s = {rate / args.batch_size:.1f} batches/s '
          f'({cpu_rate:.0f} crops per CPU second of this process)')
  workers = max(1, args.num_workers)
  print(f'decode path [png]: {rates["png"][0] / workers:.0f} crops/s per worker '
        f'({args.num_workers} workers; {rates["png"][1]:.0f} crops per CPU second)')
  print(f'load average after: {os.getloadavg()[0]:.1f}')
  if args.with_model:
    seconds = measure_train_step(args)
    if seconds is not None:
      print(f'model: {seconds:.2f} s/step = {1 / seconds:.2f} batches/s consumed')
      for name, (rate, _) in rates.items():
        print(f'pipeline [{name}] / model: {rate / args.batch_size * seconds:.0f}x')


if __name__ == '__main__':
  main()
