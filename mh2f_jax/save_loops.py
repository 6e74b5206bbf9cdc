"""Orbax's save event loops: one whose save failed cancels the writes it left, then closes.

Orbax runs each stage of a save (during training, the arrays that TensorStore writes in
a background thread) in an asyncio event loop of its own, which it closes as soon as the
stage returns or raises (``orbax.checkpoint._src.asyncio_utils._run_sync_via_new_loop``).
A stage awaits its writes with ``asyncio.gather``, which raises the first error (a full
disk) and leaves the other writes pending: the loop is closed under them. As TensorStore
then ends each of those writes, its callback schedules the result on the closed loop,
meets ``RuntimeError('Event loop is closed')`` and hands it to ``PyErr_WriteUnraisable``:
a traceback on stderr per write, from a TensorStore thread, before the command reports
the full disk in its one ``error:`` line.

:func:`cancel_writes_left_by_a_failure` gives those loops the step that ``asyncio.run``
takes before it closes a loop, and that Orbax's own runner leaves out: cancel the tasks
still pending and let them end. Cancelling the future such a task awaits unregisters
TensorStore's callback, so nothing is left to call the closed loop (a write already
under way may still finish, into the step's temporary folder, which the next run
removes). Only a stage that raised is changed: a save that succeeds runs exactly as
Orbax wrote it. Orbax exposes no public way to do this, hence the wrapper around its
private runner; where a version of Orbax no longer has that runner, nothing is wrapped.
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
# Cancelled writes end at once; the bound only keeps a failed save from ever hanging.
_CANCEL_TIMEOUT_S = 60
_lock = threading.Lock()
_users = 0
_original = None  # Orbax's runner while the wrapper stands in for it.


async def _cancelling_on_failure(coro: Coroutine[Any, Any, _T]) -> _T:
  """Awaits ``coro``; if it raises, first cancels and awaits the loop's other tasks."""
  try:
    return await coro
  except BaseException:
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current]
    for task in left:
      task.cancel()
    if left:
      await asyncio.wait(left, timeout=_CANCEL_TIMEOUT_S)
    raise


def _wrap(run: Callable[[Coroutine[Any, Any, _T]], _T]
          ) -> Callable[[Coroutine[Any, Any, _T]], _T]:
  """Orbax's runner, with :func:`_cancelling_on_failure` around each coroutine."""
  @functools.wraps(run)
  def run_cancelling_on_failure(coro: Coroutine[Any, Any, _T]) -> _T:
    return run(_cancelling_on_failure(coro))
  return run_cancelling_on_failure


@contextlib.contextmanager
def cancel_writes_left_by_a_failure() -> Iterator[None]:
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
