"""TFDS builders for the deraining benchmarks and for users' own paired folders.

All builders read data the user downloaded by hand (``manual_dir``), detect its layout
(:mod:`mh2f_jax.datasets.layouts`), pair files by rule, check every image decodes, and
write ``array_record`` files readable with ``tfds.data_source`` without TensorFlow.
Every example is ``{'rainy': uint8 (H, W, 3), 'clean': uint8 (H, W, 3), 'name': str}``
where ``name`` is the rainy file's path relative to ``manual_dir``.
"""

from __future__ import annotations

import functools
import os
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from mh2f_jax.datasets import catalog
from mh2f_jax.datasets import images
from mh2f_jax.datasets import layouts
from mh2f_jax.datasets import tf_free
from mh2f_jax.errors import UserError

# Splits over 1 GB (most real benchmarks) would otherwise need TensorFlow to build.
tf_free.install()


def features() -> tfds.features.FeaturesDict:
  """The shared feature spec."""
  # No encoding_format: the PNG/JPEG bytes of the source files are stored as they are.
  return tfds.features.FeaturesDict({
      'rainy': tfds.features.Image(shape=(None, None, 3), dtype=np.uint8),
      'clean': tfds.features.Image(shape=(None, None, 3), dtype=np.uint8),
      'name': tfds.features.Text(),
  })


class LocalBuildMessages:
  """Says what building from local files does, in place of TFDS's download messages.

  TFDS prints "Downloading and preparing dataset Unknown size ..." and "... downloaded and
  prepared" for every build; these builders download nothing.
  """

  def _log_download_bytes(self) -> None:
    print(f'preparing {self.data_dir} (once: later runs reuse it)', flush=True)

  def _log_download_done(self) -> None:
    pass


class PairedImageBuilder(LocalBuildMessages, tfds.core.GeneratorBasedBuilder,
                         skip_registration=True):
  """Base class: one benchmark described by a :class:`layouts.DatasetSpec`."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  SPEC: layouts.DatasetSpec

  def __init__(self, *, file_format=None, **kwargs):
    # array_record is the only format that builds and reads without TensorFlow.
    super().__init__(file_format=file_format or 'array_record', **kwargs)

  @classmethod
  def describe(cls) -> str:
    return cls.SPEC.describe()

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.SPEC.title,
        features=features(),
        homepage=self.SPEC.homepage or None,
        citation=self.SPEC.citation or None,
        # Records where the data came from and which layout was found, per split.
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    manual_dir = os.path.abspath(os.fspath(dl_manager.manual_dir))
    plans = layouts.detect(manual_dir, self.SPEC)
    self.info.metadata['manual_dir'] = manual_dir
    self.info.metadata['layouts'] = {s: f'{p.layout}: {p.location}' for s, p in plans.items()}
    return {split: self._generate_examples(plan, manual_dir) for split, plan in plans.items()}

  def _generate_examples(self, plan: layouts.SplitPlan,
                         manual_dir: str) -> Iterator[tuple[str, dict]]:
    # Clean images are shared (14 rainy per clean in Rain1400, several frames per
    # patch in SPA-Data) and come in runs: a small cache avoids re-decoding them.
    load_clean = functools.lru_cache(maxsize=64)(images.load_checked)
    for pair in plan.pairs():
      rainy, rainy_size = images.load_checked(pair.rainy)
      clean, clean_size = load_clean(pair.clean)
      if rainy_size != clean_size:
        raise UserError(
            f'rainy image {pair.rainy} is {rainy_size[0]}x{rainy_size[1]} but its clean '
            f'partner {pair.clean} is {clean_size[0]}x{clean_size[1]}')
      name = os.path.relpath(pair.rainy, manual_dir).replace(os.sep, '/')
      yield name, {'rainy': rainy, 'clean': clean, 'name': name}


def _manual_instructions(spec: layouts.DatasetSpec) -> str:
  return (f'Download {spec.title}.\nWhere: {spec.source}\n'
          'Unpack it into one folder, keeping its folder structure, and pass that folder '
          'as manual_dir (--manual_dir). Accepted layouts:\n' + spec.describe())


class Rain200L(PairedImageBuilder):
  """Rain200L (new JORDER light set)."""
  name = 'rain200l'
  SPEC = catalog.RAIN200L
  MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(SPEC)


class Rain200H(PairedImageBuilder):
  """Rain200H (new JORDER heavy set)."""
  name = 'rain200h'
  SPEC = catalog.RAIN200H
  MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(SPEC)


class Rain100L(PairedImageBuilder):
  """Rain100L (old JORDER light set, PReNet packaging)."""
  name = 'rain100l'
  SPEC = catalog.RAIN100L
  MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(SPEC)


class Rain100H(PairedImageBuilder):
  """Rain100H (old JORDER heavy set, PReNet packaging)."""
  name = 'rain100h'
  SPEC = catalog.RAIN100H
  MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(SPEC)


class Rain12(PairedImageBuilder):
  """Rain12 (test only)."""
  name = 'rain12'
  SPEC = catalog.RAIN12
  MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(SPEC)


class Rain1400(PairedImageBuilder):
  """Rain1400 / DDN-Data."""
  name = 'rain1400'
  SPEC = catalog.RAIN1400
  MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(SPEC)


class SpaData(PairedImageBuilder):
  """SPA-Data (real rain)."""
  name = 'spa_data'
  SPEC = catalog.SPA_DATA
  MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(SPEC)


class Rain13K(PairedImageBuilder):
  """Rain13K with its five test sets as extra splits."""
  name = 'rain13k'
  SPEC = catalog.RAIN13K
  MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(SPEC)
  # 'test' is read as all test splits found, one after another (TFDS split algebra).
  SPLIT_ALIASES = {'test': tuple(catalog.RAIN13K_TEST_SETS)}


class PairedFolder(PairedImageBuilder):
  """Users' own pairs: same names in two folders, or patterns in paired_folder.json."""
  name = 'paired_folder'
  SPEC = catalog.PAIRED_FOLDER
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put your pairs in one folder: <folder>/train/rainy/*.png + <folder>/train/clean/*.png '
      '(same file names; test/ likewise), or describe them with a paired_folder.json '
      'pattern file in that folder. Pass the folder as manual_dir (--manual_dir). '
      'Accepted layouts:\n' + catalog.PAIRED_FOLDER.describe())


BUILDERS = {cls.name: cls for cls in (Rain200L, Rain200H, Rain100L, Rain100H, Rain12,
                                      Rain1400, SpaData, Rain13K, PairedFolder)}
