"""The input side: the pipeline's crops/s from memory, and a short real training run.

The training run goes through ``training.trainer.train_and_evaluate`` on synthetic rain
held in memory. Its train iterator is wrapped so that every ``next()`` the loop makes is
timed: the share of the run's wall time spent there is the time the loop waited for
input (the device may still be busy with earlier steps meanwhile, so it bounds, from
above, what input costs the run).
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import itertools
import json
import os
import tempfile
import time
from typing import Any
from unittest import mock

import grain
import ml_collections
import numpy as np

from mh2f_jax.datasets import input_pipeline
from mh2f_jax.datasets import memory_cache


def random_pairs(count: int, height: int, width: int, seed: int) -> list[dict[str, Any]]:
  """``count`` random uint8 ``{'rainy', 'clean', 'name'}`` pairs of one size."""
  rng = np.random.default_rng(seed)
  shape = (height, width, 3)
  return [{'rainy': rng.integers(0, 256, shape, dtype=np.uint8),
           'clean': rng.integers(0, 256, shape, dtype=np.uint8),
           'name': f'random/{i:03d}.png'} for i in range(count)]


def pipeline_rate(source: Any, *, batch: int, patch: int, batches: int,
                  seed: int) -> dict[str, Any]:
  """Crops per second the train iterator delivers from ``source`` (after one warm-up batch).

  Returns:
    ``crops_per_s``, ``batches_per_s`` and ``crops_per_cpu_s`` (per second of this
    process's CPU time, all threads: what the pipeline costs whatever the host's load).
  """
  it = input_pipeline.create_train_iterator(
      source, global_batch_size=batch, patch_size=patch, seed=seed, process_index=0,
      process_count=1)
  next(it)
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(batches):
    next(it)
  wall = time.perf_counter() - start
  crops = batches * batch
  return {'source': f'memory, {len(source)} pairs', 'batch': batch,
          'patch': f'{patch}x{patch}', 'crops_per_s': crops / wall,
          'batches_per_s': batches / wall,
          'crops_per_cpu_s': crops / max(time.process_time() - cpu_start, 1e-9)}


class TimedIterator(grain.DatasetIterator):
  """A train iterator that records when each ``next()`` started and how long it took."""

  def __init__(self, parent: grain.DatasetIterator):
    super().__init__(parent)
    self.calls: list[tuple[float, float]] = []

  def __next__(self) -> Any:
    start = time.perf_counter()
    value = next(self._parent)
    self.calls.append((start, time.perf_counter() - start))
    return value

  def get_state(self) -> Any:
    return self._parent.get_state()

  def set_state(self, state: Any) -> None:
    self._parent.set_state(state)


@contextlib.contextmanager
def timed_train_iterators() -> Iterator[list[TimedIterator]]:
  """While open, train iterators the trainer creates are :class:`TimedIterator`s.

  The training loop has no hook for its iterator, and this leaves the loop as it is:
  the wrapper replaces ``input_pipeline.create_train_iterator`` for the block only.
  """
  made, original = [], input_pipeline.create_train_iterator

  def create(*args: Any, **kwargs: Any) -> TimedIterator:
    made.append(TimedIterator(original(*args, **kwargs)))
    return made[-1]

  with mock.patch.object(input_pipeline, 'create_train_iterator', create):
    yield made


def synthetic_source(pairs: int) -> memory_cache.MemorySource:
  """The first ``pairs`` 128x128 training tiles of ``synthetic_rain/heavy``, in memory."""
  from mh2f_jax.datasets import synthetic  # pylint: disable=g-import-not-at-top  (TFDS: slow)
  examples = [{'rainy': rainy, 'clean': clean, 'name': name} for name, rainy, clean in
              itertools.islice(synthetic.generate_pairs('heavy', 'train'), pairs)]
  return memory_cache.MemorySource(examples)


def _logged_rates(workdir: str) -> list[float]:
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [r['steps_per_sec'] for r in rows if 'steps_per_sec' in r]


def training_run(config: ml_collections.ConfigDict, source: Any) -> dict[str, Any]:
  """Trains ``config`` on ``source`` in a temporary workdir; steps/s and input wait.

  Args:
    config: a full config; ``num_train_steps``, ``log_every_steps`` and the batch as
      wanted. Validation is turned off.
    source: the training examples.

  Returns:
    ``steps``, ``steps_per_s`` (the trainer's own rate, compilation excluded),
    ``images_per_s``, ``input_wait_share`` (time in ``next()`` after the first step,
    over the wall time from the first step to the end) and ``wall_s`` (all of it).
  """
  from mh2f_jax.training import preemption  # pylint: disable=g-import-not-at-top
  from mh2f_jax.training import trainer  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(config.to_dict())
  config.num_eval_images = 0
  first_step: list[float] = []
  mark = lambda step: first_step.append(time.perf_counter()) if step == 1 else None
  start = time.perf_counter()
  with tempfile.TemporaryDirectory(prefix='mh2f-bench-') as workdir, \
      timed_train_iterators() as made:
    # Ctrl-C stops the benchmark (nothing saved), not only this run.
    with preemption.signals_left_to_caller():
      summary = trainer.train_and_evaluate(config, workdir, sources=(source, None),
                                           step_callbacks=[mark])
    end = time.perf_counter()
    rates = _logged_rates(workdir)
  waited = sum(s for it in made for t, s in it.calls if first_step and t >= first_step[0])
  window = end - first_step[0] if first_step else float('nan')
  rate = float(np.mean(rates)) if rates else None
  return {'steps': summary['step'], 'batch': config.batch_size,
          'steps_per_s': rate, 'images_per_s': rate and rate * config.batch_size,
          'input_wait_share': waited / window if window > 0 else None,
          'wall_s': end - start, 'loss': summary.get('loss')}
