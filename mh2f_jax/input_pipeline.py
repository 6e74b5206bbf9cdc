"""Grain input pipelines: random paired patches for training, full images for evaluation.

Both pipelines read a *source*: any random-access sequence of example dicts
``{'rainy': uint8 (H, W, 3), 'clean': uint8 (H, W, 3), 'name': str | bytes}``, such as
the ``tfds.data_source`` returned by :func:`mh2f_jax.datasets.get_source` or a plain
Python list.

Training (:func:`create_train_iterator`)
  ``source -> seed -> shuffle -> repeat (forever) -> paired crop/flip -> per-process
  slice -> batch``. The shuffle sits before the repeat, so Grain folds the epoch into
  the shuffle seed and every epoch comes in a new order. The crop/flip is a Grain
  ``RandomMap``: Grain hands each record a generator seeded from the pipeline seed and
  the record's *global* position, so a seed fixes the data exactly, every epoch gets new
  crops, and processes never share random draws. The per-process slice comes after the
  repeat, so within each epoch the processes see disjoint examples that together cover
  the dataset. Each batch holds ``global_batch_size // process_count`` patches; the
  pipeline is infinite, so no partial batch is ever produced. Grain's shuffle is a block
  cipher over at least 2**16 positions, so on a dataset of only a few dozen examples it
  costs about a millisecond per record (roughly 30 ms / N); from a few hundred examples
  up it is negligible next to decoding.

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
  JSON-serialisable dict (with 0 workers, ``{'next_index': <records consumed>}``);
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
from mh2f_jax.errors import UserError

# Threads that read and crop records in parallel inside one process: one per core, at
# least 2, at most 8. They overlap the work done in C without the GIL (Grain's index
# shuffle, image decoding); many more threads than cores only contend for the GIL
# (docs/architecture.md, Design measurements).
_TRAIN_READ_THREADS = max(2, min(8, os.cpu_count() or 1))
# Records (not batches) read ahead: about two batches' worth keeps the model fed without
# burning CPU far ahead of the train step, which shares the same cores on a CPU host.
_MIN_TRAIN_PREFETCH = 32
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


def _checked_pair(example: Mapping[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
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


class PairedRandomCrop(grain.transforms.RandomMap):
  """Crops the same random window from rainy and clean, then maybe flips both.

  The output holds only ``'rainy'`` and ``'clean'`` (uint8, ``(P, P, 3)``), so batches
  stack without ragged fields.

  Attributes:
    patch_size: side ``P`` of the square patch.
    hflip: whether to flip both patches left-right with probability 1/2.
  """

  def __init__(self, patch_size: int, hflip: bool):
    self.patch_size = patch_size
    self.hflip = hflip

  def random_map(self, element: Mapping[str, Any],
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Returns the paired patch of one example (see class docstring)."""
    name = files.decode_name(element.get('name', '<unnamed>'))
    rainy, clean = _checked_pair(element, name)
    p = self.patch_size
    rainy, clean = _pad_to(rainy, p), _pad_to(clean, p)
    height, width = rainy.shape[:2]
    # Draw all three numbers every time, so the crop does not depend on `hflip`.
    top = int(rng.integers(0, height - p + 1))
    left = int(rng.integers(0, width - p + 1))
    flip = bool(rng.random() < 0.5) and self.hflip
    window = (slice(top, top + p), slice(left, left + p))
    rainy, clean = rainy[window], clean[window]
    if flip:
      rainy, clean = rainy[:, ::-1], clean[:, ::-1]
    return {'rainy': np.ascontiguousarray(rainy), 'clean': np.ascontiguousarray(clean)}


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

  ds = grain.MapDataset.source(source).seed(seed)
  # Shuffle before repeat: Grain then reshuffles with a new seed every epoch.
  ds = ds.shuffle().repeat(None)
  # Crop before slicing so each record's generator is seeded by its global position.
  ds = ds.random_map(PairedRandomCrop(patch_size, hflip))
  ds = ds[process_index::process_count]
  read_options = grain.ReadOptions(
      num_threads=_TRAIN_READ_THREADS,
      prefetch_buffer_size=max(_MIN_TRAIN_PREFETCH, 2 * per_process_batch))
  it_ds = ds.to_iter_dataset(read_options).batch(per_process_batch, drop_remainder=True)
  if num_workers > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(it_ds)


class _EvalExample(grain.transforms.MapWithIndex):
  """Checks one evaluation pair and decodes its name (default: its index)."""

  def map_with_index(self, index: int, element: Mapping[str, Any]) -> dict[str, Any]:
    name = files.decode_name(element['name']) if 'name' in element else str(index)
    rainy, clean = _checked_pair(element, name)
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

  The eval source is None when validation is off (``num_eval_images == 0``). With
  several processes, process 0 prepares (builds) the dataset first while the others wait.
  """
  # Lazy: TFDS is slow to import, and callers that pass their own sources never need it.
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  from mh2f_jax import datasets  # pylint: disable=g-import-not-at-top
  data = config.data
  kwargs = dict(data_dir=data.data_dir, manual_dir=data.manual_dir)
  if jax.process_count() > 1:
    if jax.process_index() == 0:
      datasets.prepare(data.dataset, **kwargs)
    multihost_utils.sync_global_devices('mh2f_prepare_dataset')
  train = datasets.get_source(data.dataset, data.train_split, **kwargs)
  evaluation = None
  if config.num_eval_images != 0:
    evaluation = datasets.get_source(data.dataset, data.eval_split, **kwargs)
  return train, evaluation
