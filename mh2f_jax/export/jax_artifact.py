"""MH2F-Net as a serialized ``jax.export`` artifact (StableHLO with the parameters inside).

The artifact is one function ``images -> raw output`` over float32 NHWC arrays with
symbolic batch, height and width (``float32[n, h, w, 3]``): it runs on any image size
without the model's Python code, with nothing but ``jax`` installed::

    exported = jax.export.deserialize(bytearray(open(path, 'rb').read()))
    derained = exported.call(images)

The model pads H and W to a multiple of 4 with ``jnp.pad``, whose pad widths cannot be
symbolic; the exported function therefore does the same edge padding first as a gather
(clamped indices: the same pixels), so the model sees a multiple of 4 and pads nothing.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mh2f_jax import model as model_lib

DEFAULT_PLATFORMS = ('cpu', 'cuda')


def _edge_pad_to_multiple(images: jax.Array) -> jax.Array:
  """Edge-pads (N, H, W, C) at the bottom/right to a multiple of 4; symbolic H, W work."""
  _, height, width, _ = images.shape
  m = model_lib.PAD_MULTIPLE
  rows = jnp.minimum(jnp.arange(m * ((height + m - 1) // m)), height - 1)
  cols = jnp.minimum(jnp.arange(m * ((width + m - 1) // m)), width - 1)
  return jnp.take(jnp.take(images, rows, axis=1), cols, axis=2)


def derain_function(model: model_lib.MH2FNet, params: Any):
  """``images -> raw output`` with the parameters bound, ready for ``jax.export``."""
  params = jax.tree.map(jnp.asarray, params)

  def derain(images: jax.Array) -> jax.Array:
    _, height, width, _ = images.shape
    out = model.apply({'params': params}, _edge_pad_to_multiple(images.astype(jnp.float32)))
    return out[:, :height, :width, :]

  return derain


def export(model: model_lib.MH2FNet, params: Any,
           platforms: Sequence[str] = DEFAULT_PLATFORMS) -> jax.export.Exported:
  """Exports the model with symbolic batch, height and width.

  Args:
    model: the Flax module.
    params: its ``params`` pytree (embedded in the artifact as constants).
    platforms: the platforms to lower for (the artifact runs on any of them).

  Returns:
    The ``jax.export.Exported``; ``.serialize()`` gives the bytes to save.
  """
  shape = jax.export.symbolic_shape('n, h, w, 3')
  fn = jax.jit(derain_function(model, jax.tree.map(np.asarray, params)))
  return jax.export.export(fn, platforms=tuple(platforms))(
      jax.ShapeDtypeStruct(shape, jnp.float32))
