"""Orbax's save event loops: one whose stage failed lets the writes it left end first.

Orbax runs each stage of a save (during training, the arrays that TensorStore writes in
a background thread) in an asyncio event loop of its own, which it closes as soon as the
stage returns or raises (``orbax.checkpoint._src.asyncio_utils._run_sync_via_new_loop``).
A stage awaits its writes with ``asyncio.gather``, which raises the first error (a full
disk) and leaves the other writes pending: the loop is closed under them. As TensorStore
then ends each of those writes, its callback schedules the result on the closed loop,
meets ``RuntimeError('Event loop is closed')`` and hands it to ``PyErr_WriteUnraisable``:
a traceback on stderr per write, from a TensorStore thread, before the command reports
the full disk in its one ``error:`` line. A restore that fails on a corrupt checkpoint
leaves its pending reads the same way.

:func:`wait_for_writes_left_by_a_failure` makes a stage that raised wait, before its
loop closes, for the tasks it left (on a full disk they fail within milliseconds), so
every TensorStore callback finds its loop open. They are waited for, not cancelled:
cancelling a TensorStore future while TensorStore completes it can deadlock (its
``cancel`` waits, holding the GIL, for a callback that waits for the GIL). A stage
that succeeds runs exactly as Orbax wrote it. Orbax offers no public way to do this,
hence the wrapper around its private runner; where a version of Orbax no longer has
that runner, nothing is wrapped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
import contextlib
import functools
import threading
from typing import Any, TypeVar

from orbax.checkpoint._src import asyncio_utils

_T = TypeVar('_T')
_RUNNER = '_run_sync_via_new_loop'
# The writes left end within milliseconds on a full disk; the bound keeps a failed save
# from ever hanging on one that does not end (its loop then closes as Orbax would).
_WAIT_TIMEOUT_S = 30
_lock = threading.Lock()
_users = 0
_original = None  # Orbax's runner while the wrapper stands in for it.


async def _waiting_on_failure(coro: Coroutine[Any, Any, _T]) -> _T:
  """Awaits ``coro``; if it raises, first waits for the loop's other tasks to end."""
  try:
    return await coro
  except BaseException:
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current]
    if left:
      await asyncio.wait(left, timeout=_WAIT_TIMEOUT_S)
    raise


def _wrap(run: Callable[[Coroutine[Any, Any, _T]], _T]
          ) -> Callable[[Coroutine[Any, Any, _T]], _T]:
  """Orbax's runner, with :func:`_waiting_on_failure` around each coroutine."""
  @functools.wraps(run)
  def run_waiting_on_failure(coro: Coroutine[Any, Any, _T]) -> _T:
    return run(_waiting_on_failure(coro))
  return run_waiting_on_failure


@contextlib.contextmanager
def wait_for_writes_left_by_a_failure() -> Iterator[None]:
  """While the block (or the decorated function) runs, see the module docstring.

  Nested and concurrent uses share one wrapper; the last to end puts Orbax's back.
  """
  global _users, _original
  with _lock:
    if _users == 0 and getattr(asyncio_utils, _RUNNER, None) is not None:
      _original = getattr(asyncio_utils, _RUNNER)
      setattr(asyncio_utils, _RUNNER, _wrap(_original))
    _users += 1
  try:
    yield
  finally:
    with _lock:
      _users -= 1
      if _users == 0 and _original is not None:
        setattr(asyncio_utils, _RUNNER, _original)
        _original = None
