"""The bare parameters file: the network's ``params`` tree as one Flax msgpack file.

The format: the ``params`` pytree (nested dicts of float32 arrays under the Flax names of
docs/architecture.md) serialised with ``flax.serialization.msgpack_serialize``. The
model's hyper-parameters are not inside: a reader brings the model config (a workdir's
``config.json``). Export writes such files (``mh2f-export --format=params``,
``mh2f_jax.export.params_file.export_params``); ``Derainer.from_params_file`` and
training's ``init_from`` read them with :func:`read_params`.
"""

import os
from typing import Any

import flax.serialization
import jax
import numpy as np

from mh2f_jax.errors import UserError


def to_bytes(params: Any) -> bytes:
  """The file's bytes for a ``params`` tree (device arrays are copied to the host)."""
  return flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, params))


def from_bytes(data: bytes, name: str) -> Any:
  """The ``params`` tree a parameters file holds.

  Args:
    data: the file's bytes (a ``{'params': ...}`` wrapper is taken off).
    name: what the bytes came from, for messages.

  Returns:
    The Flax ``params`` tree of NumPy arrays.

  Raises:
    UserError: the bytes are not Flax msgpack of a tree of arrays.
  """
  try:
    params = flax.serialization.msgpack_restore(data)
  except Exception:  # pylint: disable=broad-except
    # msgpack raises several unrelated types for corrupt input.
    raise UserError(f'{name} is not a parameters file (expected Flax msgpack)') from None
  if not isinstance(params, dict):
    raise UserError(f'{name} is not a parameters file (expected a tree of arrays)')
  return params['params'] if set(params) == {'params'} else params


def read_params(path: str | os.PathLike[str]) -> Any:
  """Reads a bare parameters file back as a nested dict of NumPy arrays.

  Args:
    path: a ``.msgpack`` file written by export (or by
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
  return from_bytes(data, path)
