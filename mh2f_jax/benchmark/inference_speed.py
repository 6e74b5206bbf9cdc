"""Deraining speed: seconds per megapixel through ``inference.Derainer`` (JAX backend).

Each case derains one float32 image of random content (the time does not depend on
it): once to compile, then the best of ``repeats`` timed calls. A photo above
``max_untiled_pixels`` is timed whole (the limit raised) and with the exact tiling.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mh2f_jax import model as model_lib
from mh2f_jax.inference import derainer as derainer_lib


def time_derain(derainer: derainer_lib.Derainer, image: np.ndarray,
                repeats: int) -> tuple[float, float]:
  """Seconds of the first call (compilation included) and the best of ``repeats`` more."""
  t0 = time.perf_counter()
  derainer.derain(image)  # Returns NumPy: the computation has finished.
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    derainer.derain(image)
    times.append(time.perf_counter() - t0)
  return first, min(times)


def measure(model: model_lib.MH2FNet, params: Any, cases: list[tuple[str, int, int, int]],
            repeats: int, seed: int) -> list[dict[str, Any]]:
  """Times each case ``(name, height, width, tile)``; ``tile`` 0 runs the image whole.

  Returns:
    One row per case: ``case``, ``image``, ``tiling``, ``s_per_mp``, ``seconds`` (best
    call) and ``first_s`` (the first call, compilation included).
  """
  rows = []
  rng = np.random.default_rng(seed)
  for name, height, width, tile in cases:
    image = rng.random((height, width, 3), dtype=np.float32)
    if tile:
      derainer = derainer_lib.Derainer(model, params, backend='jax', tile_size=tile,
                                       max_untiled_pixels=min(tile * tile,
                                                              height * width - 1))
    else:
      derainer = derainer_lib.Derainer(model, params, backend='jax',
                                       max_untiled_pixels=height * width)
    first, best = time_derain(derainer, image, repeats)
    rows.append({'case': name, 'image': f'{width}x{height}',
                 'tiling': f'exact, tile {tile}' if tile else 'whole',
                 's_per_mp': best / (height * width / 1e6), 'seconds': best,
                 'first_s': first})
  return rows
