"""Bare parameters files: a workdir's parameters as one Flax msgpack file.

:func:`export_params` writes one; :func:`read_params` reads it back (training's
``init_from`` uses it). ``Derainer.from_params_file`` reads such a file back with the
workdir's model config.

The format: the ``params`` pytree (nested dicts of float32 arrays, Flax names) serialised
with ``flax.serialization.msgpack_serialize``. The model's hyper-parameters are not
inside.
"""

import os
from typing import Any

import flax.serialization
import jax
import numpy as np

from mh2f_jax import files
from mh2f_jax.errors import UserError


def export_params(workdir: str | os.PathLike[str], path: str | os.PathLike[str],
                  checkpoint: Any = 'best') -> dict[str, Any]:
  """Writes a workdir's parameters to a bare parameters file.

  Args:
    workdir: a training workdir.
    path: output ``.msgpack`` path (written atomically; refuses to replace
      ``config.json`` or anything inside the workdir's checkpoints).
    checkpoint: 'best' (falls back to 'latest' when there is no best checkpoint), 'latest' or
      a step.

  Returns:
    ``{'path', 'step', 'model_config'}``; ``model_config`` is the dict to pass to
    :meth:`Derainer.from_params_file` (the workdir's config.json works too).

  Raises:
    errors.UserError: as :meth:`Derainer.from_workdir`, or an unsafe output path.
  """
  # Imported here: reading a parameters file (inference, init_from) needs no Orbax.
  from mh2f_jax.workdir import checkpoints  # pylint: disable=g-import-not-at-top
  from mh2f_jax.workdir import loading  # pylint: disable=g-import-not-at-top
  workdir, path = os.fspath(workdir), os.fspath(path)
  files.refuse_inside(path, [os.path.join(workdir, checkpoints.CONFIG_FILE),
                             os.path.join(workdir, checkpoints.CHECKPOINT_DIR)], 'parameters')
  config, params, step = loading.load_workdir(workdir, checkpoint)
  params = jax.tree.map(np.asarray, params)
  files.write_atomic(path, flax.serialization.msgpack_serialize(params))
  model_config = config.model.to_dict() if hasattr(config.model, 'to_dict') else dict(
      config.model)
  return {'path': path, 'step': int(step), 'model_config': model_config}


def read_params(path: str | os.PathLike[str]) -> Any:
  """Reads a bare parameters file back as a nested dict of NumPy arrays.

  Args:
    path: a ``.msgpack`` file written by :func:`export_params` (or by
      ``flax.serialization.msgpack_serialize(params)``; a ``{'params': ...}`` wrapper is
      taken off).

  Returns:
    The Flax ``params`` tree.

  Raises:
    UserError: the file cannot be read or is not Flax msgpack.
  """
  path = os.fspath(path)
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise UserError(f'cannot read parameters file {path}: {e.strerror or e}') from None
  try:
    params = flax.serialization.msgpack_restore(data)
  except Exception:  # pylint: disable=broad-except
    # msgpack raises several unrelated types for corrupt input.
    raise UserError(f'{path} is not a parameters file (expected Flax msgpack)') from None
  if not isinstance(params, dict):
    raise UserError(f'{path} is not a parameters file (expected a tree of arrays)')
  return params['params'] if set(params) == {'params'} else params
