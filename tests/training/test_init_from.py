"""Tests of starting a run from trained weights (config.init_from, init_from_skip)."""

import json
import os
import shutil
import subprocess
import sys

from absl import flags
from flax import traverse_util
import jax
import ml_collections
import numpy as np
import pytest

from mh2f_jax import configs

from mh2f_jax import model as model_lib
from mh2f_jax.errors import UserError
from mh2f_jax.runtime import compile_cache
from mh2f_jax.export import params_file
from mh2f_jax.training import init_from
from mh2f_jax.training import optim
from mh2f_jax.training import steps
from mh2f_jax.training import trainer
from mh2f_jax.workdir import checkpoints
from mh2f_jax.workdir import loading
from mh2f_jax.workdir import run_record

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'tests'))
import train_helper  # pylint: disable=g-import-not-at-top,wrong-import-position

# Every step saves, so 'latest' and a step number name different checkpoints.
BASE = {'num_train_steps': 2, 'checkpoint_every_steps': 1, 'max_to_keep': None}


def _train(workdir, overrides=None):
  config = train_helper.tiny_config({**BASE, **(overrides or {})})
  pairs = train_helper.fake_pairs(config.batch_size, 16, 16, seed=1)
  return trainer.train_and_evaluate(config, str(workdir), sources=(pairs, None))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A tiny run of two steps: the weights the tests start from."""
  compile_cache.enable()  # The runs here compile the same programs: compile them once.
  workdir = tmp_path_factory.mktemp('trained')
  _train(workdir)
  return str(workdir)


@pytest.fixture(scope='module')
def with_best(trained, tmp_path_factory):
  """The trained run with its best checkpoint at step 1, before its latest (step 2)."""
  workdir = str(tmp_path_factory.mktemp('with_best') / 'run')
  shutil.copytree(trained, workdir)
  _, first, _ = loading.load_workdir(workdir, 1)
  manager = checkpoints.create_best_manager(workdir)
  checkpoints.save_best(manager, workdir, 1, first, psnr_y=30.0, ssim_y=0.9)
  manager.close()
  return workdir


def _initial(overrides, ema=False, config=None):
  config = config or train_helper.tiny_config({**BASE, **overrides})
  model = model_lib.from_config(config.model)
  tx, _ = optim.create_optimizer(config.optim, config.num_train_steps)
  return init_from.initial_state(config, model, tx, steps.create_mesh(), ema)


def _flat(tree):
  return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(
      jax.device_get(tree), sep='/').items()}


def _assert_same(a, b):
  a, b = _flat(a), _flat(b)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_workdir_best_else_latest_and_a_named_step(trained):
  _, latest, _ = loading.load_workdir(trained, 'latest')
  _, first, _ = loading.load_workdir(trained, 1)
  state, origin = _initial({'init_from': trained})
  _assert_same(state.params, latest)  # No validation ran: no best, so the latest.
  assert int(state.step) == 0 and origin['step'] == 2
  state, origin = _initial({'init_from': f'{trained}:1'})
  _assert_same(state.params, first)
  assert origin == {'init_from': trained, 'kind': 'workdir', 'checkpoint': '1', 'step': 1,
                    'params': 'raw', 'skipped': []}
  fresh, _ = _initial({})
  assert not np.array_equal(_flat(fresh.params)['head/kernel'], _flat(first)['head/kernel'])


def test_a_workdir_gives_its_best_checkpoint_not_its_latest(with_best):
  _, best, _ = loading.load_workdir(with_best, 'best')
  _, latest, _ = loading.load_workdir(with_best, 'latest')
  assert not np.array_equal(_flat(best)['head/kernel'], _flat(latest)['head/kernel'])
  state, origin = _initial({'init_from': with_best})
  _assert_same(state.params, best)
  assert origin['checkpoint'] == 'best' and origin['step'] == 1
  state, origin = _initial({'init_from': f'{with_best}:latest'})
  _assert_same(state.params, latest)
  assert origin['step'] == 2


def test_with_ema_the_ema_parameters_start_as_the_loaded_ones(trained):
  _, latest, _ = loading.load_workdir(trained, 'latest')
  state, _ = _initial({'init_from': trained, 'ema_decay': 0.999}, ema=True)
  _assert_same(state.params, latest)
  _assert_same(state.ema_params, latest)  # What eval and derain read by default.


def test_a_corrupt_checkpoint_names_the_init_from_form_to_choose_another(with_best, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(with_best, workdir)
  # Step 1 is also a training checkpoint, which is where its parameters are read.
  item = os.path.join(workdir, checkpoints.CHECKPOINT_DIR, '1')
  largest = max((os.path.join(r, n) for r, _, names in os.walk(item) for n in names),
                key=os.path.getsize)
  with open(largest, 'r+b') as f:
    f.truncate(os.path.getsize(largest) // 2)
  with pytest.raises(UserError) as raised:
    _initial({'init_from': workdir})
  message = str(raised.value)
  assert message.startswith(f'init_from {workdir}: checkpoint 1 in {workdir} is corrupt (')
  assert f'name another checkpoint as init_from={workdir}:STEP: training checkpoints at ' \
      'steps 1, 2' in message
  assert '--checkpoint' not in message and '\n' not in message
  state, origin = _initial({'init_from': f'{workdir}:2'})  # The way it names works.
  assert origin['step'] == 2


def test_the_runs_own_workdir_is_refused_by_name(tmp_path):
  workdir = str(tmp_path / 'run')
  for spec in (workdir, f'{workdir}:latest', os.path.join(workdir, '.')):
    with pytest.raises(UserError, match=r'is the workdir of this run, which has no '
                       r'checkpoint to start from: name another run'):
      _train(workdir, {'init_from': spec})
  assert not os.path.exists(os.path.join(workdir, 'config.json'))  # Nothing recorded.
  # What train.py's user sees: one error line, exit status 2.
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tests', 'train_helper.py'), '--cli',
       f'--workdir={workdir}', f'--config_json={json.dumps({"init_from": workdir})}'],
      capture_output=True, text=True, timeout=300, cwd=REPO,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr[-2000:]
  assert errors == [f'error: init_from {workdir} is the workdir of this run, which has no '
                    'checkpoint to start from: name another run (its workdir or DIR:STEP) '
                    'or a parameters file, or leave init_from unset for random weights']


def test_init_from_skip_as_one_comma_separated_string(trained):
  assert init_from.skip_patterns('rpff/*,fusion_add/*') == ['rpff/*', 'fusion_add/*']
  assert init_from.skip_patterns(' rpff/*, fusion_add/* ,') == ['rpff/*', 'fusion_add/*']
  # The flag as the docs write it: train.py's --config flag reads it as the tuple.
  values, argv = flags.FlagValues(), ['train.py', '--config=synthetic',
                                      '--config.init_from_skip=rpff/*,fusion_add/*']
  configs.define_flag('config', 'config', values, sys_argv=argv)
  values(argv)
  assert values.config.init_from_skip == ('rpff/*', 'fusion_add/*')
  # A config given as a dict (or read back from JSON) may hold the string itself.
  overrides = {**BASE, 'init_from': trained, 'model.fusion': 'add'}
  as_dict = train_helper.tiny_config(overrides).to_dict()
  as_dict['init_from_skip'] = 'rpff/*,fusion_add/*'
  _, by_string = _initial({}, config=ml_collections.ConfigDict(as_dict))
  _, by_tuple = _initial({**overrides, 'init_from_skip': ('rpff/*', 'fusion_add/*')})
  assert by_string['skipped'] == by_tuple['skipped'] and by_string['skipped']


def test_parameters_file(trained, tmp_path):
  path = str(tmp_path / 'params.msgpack')
  params_file.export_params(trained, path, checkpoint='latest')
  state, origin = _initial({'init_from': path})
  _assert_same(state.params, loading.load_workdir(trained, 'latest')[1])
  assert origin['kind'] == 'parameters file' and origin['init_from'] == path


def test_strict_mismatch_names_the_parameters_and_skip_keeps_them_fresh(trained):
  with pytest.raises(UserError) as e:
    _initial({'init_from': trained, 'model.fusion': 'add'})
  message = str(e.value)
  assert message.startswith(f'init_from {trained}: its parameters do not fit the model')
  assert "['rpff']" in message and 'init_from_skip' in message and '\n' not in message
  # The trained run's RPFF is dropped, the new model's fusion is kept fresh.
  state, origin = _initial({'init_from': trained, 'model.fusion': 'add',
                            'init_from_skip': ('rpff/*', 'fusion_add/*')})
  fresh, _ = _initial({'model.fusion': 'add'})
  got, want, old = _flat(state.params), _flat(fresh.params), _flat(
      loading.load_workdir(trained, 'latest')[1])
  assert origin['skipped'] == sorted(k for k in want if k.startswith('fusion_add/'))
  for k in got:
    np.testing.assert_array_equal(got[k], want[k] if k.startswith('fusion_add/') else old[k])


def test_a_skip_pattern_that_matches_nothing_is_an_error(trained):
  with pytest.raises(UserError, match="init_from_skip pattern 'rpf/\\*' matches no parameter"):
    _initial({'init_from': trained, 'init_from_skip': ('rpf/*',)})


def test_missing_source_is_one_error_line(tmp_path):
  with pytest.raises(UserError, match='no such workdir or parameters file'):
    _initial({'init_from': str(tmp_path / 'nowhere')})


def test_a_resumed_run_continues_instead_of_reinitialising(trained, tmp_path):
  """Two steps, then two more with init_from still set, equal four in one go."""
  start = {'init_from': trained, 'optim.learning_rate': 5e-3}
  _train(tmp_path / 'split', {**start, 'num_train_steps': 2})
  _train(tmp_path / 'split', {**start, 'num_train_steps': 4})
  _train(tmp_path / 'whole', {**start, 'num_train_steps': 4})
  _assert_same(loading.load_workdir(str(tmp_path / 'split'), 'latest')[1],
               loading.load_workdir(str(tmp_path / 'whole'), 'latest')[1])
  with open(tmp_path / 'split' / 'config.json') as f:
    assert json.load(f)['init_from'] == trained
  record = run_record.load(str(tmp_path / 'split'))
  assert record['weights']['init_from'] == trained and record['weights']['step'] == 2
  assert record['trained_on'] == [{'dataset': 'fake', 'split': 'train', 'count': 8,
                                   'weight': 1.0, 'data_dir': None}]
  lines = run_record.markdown_lines(record)
  assert lines == ['- Trained on: fake train (8 pairs, 100% of the batches).',
                   f'- Started from: {trained}, step 2 (raw parameters).']
