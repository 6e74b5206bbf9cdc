"""MH2F-Net as a serialized ``jax.export`` artifact (StableHLO with the parameters inside).

The artifact is one function ``images -> raw output`` over float32 NHWC arrays with
symbolic batch, height and width (``float32[n, h, w, 3]``): it runs on any image size
without the model's Python code, with nothing but ``jax`` installed::

    exported = jax.export.deserialize(bytearray(open(path, 'rb').read()))
    derained = exported.call(images)

The model's own edge padding to a multiple of 4 (``network.pad_to_multiple``) is a
gather with clamped indices, so it lowers with symbolic height and width.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mh2f_jax import model as model_lib

DEFAULT_PLATFORMS = ('cpu', 'cuda')


def derain_function(model: model_lib.MH2FNet, params: Any):
  """``images -> raw output`` with the parameters bound, ready for ``jax.export``."""
  params = jax.tree.map(jnp.asarray, params)

  def derain(images: jax.Array) -> jax.Array:
    return model.apply({'params': params}, images.astype(jnp.float32))

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
  # The unrolled form: an artifact's program stays the same whichever form trains.
  model = model.clone(scan_blocks=False)
  fn = jax.jit(derain_function(model, jax.tree.map(np.asarray, params)))
  return jax.export.export(fn, platforms=tuple(platforms))(
      jax.ShapeDtypeStruct(shape, jnp.float32))
