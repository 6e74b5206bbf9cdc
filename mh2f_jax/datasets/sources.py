"""Datasets by name: built on first use, their splits opened as random-access sources.

:func:`prepare` builds a registered TFDS builder (array_record, without TensorFlow) from
the files a user downloaded, once, one build at a time; :func:`get_source` opens a split
(TFDS split syntax, rain13k's aliases) checked to exist and to hold examples;
:func:`eval_source` opens the split a run is scored on. Importing this module registers
the builders. The package ``mh2f_jax.datasets`` re-exports these names.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings

import tensorflow_datasets as tfds

from mh2f_jax.datasets import build_lock
from mh2f_jax.datasets import mixture
# Imported for their side effect: registering the builders with TFDS.
from mh2f_jax.datasets import builders  # pylint: disable=unused-import
from mh2f_jax.datasets import synthetic  # pylint: disable=unused-import
from mh2f_jax.datasets.layouts import DatasetWarning
from mh2f_jax.errors import UserError

NAMES = ('rain200l', 'rain200h', 'rain100l', 'rain100h', 'rain12', 'rain1400', 'spa_data',
         'rain13k', 'paired_folder', 'synthetic_rain')


class _NoMissingInfoNotice(logging.Filter):
  """Drops TFDS's notice that a dataset not built yet has no dataset_info.json."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.msg != 'Variant folder %s has no %s'


@contextlib.contextmanager
def _quiet_lookup():
  logger, quiet = logging.getLogger('absl'), _NoMissingInfoNotice()
  logger.addFilter(quiet)
  try:
    yield
  finally:
    logger.removeFilter(quiet)


def _builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  base = name.split('/', 1)[0]
  if base not in NAMES:
    raise UserError(f'unknown dataset {name!r}; choose one of: {", ".join(NAMES)} '
                    '(synthetic_rain as synthetic_rain/light, synthetic_rain/heavy or '
                    'synthetic_rain/clear)')
  if data_dir is not None:
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
  try:
    with _quiet_lookup():
      return tfds.builder(name, data_dir=data_dir, file_format='array_record')
  except (ValueError, tfds.core.registered.DatasetNotFoundError) as e:
    raise UserError(f'cannot open dataset {name!r}: {e}') from None


def default_manual_dir(name: str, data_dir: str | None = None) -> str:
  """Where a benchmark's downloaded files are looked for when no manual_dir is given.

  Args:
    name: dataset name.
    data_dir: TFDS data folder (None: the TFDS default, usually ~/tensorflow_datasets).

  Returns:
    ``<data_dir>/downloads/manual/<name>``.
  """
  builder = _builder(name, data_dir)
  return os.fspath(builder.data_dir_root / 'downloads' / 'manual' / builder.name)


def _manual_dir(builder, name: str, manual_dir: str | None, data_dir: str | None) -> str:
  if manual_dir is None:
    default = default_manual_dir(name, data_dir)
    if not os.path.isdir(default) or not os.listdir(default):
      raise UserError(
          f'{name} is not prepared in {builder.data_dir_root} and its files must be '
          f'downloaded by hand: put them in {default} or pass manual_dir '
          f'(--manual_dir DIR). Where to get them: {builder.SPEC.source} '
          '(layouts: `python -m mh2f_jax.datasets list`, docs/data.md)')
    return default
  manual_dir = os.path.abspath(os.path.expanduser(os.fspath(manual_dir)))
  if not os.path.isdir(manual_dir):
    raise UserError(f'manual_dir {manual_dir} does not exist or is not a folder')
  if not os.listdir(manual_dir):
    raise UserError(f'manual_dir {manual_dir} is empty: put the downloaded {name} files '
                    'there (see `python -m mh2f_jax.datasets list`)')
  return manual_dir


def _recorded_manual_dir(builder) -> str | None:
  metadata = builder.info.metadata
  return metadata.get('manual_dir') if metadata is not None else None


def _prepared(name: str, data_dir: str | None, manual_dir: str | None):
  builder = _builder(name, data_dir)
  needs_manual = bool(getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None))
  with _quiet_lookup():
    prepared = builder.is_prepared()
  if prepared:
    if needs_manual and manual_dir is not None:
      wanted = os.path.abspath(os.path.expanduser(os.fspath(manual_dir)))
      recorded = _recorded_manual_dir(builder)
      if recorded is not None and recorded != wanted:
        if builder.name == 'paired_folder':
          # One name for every user dataset: refuse to hand back another folder's pairs.
          raise UserError(
              f'paired_folder in {builder.data_dir_root} was prepared from {recorded}, not '
              f'{wanted}: give each of your datasets its own data_dir (--data_dir), or '
              f'delete {builder.data_dir} to rebuild it')
        warnings.warn(DatasetWarning(
            f'{builder.name} is already prepared in {builder.data_dir} from {recorded}; '
            f'{wanted} was not read (delete {builder.data_dir} to rebuild from it)'),
            stacklevel=3)
    return builder
  download_config = tfds.download.DownloadConfig()
  if needs_manual:
    download_config = tfds.download.DownloadConfig(
        manual_dir=_manual_dir(builder, name, manual_dir, data_dir))
  # Builds one at a time, removing what killed builds left behind (see build_lock).
  with build_lock.exclusive_build(os.fspath(builder.data_dir), name):
    builder.download_and_prepare(download_config=download_config)
  return builder


def prepare(name: str, *, data_dir: str | None = None,
            manual_dir: str | None = None) -> dict[str, int]:
  """Builds a dataset if it is not built yet (TensorFlow-free, array_record).

  Args:
    name: one of :data:`NAMES` (``synthetic_rain/light`` or ``synthetic_rain/heavy``).
    data_dir: TFDS data folder (None: the TFDS default, usually ~/tensorflow_datasets).
    manual_dir: folder holding the downloaded benchmark (None: ``default_manual_dir``).
      Not needed once the dataset is built, nor for ``synthetic_rain``.

  Returns:
    {split: number of pairs}.

  Raises:
    UserError: unknown name, data missing, no layout matched, a missing partner, a
      corrupt image, or (paired_folder) a build from another folder in ``data_dir``.
  """
  builder = _prepared(name, data_dir, manual_dir)
  return {split: int(info.num_examples) for split, info in builder.info.splits.items()}


def _resolve_split(builder, split: str) -> str:
  """Maps aliases (rain13k's 'test') and checks every split named exists."""
  present = list(builder.info.splits.keys())
  alias = getattr(builder, 'SPLIT_ALIASES', {}).get(split)
  if alias is not None and split not in present:
    found = [s for s in alias if s in present]
    if not found:
      raise UserError(f'{builder.name} has none of the splits {", ".join(alias)} that '
                      f'"{split}" stands for (prepared: {", ".join(present)})')
    return '+'.join(found)
  for part in split.split('+'):
    base = re.sub(r'\[.*\]$', '', part.strip())
    if base not in present:
      raise UserError(
          f'{builder.name} has no split {base!r}; prepared splits: {", ".join(present)}'
          + (f' (and alias {", ".join(getattr(builder, "SPLIT_ALIASES", {}))})'
             if getattr(builder, 'SPLIT_ALIASES', None) else '')
          + '. A split missing from the downloaded copy needs a rebuild: add its files and '
          f'delete {builder.data_dir}')
  return split


def _checked_size(builder, name: str, split: str, resolved: str) -> int:
  """The number of examples ``resolved`` reads: a UserError if none or unreadable.

  Checked here because array_record cannot open a split of no files (a slice such as
  ``train[:0]``, or a mixture member's empty split) and says only that a list is empty.
  """
  try:
    count = int(builder.info.splits[resolved].num_examples)
  except ValueError as e:  # Unreadable split syntax, or a slice beyond the split.
    raise UserError(f'{name} split {split!r}: {" ".join(str(e).split())}') from None
  if count == 0:
    sizes = ', '.join(f'{s} {int(i.num_examples)}' for s, i in builder.info.splits.items())
    raise UserError(f'{name} split {split!r} has no examples (prepared: {sizes})')
  return count


def get_source(name: str, split: str, *, data_dir: str | None = None,
               manual_dir: str | None = None):
  """Random-access source of one split, preparing the dataset on first use.

  Args:
    name: dataset name (see :func:`prepare`).
    split: 'train', 'test', an extra split (rain13k: 'test100', 'rain100h', 'rain100l',
      'test1200', 'test2800'; 'test' = all of them found), or TFDS split syntax such as
      'train[:100]' or 'test100+rain100h'.
    data_dir: TFDS data folder.
    manual_dir: downloaded data, used only if the dataset must be built.

  Returns:
    The ``tfds.data_source`` for the split: ``len()``, ``[i]`` -> dict of numpy arrays
    (``name`` comes back as bytes).

  Raises:
    UserError: see :func:`prepare`, or the split does not exist or has no examples.
  """
  builder = _prepared(name, data_dir, manual_dir)
  resolved = _resolve_split(builder, split)
  _checked_size(builder, name, split, resolved)
  return builder.as_data_source(split=resolved)


def eval_source(data, split: str, *, data_dir: str | None = None):
  """``(name, source)`` of a split of the dataset a run is scored on.

  That is ``data.eval_dataset``, else the first member of ``data.dataset`` (a mixture
  or one dataset): what validation, ``eval.py`` and the benchmarks score.

  Args:
    data: the config's ``data`` section.
    split: the split (see :func:`get_source`).
    data_dir: TFDS data folder; None uses the member's (``data.data_dir`` by default).
  """
  member = mixture.eval_member(data)
  source = get_source(member.name, split,
                      data_dir=member.data_dir if data_dir is None else data_dir,
                      manual_dir=member.manual_dir)
  return member.name, source


def num_examples(name: str, split: str, *, data_dir: str | None = None,
                 manual_dir: str | None = None) -> int:
  """Number of pairs in a split (preparing the dataset on first use).

  Args:
    name: dataset name.
    split: as for :func:`get_source`.
    data_dir: TFDS data folder.
    manual_dir: downloaded data, used only if the dataset must be built.

  Returns:
    The number of examples.

  Raises:
    UserError: as :func:`get_source`.
  """
  builder = _prepared(name, data_dir, manual_dir)
  return _checked_size(builder, name, split, _resolve_split(builder, split))


def describe_all() -> str:
  """Text for ``python -m mh2f_jax.datasets list``: every builder and its layouts."""
  parts = []
  for name in NAMES:
    cls = tfds.builder_cls(name)
    if hasattr(cls, 'describe'):
      parts.append(cls.describe())
    else:
      doc = (cls.__doc__ or '').strip().splitlines()
      configs = ', '.join(f'{name}/{c.name}' for c in getattr(cls, 'BUILDER_CONFIGS', []))
      parts.append(f'{name}: {doc[0] if doc else ""}'
                   + (f'\n  configs: {configs}' if configs else '')
                   + '\n  needs no download (built from bundled photos)')
  return '\n\n'.join(parts)
