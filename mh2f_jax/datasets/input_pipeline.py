"""Grain input pipelines: random paired patches for training, full images for evaluation.

Both pipelines read a *source*: any random-access sequence of example dicts
``{'rainy': uint8 (H, W, 3), 'clean': uint8 (H, W, 3), 'name': str | bytes}``, such as
the ``tfds.data_source`` returned by :func:`mh2f_jax.datasets.get_source` or a plain
Python list.

Training (:func:`create_train_iterator`)
  ``record indices -> seed -> shuffle -> repeat (forever) -> global batches -> crop/flip
  draws -> this process's part, read and cropped``. The shuffle sits before the repeat,
  so Grain folds the epoch into the shuffle seed and every epoch comes in a new order.
  The draws are a Grain ``RandomMap`` over whole *global* batches: Grain hands each batch
  a generator seeded from the pipeline seed and the batch's position, so a seed fixes the
  data exactly and every epoch gets new crops. Every process draws the same numbers and
  keeps its contiguous part of the global batch (``global_batch_size // process_count``
  patches), so a run on several processes sees exactly the batches of a run on one, and
  within each epoch the processes see disjoint examples that together cover the dataset.
  The pipeline is infinite, so no partial batch is ever produced. Working on whole
  batches rather than records keeps Grain's per-element cost (about 0.2 ms) per batch:
  from memory the pipeline yields several thousand crops per second on two cores.
  Grain's shuffle is a block cipher over at least 2**16 positions, so on a dataset of
  only a few dozen examples it costs about a millisecond per record (roughly 30 ms / N);
  from a few hundred examples up it is negligible.

Mixtures (:mod:`mh2f_jax.datasets.mixture`)
  A ``MixedSource`` (several datasets with weights) replaces the first stage: each
  dataset's indices are shuffled and repeated on their own and ``grain.MapDataset.mix``
  interleaves them in the weights' proportions; the rest of the pipeline is the same.

Caching (:func:`mh2f_jax.datasets.memory_cache.cache_source`)
  Streaming from a ``tfds.data_source`` decodes two PNGs per crop. ``cache_source``
  decodes a split once and holds it in memory ('memory', or 'auto' when the estimate fits
  ``data.cache_max_gb``); large sets keep streaming. The batches are the same either way.

Images smaller than the patch
  An image whose height or width is below ``patch_size`` is padded on the bottom and/or
  right by mirror reflection (``numpy.pad(mode='symmetric')``: the edge row/column is
  repeated, which also works for a 1-pixel side) up to ``patch_size`` before cropping.
  Rainy and clean are padded identically, so the pair stays aligned. Larger sides are
  cropped as usual.

Sources of a config
  :func:`get_sources` opens the train and eval splits that ``config.data`` names.

Iterator state
  The training iterator is a ``grain.DatasetIterator``. Its ``get_state()`` is a small
  JSON-serialisable dict (with 0 workers, ``{'next_index': <batches consumed>}``);
  ``set_state()`` on an iterator built with the same arguments resumes the exact batch
  sequence, and ``grain.checkpoint.CheckpointSave`` / ``CheckpointRestore`` store it next
  to the model state with Orbax. The state's format depends on ``num_workers``: keep it
  fixed across a resume.

absl flags
  Grain keeps its options in absl flags. Outside ``absl.app.run`` (notebooks, tests) the
  flags are unparsed; both ``create_*`` functions call :func:`mark_flags_parsed`, which
  marks them parsed (keeping the defaults) only if nothing has parsed them yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import os
from typing import Any

from absl import flags
import grain
import numpy as np

from mh2f_jax import files
from mh2f_jax.datasets import mixture
from mh2f_jax.errors import UserError

# Threads that read and crop batches in parallel inside one process: one per core, at
# least 2, at most 8. They overlap the work done in C without the GIL (image decoding,
# copying patches); many more threads than cores only contend for the GIL
# (docs/architecture.md, Design measurements).
TRAIN_READ_THREADS = max(2, min(8, os.cpu_count() or 1))
# Batches read ahead: enough to keep every thread busy without burning CPU far ahead of
# the train step, which shares the same cores on a CPU host.
_TRAIN_PREFETCH = 4
# Full-size evaluation images are large: read ahead only a few.
_EVAL_READ_THREADS = 2
_EVAL_PREFETCH = 4


def mark_flags_parsed() -> None:
  """Marks absl flags as parsed when nothing has parsed them yet.

  Grain reads its options from absl flags. Inside ``absl.app.run`` the flags are already
  parsed and this does nothing; elsewhere (a notebook, a test) it lets Grain use the
  flag defaults instead of failing on unparsed flags.
  """
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def checked_pair(example: Mapping[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns the example's (rainy, clean) images after checking they form a pair.

  Raises:
    UserError: an image is missing, is not uint8 (H, W, 3), or the two shapes differ.
  """
  images = []
  for key in ('rainy', 'clean'):
    if key not in example:
      raise UserError(f'example {name!r} has no {key!r} image (keys: {sorted(example)})')
    image = np.asarray(example[key])
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
      raise UserError(
          f'example {name!r}: {key!r} image must be uint8 (H, W, 3), got {image.dtype} '
          f'{image.shape}')
    images.append(image)
  rainy, clean = images
  if rainy.shape != clean.shape:
    raise UserError(
        f'example {name!r}: rainy image shape {rainy.shape} differs from clean image '
        f'shape {clean.shape}; a pair must have the same size')
  return rainy, clean


def _pad_to(image: np.ndarray, patch_size: int) -> np.ndarray:
  """Mirror-pads the bottom/right of ``image`` so both sides are >= ``patch_size``."""
  pad_h = max(0, patch_size - image.shape[0])
  pad_w = max(0, patch_size - image.shape[1])
  if not pad_h and not pad_w:
    return image
  # 'symmetric' rather than 'reflect': it is defined for 1-pixel sides too, and numpy
  # repeats the mirroring when the pad is wider than the image.
  return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode='symmetric')


def _crop_pair(rainy: np.ndarray, clean: np.ndarray, patch_size: int,
               draws: np.ndarray, hflip: bool) -> tuple[np.ndarray, np.ndarray]:
  """Cuts the same window from both images (padding small ones), maybe flipped.

  ``draws`` holds three uniform numbers in [0, 1): the top and left of the window as
  fractions of the possible range, and the flip decision (flipped when < 1/2).
  """
  p = patch_size
  rainy, clean = _pad_to(rainy, p), _pad_to(clean, p)
  height, width = rainy.shape[:2]
  top = int(draws[0] * (height - p + 1))
  left = int(draws[1] * (width - p + 1))
  window = (slice(top, top + p), slice(left, left + p))
  rainy, clean = rainy[window], clean[window]
  if hflip and draws[2] < 0.5:
    rainy, clean = rainy[:, ::-1], clean[:, ::-1]
  return rainy, clean


class _DrawCrops(grain.transforms.RandomMap):
  """Draws the crop windows and flips of one global batch of record indices.

  Grain seeds the generator from the pipeline seed and the batch's position, so every
  process draws the same numbers for the same global batch.
  """

  def random_map(self, element: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    # Draw all three numbers every time, so the crops do not depend on `hflip`.
    return {'index': np.asarray(element), 'draws': rng.random((len(element), 3))}


class _LocalPatches(grain.transforms.Map):
  """Reads this process's records of a global batch and cuts their patches.

  Attributes:
    source: the random-access source of example dicts.
    patch_size: side ``P`` of the square patches.
    hflip: whether to flip left-right (when the record's draw says so).
    local: the slice of the global batch this process keeps.
  """

  def __init__(self, source: Sequence[Mapping[str, Any]], patch_size: int, hflip: bool,
               local: slice):
    self.source = source
    self.patch_size = patch_size
    self.hflip = hflip
    self.local = local

  def map(self, element: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Returns ``{'rainy', 'clean'}`` uint8 ``(B_local, P, P, 3)``."""
    p = self.patch_size
    indices = element['index'][self.local]
    draws = element['draws'][self.local]
    out = {'rainy': np.empty((len(indices), p, p, 3), np.uint8),
           'clean': np.empty((len(indices), p, p, 3), np.uint8)}
    for k, (index, draw) in enumerate(zip(indices, draws)):
      example = self.source[int(index)]
      rainy, clean = checked_pair(example, files.decode_name(example.get('name', index)))
      out['rainy'][k], out['clean'][k] = _crop_pair(rainy, clean, p, draw, self.hflip)
    return out


def _process_index_and_count(process_index: int | None,
                             process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  (only needed for the defaults)
    if process_index is None:
      process_index = jax.process_index()
    if process_count is None:
      process_count = jax.process_count()
  if process_count < 1:
    raise ValueError(f'process_count must be >= 1, got {process_count}')
  if not 0 <= process_index < process_count:
    raise ValueError(
        f'process_index must be in [0, {process_count}), got {process_index}')
  return process_index, process_count


def create_train_iterator(source: Sequence[Mapping[str, Any]], *,
                          global_batch_size: int, patch_size: int = 64,
                          hflip: bool = True, seed: int = 0, num_workers: int = 0,
                          process_index: int | None = None,
                          process_count: int | None = None) -> grain.DatasetIterator:
  """Returns an infinite iterator of random paired training patches for this process.

  Args:
    source: random-access sequence (``len`` and ``[i]``) of example dicts with uint8
      ``'rainy'`` and ``'clean'`` images of equal shape ``(H, W, 3)`` and a ``'name'``.
    global_batch_size: patches per step summed over all processes.
    patch_size: side ``P`` of the square patches. Smaller images are mirror-padded up
      to ``P`` (see the module docstring).
    hflip: flip each pair left-right with probability 1/2 (one decision for both).
    seed: fixes the shuffle order and every crop/flip.
    num_workers: Grain worker processes (0 = read in this process with threads).
      Workers start slowly; they pay when decoding outruns the train step.
    process_index: this process's index; default ``jax.process_index()``.
    process_count: number of processes; default ``jax.process_count()``.

  Returns:
    A ``grain.DatasetIterator`` yielding ``{'rainy', 'clean'}`` uint8 numpy arrays of
    shape ``(global_batch_size // process_count, P, P, 3)``; it supports
    ``get_state()`` / ``set_state()`` and ``grain.checkpoint``.

  Raises:
    ValueError: a bad batch size, patch size, worker count or process index, or a
      global batch size not divisible by the process count.
    UserError: the source is empty. While iterating: an example whose images are not a
      uint8 (H, W, 3) pair of equal shape (the message names the example).
  """
  process_index, process_count = _process_index_and_count(process_index, process_count)
  if global_batch_size < 1:
    raise ValueError(f'global_batch_size must be >= 1, got {global_batch_size}')
  if global_batch_size % process_count:
    raise ValueError(
        f'global_batch_size {global_batch_size} is not divisible by process_count '
        f'{process_count}: every process needs the same number of examples per step')
  if patch_size < 1:
    raise ValueError(f'patch_size must be >= 1, got {patch_size}')
  if num_workers < 0:
    raise ValueError(f'num_workers must be >= 0, got {num_workers}')
  if len(source) == 0:  # pylint: disable=g-explicit-length-test  (sources may lack __bool__)
    raise UserError('the training source has no examples')
  mark_flags_parsed()
  per_process_batch = global_batch_size // process_count

  # One dataset: shuffled, reshuffled every epoch; a mixture: drawn in proportion.
  ds = mixture.index_stream(source, seed).batch(global_batch_size, drop_remainder=True)
  # Whole global batches from here on: every process draws the same crops and keeps its
  # own contiguous part, which is the part `make_array_from_process_local_data` expects.
  ds = ds.random_map(_DrawCrops())
  local = slice(process_index * per_process_batch, (process_index + 1) * per_process_batch)
  ds = ds.map(_LocalPatches(source, patch_size, hflip, local))
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=TRAIN_READ_THREADS,
                                               prefetch_buffer_size=_TRAIN_PREFETCH))
  if num_workers > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(it_ds)


class _EvalExample(grain.transforms.MapWithIndex):
  """Checks one evaluation pair and decodes its name (default: its index)."""

  def map_with_index(self, index: int, element: Mapping[str, Any]) -> dict[str, Any]:
    name = files.decode_name(element['name']) if 'name' in element else str(index)
    rainy, clean = checked_pair(element, name)
    return {'rainy': rainy, 'clean': clean, 'name': name}


def create_eval_iterator(source: Sequence[Mapping[str, Any]], *,
                         num_images: int | None = None) -> grain.DatasetIterator:
  """Returns an iterator over full-size evaluation pairs, in source order.

  Args:
    source: random-access sequence of example dicts (as for
      :func:`create_train_iterator`).
    num_images: yield only the first ``num_images`` examples; ``None`` (or a number
      above the source's length) yields all.

  Returns:
    A ``grain.DatasetIterator`` yielding ``{'rainy': uint8 (H, W, 3), 'clean': uint8
    (H, W, 3), 'name': str}``, one example at a time. Images keep their own sizes.

  Raises:
    ValueError: ``num_images`` is negative.
    UserError: while iterating, an example that is not a uint8 (H, W, 3) pair of equal
      shape (the message names the example).
  """
  if num_images is not None and num_images < 0:
    raise ValueError(f'num_images must be >= 0 or None, got {num_images}')
  mark_flags_parsed()
  ds = grain.MapDataset.source(source)
  if num_images is not None:
    ds = ds[:num_images]
  ds = ds.map_with_index(_EvalExample())
  return iter(ds.to_iter_dataset(grain.ReadOptions(
      num_threads=_EVAL_READ_THREADS, prefetch_buffer_size=_EVAL_PREFETCH)))


def get_sources(config: Any) -> tuple[Any, Any]:
  """Returns the (train, eval) random-access sources named by ``config.data``.

  A mixture (see :mod:`mh2f_jax.datasets.mixture`) gives a ``MixedSource``; one dataset
  its plain source. The eval source is ``data.eval_dataset`` (default: the first
  dataset), None when validation is off (``num_eval_images == 0``). With several
  processes, process 0 prepares (builds) the datasets first while the others wait.
  """
  # Lazy: TFDS is slow to import, and callers that pass their own sources never need it.
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  from mh2f_jax.datasets import sources  # pylint: disable=g-import-not-at-top
  members = mixture.resolved(mixture.parse(config.data.dataset), config.data)
  wanted = members + ([mixture.eval_member(config.data)] if config.num_eval_images != 0
                      else [])

  def open_split(m: mixture.Member) -> Any:
    return sources.get_source(m.name, m.split, data_dir=m.data_dir,
                               manual_dir=m.manual_dir)

  if jax.process_count() > 1:
    if jax.process_index() == 0:
      for m in wanted:
        sources.prepare(m.name, data_dir=m.data_dir, manual_dir=m.manual_dir)
    multihost_utils.sync_global_devices('mh2f_prepare_dataset')
  parts = [open_split(m) for m in members]
  train = parts[0] if len(parts) == 1 else mixture.MixedSource(members, parts)
  evaluation = open_split(wanted[-1]) if config.num_eval_images != 0 else None
  return train, evaluation
