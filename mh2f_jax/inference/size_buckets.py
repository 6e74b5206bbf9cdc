"""Images of any size through a bounded number of compiled forward programs, exactly.

XLA compiles a program per input shape. Here every image is edge-padded to a multiple of
4 as the network does (``network.pad_to_multiple``), then zero-padded at the bottom and
right up to a *bucket*: each side rounds up to the next entry of :data:`SIDES`, a
ladder of powers of two and their halfway points (256, 384, 512, 768, ...), so that any
mix of sizes up to a side of 2048 compiles at most ``len(SIDES) ** 2`` programs and a
side is padded by at most 50 %.

The padding changes nothing the image's pixels see. A Flax method interceptor, the one
the exact tiling uses, zeroes the input of every spatial convolution outside the image
(the zero 'SAME' padding the unpadded image gets at its border, at every scale: the 2x2
poolings stay aligned because the image is a multiple of 4), and HADB's channel means
average over the image only (the head's output is zeroed outside, and the mean over the
bucket is rescaled by bucket area / image area). The image's size enters the program as
data, so one program serves every size of a bucket.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from mh2f_jax import model as model_lib
from mh2f_jax.inference import tiling

# Bucket sides: 2^k and 1.5 * 2^k from 32 up; larger sides are rounded to a multiple of 512.
SIDES = tuple(sorted({int(m * 2 ** k) for k in range(5, 12) for m in (1, 1.5)}))
_ALIGN_LARGE = 512


def bucket_side(side: int) -> int:
  """The padded length of an image side (already a multiple of 4)."""
  for s in SIDES:
    if side <= s:
      return s
  return -(-side // _ALIGN_LARGE) * _ALIGN_LARGE


def _masking(valid: jax.Array, window: tuple[int, int]):
  """An interceptor making every layer see the ``valid`` part of the window only."""
  scale = (window[0] * window[1]) / ((valid[1] - valid[0]) * (valid[3] - valid[2]))

  def intercept(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != '__call__' or module.name is None:
      return next_fun(*args, **kwargs)
    if isinstance(module, nn.Conv) and max(module.kernel_size) > 1:
      args = (tiling.zero_outside_image(args[0], valid, window),) + tuple(args[1:])
    if module.name == 'ca_reduce':  # the unit's channel mean: over the image, not the bucket
      args = ((args[0] * scale).astype(args[0].dtype),) + tuple(args[1:])
    out = next_fun(*args, **kwargs)
    if module.name == 'head' and isinstance(module.parent, model_lib.DistillUnit):
      out = tiling.zero_outside_image(out, valid, window)
    return out

  return intercept


@functools.lru_cache(maxsize=None)
def _padded_fn(model: model_lib.MH2FNet):
  """Jitted ``(params, padded images, valid) -> raw output``: one program per bucket."""
  def run(params, images, valid):
    with nn.intercept_methods(_masking(valid, images.shape[1:3])):
      return model.apply({'params': params}, images)
  return jax.jit(run)


def forward(model: model_lib.MH2FNet, params: Any, images: np.ndarray) -> np.ndarray:
  """The network's raw output for a float32 (B, H, W, 3) batch, through its bucket.

  Args:
    model: the module.
    params: its parameters.
    images: (B, H, W, 3) float32 in [0, 1], any H and W.

  Returns:
    (B, H, W, 3) float32 NumPy array: the unpadded network's output, to float rounding.
  """
  return dispatch(model, params, images)()


def dispatch(model: model_lib.MH2FNet, params: Any,
             images: np.ndarray) -> Callable[[], np.ndarray]:
  """Starts :func:`forward` and returns a function that waits for its output.

  JAX runs a dispatched program asynchronously, so a caller can prepare the next image
  (read it, and trace and compile its bucket's program when that bucket is new) while
  this one runs: see :mod:`mh2f_jax.inference.streaming`.
  """
  images = np.asarray(images, np.float32)
  _, height, width, _ = images.shape
  m = model_lib.PAD_MULTIPLE
  h4, w4 = -(-height // m) * m, -(-width // m) * m
  # Edge padding in NumPy (as pad_to_multiple replicates the last row and column), so
  # that no per-size program is compiled for it, then zeros up to the bucket.
  x = np.pad(images, ((0, 0), (0, h4 - height), (0, w4 - width), (0, 0)), mode='edge')
  x = np.pad(x, ((0, 0), (0, bucket_side(h4) - h4), (0, bucket_side(w4) - w4), (0, 0)))
  valid = np.array([0, h4, 0, w4], np.int32)
  y = _padded_fn(model)(params, x, valid)  # NumPy in: no per-shape transfer program
  return lambda: np.asarray(y)[:, :height, :width]
