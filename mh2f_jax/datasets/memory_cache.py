"""The training split decoded once into memory, when it fits: ``data.cache``.

Streaming from a ``tfds.data_source`` decodes two PNGs per crop; :func:`cache_source`
decodes every pair once (in threads) and serves crops from memory. ``'auto'`` caches
when the decoded split, estimated from a few decoded pairs, fits ``data.cache_max_gb``.
The batches are identical either way.
"""

from collections.abc import Mapping, Sequence
from concurrent import futures
import logging
from typing import Any

import numpy as np

from mh2f_jax import files
from mh2f_jax.datasets import input_pipeline
from mh2f_jax.datasets import mixture

CACHE_CHOICES = ('auto', 'memory', 'none')
# Examples decoded to estimate a split's size in memory (spread over the split).
_SIZE_SAMPLES = 8


class MemorySource(Sequence):
  """A training split held decoded in memory: a list of checked example dicts.

  Attributes:
    examples: ``{'rainy', 'clean', 'name'}`` per example, in source order; the images
      are uint8 ``(H, W, 3)`` arrays already checked to form a pair.
    nbytes: bytes held by the images.
  """

  def __init__(self, examples: list[dict[str, Any]]):
    self.examples = examples
    self.nbytes = sum(e['rainy'].nbytes + e['clean'].nbytes for e in examples)

  def __len__(self) -> int:
    return len(self.examples)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self.examples[index]


def _decoded(source: Sequence[Mapping[str, Any]], index: int) -> dict[str, Any]:
  example = source[index]
  name = files.decode_name(example.get('name', str(index)))
  rainy, clean = input_pipeline.checked_pair(example, name)
  return {'rainy': rainy, 'clean': clean, 'name': name}


def estimate_nbytes(source: Sequence[Mapping[str, Any]]) -> int:
  """Estimates the bytes a split's decoded images take, from a few decoded examples."""
  n = len(source)
  picks = sorted({int(i) for i in np.linspace(0, n - 1, min(n, _SIZE_SAMPLES))})
  sample = [_decoded(source, i) for i in picks]
  mean = np.mean([e['rainy'].nbytes + e['clean'].nbytes for e in sample])
  return int(mean * n)


def cache_source(source: Sequence[Mapping[str, Any]], mode: str = 'auto',
                 max_gb: float = 8.0) -> Sequence[Mapping[str, Any]]:
  """Returns the training source to read from: in memory (decoded once) or as given.

  Decoding two PNGs per crop limits a streamed split to a few hundred crops per second
  on a small host; cropping from decoded images in memory is about twenty times faster.
  Each process holds the whole split: over the epochs it reads every example.

  Args:
    source: a random-access source of example dicts (e.g. a ``tfds.data_source``).
    mode: 'memory' (always decode into memory), 'none' (stream from ``source``) or
      'auto' (memory when the decoded split is estimated at <= ``max_gb``).
    max_gb: the 'auto' limit in GB (1e9 bytes).

  Returns:
    A :class:`MemorySource`, or ``source`` itself. Both give the same batches for the
    same seed: the cache changes the speed only.

  Raises:
    ValueError: an unknown mode or a negative ``max_gb``.
    UserError: an example that is not a uint8 (H, W, 3) pair (while decoding).
  """
  if mode not in CACHE_CHOICES:
    raise ValueError(f'cache mode must be one of {", ".join(CACHE_CHOICES)}, got {mode!r}')
  if isinstance(max_gb, bool) or not isinstance(max_gb, (int, float)) or max_gb < 0:
    raise ValueError(f'cache_max_gb must be a number >= 0, got {max_gb!r}')
  if mode == 'none' or isinstance(source, MemorySource) or not len(source):
    return source
  if isinstance(source, mixture.MixedSource):  # Each dataset on its own, sharing the limit.
    return source.with_sources([cache_source(s, mode, max_gb * len(s) / len(source))
                                for s in source.sources])
  if mode == 'auto':
    estimate = estimate_nbytes(source)
    if estimate > max_gb * 1e9:
      logging.info('training split streams from disk: %.1f GB decoded > '
                   'data.cache_max_gb=%g', estimate / 1e9, max_gb)
      return source
  # Decoding (PIL, OpenCV) releases the GIL: threads use every core.
  with futures.ThreadPoolExecutor(input_pipeline.TRAIN_READ_THREADS) as pool:
    examples = list(pool.map(lambda i: _decoded(source, i), range(len(source))))
  cached = MemorySource(examples)
  logging.info('training split held in memory: %d examples, %.2f GB', len(cached),
               cached.nbytes / 1e9)
  return cached


