"""mh2f_jax.model.params: parameter counts and the one parameter-tree comparison."""

import jax
import numpy as np

from mh2f_jax import model as model_lib
from mh2f_jax.model import params as params_lib


def test_abstract_params_match_init_and_count():
  model = model_lib.MH2FNet(features=8, num_blocks=2)
  abstract = params_lib.abstract_params(model)
  real = model.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32))['params']
  assert params_lib.shapes(abstract) == params_lib.shapes(real)
  assert params_lib.count_params(abstract) == sum(x.size for x in jax.tree.leaves(real))


def test_mismatch_names_shapes_absent_entries_and_counts_the_rest():
  wanted = {'a': {'kernel': np.zeros((3, 3))}, 'b': np.zeros(4), 'c': np.zeros(1),
            'd': np.zeros(2), 'e': np.zeros(5)}
  assert params_lib.mismatch(wanted, wanted, got_name='has', wanted_name='wants') is None
  got = {'a': {'kernel': np.zeros((3, 4))}, 'c': np.zeros(1), 'd': np.zeros(3),
         'e': np.zeros(6), 'x': np.zeros(1)}
  text = params_lib.mismatch(got, wanted, got_name='has', wanted_name='wants', limit=3)
  assert text == ("['a']['kernel']: has (3, 4), wants (3, 3); ['b']: has absent, wants (4,); "
                  "['d']: has (3,), wants (2,) (and 2 more)")
