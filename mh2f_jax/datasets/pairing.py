"""Pairing rules: which clean image belongs to which rainy image.

Every benchmark names its files by a fixed convention, and pairs are made by that
convention alone, never by the order in which two folders happen to be listed. Each
rule is one small function from a rainy file's stem (its name without extension) to
the stem its clean partner must have; a rule returns ``None`` when the rainy name does
not follow the convention at all. :func:`pair_folders` applies a rule to two folders
and fails loudly, naming the file, when a partner is missing.

This module does not import TensorFlow Datasets, so the rules are unit-testable alone.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Iterable

from mh2f_jax import files
from mh2f_jax.errors import UserError

IMAGE_EXTENSIONS = frozenset({'.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff'})


@dataclasses.dataclass(frozen=True)
class Pair:
  """One rainy image and its clean partner, as absolute file paths."""
  rainy: str
  clean: str


@dataclasses.dataclass(frozen=True)
class Rule:
  """A named pairing rule: rainy stem -> clean stem (``None``: not this rule's name)."""
  name: str
  description: str
  fn: Callable[[str], str | None]

  def __call__(self, stem: str) -> str | None:
    return self.fn(stem)


# ----------------------------------------------------------------------------------
# One function per rule.


def same_stem(stem: str) -> str | None:
  """Identical stems in both folders (DRSformer, Rain13K, EDSR-style copies)."""
  return stem


def strip_x2(stem: str) -> str | None:
  """Rain200 official archive: ``norain-12x2`` pairs with ``norain-12``."""
  if len(stem) > 2 and stem[-2:].lower() == 'x2':
    return stem[:-2]
  return None


def rain_to_norain(stem: str) -> str | None:
  """PReNet's old Rain100 and IDT's copies: ``rain-12`` pairs with ``norain-12``."""
  if stem.lower().startswith('rain-'):
    return 'norain-' + stem[len('rain-'):]
  return None


def before_first_underscore(stem: str) -> str | None:
  """Rain1400 / DDN-Data: ``901_14`` pairs with ``901`` (14 rainy versions per clean)."""
  head, sep, tail = stem.partition('_')
  if sep and head and tail:
    return head
  return None


def append_gt(stem: str) -> str | None:
  """SPA-Data test set: ``017`` pairs with ``017gt``."""
  return stem + 'gt'


def in_to_gt(stem: str) -> str | None:
  """Rain12 as zipped by Li et al.: ``001_in`` pairs with ``001_GT``."""
  if stem.lower().endswith('_in') and len(stem) > 3:
    return stem[:-3] + '_GT'
  return None


_SPA_RAINY = re.compile(
    r'^(?P<pre>(?:.*/)?)real_world/(?P<v>[^/]+)/(?P=v)-(?P<f>[^/]+)/(?P=v)-(?P=f)_(?P<xy>[^/]+)$')


def spa_clean_path(rainy_relpath: str) -> str | None:
  """SPA-Data training set: drop ``-{F}`` from the frame folder and the file name.

  ``real_world/001/001-12/001-12_3_4.png`` pairs with ``real_world_gt/001/001_3_4.png``.

  Args:
    rainy_relpath: rainy path with '/' separators, relative to the folder holding
      ``real_world/``.

  Returns:
    The clean partner's relative path, or ``None`` if the name does not follow the rule.
  """
  m = _SPA_RAINY.match(rainy_relpath)
  if not m:
    return None
  return f"{m['pre']}real_world_gt/{m['v']}/{m['v']}_{m['xy']}"


SAME_STEM = Rule('same stem', 'identical file names (extension may differ)', same_stem)
STRIP_X2 = Rule('x2 suffix', "rainy stem = clean stem + 'x2' (norain-Nx2 -> norain-N)",
                strip_x2)
RAIN_TO_NORAIN = Rule('rain-/norain-', "replace 'rain-' with 'norain-' (rain-N -> norain-N)",
                      rain_to_norain)
BEFORE_FIRST_UNDERSCORE = Rule(
    'split at first _', "clean stem = rainy stem up to the first '_' (i_j -> i)",
    before_first_underscore)
APPEND_GT = Rule('gt suffix', "clean stem = rainy stem + 'gt' (NNN -> NNNgt)", append_gt)
IN_TO_GT = Rule('_in/_GT', "replace '_in' with '_GT' (NNN_in -> NNN_GT)", in_to_gt)


# ----------------------------------------------------------------------------------
# Listing and pairing folders.


def natural_key(name: str) -> tuple:
  """Sort key that puts ``rain-2`` before ``rain-10``."""
  return tuple((0, int(t), '') if t.isdigit() else (1, 0, t.lower())
               for t in re.split(r'(\d+)', name) if t)


def is_image_name(name: str) -> bool:
  """True for a visible file name with an image extension."""
  return not name.startswith('.') and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def image_names(folder: str, keep: Callable[[str], bool] | None = None) -> list[str]:
  """Image file names directly inside ``folder``, naturally sorted.

  Args:
    folder: directory to list.
    keep: optional predicate on the stem (e.g. a prefix test for flat folders).

  Returns:
    File names (not paths).
  """
  names = [os.path.basename(p) for p in files.list_images(folder, IMAGE_EXTENSIONS)]
  if keep is not None:
    names = [n for n in names if keep(os.path.splitext(n)[0])]
  return sorted(names, key=natural_key)


def stem_index(folder: str, names: Iterable[str]) -> dict[str, str]:
  """Maps lower-cased stem -> file name; two files with one stem are an error."""
  index: dict[str, str] = {}
  for name in names:
    key = os.path.splitext(name)[0].lower()
    if key in index:
      raise UserError(
          f'two images share the name {os.path.splitext(name)[0]!r} in {folder}: '
          f'{index[key]} and {name}; keep one of them')
    index[key] = name
  return index


def find_partner(rainy_name: str, rule: Rule, clean_index: dict[str, str]) -> str | None:
  """Clean file name for ``rainy_name`` under ``rule``, or ``None``."""
  clean_stem = rule(os.path.splitext(rainy_name)[0])
  if clean_stem is None:
    return None
  return clean_index.get(clean_stem.lower())


def pair_folders(rainy_dir: str, clean_dir: str, rule: Rule, *,
                 rainy_filter: Callable[[str], bool] | None = None,
                 clean_filter: Callable[[str], bool] | None = None,
                 allow_unused_clean: bool = False) -> list[Pair]:
  """Pairs every rainy image in ``rainy_dir`` with its clean image in ``clean_dir``.

  Args:
    rainy_dir: folder of rainy images.
    clean_dir: folder of clean images (may equal ``rainy_dir`` with filters).
    rule: maps a rainy stem to its clean stem.
    rainy_filter: keeps only rainy stems for which it is true.
    clean_filter: keeps only clean stems for which it is true.
    allow_unused_clean: clean images without a rainy partner are fine (PReNet's
      RainTrainH keeps 1254 of 1800 rainy images); otherwise they are an error.

  Returns:
    Pairs in natural order of the rainy names.

  Raises:
    UserError: a rainy image does not follow the rule or has no clean partner, or a
      clean image has no rainy partner (unless allowed), or two images share a stem.
  """
  rainy_names = image_names(rainy_dir, rainy_filter)
  clean_names = image_names(clean_dir, clean_filter)
  stem_index(rainy_dir, rainy_names)  # Refuses two rainy images with one name, as below.
  clean_index = stem_index(clean_dir, clean_names)
  pairs = []
  used = set()
  for name in rainy_names:
    stem = os.path.splitext(name)[0]
    clean_stem = rule(stem)
    rainy_path = os.path.join(rainy_dir, name)
    if clean_stem is None:
      raise UserError(
          f'rainy image {rainy_path} does not follow the naming rule '
          f'"{rule.description}"; rename or remove it')
    clean_name = clean_index.get(clean_stem.lower())
    if clean_name is None:
      raise UserError(
          f'rainy image {rainy_path} has no clean partner: expected '
          f'{os.path.join(clean_dir, clean_stem)}.<png|jpg> (rule: {rule.description})')
    used.add(clean_name)
    pairs.append(Pair(rainy_path, os.path.join(clean_dir, clean_name)))
  if not allow_unused_clean:
    for name in clean_names:
      if name not in used:
        raise UserError(
            f'clean image {os.path.join(clean_dir, name)} has no rainy partner in '
            f'{rainy_dir} (rule: {rule.description})')
  return pairs


# ----------------------------------------------------------------------------------
# User-given patterns (paired_folder's paired_folder.json).

_PLACEHOLDER = re.compile(r'\{([A-Za-z_][A-Za-z0-9_]*)\}')


@dataclasses.dataclass(frozen=True)
class PatternRule:
  """A pair of path patterns with ``{name}`` placeholders, e.g.

  rainy ``train/rain/{id}x2.png`` and clean ``train/norain/{id}.png``. A placeholder
  matches any text inside one folder or file name; a repeated placeholder must match the
  same text each time; ``*`` matches any text inside one name and is allowed only in the
  rainy pattern. Every placeholder of the clean pattern must appear in the rainy one.
  """
  rainy: str
  clean: str

  def __post_init__(self):
    for field, pattern in (('rainy', self.rainy), ('clean', self.clean)):
      if not pattern or pattern.startswith('/') or '..' in pattern.split('/'):
        raise UserError(f'{field} pattern {pattern!r} must be a path relative to the '
                        'data folder, with "/" separators')
    rainy_names = set(_PLACEHOLDER.findall(self.rainy))
    clean_names = set(_PLACEHOLDER.findall(self.clean))
    if not clean_names:
      raise UserError(f'clean pattern {self.clean!r} needs a placeholder such as {{id}}')
    if not clean_names <= rainy_names:
      raise UserError(
          f'clean pattern {self.clean!r} uses {sorted(clean_names - rainy_names)} which '
          f'the rainy pattern {self.rainy!r} does not define')
    if '*' in self.clean:
      raise UserError(f'clean pattern {self.clean!r} may not contain "*"')

  def _regex(self, pattern: str) -> re.Pattern:
    out, seen, pos = [], set(), 0
    for m in _PLACEHOLDER.finditer(pattern):
      out.append(re.escape(pattern[pos:m.start()]).replace(r'\*', '[^/]*'))
      key = m.group(1)
      out.append(f'(?P={key})' if key in seen else f'(?P<{key}>[^/]+?)')
      seen.add(key)
      pos = m.end()
    out.append(re.escape(pattern[pos:]).replace(r'\*', '[^/]*'))
    return re.compile('^' + ''.join(out) + '$')

  def _glob(self, pattern: str) -> str:
    parts = _PLACEHOLDER.split(pattern)
    # Even entries are literal text, odd entries placeholder names.
    return ''.join(_glob_escape(p) if i % 2 == 0 else '*' for i, p in enumerate(parts))

  def clean_for(self, rainy_relpath: str) -> str | None:
    """Clean relative path for a rainy relative path, or ``None`` if it does not match."""
    m = self._regex(self.rainy).match(rainy_relpath)
    if not m:
      return None
    return _PLACEHOLDER.sub(lambda p: m.group(p.group(1)), self.clean)

  def pair(self, root: str) -> list[Pair]:
    """Pairs the files under ``root`` that match the rainy pattern.

    Raises:
      UserError: nothing matches, a partner is missing, or a clean file matching the
        clean pattern has no rainy partner.
    """
    import glob  # pylint: disable=g-import-not-at-top

    rainy_re = self._regex(self.rainy)
    rel = lambda p: os.path.relpath(p, root).replace(os.sep, '/')
    rainy = [rel(p) for p in glob.glob(os.path.join(glob.escape(root), self._glob(self.rainy)))]
    rainy = sorted((r for r in rainy if rainy_re.match(r) and is_image_name(r.rsplit('/', 1)[-1])),
                   key=natural_key)
    if not rainy:
      raise UserError(f'no rainy image in {root} matches the pattern {self.rainy!r}')
    stem_index(root, rainy)  # Two rainy images that differ only in extension.
    clean_all = {rel(p) for p in glob.glob(os.path.join(glob.escape(root), self._glob(self.clean)))
                 if is_image_name(os.path.basename(p))}
    clean_re = self._regex(self.clean)
    # Rainy and clean files may share a folder: a rainy file is never a clean candidate.
    clean_all = {c for c in clean_all if clean_re.match(c)} - set(rainy)
    pairs, used = [], set()
    for r in rainy:
      c = self.clean_for(r)
      if c is None or not os.path.isfile(os.path.join(root, c)):
        raise UserError(f'rainy image {os.path.join(root, r)} has no clean partner: expected '
                        f'{os.path.join(root, c or self.clean)} (pattern {self.clean!r})')
      used.add(c)
      pairs.append(Pair(os.path.join(root, r), os.path.join(root, c)))
    unused = sorted(clean_all - used, key=natural_key)
    if unused:
      raise UserError(f'clean image {os.path.join(root, unused[0])} has no rainy partner '
                      f'matching {self.rainy!r}')
    return pairs


def _glob_escape(text: str) -> str:
  """Escapes glob specials except ``*``, which patterns use on purpose."""
  return ''.join(f'[{ch}]' if ch in '?[' else ch for ch in text)
