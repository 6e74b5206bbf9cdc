"""Deraining datasets as TFDS builders, prepared without TensorFlow.

Importing this package registers the builders ``rain200l``, ``rain200h``, ``rain100l``,
``rain100h``, ``rain12``, ``rain1400``, ``spa_data``, ``rain13k``, ``paired_folder`` and
``synthetic_rain`` (configs ``light``/``heavy``). Benchmarks are read from a folder the
user downloaded by hand (``manual_dir``); the synthetic set needs nothing.

Typical use::

  from mh2f_jax import datasets
  datasets.prepare('rain200h', manual_dir='~/data/Rain200H')   # {'train': 1800, 'test': 200}
  source = datasets.get_source('rain200h', 'train')            # random access, len(), [i]

The functions live in :mod:`.sources`; the builders, layouts and pairing rules in
:mod:`.builders`, :mod:`.layouts` and :mod:`.pairing`; the training and evaluation
pipelines in :mod:`.input_pipeline` and :mod:`.mixture`. See docs/data.md and
``python -m mh2f_jax.datasets list``.
"""

from mh2f_jax.datasets.layouts import DatasetWarning
from mh2f_jax.datasets.sources import (NAMES, default_manual_dir, describe_all, eval_source,
                                       get_source, num_examples, prepare)

__all__ = ['NAMES', 'DatasetWarning', 'prepare', 'get_source', 'eval_source',
           'num_examples', 'describe_all', 'default_manual_dir']
