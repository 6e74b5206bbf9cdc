"""The scanned blocks (``model.scan_blocks``) against the unrolled network.

Same parameter tree (``mheb_{i}``, ``hadb/unit_{n}``), same initial values, same outputs
and gradients, the blocks traced once, and ``remat`` still recomputing them. Tiny models
(features=8) with random parameters drawn in NumPy, as in ``test_network``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mh2f_jax import model as model_lib
from tests.model.test_network import images, random_params


def _primitives(jaxpr, names):
  """How many equations named in ``names`` ``jaxpr`` holds, inner jaxprs included."""
  count = 0
  for eqn in jaxpr.eqns:
    count += eqn.primitive.name in names
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      count += _primitives(sub, names)
  return count


def _count(model, params, x, names):
  jaxpr = jax.make_jaxpr(lambda p: model.apply({'params': p}, x))(params)
  return _primitives(jaxpr.jaxpr, names)


def _loss_and_grads(model, params, x, target):
  def loss(p):
    y = model.apply({'params': p}, x)
    return jnp.mean((y - target) ** 2), y
  return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)


def _assert_close(got, want):
  # Within 1e-5 of the largest entry, leaf by leaf.
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    scale = float(jnp.abs(w).max())  # 0 for a leaf with no gradient: then exactly 0
    np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize('kwargs', [
    dict(num_blocks=3),
    dict(num_blocks=2, distill='concat', fusion='add'),
    dict(num_blocks=3, remat=True),
])
def test_scanned_blocks_equal_the_unrolled_network(kwargs):
  kwargs = dict(features=8, dcr_layers=1, **kwargs)
  unrolled = model_lib.MH2FNet(**kwargs, scan_blocks=False)
  scanned = model_lib.MH2FNet(**kwargs, scan_blocks=True)
  params = random_params(unrolled)
  x, target = images((2, 12, 10, 3)), images((2, 12, 10, 3), seed=2)
  (loss0, y0), g0 = _loss_and_grads(unrolled, params, x, target)
  (loss1, y1), g1 = _loss_and_grads(scanned, params, x, target)
  _assert_close(y1, y0)
  np.testing.assert_allclose(loss1, loss0, rtol=1e-5)
  assert jax.tree.structure(g1) == jax.tree.structure(g0)
  # Gradients reach the inside of every MHEB (gamma != 0), so the comparison has teeth.
  for i in range(kwargs['num_blocks']):
    assert float(jnp.abs(g0[f'mheb_{i}']['bottom']['dense_0']['kernel']).max()) > 0
  _assert_close(g1, g0)


def test_parameters_keep_their_names_and_initial_values():
  x = images((1, 8, 8, 3))
  trees = [model_lib.MH2FNet(features=4, num_blocks=3, dcr_layers=1, scan_blocks=s).init(
      jax.random.key(3), x)['params'] for s in (False, True)]
  assert jax.tree.structure(trees[0]) == jax.tree.structure(trees[1])
  assert {f'mheb_{i}' for i in range(3)} <= set(trees[1])
  assert set(trees[1]['hadb']) == {'unit_0', 'unit_1'}
  jax.tree.map(np.testing.assert_array_equal, trees[1], trees[0])


@pytest.mark.parametrize('remat', [False, True])
def test_each_block_is_traced_once(remat):
  # Convolutions in the traced program: an MHEB has 6 DCRs of 2 convs (dcr_layers=1), an
  # HADB unit 6. Scanned, 3 of the 4 MHEBs and 1 of the 2 later units are not traced.
  kwargs = dict(features=8, num_blocks=4, dcr_layers=1, remat=remat)
  params = random_params(model_lib.MH2FNet(**kwargs))
  x = images((1, 8, 8, 3))
  convs = {s: _count(model_lib.MH2FNet(**kwargs, scan_blocks=s), params, x,
                     ('conv_general_dilated',))
           for s in (False, True)}
  assert _count(model_lib.MH2FNet(**kwargs, scan_blocks=True), params, x, ('scan',)) == 2
  assert convs[False] - convs[True] == 3 * 6 * 2 + 1 * 6
  checkpoints = _count(model_lib.MH2FNet(**kwargs, scan_blocks=True), params, x,
                       ('checkpoint', 'remat', 'remat2'))
  assert checkpoints == (1 if remat else 0)


def test_scan_blocks_must_be_a_bool():
  with pytest.raises(ValueError, match='model.scan_blocks'):
    model_lib.MH2FNet(features=8, num_blocks=2, scan_blocks='yes')
