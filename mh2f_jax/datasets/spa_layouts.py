"""SPA-Data's own layouts: the ``real_world.txt`` list file, and its folder tree.

SPA-Data (638,492 training pairs) comes as a list file of rainy/clean paths, or as the
``real_world/`` + ``real_world_gt/`` folders the list describes; the list is streamed
rather than read whole. The generic folder layouts are in :mod:`layouts`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

from mh2f_jax.datasets import pairing
from mh2f_jax.datasets.layouts import Layout
from mh2f_jax.datasets.layouts import SplitPlan
from mh2f_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class ListFileLayout(Layout):
  """SPA-Data's list file: each line is '<rainy path> <clean path>'."""
  key: str
  title: str
  template: tuple[str, ...]
  list_name: str
  splits: tuple[str, ...] | None = ('train',)

  def match(self, scanner, root, split, spec):
    if self.splits and split not in self.splits:
      return None
    list_path = scanner.file(root, self.list_name)
    if list_path is None:
      return None
    entries = _list_entries(list_path)
    first = next(entries, None)
    if first is None:
      raise UserError(f'list file {list_path} has no entries')
    base = _list_base(first[1], first[2], list_path, scanner.manual_dir)
    count = 1 + sum(1 for _ in entries)

    def pairs() -> Iterator[pairing.Pair]:
      # Streams the list: SPA-Data has 638k lines, far too many images to hold.
      for lineno, rainy, clean in _list_entries(list_path):
        rainy_path = _join_listed(base, rainy)
        clean_path = _join_listed(base, clean)
        if not os.path.isfile(rainy_path):
          raise UserError(f'rainy image {rainy_path} listed in {list_path}:{lineno} '
                          'does not exist')
        if not os.path.isfile(clean_path):
          raise UserError(f'rainy image {rainy_path} has no clean partner: '
                          f'{clean_path} (from {list_path}:{lineno}) does not exist')
        yield pairing.Pair(rainy_path, clean_path)

    return SplitPlan(split, self.label(), scanner.rel(list_path), count, pairs)


def _list_entries(list_path: str) -> Iterator[tuple[int, str, str]]:
  with open(list_path, encoding='utf-8', errors='replace') as f:
    for lineno, line in enumerate(f, 1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) != 2:
        raise UserError(f'{list_path}:{lineno}: expected "<rainy path> <clean path>", '
                        f'got {line.strip()!r}')
      yield lineno, fields[0], fields[1]


def _strip_listed(path: str) -> str:
  # SPANet's lists are read with a '.' prefix, so entries may start with '/' or './'.
  path = path.replace('\\', '/')
  while path.startswith('./') or path.startswith('/'):
    path = path[2:] if path.startswith('./') else path[1:]
  return path


def _join_listed(base: str | None, path: str) -> str:
  if base is None:  # the list holds absolute paths that exist as they are
    return path
  return os.path.join(base, *_strip_listed(path).split('/'))


def _list_base(rainy: str, clean: str, list_path: str, manual_dir: str) -> str | None:
  """Folder the list's relative paths start from: the list's own folder or manual_dir."""
  del clean
  tried = []
  for base in dict.fromkeys([os.path.dirname(list_path), manual_dir]):
    candidate = _join_listed(base, rainy)
    if os.path.isfile(candidate):
      return base
    tried.append(candidate)
  if os.path.isabs(rainy) and os.path.isfile(rainy):
    return None
  raise UserError(f'the first entry of {list_path}, {rainy!r}, was not found; looked for '
                  + ' and '.join(tried))


@dataclasses.dataclass(frozen=True)
class SpaFolderLayout(Layout):
  """SPA-Data training folders without the list file, paired by the frame rule."""
  key: str
  title: str
  template: tuple[str, ...]
  splits: tuple[str, ...] | None = ('train',)

  def match(self, scanner, root, split, spec):
    if self.splits and split not in self.splits:
      return None
    rainy_root = scanner.resolve(root, 'real_world')
    clean_root = scanner.resolve(root, 'real_world_gt')
    if rainy_root is None or clean_root is None or rainy_root == clean_root:
      return None

    def walk() -> Iterator[str]:
      # Folder by folder, so 638k file names are never held at once.
      for video in _subdirs(rainy_root):
        for frame in _subdirs(os.path.join(rainy_root, video)):
          folder = os.path.join(rainy_root, video, frame)
          for name in pairing.image_names(folder):
            yield f'real_world/{video}/{frame}/{name}'

    count = sum(1 for _ in walk())
    if not count:
      return None
    parent = os.path.dirname(rainy_root)
    clean_name = os.path.basename(clean_root)

    def pairs() -> Iterator[pairing.Pair]:
      for rel in walk():
        clean_rel = pairing.spa_clean_path(rel)
        rainy_path = os.path.join(parent, *rel.split('/'))
        if clean_rel is None:
          raise UserError(f'rainy image {rainy_path} does not follow the SPA-Data naming '
                          'real_world/V/V-F/V-F_x_y.png')
        clean_path = os.path.join(parent, clean_name, *clean_rel.split('/')[1:])
        if not os.path.isfile(clean_path):
          raise UserError(f'rainy image {rainy_path} has no clean partner: expected '
                          f'{clean_path}')
        yield pairing.Pair(rainy_path, clean_path)

    return SplitPlan(split, self.label(), scanner.rel(rainy_root) + ' + '
                     + scanner.rel(clean_root), count, pairs)


def _subdirs(path: str) -> list[str]:
  with os.scandir(path) as it:
    names = [e.name for e in it if e.is_dir() and not e.name.startswith('.')]
  return sorted(names, key=pairing.natural_key)
