"""The benchmark's table: printed row by row as it is measured, then saved as JSON and Markdown.

Each section has its own columns; a row is a dict from column to value. Numbers are
printed with a few significant digits; ``bench.json`` keeps them whole.
"""

from __future__ import annotations

from collections.abc import Sequence
import json
import os
import sys
from typing import Any, TextIO

from mh2f_jax import errors
from mh2f_jax import files

OUTPUT_NAMES = ('bench.json', 'bench.md')


def format_value(value: Any) -> str:
  """A cell's text: floats to 4 significant digits, None as '-'."""
  if value is None:
    return '-'
  if isinstance(value, bool):
    return 'yes' if value else 'no'
  if isinstance(value, float):
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
      return f'{value:.3g}'
    return f'{value:.4g}'
  return str(value)


class Table:
  """Sections of rows, printed to ``stream`` as they arrive."""

  def __init__(self, stream: TextIO | None = None):
    self.stream = stream or sys.stdout
    self.sections: dict[str, dict[str, Any]] = {}

  def section(self, name: str, columns: Sequence[str], note: str = '') -> None:
    """Starts a section and prints its header."""
    self.sections[name] = {'columns': list(columns), 'rows': [], 'notes': []}
    print(f'\n== {name}' + (f' ({note})' if note else ''), file=self.stream)
    print(' | '.join(columns), file=self.stream, flush=True)
    if note:
      self.sections[name]['notes'].append(note)

  def row(self, name: str, **values: Any) -> dict[str, Any]:
    """Adds a row to section ``name`` and prints it; returns the row."""
    section = self.sections[name]
    section['rows'].append(values)
    for key in values:
      if key not in section['columns']:
        section['columns'].append(key)
    cells = [format_value(values.get(c)) for c in section['columns']]
    print(' | '.join(cells), file=self.stream, flush=True)
    return values

  def note(self, name: str, text: str) -> None:
    """Adds a line of text under section ``name`` (a skip, a failure, a caveat)."""
    self.sections[name]['notes'].append(text)
    print(f'  note: {text}', file=self.stream, flush=True)

  def to_json(self) -> dict[str, Any]:
    """The sections as plain data: ``{name: {'columns', 'rows', 'notes'}}``."""
    return {k: files.json_safe(v) for k, v in self.sections.items()}

  def markdown(self, title: str) -> str:
    """The sections as Markdown tables under ``title``."""
    lines = [f'# {title}', '']
    for name, section in self.sections.items():
      columns = section['columns']
      lines += [f'## {name}', '', '| ' + ' | '.join(columns) + ' |',
                '|' + '---|' * len(columns)]
      for row in section['rows']:
        lines.append('| ' + ' | '.join(format_value(row.get(c)) for c in columns) + ' |')
      lines += [''] + [f'- {note}' for note in section['notes']] + ['']
    return '\n'.join(lines)


def check_output(output: str, overwrite: bool) -> None:
  """Refuses, before anything runs, an output folder that cannot take the results.

  The folder is created if missing, and a file is written there and removed: a
  read-only or denied place is found before minutes of measuring, not after.

  Raises:
    errors.UserError: ``output`` is a file, cannot be written, or holds
      ``bench.json``/``bench.md`` and ``overwrite`` is False.
  """
  if os.path.exists(output) and not os.path.isdir(output):
    raise errors.UserError(f'--output {output} is a file, not a folder')
  existing = [n for n in OUTPUT_NAMES if os.path.lexists(os.path.join(output, n))]
  if existing and not overwrite:
    raise errors.UserError(f'{", ".join(os.path.join(output, n) for n in existing)} '
                           'exists; give --overwrite to replace it, or another --output')
  files.check_writable_folder(output)


def save(output: str, result: dict[str, Any], markdown: str, overwrite: bool) -> list[str]:
  """Writes ``bench.json`` and ``bench.md`` atomically; returns their paths.

  Raises:
    errors.UserError: a file appeared there meanwhile and ``overwrite`` is False.
  """
  os.makedirs(output, exist_ok=True)
  write = files.write_atomic if overwrite else files.write_new
  paths = [os.path.join(output, n) for n in OUTPUT_NAMES]
  # Not key-sorted: the sections keep the order they ran in.
  text = json.dumps(files.json_safe(result), indent=2) + '\n'
  try:
    write(paths[0], text.encode())
    write(paths[1], markdown.encode())
  except FileExistsError as e:
    raise errors.UserError(f'{e.filename} appeared while the benchmark ran; nothing was '
                           'replaced (give --overwrite to replace it)') from None
  return paths
