"""Finding a benchmark's train and test pairs in whatever layout its copy came in.

Each benchmark (see :mod:`mh2f_jax.datasets.catalog`) lists the layouts its copies are
known to use. :func:`detect` looks, for each split, for a split folder (``train``,
``Rain12600``, ``rain_heavy_test``, ... compared case-insensitively, ignoring ``_`` and
``-``) in the data folder or in a wrapper folder named after the dataset, tries every
layout there, and pairs the files by the layout's rule. When nothing matches, the error
lists the layouts tried, the folders searched and what the data folder holds.

This module does not import TensorFlow Datasets.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from typing import Callable, Iterator, Mapping, Sequence

from mh2f_jax.datasets import no_match
from mh2f_jax.datasets import pairing
from mh2f_jax.errors import UserError

# Split folder names used by the circulating copies, shared by most benchmarks.
TRAIN_DIRS = ('train', 'training', 'train_set', 'train_data', 'training_set', 'training_data')
TEST_DIRS = ('test', 'testing', 'test_set', 'test_data', 'testing_set', 'testing_data')

SPEC_FILE = 'paired_folder.json'


class DatasetWarning(UserWarning):
  """Something about the data looks off but the dataset can still be built."""


def norm(name: str) -> str:
  """Folder-name comparison key: lower case, letters and digits only."""
  return re.sub(r'[^a-z0-9]', '', name.lower())


def prefix(text: str) -> Callable[[str], bool]:
  """Stem filter: stems starting with ``text`` (case-insensitive)."""
  text = text.lower()
  return lambda stem: stem.lower().startswith(text)


def suffix(text: str) -> Callable[[str], bool]:
  """Stem filter: stems ending with ``text`` (case-insensitive)."""
  text = text.lower()
  return lambda stem: stem.lower().endswith(text)


@dataclasses.dataclass
class SplitPlan:
  """Where one split's pairs were found and how to iterate them."""
  split: str
  layout: str           # e.g. 'A (official PKU archive)'
  location: str         # folder (or list file) relative to the data folder
  count: int
  pairs: Callable[[], Iterator[pairing.Pair]]


class Scanner:
  """Directory listings under the data folder, each folder listed once per detection."""

  def __init__(self, manual_dir: str):
    self.manual_dir = os.path.abspath(manual_dir)
    self._listing: dict[str, tuple[list[str], list[str]]] = {}
    self._images: dict[tuple[str, int], list[str]] = {}

  def listing(self, path: str) -> tuple[list[str], list[str]]:
    """(sub-folder names, file names) of ``path``, hidden entries skipped, sorted."""
    if path not in self._listing:
      dirs, files = [], []
      try:
        with os.scandir(path) as it:
          for entry in it:
            if entry.name.startswith('.') or entry.name == '__MACOSX':
              continue
            (dirs if entry.is_dir() else files).append(entry.name)
      except (FileNotFoundError, NotADirectoryError, PermissionError):
        pass
      self._listing[path] = (sorted(dirs, key=pairing.natural_key),
                             sorted(files, key=pairing.natural_key))
    return self._listing[path]

  def children(self, path: str, names: Sequence[str]) -> list[str]:
    """Sub-folders of ``path`` whose name matches one of ``names`` (see :func:`norm`)."""
    wanted = {norm(n) for n in names}
    return [os.path.join(path, d) for d in self.listing(path)[0] if norm(d) in wanted]

  def resolve(self, path: str, relpath: str) -> str | None:
    """Follows ``relpath`` ('a/b', '' = ``path``) matching each component loosely."""
    for part in filter(None, relpath.split('/')):
      found = self.children(path, [part])
      if not found:
        return None
      path = found[0]
    return path if os.path.isdir(path) else None

  def file(self, path: str, name: str) -> str | None:
    """The file in ``path`` named ``name``, compared case-insensitively."""
    for f in self.listing(path)[1]:
      if f.lower() == name.lower():
        return os.path.join(path, f)
    return None

  def images(self, path: str, keep: Callable[[str], bool] | None = None) -> list[str]:
    """Image file names in ``path`` (optionally filtered by stem), naturally sorted."""
    key = (path, id(keep))
    if key not in self._images:
      self._images[key] = [
          f for f in self.listing(path)[1]
          if pairing.is_image_name(f) and (keep is None or keep(os.path.splitext(f)[0]))]
    return self._images[key]

  def rel(self, path: str) -> str:
    """``path`` relative to the data folder, '/'-separated ('.' for the folder itself)."""
    return os.path.relpath(path, self.manual_dir).replace(os.sep, '/')


class Layout:
  """One way a benchmark's copies arrange their files."""
  key: str
  title: str
  template: tuple[str, ...]      # human-readable paths, shown by `list` and in errors
  splits: tuple[str, ...] | None  # splits this layout can provide (None: any)

  def label(self) -> str:
    return f'{self.key} ({self.title})'

  def match(self, scanner: Scanner, root: str, split: str,
            spec: 'DatasetSpec') -> SplitPlan | None:
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class FolderPair:
  """A rainy folder and a clean folder inside a split folder, and their pairing rule.

  Attributes:
    rainy: candidate rainy folders relative to the container, first one holding images
      wins ('' is the container itself).
    clean: same for the clean folder.
    rule: pairing rule.
    containers: where ``rainy``/``clean`` live relative to the split folder: '' (the
      split folder), '@dataset' (a sub-folder named like the dataset, e.g. Rain200H),
      '@split' (a sub-folder named by the split, Rain13K's Test100), or a literal name.
    rainy_filter: keeps rainy stems (for folders holding both kinds).
    clean_filter: keeps clean stems.
    allow_unused_clean: clean images without rainy partner are allowed.
  """
  rainy: tuple[str, ...]
  clean: tuple[str, ...]
  rule: pairing.Rule
  containers: tuple[str, ...] = ('',)
  rainy_filter: Callable[[str], bool] | None = None
  clean_filter: Callable[[str], bool] | None = None
  allow_unused_clean: bool = False


@dataclasses.dataclass(frozen=True)
class FolderLayout(Layout):
  """A layout made of rainy/clean folder pairs inside split folders."""
  key: str
  title: str
  template: tuple[str, ...]
  folders: tuple[FolderPair, ...]
  splits: tuple[str, ...] | None = None

  def _containers(self, scanner: Scanner, split_dir: str, fp: FolderPair, split: str,
                  spec: 'DatasetSpec') -> list[str]:
    out = []
    for c in fp.containers:
      if c == '':
        out.append(split_dir)
      elif c == '@dataset':
        out += scanner.children(split_dir, spec.aliases)
      elif c == '@split':
        out += scanner.children(split_dir, spec.split_containers.get(split, ()))
      else:
        out += scanner.children(split_dir, [c])
    return list(dict.fromkeys(out))

  @staticmethod
  def _first_with_images(scanner, container, candidates, keep) -> str | None:
    for rel in candidates:
      path = scanner.resolve(container, rel)
      if path is not None and scanner.images(path, keep):
        return path
    return None

  def match(self, scanner, root, split, spec):
    for split_dir in spec.split_folders(scanner, root, split):
      for fp in self.folders:
        for container in self._containers(scanner, split_dir, fp, split, spec):
          rainy_dir = self._first_with_images(scanner, container, fp.rainy, fp.rainy_filter)
          clean_dir = self._first_with_images(scanner, container, fp.clean, fp.clean_filter)
          if rainy_dir is None or clean_dir is None:
            continue
          # A layout whose rule pairs no file at all is not this copy's layout; one that
          # pairs some files is, and a missing partner is then reported as such.
          clean_stems = {os.path.splitext(f)[0].lower()
                         for f in scanner.images(clean_dir, fp.clean_filter)}
          if not any((fp.rule(os.path.splitext(f)[0]) or '\0').lower() in clean_stems
                     for f in scanner.images(rainy_dir, fp.rainy_filter)):
            continue
          pairs = pairing.pair_folders(
              rainy_dir, clean_dir, fp.rule, rainy_filter=fp.rainy_filter,
              clean_filter=fp.clean_filter, allow_unused_clean=fp.allow_unused_clean)
          where = scanner.rel(rainy_dir)
          if clean_dir != rainy_dir:
            where += ' + ' + scanner.rel(clean_dir)
          return SplitPlan(split, self.label(), where, len(pairs), lambda p=pairs: iter(p))
    return None


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Everything needed to find and check one benchmark's files.

  Attributes:
    name: TFDS name.
    title: one-line description.
    source: where people get the data.
    splits: splits the builder produces when the data is present.
    split_dirs: split -> folder names that hold that split (compared by :func:`norm`).
    layouts: layouts tried, in order.
    aliases: names of wrapper folders (and DRSformer-style dataset sub-folders).
    split_containers: split -> sub-folder names inside the split folder (Rain13K).
    published: split -> accepted published pair counts (a mismatch warns).
    root_split: split whose folder may be the data folder itself (Rain12).
    homepage: project page or repository.
    citation: BibTeX.
    spec_file: name of a file in the data folder that, when present, replaces
      detection with user-given patterns (paired_folder).
  """
  name: str
  title: str
  source: str
  splits: tuple[str, ...]
  split_dirs: Mapping[str, tuple[str, ...]]
  layouts: tuple[Layout, ...]
  aliases: tuple[str, ...] = ()
  split_containers: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
  published: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
  root_split: str | None = None
  homepage: str = ''
  citation: str = ''
  spec_file: str | None = None

  def split_folders(self, scanner: Scanner, root: str, split: str) -> list[str]:
    """Folders under ``root`` (or ``root`` itself) that may hold ``split``."""
    names = self.split_dirs.get(split, ())
    out = []
    if norm(os.path.basename(root)) in {norm(n) for n in names} or self.root_split == split:
      out.append(root)
    out += [d for d in scanner.children(root, names) if d not in out]
    return out

  def roots(self, scanner: Scanner) -> list[str]:
    """The data folder, then wrapper folders named like the dataset (two levels deep),
    then the lone sub-folder of a folder holding nothing else (an unzipped archive)."""
    aliases = {norm(a) for a in self.aliases}
    split_names = {norm(n) for names in self.split_dirs.values() for n in names}
    out = [scanner.manual_dir]
    frontier = [scanner.manual_dir]
    for _ in range(2):
      nxt = []
      for path in frontier:
        dirs, files = scanner.listing(path)
        for d in dirs:
          full = os.path.join(path, d)
          lone = path in out and len(dirs) == 1 and not files and norm(d) not in split_names
          if norm(d) in aliases or lone:
            if full not in out:
              out.append(full)
          nxt.append(full)
      frontier = nxt
    return out

  def _split_dir_text(self) -> str:
    groups: dict[tuple[str, ...], list[str]] = {}
    for s in self.splits:
      groups.setdefault(tuple(self.split_dirs.get(s, ())), []).append(s)
    return '; '.join(f'{", ".join(splits)}: {", ".join(names)}'
                     for names, splits in groups.items())

  def describe(self) -> str:
    """Multi-line description: splits, source, split folder names and layouts."""
    counts = ', '.join(
        f'{s} ({" or ".join(str(n) for n in self.published[s])})' if s in self.published
        else s for s in self.splits)
    lines = [f'{self.name}: {self.title}', f'  splits: {counts}',
             f'  get it: {self.source}']
    lines.append('  split folders (case-insensitive, "_"/"-" ignored): '
                 + self._split_dir_text())
    lines.append('  layouts (detected automatically; <split> is a split folder):')
    for layout in self.layouts:
      lines.append(f'    {layout.key}  {layout.title}:')
      lines += [f'        {t}' for t in layout.template]
    return '\n'.join(lines)


def check_count(dataset: str, split: str, count: int,
                published: Mapping[str, Sequence[int]]) -> None:
  """Warns (:class:`DatasetWarning`) when ``count`` is not a published count."""
  expected = published.get(split)
  if expected and count not in expected:
    warnings.warn(DatasetWarning(
        f'{dataset} {split}: found {count} pairs, but the published count is '
        f'{" or ".join(str(n) for n in expected)}; check that the copy is complete'),
        stacklevel=2)


def detect(manual_dir: str, spec: DatasetSpec) -> dict[str, SplitPlan]:
  """Finds and pairs every split of ``spec`` in ``manual_dir``.

  Args:
    manual_dir: the folder the user put the downloaded data in.
    spec: the benchmark's description.

  Returns:
    split -> plan, for the splits found (at least one). Missing splits and counts that
    differ from the published ones are reported as :class:`DatasetWarning`.

  Raises:
    UserError: the folder does not exist, no layout matches, or pairing fails.
  """
  if not os.path.isdir(manual_dir):
    raise UserError(f'data folder {manual_dir} does not exist')
  scanner = Scanner(manual_dir)
  if spec.spec_file and scanner.file(scanner.manual_dir, spec.spec_file):
    plans = pattern_plans(scanner, scanner.file(scanner.manual_dir, spec.spec_file))
  else:
    plans = {}
    roots = spec.roots(scanner)
    for split in spec.splits:
      for root in roots:
        for layout in spec.layouts:
          if layout.splits is not None and split not in layout.splits:
            continue
          plan = layout.match(scanner, root, split, spec)
          if plan is not None:
            plans[split] = plan
            break
        if split in plans:
          break
    if not plans:
      raise UserError(no_match.message(scanner, spec, roots))
    missing = [s for s in spec.splits if s not in plans]
    if missing:
      warnings.warn(DatasetWarning(
          f'{spec.name}: no {", ".join(missing)} data found in {manual_dir}; building '
          f'{", ".join(plans)} only (split folder names looked for: '
          + '; '.join(f'{s}: {", ".join(spec.split_dirs.get(s, ()))}' for s in missing)
          + ')'), stacklevel=2)
  for split, plan in plans.items():
    check_count(spec.name, split, plan.count, spec.published)
  return plans


def pattern_plans(scanner: Scanner, spec_path: str) -> dict[str, SplitPlan]:
  """Plans from a ``paired_folder.json`` file of user-given patterns."""
  try:
    with open(spec_path, encoding='utf-8') as f:
      config = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f'cannot read {spec_path}: {e}') from None
  if not isinstance(config, dict) or not config:
    raise UserError(f'{spec_path} must be a JSON object such as '
                    '{"train": {"rainy": "train/rain/{id}.png", "clean": '
                    '"train/norain/{id}.png"}, "test": {...}}')
  plans = {}
  for split, entry in config.items():
    if not re.fullmatch(r'[a-z][a-z0-9_]*', split):
      raise UserError(f'{spec_path}: split name {split!r} must be lower-case letters, '
                      'digits and "_" (e.g. "train", "test")')
    if not isinstance(entry, dict) or set(entry) != {'rainy', 'clean'}:
      raise UserError(f'{spec_path}: "{split}" must have exactly the keys "rainy" and '
                      '"clean" (path patterns with placeholders such as {id})')
    rule = pairing.PatternRule(entry['rainy'], entry['clean'])
    pairs = rule.pair(scanner.manual_dir)
    plans[split] = SplitPlan(split, f'pattern file {os.path.basename(spec_path)}',
                             f'{entry["rainy"]} + {entry["clean"]}', len(pairs),
                             lambda p=pairs: iter(p))
  return plans
