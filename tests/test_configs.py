"""Tests of configs/*.py: one schema, the paper's protocol, the ablations, the variants."""

import glob
import os

from absl import flags
from ml_collections import config_flags
import pytest

from mh2f_jax import config_schema

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(os.path.relpath(p, REPO)
                      for p in glob.glob(os.path.join(REPO, 'configs', '[!_]*.py')))
# Paper 4.1: epochs per benchmark.
PAPER_EPOCHS = {'rain200l': 200, 'rain200h': 200, 'rain1400': 100, 'spa_data': 25}
# Paper 4.3, Table 3: what each ablation changes in the model.
ABLATIONS = {
    'ablation_mheb4': {'num_blocks': 4},
    'ablation_mheb6': {'num_blocks': 6},
    'ablation_mheb10': {'num_blocks': 10},
    'ablation_no_hadb': {'distill': 'concat'},
    'ablation_fusion_add': {'fusion': 'add'},
    'ablation_fusion_concat': {'fusion': 'concat'},
}


def load(spec: str):
  """Loads a config the way train.py does (config_flags, locked), from the repo root."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=values,
                                  lock_config=True)
  cwd = os.getcwd()
  os.chdir(REPO)
  try:
    values(['prog', f'--config={spec}'])
  finally:
    os.chdir(cwd)
  return values.config


def keys(tree, prefix=''):
  out = set()
  for k, v in tree.items():
    out |= keys(v, f'{prefix}{k}.') if isinstance(v, dict) else {prefix + k}
  return out


def test_every_expected_config_exists():
  names = {os.path.basename(p)[:-3] for p in CONFIG_FILES}
  assert names >= {'default', 'synthetic', *PAPER_EPOCHS, *ABLATIONS}


@pytest.mark.parametrize('path', CONFIG_FILES)
@pytest.mark.parametrize('variant', ['', ':debug'])
def test_config_loads_with_the_shared_schema(path, variant):
  config = load(path + variant)
  reference = load('configs/default.py').to_dict()
  assert keys(config.to_dict()) == keys(reference)
  config_schema.validate(config)
  if variant:
    assert config.model.features == 8 and config.model.num_blocks == 2
    assert config.num_train_steps <= 50
    assert config.num_eval_images is not None and config.num_eval_images <= 4


@pytest.mark.parametrize('name,epochs', sorted(PAPER_EPOCHS.items()))
def test_paper_protocol(name, epochs):
  config = load(f'configs/{name}.py')
  assert config.data.dataset == name
  assert config.num_epochs == epochs
  assert config.num_train_steps is None  # derived from the epochs
  assert config.batch_size == 16
  assert config.data.patch_size == 64 and config.data.hflip
  assert config.optim.learning_rate == 1e-3
  assert (config.optim.b1, config.optim.b2) == (0.9, 0.999)
  assert config.optim.schedule == 'multistep'
  assert tuple(config.optim.decay_at) == (0.3, 0.5, 0.8)
  assert config.optim.decay_factor == 0.2
  assert config.loss.ssim_weight == 0.2
  assert config.model.features == 32 and config.model.num_blocks == 8
  assert (config.model.distill, config.model.fusion) == ('hadb', 'rpff')


def test_rain200_steps_follow_from_the_epochs():
  config = load('configs/rain200l.py')
  # 1,800 training pairs, one crop each per epoch, batch 16.
  assert config_schema.resolve_num_train_steps(config, 1800) == 200 * 1800 // 16


@pytest.mark.parametrize('name,change', sorted(ABLATIONS.items()))
def test_ablations_change_only_the_model(name, change):
  config = load(f'configs/{name}.py').to_dict()
  base = load('configs/rain200h.py').to_dict()
  assert {k: v for k, v in config.items() if k != 'model'} == {
      k: v for k, v in base.items() if k != 'model'}
  differing = {k: v for k, v in config['model'].items() if base['model'][k] != v}
  assert differing == change


def test_synthetic_demo_uses_the_offline_dataset():
  config = load('configs/synthetic.py')
  # Heavy rain, light rain and images without rain, 3 : 1 : 0.5; all render offline.
  assert config.data.dataset == ('synthetic_rain/heavy:3,synthetic_rain/light:1,'
                                 'synthetic_rain/clear:0.5')
  assert config.num_train_steps is not None


def test_unknown_variant_is_refused():
  with pytest.raises(Exception, match='debug'):
    load('configs/rain200l.py:huge')


def test_locked_config_rejects_unknown_overrides():
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=values,
                                  lock_config=True)
  cwd = os.getcwd()
  os.chdir(REPO)
  try:
    with pytest.raises(flags.Error):
      values(['prog', '--config=configs/rain200l.py', '--config.model.featurez=3'])
  finally:
    os.chdir(cwd)


def test_shipped_configs_load_by_name_with_variant_and_overrides():
  from mh2f_jax import configs
  assert set(configs.names()) == {os.path.basename(p)[:-3] for p in CONFIG_FILES}
  values = flags.FlagValues()
  argv = ['prog', '--config=rain200h:debug', '--config.batch_size=4']
  configs.define_flag('config', 'config', values, sys_argv=argv)
  values(argv)
  expected = load('configs/rain200h.py:debug')
  expected.unlock().batch_size = 4
  assert values.config.to_dict() == expected.to_dict()
  assert configs.get_config('rain200h.py').to_dict() == load('configs/rain200h.py').to_dict()


def test_an_existing_file_wins_over_a_name_and_unknown_names_list_the_shipped(tmp_path):
  from mh2f_jax import configs
  own = tmp_path / 'synthetic'
  own.write_text('import ml_collections\n'
                 'def get_config():\n  return ml_collections.ConfigDict({"mine": 1})\n')
  cwd = os.getcwd()
  os.chdir(tmp_path)
  try:
    assert configs.get_config('synthetic').mine == 1
  finally:
    os.chdir(cwd)
  with pytest.raises(ValueError, match='rain300l is not a file.*rain200l'):
    configs.config_path('rain300l')
  values = flags.FlagValues()
  configs.define_flag('config', 'config', values, sys_argv=['prog'])
  with pytest.raises(flags.IllegalFlagValueError, match='shipped: ablation'):
    values(['prog', '--config=configs/nope.py'])
