"""Parameter trees of the network: their shapes, their size, and how two trees differ.

One comparison serves every place that checks parameters against a model: a parameters
file or exported tree loaded for inference, and a checkpoint restored for training.
"""

import math
from typing import Any

import jax
import numpy as np

from mh2f_jax.model import network


def abstract_params(model: network.MH2FNet, image_size: int = 8) -> Any:
  """Parameter shapes and dtypes of ``model`` without allocating or computing anything.

  Args:
    model: the module.
    image_size: side of the dummy image traced through (the shapes do not depend on it).

  Returns:
    The ``params`` collection as a pytree of ``jax.ShapeDtypeStruct``.
  """
  images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), np.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), images)
  return variables['params']


def count_params(params: Any) -> int:
  """Total number of scalars in a parameter pytree (arrays or ``ShapeDtypeStruct``s).

  Args:
    params: any pytree whose leaves have a ``shape``.

  Returns:
    The number of parameters.
  """
  return sum(math.prod(np.shape(leaf)) for leaf in jax.tree.leaves(params))


def shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """``{path: shape}`` of a parameter tree, paths as ``jax.tree_util.keystr`` writes them."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path): tuple(np.shape(leaf)) for path, leaf in flat}


def mismatch(got: Any, wanted: Any, *, got_name: str, wanted_name: str,
             limit: int = 3) -> str | None:
  """How the shapes of ``got`` differ from ``wanted``'s, or None if they agree.

  Args:
    got: the parameters at hand (arrays or ``ShapeDtypeStruct``s).
    wanted: the parameters the model expects.
    got_name: what ``got`` is, in the message (e.g. 'saved', 'the file has').
    wanted_name: what ``wanted`` is (e.g. 'config gives', 'the model wants').
    limit: the number of differences named; the rest are counted.

  Returns:
    ``'PATH: GOT_NAME SHAPE, WANTED_NAME SHAPE; ...'`` over the first ``limit`` paths in
    sorted order (a path absent on one side says 'absent'), or None.
  """
  a, b = shapes(got), shapes(wanted)
  diffs = [f'{k}: {got_name} {a.get(k, "absent")}, {wanted_name} {b.get(k, "absent")}'
           for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
  if not diffs:
    return None
  more = f' (and {len(diffs) - limit} more)' if len(diffs) > limit else ''
  return '; '.join(diffs[:limit]) + more
