"""What a user is told when no layout of a dataset matched their folder.

The message lists the layouts tried, the split folders found and a short listing of the
folder, so the user can see at once what differs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

def describe_tree(scanner: Any, path: str, depth: int = 2, limit: int = 12,
                  indent: str = '  ') -> list[str]:
  """A short listing of ``path``: folders with their entries, then a few files."""
  dirs, files = scanner.listing(path)
  lines = []
  for d in dirs[:limit]:
    sub_dirs, sub_files = scanner.listing(os.path.join(path, d))
    lines.append(f'{indent}{d}/  ({len(sub_dirs)} folders, {len(sub_files)} files)')
    if depth > 1:
      lines += describe_tree(scanner, os.path.join(path, d), depth - 1, limit // 2 or 1,
                             indent + '  ')
  if len(dirs) > limit:
    lines.append(f'{indent}... {len(dirs) - limit} more folders')
  shown = files[:limit]
  if shown:
    more = f' ... and {len(files) - len(shown)} more' if len(files) > len(shown) else ''
    lines.append(f'{indent}files: ' + ', '.join(shown) + more)
  return lines


def message(scanner: Any, spec: Any, roots: Sequence[str]) -> str:
  """The error text when no layout matched anywhere."""
  lines = [f'no {spec.name} data found in {scanner.manual_dir}: none of its layouts matched.',
           'Layouts tried (<split> is a split folder, named as follows, case-insensitive: '
           + spec._split_dir_text() + '):']  # pylint: disable=protected-access
  for layout in spec.layouts:
    lines.append(f'  {layout.key}  {layout.title}:')
    lines += [f'      {t}' for t in layout.template]
  lines.append('Looked in: ' + ', '.join(roots))
  found = []
  for root in roots:
    for split in spec.splits:
      found += [f'{scanner.rel(d)} ({split})' for d in spec.split_folders(scanner, root, split)
                if d != root or spec.root_split != split]
  lines.append('Split folders found: ' + (', '.join(dict.fromkeys(found)) or 'none'))
  listing = describe_tree(scanner, scanner.manual_dir)
  lines.append(f'Contents of {scanner.manual_dir}:')
  lines += listing or ['  (empty)']
  lines.append('See `python -m mh2f_jax.datasets list` or docs/data.md.')
  return '\n'.join(lines)
