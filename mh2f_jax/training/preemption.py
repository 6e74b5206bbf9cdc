"""Preemption: SIGTERM or Ctrl-C stops training cleanly at the next step boundary."""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import signal
import threading
from typing import Any

from absl import logging
import jax

from mh2f_jax.runtime import hosts

# Open signals_left_to_caller blocks: while one is, StopRequest installs no handler.
_left_to_caller: list[None] = []


@contextlib.contextmanager
def signals_left_to_caller() -> Iterator[None]:
  """While open, training leaves SIGTERM and Ctrl-C to the caller's handlers.

  For a caller to whom the training run is one part of its work (the benchmark): a
  stop there must stop the caller, not end the run early at a step boundary and let
  the caller go on with its result.
  """
  _left_to_caller.append(None)
  try:
    yield
  finally:
    _left_to_caller.pop()


class StopRequest:
  """Turns SIGTERM/SIGINT into a flag the loop checks between steps.

  The loop then finishes the current step, saves a checkpoint and returns. A second
  SIGINT (Ctrl-C twice) interrupts at once.
  """

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signum = signum
    logging.warning('received %s: finishing the current step, then saving a checkpoint',
                    signal.Signals(signum).name)

  def agreed(self, sync_point: bool) -> bool:
    """Whether to stop now; with several processes, all of them decide together.

    The save that follows a stop is collective, so every process must stop at the same
    step: they compare their flags at sync points (the log steps) and otherwise go on.

    Args:
      sync_point: whether this step is one where the processes compare flags.

    Returns:
      True when the loop should save and stop after this step.
    """
    if jax.process_count() > 1 and not sync_point:
      return False
    return hosts.agree(self.signum is not None, 'any')

  def describe(self) -> str:
    """The signal's name, for messages."""
    return signal.Signals(self.signum).name if self.signum else 'a signal'

  def __enter__(self):
    # Signal handlers can only be installed from the main thread.
    if threading.current_thread() is threading.main_thread() and not _left_to_caller:
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()
