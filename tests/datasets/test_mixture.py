"""Tests of dataset mixtures: the syntax, the proportions, determinism and resumption."""

import ml_collections
import numpy as np
from PIL import Image
import pytest

from mh2f_jax.datasets import input_pipeline
from mh2f_jax.datasets import memory_cache
from mh2f_jax.datasets import mixture
from mh2f_jax.errors import UserError

PATCH = 4


def _constant_source(value: int, count: int) -> list[dict]:
  """``count`` pairs whose every pixel is ``value``: a crop tells where it came from."""
  image = np.full((PATCH, PATCH, 3), value, np.uint8)
  return [{'rainy': image, 'clean': image, 'name': f'{value}_{i}'} for i in range(count)]


def _mixed(weights=(1, 2, 5), counts=(50, 500, 4500)) -> mixture.MixedSource:
  # Sizes far from the weights: drawing by size would give 1 %, 10 % and 89 %. (Not
  # smaller: Grain's shuffle costs about 30 ms / size per record.)
  members = [mixture.Member(f'set{k}', w, 'train') for k, w in enumerate(weights)]
  return mixture.MixedSource(members, [_constant_source(10 * (k + 1), n)
                                       for k, n in enumerate(counts)])


def _iterator(source, seed=0, batch=100):
  return input_pipeline.create_train_iterator(
      source, global_batch_size=batch, patch_size=PATCH, hflip=False, seed=seed,
      process_index=0, process_count=1)


def _data(**fields) -> ml_collections.ConfigDict:
  base = {'dataset': 'rain200l', 'eval_dataset': None, 'train_split': 'train',
          'eval_split': 'test', 'data_dir': '/data', 'manual_dir': None}
  return ml_collections.ConfigDict({**base, **fields})


def test_syntax_string_and_list():
  assert mixture.parse('rain200h') == [mixture.Member('rain200h')]
  assert mixture.parse('synthetic_rain/light:1, synthetic_rain/heavy:3') == [
      mixture.Member('synthetic_rain/light', 1.0), mixture.Member('synthetic_rain/heavy', 3.0)]
  assert mixture.parse('rain13k@train[:100]:2,rain1400@train') == [
      mixture.Member('rain13k', 2.0, 'train[:100]'), mixture.Member('rain1400', 1.0, 'train')]
  assert mixture.parse(['rain100h:2', {'name': 'paired_folder', 'weight': 0.5,
                                       'data_dir': '/mine'}]) == [
      mixture.Member('rain100h', 2.0),
      mixture.Member('paired_folder', 0.5, data_dir='/mine')]
  for bad, match in (('rain100h:x', 'must be a number'), ('rain100h:0', 'must be > 0'),
                     (' , ', 'names no dataset'), ([{'weight': 1}], 'must have a name')):
    with pytest.raises(UserError, match=match):
      mixture.parse(bad)


def test_members_take_the_data_blocks_split_and_folders_and_eval_defaults_to_the_first():
  data = _data(dataset='rain100h:1,rain1400@train[:10]:2')
  assert mixture.resolved(mixture.parse(data.dataset), data) == [
      mixture.Member('rain100h', 1.0, 'train', '/data'),
      mixture.Member('rain1400', 2.0, 'train[:10]', '/data')]
  assert mixture.eval_member(data) == mixture.Member('rain100h', 1.0, 'test', '/data')
  data.eval_dataset = 'rain1400@test[:5]'
  assert mixture.eval_member(data).name == 'rain1400'
  assert mixture.eval_member(data).split == 'test[:5]'


def test_a_bad_eval_dataset_is_reported_under_its_own_field():
  for bad in ('rain100h:x', 'rain1400:2', 'rain1400@test:1', '@test', 'a,b'):
    with pytest.raises(UserError, match=r"^data\.eval_dataset: cannot read .*NAME\[@SPLIT\]"):
      mixture.eval_member(_data(dataset='rain100h:1,rain1400:2', eval_dataset=bad))


def test_proportions_over_ten_thousand_crops_follow_the_weights():
  weights = np.array([1, 2, 5]) / 8
  it = _iterator(_mixed())
  values = np.concatenate([next(it)['rainy'][:, 0, 0, 0] for _ in range(100)])
  assert values.size == 10_000
  measured = np.array([(values == 10 * (k + 1)).mean() for k in range(3)])
  assert np.all(np.abs(measured - weights) < 0.02), measured


def test_every_member_is_shuffled_and_covered():
  source = _mixed(weights=(1, 1), counts=(6, 6))
  source.sources = [[{**e, 'rainy': np.full_like(e['rainy'], i)} for i, e in enumerate(s)]
                    for s in source.sources]
  it = _iterator(mixture.MixedSource(source.members, source.sources), batch=12)
  seen = next(it)['rainy'][:, 0, 0, 0]
  # One epoch of each member in the first batch, interleaved; not in index order.
  assert sorted(seen[0::2]) == list(range(6)) and sorted(seen[1::2]) == list(range(6))
  assert list(seen[0::2]) != list(range(6)) or list(seen[1::2]) != list(range(6))


def test_members_of_one_size_are_shuffled_in_different_orders():
  """Each member has its own shuffle seed: never the same photo at the same position."""
  members = [mixture.Member('light', 1.0), mixture.Member('heavy', 1.0)]
  source = mixture.MixedSource(members, [_constant_source(0, 20), _constant_source(0, 20)])
  for seed in (0, 1):
    indices = [int(i) for i in mixture.index_stream(source, seed)[:80]]
    orders = [[i for i in indices if i < 20], [i - 20 for i in indices if i >= 20]]
    assert all(sorted(o[:20]) == list(range(20)) for o in orders)  # One epoch each...
    assert orders[0][:20] != orders[1][:20]  # ... in its own order,
    assert orders[0][20:40] != orders[1][20:40]  # ... at every epoch.


def test_a_seed_fixes_the_batches_and_another_changes_them():
  def first(seed):
    members = [mixture.Member('a', 1.0), mixture.Member('b', 3.0)]
    sources = [_constant_source(0, 40), _constant_source(0, 60)]
    for i, example in enumerate(sources[0] + sources[1]):  # Every example its own value.
      example['rainy'] = np.full_like(example['rainy'], i)
    it = _iterator(mixture.MixedSource(members, sources), seed=seed, batch=8)
    return [next(it)['rainy'][:, 0, 0, 0] for _ in range(6)]
  np.testing.assert_array_equal(first(3), first(3))
  assert not all(np.array_equal(a, b) for a, b in zip(first(3), first(4)))


def test_resume_from_the_iterator_state_is_exact():
  it = _iterator(_mixed(counts=(70, 90, 110)), batch=8)
  for _ in range(7):
    next(it)
  state = it.get_state()
  expected = [next(it)['rainy'] for _ in range(5)]
  resumed = _iterator(_mixed(counts=(70, 90, 110)), batch=8)
  resumed.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(resumed)['rainy'], want)


def test_the_memory_cache_keeps_the_mixture_and_its_batches():
  source = _mixed(counts=(70, 90, 110))
  cached = memory_cache.cache_source(source, 'memory')
  assert isinstance(cached, mixture.MixedSource)
  assert all(isinstance(s, memory_cache.MemorySource) for s in cached.sources)
  a, b = _iterator(source, batch=8), _iterator(cached, batch=8)
  for _ in range(4):
    np.testing.assert_array_equal(next(a)['rainy'], next(b)['rainy'])


def test_describe_names_each_dataset_split_count_and_share():
  rows = mixture.describe(_mixed(), _data())
  assert [(r['dataset'], r['split'], r['count']) for r in rows] == [
      ('set0', 'train', 50), ('set1', 'train', 500), ('set2', 'train', 4500)]
  assert [r['weight'] for r in rows] == [1 / 8, 2 / 8, 5 / 8]


@pytest.mark.filterwarnings('ignore::mh2f_jax.datasets.layouts.DatasetWarning')  # No test split.
def test_an_empty_member_is_one_error_naming_it(tmp_path):
  """A member whose split has no examples: the project's error, not array_record's."""
  from mh2f_jax import datasets  # pylint: disable=g-import-not-at-top
  pairs = tmp_path / 'pairs'
  for sub in ('rainy', 'clean'):
    (pairs / 'train' / sub).mkdir(parents=True)
    for stem in ('a', 'b'):
      Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(pairs / 'train' / sub / f'{stem}.png')
  data_dir = str(tmp_path / 'tfds')
  datasets.prepare('paired_folder', data_dir=data_dir, manual_dir=str(pairs))
  config = ml_collections.ConfigDict({'num_eval_images': 0, 'data': _data(
      dataset='paired_folder@train:1,paired_folder@train[:0]:1', data_dir=data_dir)})
  with pytest.raises(UserError, match=r"^paired_folder split 'train\[:0\]' has no examples "
                     r'\(prepared: train 2\)$'):
    input_pipeline.get_sources(config)


def test_get_sources_opens_each_member_and_the_eval_dataset(monkeypatch):
  from mh2f_jax.datasets import sources  # pylint: disable=g-import-not-at-top
  opened = []

  def fake_get_source(name, split, *, data_dir, manual_dir):
    opened.append((name, split, data_dir, manual_dir))
    return _constant_source(len(opened), 3)

  monkeypatch.setattr(sources, 'get_source', fake_get_source)
  config = ml_collections.ConfigDict({'num_eval_images': None, 'data': _data(
      dataset=['synthetic_rain/light:1', {'name': 'paired_folder', 'weight': 3,
                                          'data_dir': '/mine', 'split': 'train[:2]'}],
      eval_dataset='paired_folder')})
  train, evaluation = input_pipeline.get_sources(config)
  assert opened == [('synthetic_rain/light', 'train', '/data', None),
                    ('paired_folder', 'train[:2]', '/mine', None),
                    ('paired_folder', 'test', '/mine', None)]
  assert isinstance(train, mixture.MixedSource) and len(train) == 6
  assert [m.weight for m in train.members] == [1.0, 3.0] and len(evaluation) == 3
  config = ml_collections.ConfigDict({'num_eval_images': 0, 'data': _data()})
  opened.clear()
  train, evaluation = input_pipeline.get_sources(config)  # One dataset: a plain source.
  assert opened == [('rain200l', 'train', '/data', None)] and evaluation is None
  assert isinstance(train, list)
