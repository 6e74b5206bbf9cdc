"""Tests for mh2f_jax.model.params_file: the bare parameters file's bytes and reading."""

import flax
import jax
import numpy as np
import pytest

from mh2f_jax.errors import UserError
from mh2f_jax.model import params_file

TREE = {'head': {'kernel': np.arange(24, dtype=np.float32).reshape(2, 2, 2, 3),
                 'bias': np.ones(3, np.float32)},
        'tail': {'kernel': np.full((1, 1, 3, 3), 0.5, np.float32)}}


def _assert_same(a, b):
  a, b = flax.traverse_util.flatten_dict(a), flax.traverse_util.flatten_dict(b)
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=str(name))
    assert a[name].dtype == b[name].dtype


def test_bytes_round_trip_device_arrays_and_the_params_wrapper(tmp_path):
  data = params_file.to_bytes(jax.tree.map(jax.numpy.asarray, TREE))
  _assert_same(params_file.from_bytes(data, 'x'), TREE)
  path = tmp_path / 'p.msgpack'
  path.write_bytes(flax.serialization.msgpack_serialize({'params': TREE}))
  _assert_same(params_file.read_params(path), TREE)  # The wrapper is taken off.


def test_bad_files_are_one_user_error_naming_the_file(tmp_path):
  garbage = tmp_path / 'garbage.msgpack'
  garbage.write_bytes(b'\xc1not msgpack')
  with pytest.raises(UserError, match='garbage.msgpack is not a parameters file'):
    params_file.read_params(garbage)
  scalar = tmp_path / 'scalar.msgpack'
  scalar.write_bytes(flax.serialization.msgpack_serialize(3))
  with pytest.raises(UserError, match='expected a tree of arrays'):
    params_file.read_params(scalar)
  with pytest.raises(UserError, match='cannot read parameters file .*missing'):
    params_file.read_params(tmp_path / 'missing.msgpack')
