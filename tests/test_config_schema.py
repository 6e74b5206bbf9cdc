"""Tests of mh2f_jax.config_schema: validation, resume checks, and the documented tables."""

import math
import os
import sys

import pytest

from mh2f_jax import config_schema
from mh2f_jax import model as model_lib
from mh2f_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests'))
import train_helper  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_config_differences_allow_non_frozen_changes():
  a = train_helper.tiny_config().to_dict()
  b = train_helper.tiny_config({'num_train_steps': 99, 'optim.schedule': 'cosine',
                                'data.patch_size': 32}).to_dict()
  assert config_schema.config_differences(a, b) == []
  c = train_helper.tiny_config({'seed': 3, 'batch_size': 4}).to_dict()
  cached = train_helper.tiny_config({'data.cache': 'none', 'data.cache_max_gb': 1.0,
                                     'model.conv_kernel_grad': 'xla'})
  assert config_schema.config_differences(a, cached.to_dict()) == []  # same batches
  assert config_schema.config_differences(a, c) == ['batch_size: saved 8, given 4',
                                                'seed: saved 0, given 3']


def test_a_mixture_spelled_another_way_is_the_same_config(tmp_path):
  from mh2f_jax.training import trainer  # pylint: disable=g-import-not-at-top
  from mh2f_jax.workdir import checkpoints  # pylint: disable=g-import-not-at-top
  saved = train_helper.tiny_config({'data.dataset': 'rain100h:1,rain1400@train[:10]:3'})
  spaced = train_helper.tiny_config({'data.dataset': 'rain100h:1, rain1400@train[:10]:3'})
  as_list = spaced.to_dict()
  as_list['data']['dataset'] = ['rain100h', {'name': 'rain1400', 'split': 'train[:10]',
                                             'weight': 3.0}]
  for same in (spaced.to_dict(), as_list):
    assert config_schema.config_differences(saved.to_dict(), same) == []
  other = train_helper.tiny_config({'data.dataset': 'rain100h:1, rain1400@train[:10]:2'})
  assert config_schema.config_differences(saved.to_dict(), other.to_dict()) == [
      'data.dataset: saved "rain100h:1,rain1400@train[:10]:3", '
      'given "rain100h:1, rain1400@train[:10]:2"']
  # What train.py checks before a resume.
  workdir = str(tmp_path / 'run')
  checkpoints.save_config(workdir, saved)
  assert trainer.prepare_workdir(workdir, spaced) == workdir
  with pytest.raises(UserError, match='different config'):
    trainer.prepare_workdir(workdir, other)


@pytest.mark.parametrize('field,value,fragment', [
    ('optim.schedule', 'linear', 'optim.schedule'),
    ('optim.learning_rate', -1.0, 'optim.learning_rate'),
    ('batch_size', 0, 'batch_size'),
    ('optim.decay_at', (0.5, 1.5), 'optim.decay_at'),
    ('log_every_steps', 0, 'log_every_steps'),
    ('num_eval_images', -2, 'num_eval_images'),
    ('model.fusion', 'sum', 'model.fusion'),
    ('data.cache', 'disk', 'data.cache'),
    ('data.cache_max_gb', -1.0, 'data.cache_max_gb'),
    ('grad_accum_steps', 0, 'grad_accum_steps'),
    ('ema_decay', 1.0, 'ema_decay'),
])
def test_bad_config_values_name_the_field(field, value, fragment):
  config = train_helper.tiny_config({field: value})
  with pytest.raises((UserError, ValueError), match=fragment.replace('.', r'\.')):
    config_schema.validate(config)


def test_num_train_steps_derived_from_epochs():
  config = train_helper.tiny_config({'num_train_steps': None, 'num_epochs': 200,
                                     'batch_size': 16})
  assert config_schema.resolve_num_train_steps(config, 1800) == 200 * 1800 // 16
  config.num_epochs = 3
  assert config_schema.resolve_num_train_steps(config, 10) == math.ceil(30 / 16)
  config.num_train_steps = 7
  assert config_schema.resolve_num_train_steps(config, 10) == 7

def test_paths_resolved_once_and_the_config_left_alone(monkeypatch, tmp_path):
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  monkeypatch.chdir(tmp_path)
  config = train_helper.tiny_config({'data.data_dir': '~/tfds', 'data.manual_dir': 'raw'})
  resolved = config_schema.resolve_paths(config)
  assert resolved.data.data_dir == str(tmp_path / 'home' / 'tfds')
  assert resolved.data.manual_dir == str(tmp_path / 'raw')
  assert config.data.data_dir == '~/tfds'  # The caller's config is not changed.
  assert resolved.to_dict() == {**config.to_dict(), 'data': {
      **config.data.to_dict(), 'data_dir': resolved.data.data_dir,
      'manual_dir': resolved.data.manual_dir}}
  assert config_schema.resolve_paths(train_helper.tiny_config()).data.data_dir is None
  assert [f.name for f in config_schema.FIELDS if f.path] == ['data.data_dir',
                                                              'data.manual_dir',
                                                              'init_from']


def test_model_fields_are_the_models():
  assert set(config_schema.MODEL_FIELDS) == set(model_lib.CONFIG_FIELDS)


def test_default_config_validates_and_holds_every_field():
  config = config_schema.default_config()
  config_schema.validate(config)
  for field in config_schema.FIELDS:
    assert config_schema.get_field(config, field.name) == field.default


def test_missing_field_is_named():
  config = config_schema.default_config()
  del config.optim['eps']
  with pytest.raises(UserError, match=r'no field optim\.eps'):
    config_schema.validate(config)


def _table_after(path: str, header: str) -> str:
  with open(os.path.join(REPO, path), encoding='utf-8') as f:
    text = f.read()
  start = text.index(header)
  lines = []
  for line in text[start:].splitlines():
    if not line.startswith('|'):
      break
    lines.append(line)
  return '\n'.join(lines)


@pytest.mark.parametrize('path', ['README.md', 'docs/training.md'])
def test_documented_field_table_is_the_schema(path):
  table = _table_after(path, '| Field | Default | Meaning |')
  assert table == config_schema.markdown_table(), (
      f'the config table in {path} differs from config_schema.markdown_table(); '
      'paste the output of python -c "from mh2f_jax import config_schema; '
      'print(config_schema.markdown_table())"')


def test_cache_modes_are_the_pipelines():
  from mh2f_jax.datasets import memory_cache  # pylint: disable=g-import-not-at-top
  field = config_schema.BY_NAME['data.cache']
  assert all(field.check(m) for m in memory_cache.CACHE_CHOICES)
  assert not field.check('disk')


# Every field a resumed run must share with the workdir, and a valid other value of it.
FROZEN_CHANGES = {
    'seed': 1,
    'batch_size': 4,
    'ema_decay': 0.9,
    'model.features': 16,
    'model.num_blocks': 3,
    'model.dcr_layers': 2,
    'model.dcr_growth': 2,
    'model.attention_reduction': 2,
    'model.distill': 'concat',
    'model.fusion': 'add',
    'model.global_residual': True,
    'model.dtype': 'bfloat16',
    'model.remat': True,
    'data.dataset': 'rain200h',
    'data.train_split': 'train[:50%]',
    'data.num_workers': 1,
}
_TRAINED = {'num_train_steps': 2, 'checkpoint_every_steps': 2}


def test_frozen_fields_are_exactly_these():
  assert config_schema.FROZEN_FIELDS == (
      'seed', 'batch_size', 'ema_decay', 'model.features', 'model.num_blocks',
      'model.dcr_layers', 'model.dcr_growth', 'model.attention_reduction',
      'model.distill', 'model.fusion', 'model.global_residual', 'model.dtype',
      'model.remat', 'data.dataset', 'data.train_split', 'data.num_workers')
  assert set(FROZEN_CHANGES) == set(config_schema.FROZEN_FIELDS)


def _sources(config):
  train = train_helper.fake_pairs(config.batch_size, config.data.patch_size,
                                  config.data.patch_size, seed=1)
  return train, None


@pytest.fixture(scope='module')
def trained_workdir(tmp_path_factory):
  """A tiny workdir trained for its 2 steps (checkpoint at step 2)."""
  from mh2f_jax.training import trainer  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('frozen') / 'run')
  config = train_helper.tiny_config(_TRAINED)
  summary = trainer.train_and_evaluate(config, workdir, sources=_sources(config))
  assert summary['step'] == 2
  return workdir


def test_resuming_with_the_same_frozen_fields_is_accepted(trained_workdir):
  from mh2f_jax.training import trainer  # pylint: disable=g-import-not-at-top
  from mh2f_jax.workdir import checkpoints  # pylint: disable=g-import-not-at-top
  # Non-frozen fields may change; the run is complete, so nothing is trained.
  config = train_helper.tiny_config({**_TRAINED, 'optim.learning_rate': 0.1,
                                     'data.patch_size': 16, 'log_every_steps': 5})
  summary = trainer.train_and_evaluate(config, trained_workdir, sources=_sources(config))
  assert summary['step'] == 2
  assert checkpoints.checkpoint_steps(trained_workdir) == [2]


@pytest.mark.parametrize('field', sorted(FROZEN_CHANGES))
def test_resuming_with_a_frozen_field_changed_is_refused(trained_workdir, field):
  from mh2f_jax.training import trainer  # pylint: disable=g-import-not-at-top
  from mh2f_jax.workdir import checkpoints  # pylint: disable=g-import-not-at-top
  config_path = os.path.join(trained_workdir, checkpoints.CONFIG_FILE)
  with open(config_path, 'rb') as f:
    saved = f.read()
  value = FROZEN_CHANGES[field]
  config = train_helper.tiny_config({**_TRAINED, field: value})
  assert config_schema.get_field(config, field) != config_schema.get_field(
      train_helper.tiny_config(_TRAINED), field)
  with pytest.raises(UserError, match='these fields must match to resume') as e:
    trainer.train_and_evaluate(config, trained_workdir, sources=_sources(config))
  # Exactly the changed field is listed.
  listed = [line.strip() for line in str(e.value).splitlines()[1:]]
  assert len(listed) == 1 and listed[0].startswith(f'{field}: saved '), listed
  # The workdir is left as it was.
  with open(config_path, 'rb') as f:
    assert f.read() == saved
  assert checkpoints.checkpoint_steps(trained_workdir) == [2]
