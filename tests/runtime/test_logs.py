"""mh2f_jax.runtime.logs: other libraries' INFO lines and harmless warnings are dropped, the rest kept."""

import logging
import os

from mh2f_jax.runtime import logs

PACKAGE = os.path.dirname(os.path.abspath(logs.__file__))


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
  # The project's own lines and every other library warning: kept.
  assert keep(_record('absl', logging.INFO, os.path.join(PACKAGE, 'train_lib.py'), 'step 1'))
  assert keep(_record('mh2f_jax.inference', logging.INFO, '<string>', 'note'))
  assert keep(_record('absl', logging.WARNING, f'{site}/orbax/checkpoint/x.py',
                      'checkpoint is incomplete'))
  assert keep(_record('jax._src.xla_bridge', logging.WARNING, f'{site}/jax/x.py',
                      'An NVIDIA GPU may be present on this machine, but ...'))


def test_quiet_libraries_installs_one_filter(monkeypatch):
  from absl import logging as absl_logging
  monkeypatch.delenv('MH2F_LIBRARY_LOGS', raising=False)
  handler = absl_logging.get_absl_handler()
  try:
    logs.quiet_libraries()
    logs.quiet_libraries()
    assert sum(isinstance(f, logs.LibraryFilter) for f in handler.filters) == 1
  finally:
    for f in [f for f in handler.filters if isinstance(f, logs.LibraryFilter)]:
      handler.removeFilter(f)
