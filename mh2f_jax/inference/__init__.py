"""Deraining with a trained model: the derainer, its backends, tiling and ensembles.

``from mh2f_jax import inference`` gives :class:`Derainer` and its settings by name. The
modules: :mod:`.derainer` (``Derainer``: whole images, tiles, self-ensembles),
:mod:`.streaming` (a sequence of images, one ahead), :mod:`.forward` (the jitted
forward pass), :mod:`.backends` (JAX or ONNX Runtime),
:mod:`.tiling` and :mod:`.onnx_tiling` (large images), :mod:`.ensemble`,
:mod:`.exported` (files written by ``mh2f-export``), :mod:`.photos` (reading, naming and
writing photos) and :mod:`.photo_run` (a folder of photos, as ``mh2f-derain`` runs it).
"""

from mh2f_jax.inference.derainer import (  # The public API, by name.
    DEFAULT_MAX_UNTILED_PIXELS, DEFAULT_TILE_MARGIN, DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE,
    DEFAULT_TILING, TILING_CHOICES, Derainer, DerainerBase)
from mh2f_jax.inference.streaming import derain_stream
