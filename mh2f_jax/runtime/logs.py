"""What the commands show of other libraries' logging: their warnings, not their chatter.

JAX, TFDS and Orbax log routine steps at INFO (the TPU backend probe on every machine
without a TPU, each dataset file written, each checkpoint saved or restored). With
``train``'s INFO threshold those lines buried the project's own. The commands call
:func:`quiet_libraries` first: records below WARNING are shown only when they come from
mh2f_jax itself; warnings and errors of every library still show, except the few listed
in ``_HARMLESS_WARNINGS``, which say nothing a user could act on. Set
``MH2F_LIBRARY_LOGS=1`` to see every library line again (when reporting a bug).
"""

import functools
import importlib
import logging
import os

# The package this module belongs to, found from the package itself rather than from
# this module's folder, so that moving the module to another subpackage changes nothing.
PACKAGE = __name__.partition('.')[0]
PACKAGE_DIR = os.path.realpath(os.path.dirname(importlib.import_module(PACKAGE).__file__))

# Prefixes of library warnings that need no action.
_HARMLESS_WARNINGS = (
    # TFDS decodes images with Pillow when OpenCV is absent, which is fine here.
    'OpenCV is not installed',
)


def from_package(record: logging.LogRecord) -> bool:
  """Whether mh2f_jax logged ``record``.

  Its own loggers (``logging.getLogger(__name__)``) say so by their name; absl's
  ``logging.info`` logs every module's records under the one name ``absl``, so those are
  told by the file that made the call.
  """
  name = record.name
  if name == PACKAGE or name.startswith(PACKAGE + '.'):
    return True
  return _in_package(record.pathname)


@functools.lru_cache(maxsize=512)
def _in_package(pathname: str) -> bool:
  path = os.path.realpath(pathname)
  return path.startswith(PACKAGE_DIR + os.sep)


class LibraryFilter(logging.Filter):
  """Passes mh2f_jax's records and other libraries' warnings, minus the harmless ones."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.WARNING:
      return from_package(record)
    message = str(record.msg)
    return not any(message.startswith(prefix) for prefix in _HARMLESS_WARNINGS)


def libraries_shown() -> bool:
  """Whether the environment asks for every library line (``MH2F_LIBRARY_LOGS=1``)."""
  return os.environ.get('MH2F_LIBRARY_LOGS') == '1'


_FILTER = LibraryFilter()


def quiet_libraries() -> None:
  """Installs :class:`LibraryFilter` on absl's handler and the root logger's handlers.

  absl routes Python logging (JAX's, Orbax's, TFDS's) through its handler on the root
  logger, so one filter there covers them all; handlers added to the root later (a
  notebook's) are not touched. Calling it again changes nothing. Does nothing when the
  environment sets ``MH2F_LIBRARY_LOGS=1``.
  """
  if libraries_shown():
    return
  from absl import logging as absl_logging
  handlers = [absl_logging.get_absl_handler(), *logging.getLogger().handlers]
  for handler in handlers:
    if _FILTER not in handler.filters:
      handler.addFilter(_FILTER)
