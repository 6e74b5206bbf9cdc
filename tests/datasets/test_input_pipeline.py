"""Tests for mh2f_jax.datasets.input_pipeline on small in-memory sources.

Every clean image encodes its own coordinates: pixel (y, x) of example ``i`` holds
``(y, x, i)``, and the rainy image is ``255 - clean``. A patch therefore says which
example and which window it came from, whether it was flipped, and whether rainy and
clean still line up.
"""

import json

import grain
import numpy as np
import pytest

from mh2f_jax.datasets import input_pipeline

from mh2f_jax.datasets import memory_cache
from mh2f_jax.errors import UserError

PATCH = 16


def _example(index, height, width, name):
  ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  clean = np.stack([ys, xs, np.full_like(ys, index)], axis=-1).astype(np.uint8)
  return {'rainy': 255 - clean, 'clean': clean, 'name': name}


def _source(n, seed=0):
  """n examples of different sizes (all >= PATCH), names as bytes like tfds gives."""
  rng = np.random.default_rng(seed)
  return [_example(i, int(rng.integers(PATCH, 40)), int(rng.integers(PATCH, 50)),
                   f'rain/{i:03d}.png'.encode()) for i in range(n)]


def _train(source, **kwargs):
  kwargs.setdefault('global_batch_size', 4)
  kwargs.setdefault('patch_size', PATCH)
  kwargs.setdefault('process_index', 0)
  kwargs.setdefault('process_count', 1)
  return input_pipeline.create_train_iterator(source, **kwargs)


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _ids(batches):
  return [int(clean[0, 0, 2]) for batch in batches for clean in batch['clean']]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])


def _window(source, rainy, clean):
  """Checks one patch pair against its source; returns (id, top, left, flipped)."""
  np.testing.assert_array_equal(rainy, 255 - clean)  # pairing survived crop and flip
  index = int(clean[0, 0, 2])
  top, left_or_right = int(clean[0, 0, 0]), int(clean[0, 0, 1])
  flipped = PATCH > 1 and int(clean[0, 1, 1]) < left_or_right
  left = left_or_right - PATCH + 1 if flipped else left_or_right
  full = source[index]['clean']
  expected = full[top:top + PATCH, left:left + PATCH]
  if flipped:
    expected = expected[:, ::-1]
  np.testing.assert_array_equal(clean, expected)
  return index, top, left, flipped


def test_batches_have_the_contract_shape_and_dtype():
  batch = next(_train(_source(8), global_batch_size=4))
  assert set(batch) == {'rainy', 'clean'}
  for key in ('rainy', 'clean'):
    assert batch[key].shape == (4, PATCH, PATCH, 3)
    assert batch[key].dtype == np.uint8


def test_crop_keeps_pairs_aligned_and_flips_both_images():
  source = _source(16)
  windows = [_window(source, r, c)
             for b in _take(_train(source, global_batch_size=8), 8)
             for r, c in zip(b['rainy'], b['clean'])]
  flips = [w[3] for w in windows]
  assert any(flips) and not all(flips)  # P(all 64 the same) = 2**-63
  assert len({(w[1], w[2]) for w in windows}) > 1  # the window position varies


def test_no_flip_when_hflip_is_off():
  source = _source(16)
  for batch in _take(_train(source, global_batch_size=8, hflip=False), 4):
    for rainy, clean in zip(batch['rainy'], batch['clean']):
      assert not _window(source, rainy, clean)[3]


def test_same_seed_same_batches_other_seed_other_batches():
  source = _source(16)
  first = _take(_train(source, seed=3), 3)
  _assert_batches_equal(first, _take(_train(source, seed=3), 3))
  other = _take(_train(source, seed=4), 3)
  assert not all(np.array_equal(a['clean'], b['clean']) for a, b in zip(first, other))


def test_every_epoch_is_a_new_permutation_of_the_dataset():
  n = 24
  ids = _ids(_take(_train(_source(n), global_batch_size=8), 3 * n // 8))
  epochs = [ids[i * n:(i + 1) * n] for i in range(3)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(n))
  assert epochs[0] != epochs[1] and epochs[1] != epochs[2]


def test_two_processes_see_disjoint_halves_that_cover_each_epoch():
  n, global_batch = 24, 8
  per_epoch = n // global_batch
  seen = []
  for process_index in (0, 1):
    it = _train(_source(n), global_batch_size=global_batch, process_index=process_index,
                process_count=2, seed=5)
    batches = _take(it, 2 * per_epoch)
    assert batches[0]['clean'].shape[0] == global_batch // 2
    ids = _ids(batches)
    seen.append((ids[:n // 2], ids[n // 2:]))
  for epoch in (0, 1):
    a, b = seen[0][epoch], seen[1][epoch]
    assert not set(a) & set(b)
    assert sorted(a + b) == list(range(n))


def test_resume_from_saved_state_gives_the_same_batches():
  source = _source(12)
  it = _train(source, seed=7)
  _take(it, 3)
  # Orbax's grain handler stores the state as JSON: it must survive the round trip.
  state = json.loads(json.dumps(it.get_state()))
  expected = _take(it, 5)  # crosses an epoch boundary (12 examples = 3 batches)
  resumed = _train(source, seed=7)
  resumed.set_state(state)
  _assert_batches_equal(_take(resumed, 5), expected)


def test_state_round_trips_through_grain_orbax_checkpoint(tmp_path):
  ocp = pytest.importorskip('orbax.checkpoint')
  source = _source(12)
  it = _train(source, seed=1)
  _take(it, 2)
  with ocp.CheckpointManager(tmp_path, item_names=('data',)) as manager:
    manager.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    manager.wait_until_finished()
    expected = _take(it, 3)
    resumed = _train(source, seed=1)
    manager.restore(2, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointRestore(resumed)))
  _assert_batches_equal(_take(resumed, 3), expected)


def test_images_smaller_than_the_patch_are_mirror_padded():
  # 10 rows and a single column, both below PATCH: padded bottom/right, then cropped.
  source = [_example(0, 10, 1, 'tall.png'), _example(1, 5, 30, b'wide.png')]
  batches = _take(_train(source, global_batch_size=2), 4)
  rows_tall = list(range(10)) + list(range(9, 3, -1))  # mirror, edge row repeated
  rows_wide = list(range(5)) + list(range(4, -1, -1)) + list(range(5)) + [4]
  seen = set()
  for batch in batches:
    for rainy, clean in zip(batch['rainy'], batch['clean']):
      np.testing.assert_array_equal(rainy, 255 - clean)
      index = int(clean[0, 0, 2])
      seen.add(index)
      rows = clean[:, 0, 0].tolist()
      if index == 0:
        assert rows == rows_tall
        assert (clean[..., 1] == 0).all()
      else:
        assert rows == rows_wide
        cols = clean[0, :, 1].astype(int)
        assert abs(np.diff(cols)).tolist() == [1] * (PATCH - 1)  # plain crop in width
  assert seen == {0, 1}


def test_global_batch_not_divisible_by_process_count_names_both():
  with pytest.raises(ValueError, match=r'\b6\b.*\b4\b'):
    _train(_source(4), global_batch_size=6, process_index=1, process_count=4)


def test_bad_arguments_are_rejected():
  with pytest.raises(ValueError, match='process_index'):
    _train(_source(4), process_index=2, process_count=2)
  with pytest.raises(ValueError, match='patch_size'):
    _train(_source(4), patch_size=0)
  with pytest.raises(UserError, match='no examples'):
    _train([])


def test_process_defaults_come_from_jax():
  batch = next(input_pipeline.create_train_iterator(
      _source(4), global_batch_size=2, patch_size=PATCH))
  assert batch['clean'].shape == (2, PATCH, PATCH, 3)  # one process on this host


def test_rainy_clean_shape_mismatch_names_the_example():
  bad = _example(0, 20, 20, b'pairs/odd_one.png')
  bad['clean'] = bad['clean'][:, :19]
  with pytest.raises(UserError, match='pairs/odd_one.png'):
    next(_train([bad], global_batch_size=1))
  with pytest.raises(UserError, match='pairs/odd_one.png'):
    next(input_pipeline.create_eval_iterator([bad]))


def test_eval_iterator_yields_full_examples_in_order_with_str_names():
  source = _source(5)
  source[2]['name'] = 'already_str.png'
  examples = list(input_pipeline.create_eval_iterator(source))
  assert [e['name'] for e in examples] == [
      'rain/000.png', 'rain/001.png', 'already_str.png', 'rain/003.png', 'rain/004.png']
  for example, original in zip(examples, source):
    assert isinstance(example['name'], str)
    assert set(example) == {'rainy', 'clean', 'name'}
    np.testing.assert_array_equal(example['rainy'], original['rainy'])
    np.testing.assert_array_equal(example['clean'], original['clean'])


def test_eval_iterator_num_images():
  source = _source(5)
  names = lambda it: [e['name'] for e in it]
  assert names(input_pipeline.create_eval_iterator(source, num_images=2)) == [
      'rain/000.png', 'rain/001.png']
  assert len(names(input_pipeline.create_eval_iterator(source, num_images=50))) == 5
  with pytest.raises(ValueError, match='num_images'):
    input_pipeline.create_eval_iterator(source, num_images=-1)


class _CountingSource:
  """A source that counts reads, like a tfds source that decodes on every access."""

  def __init__(self, examples):
    self.examples = examples
    self.reads = 0

  def __len__(self):
    return len(self.examples)

  def __getitem__(self, index):
    self.reads += 1
    return self.examples[index]


def test_memory_cache_gives_the_streamed_batches_and_resumes_exactly():
  streamed = _CountingSource(_source(12))
  cached = memory_cache.cache_source(streamed, 'memory')
  assert isinstance(cached, memory_cache.MemorySource) and len(cached) == 12
  reads = streamed.reads
  expected = _take(_train(streamed, seed=2), 6)
  it = _train(cached, seed=2)
  first = _take(it, 2)
  state = json.loads(json.dumps(it.get_state()))
  rest = _take(it, 4)
  _assert_batches_equal(first + rest, expected)
  resumed = _train(memory_cache.cache_source(streamed, 'memory'), seed=2)
  resumed.set_state(state)
  _assert_batches_equal(_take(resumed, 4), rest)
  assert cached[3]['name'] == 'rain/003.png'
  before = streamed.reads
  _take(_train(cached, seed=2), 3)
  assert streamed.reads == before  # the cached iterator never touches the source
  assert reads == 12


def test_auto_cache_holds_small_splits_and_streams_large_ones():
  source = _source(6)
  nbytes = sum(e['rainy'].nbytes + e['clean'].nbytes for e in source)
  assert memory_cache.estimate_nbytes(source) == pytest.approx(nbytes, rel=0.5)
  assert memory_cache.cache_source(source, 'auto', max_gb=0) is source
  cached = memory_cache.cache_source(source, 'auto', max_gb=1)
  assert isinstance(cached, memory_cache.MemorySource) and cached.nbytes == nbytes
  assert memory_cache.cache_source(source, 'none') is source
  with pytest.raises(ValueError, match='cache mode'):
    memory_cache.cache_source(source, 'disk')
  with pytest.raises(ValueError, match='cache_max_gb'):
    memory_cache.cache_source(source, 'auto', max_gb=-1)


def test_cache_names_a_bad_example():
  bad = _example(0, 20, 20, b'pairs/odd_one.png')
  bad['clean'] = bad['clean'][:, :19]
  with pytest.raises(UserError, match='pairs/odd_one.png'):
    memory_cache.cache_source([_example(1, 20, 20, b'ok.png'), bad], 'memory')
