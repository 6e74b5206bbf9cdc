"""What the commands show of other libraries' logging: their warnings, not their chatter.

JAX, TFDS and Orbax log routine steps at INFO (the TPU backend probe on every machine
without a TPU, each dataset file written, each checkpoint saved or restored). With
``train``'s INFO threshold those lines buried the project's own. The commands call
:func:`quiet_libraries` first: records below WARNING are shown only when they come from
mh2f_jax itself; warnings and errors of every library still show, except the few listed
in ``_HARMLESS_WARNINGS``, which say nothing a user could act on. Set
``MH2F_LIBRARY_LOGS=1`` to see every library line again (when reporting a bug).
"""

import logging
import os

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

# Prefixes of library warnings that need no action.
_HARMLESS_WARNINGS = (
    # TFDS decodes images with Pillow when OpenCV is absent, which is fine here.
    'OpenCV is not installed',
)


class LibraryFilter(logging.Filter):
  """Passes mh2f_jax's records and other libraries' warnings, minus the harmless ones."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.WARNING:
      return (record.name.startswith('mh2f_jax')
              or os.path.abspath(record.pathname).startswith(_PACKAGE_DIR))
    message = str(record.msg)
    return not any(message.startswith(prefix) for prefix in _HARMLESS_WARNINGS)


_FILTER = LibraryFilter()


def quiet_libraries() -> None:
  """Installs :class:`LibraryFilter` on absl's handler and the root logger's handlers.

  absl routes Python logging (JAX's, Orbax's, TFDS's) through its handler on the root
  logger, so one filter there covers them all; handlers added to the root later (a
  notebook's) are not touched. Calling it again changes nothing. Does nothing when the
  environment sets ``MH2F_LIBRARY_LOGS=1``.
  """
  if os.environ.get('MH2F_LIBRARY_LOGS') == '1':
    return
  from absl import logging as absl_logging
  handlers = [absl_logging.get_absl_handler(), *logging.getLogger().handlers]
  for handler in handlers:
    if _FILTER not in handler.filters:
      handler.addFilter(_FILTER)
