"""The training progress bar: log lines never share its line, its rate counts only steps.

* On a terminal the bar redraws itself in place; every log record (absl, Python logging)
  is written after clearing the bar and the bar is drawn again below it, so a validation
  or checkpoint line is always a line of its own.
* In a file (stderr redirected, a batch job's log) a bar drawn with carriage returns
  would glue the next log line onto its own; there the bar is written as whole lines
  instead, one every ``FILE_INTERVAL_S`` seconds, which log lines cannot join.
* Validation and checkpoints run inside :meth:`ProgressBar.paused`, which moves the bar's
  clock forward by the time they took: its rate and ETA are those of the training steps
  alone (the bar itself starts after the step's compilation).
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import logging
import sys
from typing import Any, TextIO

import tqdm

# Seconds between two bar lines in a file.
FILE_INTERVAL_S = 30.0
# The loggers whose handlers write to the terminal: absl's handler sits on the root,
# ``mh2f_jax`` has the command-line tools' note handler.
_LOGGERS = ('', 'absl', 'mh2f_jax')


class _LineStream:
  """A file-like object that writes each bar update as one complete line."""

  def __init__(self, stream: TextIO):
    self._stream = stream

  def write(self, text: str) -> None:
    line = text.replace('\r', '').strip()
    if line:
      self._stream.write(line + '\n')

  def flush(self) -> None:
    self._stream.flush()


class _ClearingHandler(logging.Handler):
  """Writes through another handler with the bar cleared first and redrawn after."""

  def __init__(self, inner: logging.Handler, bar: tqdm.tqdm):
    super().__init__(inner.level)
    self.inner = inner
    self._bar = bar

  def handle(self, record: logging.LogRecord) -> bool:
    self._bar.clear()
    try:
      return self.inner.handle(record)
    finally:
      self._bar.refresh()


class ProgressBar:
  """The bar of a training run, from ``initial`` to ``total`` steps."""

  def __init__(self, total: int, initial: int, *, enabled: bool,
               stream: TextIO | None = None):
    """Creates the bar (call after the step's compilation: its clock starts now).

    Args:
      total: the run's last step.
      initial: the step it starts from (a resumed run's rate counts only its own steps).
      enabled: False draws nothing (every process but 0).
      stream: where to draw (default ``sys.stderr``).
    """
    stream = stream or sys.stderr
    self._terminal = bool(getattr(stream, 'isatty', lambda: False)())
    options: dict[str, Any] = (
        {'file': stream, 'mininterval': 1.0, 'dynamic_ncols': True} if self._terminal
        else {'file': _LineStream(stream), 'mininterval': FILE_INTERVAL_S, 'ncols': 100,
              'ascii': True})
    self.bar = tqdm.tqdm(total=total, initial=initial, unit='step', smoothing=0.1,
                         disable=not enabled, **options)
    self._swapped: list[tuple[logging.Logger, logging.Handler, logging.Handler]] = []
    if enabled and self._terminal:
      self._route_logs()

  def _route_logs(self) -> None:
    for name in _LOGGERS:
      logger = logging.getLogger(name)
      for i, handler in enumerate(list(logger.handlers)):
        wrapper = _ClearingHandler(handler, self.bar)
        logger.handlers[i] = wrapper
        self._swapped.append((logger, handler, wrapper))

  def update(self, steps: int = 1) -> None:
    self.bar.update(steps)

  def set_postfix(self, **values: Any) -> None:
    self.bar.set_postfix(refresh=False, **values)

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    """Leaves the time spent inside out of the bar's rate and ETA."""
    if self.bar.disable:  # A disabled tqdm has no clock.
      yield
      return
    start = self.bar._time()  # pylint: disable=protected-access  (tqdm's clock)
    try:
      yield
    finally:
      pause = self.bar._time() - start  # pylint: disable=protected-access
      self.bar.start_t += pause
      self.bar.last_print_t += pause

  def close(self) -> None:
    """Draws the final state and gives the log handlers back."""
    for logger, handler, wrapper in reversed(self._swapped):
      if wrapper in logger.handlers:
        logger.handlers[logger.handlers.index(wrapper)] = handler
    self._swapped.clear()
    self.bar.close()
