"""JAX's persistent compilation cache, on by default for every entry point.

XLA compiles the train step, the eval step and the forward pass anew in every process
(tens of seconds for the default model on a CPU). With the persistent cache, a second run
of the same config loads the executables from disk and only traces and lowers.

Where the cache lives, in order:

* ``$MH2F_COMPILATION_CACHE``: a directory, or ``off`` (also ``0``, ``none``,
  ``false``) to disable the cache;
* ``$JAX_COMPILATION_CACHE_DIR`` or a ``jax_compilation_cache_dir`` already set in
  ``jax.config`` (JAX's own ways to choose the directory) are respected;
* otherwise ``$XDG_CACHE_HOME/mh2f_jax/jax_cache`` (``~/.cache/mh2f_jax/jax_cache``).

Entries are keyed by JAX on the computation, the compiler options, the JAX/jaxlib version
and the device kind, so a stale or foreign entry is never used; deleting the directory is
always safe.
"""

from __future__ import annotations

import logging
import os

import jax
from jax.experimental.compilation_cache import compilation_cache as jax_cache

_log = logging.getLogger(__name__)

ENV_VAR = 'MH2F_COMPILATION_CACHE'
_OFF = ('off', '0', 'none', 'false', 'no')
# JAX's defaults skip executables that compile in under a second, which drops every eval
# step of a small image; on a CPU host those still cost about a second each per size.
# Cache everything that took this long to compile, whatever its size.
_MIN_COMPILE_SECS = 0.0
_MIN_ENTRY_BYTES = 0


def default_dir() -> str:
  """Returns the per-user cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'),
                                                          '.cache')
  return os.path.join(base, 'mh2f_jax', 'jax_cache')


def resolve_dir(setting: str | None = None) -> str | None:
  """Returns the cache directory to use, or None when the cache is off.

  Args:
    setting: a directory or ``'off'``; None reads ``$MH2F_COMPILATION_CACHE``, then the
      directory JAX was already told to use, then :func:`default_dir`.

  Returns:
    An absolute directory path, or None.
  """
  if setting is None:
    setting = os.environ.get(ENV_VAR)
  if setting is not None and setting.strip():
    if setting.strip().lower() in _OFF:
      return None
    return os.path.abspath(os.path.expanduser(setting.strip()))
  configured = jax.config.jax_compilation_cache_dir or os.environ.get(
      'JAX_COMPILATION_CACHE_DIR')
  return configured or default_dir()


def enable(setting: str | None = None) -> str | None:
  """Turns JAX's persistent compilation cache on (or leaves it off), once per process.

  Best called before the first compilation; a later call takes effect from the next
  compilation (JAX decides once per process whether the cache is used, so the decision
  is reset here). A directory that cannot be created only turns
  the cache off, with a one-line warning: caching is never a reason to fail a run.

  Args:
    setting: as for :func:`resolve_dir`.

  Returns:
    The directory in use, or None when the cache is off.
  """
  directory = resolve_dir(setting)
  if directory is not None:
    try:
      os.makedirs(directory, exist_ok=True)
    except OSError as e:
      _log.warning('compilation cache off: cannot create %s (%s)', directory, e)
      directory = None
  jax.config.update('jax_enable_compilation_cache', directory is not None)
  if directory is not None:
    jax.config.update('jax_compilation_cache_dir', directory)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', _MIN_COMPILE_SECS)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', _MIN_ENTRY_BYTES)
  jax_cache.reset_cache()
  return directory
