"""Host memory: freed memory kept for reuse, so the kernel does not zero-fill it every step.

XLA:CPU allocates all the temporaries of one execution as a single buffer (gigabytes for
the default model's train step) and frees it when the execution ends. The execution runs
on one of XLA's worker threads, and glibc's malloc serves a block that large from the
thread's own arena with ``mmap`` (a thread arena's heaps hold 64 MiB at most, so no
``mmap_threshold`` keeps it out of ``mmap``) and returns it with ``munmap`` on free. Every
page of it is then faulted in and zero-filled again by the kernel on the next step: a
quarter of a CPU train step, measured in docs/performance.md.

:func:`keep_freed_memory` sets three of glibc's malloc parameters with ``mallopt`` in the
running process: one arena for every thread (``M_ARENA_MAX``: the block then comes from
the main heap, which can hold it), no ``mmap`` (``M_MMAP_MAX``) and no trimming of the
heap (``M_TRIM_THRESHOLD``). The freed block stays in the heap and the next execution
reuses it. Nothing needs preloading, so it works the same from every command, a notebook
or a test. It must come before JAX starts its CPU client: a thread that has allocated
already keeps its own arena. The commands call it first (``cli.run``), and so does
``training.trainer.train_and_evaluate``.

The cost: memory freed stays with the process until it exits, so its resident size stays
at its peak. Where the settings cannot apply (another C library, macOS, another allocator
preloaded), nothing changes and one note says so; ``MH2F_HOST_MEMORY=system`` keeps
glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import sys

ENV = 'MH2F_HOST_MEMORY'
# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
# -1 is read as the largest size_t: never trim (malloc(3)).
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
KEPT = 'glibc malloc, freed memory kept (one arena, no mmap, no trim)'
# The same three settings for another process, as glibc reads them at its start: how the
# benchmark runs the PyTorch peer like for like. (The trim threshold is 128 GiB here:
# a tunable takes a size, not -1.)
GLIBC_TUNABLES = ('glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:'
                  'glibc.malloc.trim_threshold=137438953472')

_state: dict[str, str] = {}


def _glibc() -> ctypes.CDLL | None:
  """glibc itself, or None on another C library."""
  if not sys.platform.startswith('linux') or platform.libc_ver()[0] != 'glibc':
    return None
  try:
    return ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
  except OSError:
    return None


def _interposed(libc: ctypes.CDLL) -> bool:
  """Whether the process's ``malloc`` is another library's (LD_PRELOAD of an allocator)."""
  address = lambda lib: ctypes.cast(lib.malloc, ctypes.c_void_p).value
  return address(ctypes.CDLL(None)) != address(libc)


def _why_not(libc: ctypes.CDLL | None) -> str | None:
  if os.environ.get(ENV) == 'system':
    return None  # Asked for; no note.
  if libc is None:
    return (f'host memory: the allocator of {platform.system()} '
            f'({platform.libc_ver()[0] or "not glibc"}) is kept as it is')
  if _interposed(libc):
    return 'host memory: the preloaded allocator (LD_PRELOAD) is kept as it is'
  return ''


def keep_freed_memory() -> str:
  """Makes glibc's malloc keep freed memory for reuse (see the module docstring).

  Runs once per process; later calls return the first call's result. Where it cannot
  apply, logs one note (logger ``mh2f_jax``, shown as ``note: ...`` by the commands).

  Returns:
    What the process allocates host memory with, for logs and benchmark tables.
  """
  if 'allocator' in _state:
    return _state['allocator']
  libc = _glibc()
  reason = _why_not(libc)
  if reason is None:
    result = 'system default (MH2F_HOST_MEMORY=system)'
  elif reason:
    logging.getLogger('mh2f_jax').warning('%s; see docs/performance.md', reason)
    result = reason.split(': ', 1)[1]
  elif all(libc.mallopt(param, value) == 1 for param, value in _SETTINGS):
    result = KEPT
  else:
    result = 'glibc malloc, defaults (mallopt refused a setting)'
  _state['allocator'] = result
  return result
