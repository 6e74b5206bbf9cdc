"""Blended tiling (``tiling='approx'``): overlapping whole-network tiles, linear ramps.

An approximation for the HADB model: each tile sees only its own channel means and a
limited margin of context. It needs nothing but a forward function, so it also serves
exported model files. Exact tiling is :mod:`mh2f_jax.inference.tiling`.
"""

from collections.abc import Callable

import numpy as np

from mh2f_jax.model import receptive_field

def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
  """Start offsets of overlapping tiles covering ``[0, length)`` along one axis.

  Args:
    length: axis length, a multiple of 4 (the padded image).
    tile: tile length, a multiple of 4.
    overlap: minimum overlap of neighbouring tiles, a multiple of 4.

  Returns:
    Sorted starts, all multiples of 4; the last tile ends exactly at ``length``. A single
    start 0 when ``length <= tile`` (the tile is then shortened to ``length``).
  """
  if length <= tile:
    return [0]
  stride = tile - overlap
  starts = list(range(0, length - tile, stride))
  starts.append(length - tile)
  return starts


def blend_profile(size: int, start: int, length: int, margin: int, ramp: int) -> np.ndarray:
  """1-D blending weights of a tile covering ``[start, start + size)`` of ``length``.

  Edges on the image boundary keep weight 1 (the tile sees the same border as the whole
  image); edges shared with a neighbour get ``margin`` zeros then a linear ramp of
  ``ramp`` pixels.

  Args:
    size: tile length.
    start: tile start.
    length: padded image length.
    margin: zero-weight pixels at each inner edge.
    ramp: ramp length after the margin.

  Returns:
    float32 weights of shape ``(size,)``.
  """
  d = np.arange(size, dtype=np.float32)
  rise = np.clip((d - margin + 1) / (ramp + 1), 0.0, 1.0)
  w = np.ones(size, np.float32)
  if start > 0:
    w = np.minimum(w, rise)
  if start + size < length:
    w = np.minimum(w, rise[::-1])
  return w


def run_blended(run: Callable[[np.ndarray], np.ndarray], image: np.ndarray, tile: int,
                overlap: int, margin: int) -> np.ndarray:
  """Raw output for one float32 (H, W, 3) image from blended overlapping tiles.

  Args:
    run: the whole network on a float32 (1, h, w, 3) batch.
    image: float32 (H, W, 3).
    tile: tile side (multiple of 4).
    overlap: minimum overlap of neighbouring tiles (multiple of 4, >= 2 * margin).
    margin: zero-weight pixels at each inner tile edge.

  Returns:
    float32 (H, W, 3): the weight-normalised sum of the tiles' outputs.
  """
  height, width, _ = image.shape
  ph, pw = receptive_field.align_up(height), receptive_field.align_up(width)
  # Same bottom/right edge padding as the network applies to the whole image, so the
  # tiles' pooling grid matches the whole image's.
  padded = np.pad(image, ((0, ph - height), (0, pw - width), (0, 0)), mode='edge')
  th, tw = min(tile, ph), min(tile, pw)
  ramp = overlap - 2 * margin
  out = np.zeros((ph, pw, 3), np.float32)
  total = np.zeros((ph, pw, 1), np.float32)
  for y0 in tile_starts(ph, tile, overlap):
    wy = blend_profile(th, y0, ph, margin, ramp)
    for x0 in tile_starts(pw, tile, overlap):
      wx = blend_profile(tw, x0, pw, margin, ramp)
      weight = (wy[:, None] * wx[None, :])[..., None]
      out[y0:y0 + th, x0:x0 + tw] += weight * run(padded[None, y0:y0 + th, x0:x0 + tw])[0]
      total[y0:y0 + th, x0:x0 + tw] += weight
  return (out / total)[:height, :width]
