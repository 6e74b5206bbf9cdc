"""mh2f_jax.runtime.logs: other libraries' INFO lines and harmless warnings are dropped, the
package's own kept, and the lines the docs quote are in train.py's log."""

import json
import logging
import os
import re
import subprocess
import sys

from absl import logging as absl_logging

import mh2f_jax
from mh2f_jax import cli
from mh2f_jax.runtime import compile_cache
from mh2f_jax.runtime import cpu_devices
from mh2f_jax.runtime import logs
from mh2f_jax.training import trainer

# Found from the package, not from logs.py's folder (a subpackage).
PACKAGE = os.path.dirname(os.path.abspath(mh2f_jax.__file__))
REPO = os.path.dirname(PACKAGE)
sys.path.insert(0, os.path.join(REPO, 'tests'))
import train_helper  # pylint: disable=g-import-not-at-top,wrong-import-position

HELPER = os.path.join(REPO, 'tests', 'train_helper.py')
TIMEOUT_S = 600


def _record(name, level, pathname, msg):
  return logging.LogRecord(name, level, pathname, 1, msg, None, None)


def test_library_filter():
  keep = logs.LibraryFilter().filter
  site = '/venv/lib/python3.11/site-packages'
  # The TPU probe of JAX, TFDS's and Orbax's routine lines: dropped.
  assert not keep(_record('jax._src.xla_bridge', logging.INFO,
                          f'{site}/jax/_src/xla_bridge.py',
                          "Unable to initialize backend 'tpu': ..."))
  assert not keep(_record('absl', logging.INFO, f'{site}/orbax/checkpoint/x.py', 'saved'))
  assert not keep(_record('absl', logging.WARNING,
                          f'{site}/tensorflow_datasets/core/features/image_feature.py',
                          'OpenCV is not installed. We recommend using OpenCV ...'))
  # The project's own lines, from every subpackage, and every other library warning: kept.
  for module in ('train.py', 'training/trainer.py', 'training/init_from.py',
                 'runtime/compile_cache.py', 'datasets/memory_cache.py'):
    assert keep(_record('absl', logging.INFO, os.path.join(PACKAGE, module), 'step 1'))
  # A logger whose name only starts like the package's is another library's.
  assert not keep(_record('mh2f_jax_plugin', logging.INFO, f'{site}/plugin.py', 'x'))
  assert keep(_record('mh2f_jax.inference', logging.INFO, '<string>', 'note'))
  assert keep(_record('absl', logging.WARNING, f'{site}/orbax/checkpoint/x.py',
                      'checkpoint is incomplete'))
  assert keep(_record('jax._src.xla_bridge', logging.WARNING, f'{site}/jax/x.py',
                      'An NVIDIA GPU may be present on this machine, but ...'))


def test_quiet_libraries_installs_one_filter(monkeypatch):
  monkeypatch.delenv('MH2F_LIBRARY_LOGS', raising=False)
  handler = absl_logging.get_absl_handler()
  try:
    logs.quiet_libraries()
    logs.quiet_libraries()
    assert sum(isinstance(f, logs.LibraryFilter) for f in handler.filters) == 1
  finally:
    for h in (handler, *logging.getLogger().handlers):
      for f in [f for f in h.filters if isinstance(f, logs.LibraryFilter)]:
        h.removeFilter(f)


def _library_filters():
  handlers = [absl_logging.get_absl_handler(), *logging.getLogger().handlers]
  return [f for h in handlers for f in h.filters if isinstance(f, logs.LibraryFilter)]


def test_library_logs_env_lets_every_line_through_the_commands(monkeypatch):
  before = len(_library_filters())
  monkeypatch.setenv('MH2F_LIBRARY_LOGS', '1')
  with cli.log_policy(absl_logging.INFO):
    assert len(_library_filters()) == before
  monkeypatch.delenv('MH2F_LIBRARY_LOGS')
  with cli.log_policy(absl_logging.INFO):
    assert len(_library_filters()) > before
  assert len(_library_filters()) == before


# The lines of train.py's log that docs/training.md quotes (the phrase the docs hold), and
# what each must say in the run below: 2 steps of batch 8 on 8 examples, validation at
# step 2 on 2 images, from a 1-step run's weights with the tail kept fresh.
def _expected(source):
  n = cpu_devices.count(0, 8)  # config.cpu_devices' default: a device per core.
  return {
      'JAX ': (r'JAX [\w.]+, process 0 of 1, ' + f'{n} local / {n} global devices: '
               + ', '.join(f'cpu:{i}' for i in range(n)) + '(?!,)'),
      'weights from ': re.escape(f'weights from {source} (step 1, raw parameters); fresh '
                                 'optimizer and schedule from step 0'),
      'kept at their fresh initialisation (init_from_skip): ': re.escape(
          'kept at their fresh initialisation (init_from_skip): tail/bias, tail/kernel'),
      'processes: 1, devices: ': re.escape(
          f'processes: 1, devices: {n} ({n} local), per-device batch: {8 // n} in 1 '
          'micro-batch(es), EMA decay: None'),
      'model: ': r'model: [1-9][\d,]* parameters, \{"attention_reduction"',
      'training examples: ': re.escape(
          'training examples: 8, steps: 2 (2 epochs of batch 8), from step 0'),
      'compiled the train step in ': r'compiled the train step in \d+\.\d s',
      ': validation PSNR-Y ': r'step 2: validation PSNR-Y \d+\.\d{3} dB, SSIM-Y '
                              r'-?\d\.\d{4} on 2 images \(best so far\)',
      'done: step ': r"done: step 2 of 2, best \{'step': 2, 'psnr_y': ",
  }


def _docs_quote():
  """The log lines docs/training.md quotes: the block after 'The log (stderr) of a run'."""
  with open(os.path.join(REPO, 'docs', 'training.md'), encoding='utf-8') as f:
    text = f.read()
  after = text[text.index('The log (stderr) of a run'):]
  return after.split('```')[1]


def test_train_py_logs_the_lines_the_docs_quote(tmp_path):
  compile_cache.enable()  # The command below loads what this run compiles.
  source = str(tmp_path / 'source')
  config = train_helper.tiny_config({'num_train_steps': 1, 'checkpoint_every_steps': 1})
  pairs = train_helper.fake_pairs(config.batch_size, 16, 16, seed=1)
  trainer.train_and_evaluate(config, source, sources=(pairs, None))
  overrides = {'num_train_steps': 2, 'checkpoint_every_steps': 2, 'eval_every_steps': 2,
               'num_eval_images': 2, 'init_from': source, 'init_from_skip': ['tail/*']}
  # As a user's shell has it: neither the library-logs switch nor the tests' one device.
  env = {k: v for k, v in os.environ.items()
         if k not in ('MH2F_LIBRARY_LOGS', 'JAX_NUM_CPU_DEVICES')}
  done = subprocess.run(
      [sys.executable, HELPER, '--cli', f'--workdir={tmp_path / "run"}',
       f'--config_json={json.dumps(overrides)}'],
      capture_output=True, text=True, timeout=TIMEOUT_S, cwd=REPO,
      env={**env, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'})
  assert done.returncode == 0, done.stderr[-3000:]
  quote = _docs_quote()
  for phrase, pattern in _expected(source).items():
    assert phrase in quote, f'docs/training.md no longer quotes {phrase!r}'
    assert re.search(pattern, done.stderr), f'{pattern!r} not in the log:\n{done.stderr}'
  # Every INFO line shown is the package's own: other libraries' are dropped.
  info_files = re.findall(r'^I\d{4} [\d:.]+ +\d+ (\S+):\d+\]', done.stderr, re.M)
  ours = {name for _, _, names in os.walk(PACKAGE) for name in names if name.endswith('.py')}
  assert info_files and set(info_files) <= ours, done.stderr
