"""Tests of mh2f_jax.training.progress: the bar and log lines on a terminal and in a file."""

import io
import logging
import re

from mh2f_jax.training import progress


class _Terminal(io.StringIO):
  def isatty(self) -> bool:
    return True


def _render(text: str) -> list[str]:
  """What a terminal shows: '\\r' returns to the start of the line, overwriting it."""
  lines, current = [], ''
  for part in re.split(r'(\r|\n)', text):
    if part == '\n':
      lines.append(current)
      current = ''
    elif part == '\r':
      current = '\0'  # Marks the cursor at the start; the next text overwrites.
    elif part:
      if current.startswith('\0'):
        old = current[1:]
        current = part + old[len(part):]
      else:
        current += part
  lines.append(current.lstrip('\0'))
  return [l.rstrip() for l in lines if l.strip()]


def _log_through(stream, bar_stream, logger_name='mh2f_jax.test_progress'):
  """Runs a bar on ``bar_stream`` with a logger writing to ``stream`` meanwhile."""
  logger = logging.getLogger(logger_name)
  handler = logging.StreamHandler(stream)
  root = logging.getLogger()
  root.addHandler(handler)
  old_level = root.level
  root.setLevel(logging.INFO)
  try:
    bar = progress.ProgressBar(10, 0, enabled=True, stream=bar_stream)
    bar.bar.mininterval = 0  # Draw at every update.
    for step in range(1, 11):
      bar.update(1)
      if step % 5 == 0:
        logger.info('step %d: validation PSNR-Y 30.000 dB', step)
    bar.close()
    # The handler is given back unwrapped.
    assert handler in root.handlers
  finally:
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_terminal_log_lines_are_never_on_the_bars_line():
  terminal = _Terminal()
  _log_through(terminal, terminal)
  shown = _render(terminal.getvalue())
  validation = [l for l in shown if 'validation' in l]
  assert len(validation) == 2
  for line in validation:
    assert line.startswith('step ') and '|' not in line, shown
  assert '10/10' in shown[-1]


def test_file_bar_lines_and_log_lines_are_separate_lines():
  log = io.StringIO()
  _log_through(log, log)
  text = log.getvalue()
  assert '\r' not in text
  lines = text.splitlines()
  assert sum('validation' in l for l in lines) == 2
  for line in lines:
    assert not ('validation' in line and '/10' in line), line
  assert any('10/10' in l for l in lines)


def test_paused_time_stays_out_of_the_rate_and_eta():
  now = [100.0]
  bar = progress.ProgressBar(100, 20, enabled=True, stream=io.StringIO())
  bar.bar._time = lambda: now[0]  # pylint: disable=protected-access
  bar.bar.start_t = bar.bar.last_print_t = now[0]
  for _ in range(10):  # 10 steps of 1 s.
    now[0] += 1.0
    bar.update(1)
  with bar.paused():
    now[0] += 500.0  # Validation and a checkpoint.
  meter = bar.bar.format_dict
  assert meter['elapsed'] == 10.0
  # A resumed run's rate counts its own steps only: 10 steps in 10 s.
  assert (meter['n'] - meter['initial']) / meter['elapsed'] == 1.0
  bar.close()


def test_a_disabled_bar_does_nothing():
  stream = io.StringIO()
  bar = progress.ProgressBar(10, 0, enabled=False, stream=stream)
  bar.update(1)
  with bar.paused():
    pass
  bar.set_postfix(loss='0.1')
  bar.close()
  assert stream.getvalue() == ''
