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
