"""Tests for mh2f_jax.model: shapes, exact sizes, names, numerics of the compute paths.

Compiling is the expensive part on a small CPU, so parameter counts and names come from
``jax.eval_shape`` (no arrays), numerical checks use a tiny model (features=8,
num_blocks=2) with random parameters drawn in NumPy, and compiled functions are shared
between tests. Only the fresh-initialisation test builds the default model for real.
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mh2f_jax import errors
from mh2f_jax import model as model_lib

TINY = dict(features=8, num_blocks=2)

# --- Independent parameter count, from the layer list in docs/architecture.md. -------


def _conv(k, cin, cout):
  return k * k * cin * cout + cout


def _dcr(c, growth, layers):
  dense = sum(_conv(3, c + i * growth, growth) for i in range(layers))
  return dense + _conv(1, c + layers * growth, c)


def _mheb(c, growth, layers):
  return 6 * _dcr(c, growth, layers) + c  # six DCRs and gamma


def _unit(cin, c, r):
  return (_conv(1, cin, c) + _conv(1, c, c // r) + _conv(1, c // r, c) + _conv(7, 2, 1)
          + _conv(1, 2 * c, c) + _conv(1, c, c))


def expected_params(features=32, num_blocks=8, dcr_layers=3, dcr_growth=None,
                    attention_reduction=4, distill='hadb', fusion='rpff'):
  c, n = features, num_blocks
  g = c // 2 if dcr_growth is None else dcr_growth
  total = _conv(3, 3, c) + n * _mheb(c, g, dcr_layers) + _conv(3, c, 3)
  if distill == 'hadb':
    total += _unit(c, c, attention_reduction) + (n - 2) * _unit(2 * c, c, attention_reduction)
  else:
    total += _conv(1, (n - 1) * c, c)
  total += {'rpff': 3 * _conv(3, c, c),
            'add': _conv(3, c, c),
            'concat': _conv(1, 3 * c, c) + _conv(3, c, c)}[fusion]
  return total


# --- Helpers. ---------------------------------------------------------------------------


def random_params(model, seed=0, gamma=0.5):
  """Random parameters with the model's tree, drawn in NumPy (no compile).

  Kernels ~ N(0, 1/fan_in), biases small and non-zero, and gamma non-zero so that every
  MHEB contributes to the output and receives gradients (at gamma = 0 they are inert).
  """
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      fan_in = math.prod(leaf.shape[:-1])
      return rng.normal(0.0, 1.0 / math.sqrt(fan_in), leaf.shape).astype(np.float32)
    if name == 'bias':
      return rng.normal(0.0, 0.05, leaf.shape).astype(np.float32)
    assert name == 'gamma', name
    return (gamma * rng.uniform(0.5, 1.5, leaf.shape)).astype(np.float32)

  abstract = model_lib.abstract_params(model)
  return jax.tree.map(jnp.asarray, jax.tree_util.tree_map_with_path(draw, abstract))


def images(shape, seed=1):
  return jnp.asarray(np.random.default_rng(seed).uniform(0.0, 1.0, shape), jnp.float32)


def flat_names(tree):
  return {'/'.join(str(k.key) for k in path)
          for path, _ in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope='module')
def tiny():
  model = model_lib.MH2FNet(**TINY)
  params = random_params(model)
  apply = jax.jit(lambda p, x: model.apply({'params': p}, x))
  return model, params, apply


# --- Parameter counts and names. ----------------------------------------------------------


def test_default_parameter_count_matches_spec():
  params = model_lib.abstract_params(model_lib.MH2FNet())
  assert model_lib.count_params(params) == 1_191_856
  assert expected_params() == 1_191_856  # the formula below agrees with the spec too
  gammas = sum(math.prod(p['gamma'].shape) for k, p in params.items() if k.startswith('mheb_'))
  assert gammas == 8 * 32  # spec: 1,191,600 in convolutions plus 8 x 32 gamma


ABLATIONS = [
    dict(num_blocks=4),
    dict(num_blocks=6),
    dict(num_blocks=10),
    dict(distill='concat'),
    dict(fusion='add'),
    dict(fusion='concat'),
    dict(num_blocks=2, distill='concat', fusion='concat'),
    dict(features=16, num_blocks=3, dcr_layers=4, dcr_growth=4, attention_reduction=2),
]


def _ids(kwargs):
  return ','.join(f'{k}={v}' for k, v in kwargs.items())


@pytest.mark.parametrize('kwargs', ABLATIONS, ids=_ids)
def test_ablation_parameter_counts(kwargs):
  params = model_lib.abstract_params(model_lib.MH2FNet(**kwargs))
  assert model_lib.count_params(params) == expected_params(**kwargs)


def test_options_without_parameters_do_not_change_the_tree():
  base = model_lib.abstract_params(model_lib.MH2FNet(**TINY))
  for kwargs in (dict(global_residual=True), dict(remat=True), dict(dtype=jnp.bfloat16),
                 dict(scan_blocks=True)):
    other = model_lib.abstract_params(model_lib.MH2FNet(**TINY, **kwargs))
    assert jax.tree.map(lambda a: (a.shape, a.dtype), other) == jax.tree.map(
        lambda a: (a.shape, a.dtype), base), kwargs
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(base))


def _conv_names(prefix):
  return {f'{prefix}/kernel', f'{prefix}/bias'}


def _expected_names(n, layers=3, distill='hadb', fusion='rpff'):
  names = _conv_names('head') | _conv_names('tail')
  for i in range(n):
    names.add(f'mheb_{i}/gamma')
    for dcr in ('skip0', 'down1', 'skip1', 'bottom', 'up1', 'out'):
      for conv in [f'dense_{j}' for j in range(layers)] + ['fuse']:
        names |= _conv_names(f'mheb_{i}/{dcr}/{conv}')
  if distill == 'hadb':
    for u in range(n - 1):
      for conv in ('head', 'ca_reduce', 'ca_expand', 'sa_conv', 'merge', 'end'):
        names |= _conv_names(f'hadb/unit_{u}/{conv}')
  else:
    names |= _conv_names('distill_concat')
  convs = {'rpff': ('rpff/conv_r', 'rpff/conv_f', 'rpff/conv_o'),
           'add': ('fusion_add/conv_o',),
           'concat': ('fusion_concat/project', 'fusion_concat/conv_o')}[fusion]
  for conv in convs:
    names |= _conv_names(conv)
  return names


@pytest.mark.parametrize('kwargs', [dict(), dict(num_blocks=3, distill='concat', fusion='add'),
                                    dict(num_blocks=2, fusion='concat')])
def test_parameter_names_follow_spec(kwargs):
  params = model_lib.abstract_params(model_lib.MH2FNet(**kwargs))
  assert flat_names(params) == _expected_names(kwargs.get('num_blocks', 8),
                                                distill=kwargs.get('distill', 'hadb'),
                                                fusion=kwargs.get('fusion', 'rpff'))


def test_default_parameter_shapes_are_hwio():
  p = model_lib.abstract_params(model_lib.MH2FNet())
  assert p['head']['kernel'].shape == (3, 3, 3, 32)
  assert p['mheb_0']['skip0']['dense_2']['kernel'].shape == (3, 3, 64, 16)
  assert p['mheb_7']['out']['fuse']['kernel'].shape == (1, 1, 80, 32)
  assert p['mheb_3']['gamma'].shape == (32,)
  assert p['hadb']['unit_0']['head']['kernel'].shape == (1, 1, 32, 32)
  assert p['hadb']['unit_6']['head']['kernel'].shape == (1, 1, 64, 32)
  assert p['hadb']['unit_1']['ca_reduce']['kernel'].shape == (1, 1, 32, 8)
  assert p['hadb']['unit_1']['sa_conv']['kernel'].shape == (7, 7, 2, 1)
  assert p['rpff']['conv_f']['kernel'].shape == (3, 3, 32, 32)
  assert p['tail']['kernel'].shape == (3, 3, 32, 3)


# --- Validation. ---------------------------------------------------------------------------


@pytest.mark.parametrize('kwargs, words', [
    (dict(num_blocks=1), ['num_blocks', '>= 2']),
    (dict(num_blocks=0), ['num_blocks', '>= 2']),
    (dict(distill='attention'), ['distill', "'hadb'", "'concat'"]),
    (dict(fusion='sum'), ['fusion', "'rpff'", "'add'", "'concat'"]),
    (dict(features=0), ['features', '>= 1']),
    (dict(dcr_layers=0), ['dcr_layers', '>= 1']),
    (dict(features=8, attention_reduction=16), ['attention_reduction']),
])
def test_invalid_fields_raise_value_error_naming_field(kwargs, words):
  with pytest.raises(ValueError) as info:
    model_lib.MH2FNet(**kwargs)
  for word in words:
    assert word in str(info.value)
  # The same mistakes through a config block, as train.py / eval.py see them.
  with pytest.raises(errors.UserError) as info:
    model_lib.from_config(kwargs)
  assert words[0] in str(info.value)


def test_from_config():
  cfg = ml_collections.ConfigDict(dict(
      features=16, num_blocks=3, dcr_layers=2, dcr_growth=None, attention_reduction=4,
      distill='concat', fusion='add', global_residual=True, dtype='bfloat16', remat=True))
  model = model_lib.from_config(cfg)
  assert (model.features, model.num_blocks, model.dcr_layers, model.growth) == (16, 3, 2, 8)
  assert (model.distill, model.fusion, model.global_residual, model.remat) == (
      'concat', 'add', True, True)
  assert jnp.dtype(model.dtype) == jnp.bfloat16
  assert model_lib.from_config({}) == model_lib.MH2FNet()
  with pytest.raises(ValueError, match="dtype.*'float32', 'bfloat16'"):
    model_lib.from_config({'dtype': 'float16'})
  with pytest.raises(ValueError, match='unknown model config field.*featurs'):
    model_lib.from_config({'featurs': 8})


def test_rejects_non_float_or_non_rgb_images(tiny):
  model, params, _ = tiny
  with pytest.raises(ValueError, match='float'):
    model.apply({'params': params}, jnp.zeros((1, 8, 8, 3), jnp.uint8))
  with pytest.raises(ValueError, match='3'):
    model.apply({'params': params}, jnp.zeros((1, 8, 8, 1)))


# --- Numerics. -----------------------------------------------------------------------------


@pytest.mark.parametrize('shape', [(1, 1, 1, 3), (1, 5, 7, 3), (2, 37, 50, 3), (1, 64, 64, 3)])
def test_output_shape(tiny, shape):
  _, params, apply = tiny
  y = apply(params, images(shape))
  assert y.shape == shape and y.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(y)))


def test_batch_elements_are_independent(tiny):
  _, params, apply = tiny
  x = images((2, 37, 50, 3))
  both = apply(params, x)  # compiled in test_output_shape already
  first = apply(params, jnp.concatenate([x[:1], x[:1]]))
  np.testing.assert_allclose(both[0], first[0], rtol=1e-5, atol=1e-6)
  assert not np.allclose(both[0], both[1])


# The next three tests run eagerly on inputs that are 8x8 inside the network, so they
# share one cache of compiled operations.


def test_jit_and_eager_agree(tiny):
  model, params, apply = tiny
  x = images((1, 5, 7, 3))
  eager = model.apply({'params': params}, x)
  np.testing.assert_allclose(apply(params, x), eager, rtol=1e-5, atol=1e-5)


def test_odd_size_is_edge_padded_to_multiple_of_four_then_cropped(tiny):
  model, params, apply = tiny
  x = images((1, 5, 7, 3))
  padded = jnp.pad(x, ((0, 0), (0, 3), (0, 1), (0, 0)), mode='edge')  # 8 x 8: no padding
  np.testing.assert_allclose(apply(params, x),
                             model.apply({'params': params}, padded)[:, :5, :7],
                             rtol=1e-5, atol=1e-5)


def test_global_residual_adds_the_input(tiny):
  model, params, _ = tiny
  x = images((1, 5, 7, 3))
  residual = model_lib.MH2FNet(**TINY, global_residual=True)
  y = residual.apply({'params': params}, x)
  np.testing.assert_allclose(y - model.apply({'params': params}, x), x, rtol=1e-5, atol=1e-5)


def test_bfloat16_computation_is_close_to_float32(tiny):
  _, params, apply = tiny
  x = images((1, 5, 7, 3))
  bf16 = model_lib.MH2FNet(**TINY, dtype=jnp.bfloat16)
  y16 = jax.jit(lambda p, x: bf16.apply({'params': p}, x))(params, x)
  y32 = apply(params, x)
  assert y16.dtype == jnp.float32  # computation in bfloat16, output cast back up
  err = np.abs(np.asarray(y16) - np.asarray(y32))
  scale = max(1.0, float(jnp.max(jnp.abs(y32))))
  # bfloat16 keeps 8 significant bits (relative rounding <= 2**-9 ~ 0.2 % per operation);
  # through ~30 layers the rounding errors add up to about 1 % of the activation scale.
  # 5 % for the worst pixel and 1 % on average leave headroom yet catch a broken path
  # (wrong cast, a float16 overflow, a lost residual), which is off by O(scale).
  assert err.max() <= 0.05 * scale, (err.max(), scale)
  assert err.mean() <= 0.01 * scale, (err.mean(), scale)
  # ...and the path really computes in bfloat16: float32 would agree to ~1e-6.
  assert err.max() > 1e-4


def _remat_count(model, params, x):
  jaxpr = jax.make_jaxpr(lambda p: model.apply({'params': p}, x))(params)
  return sum(e.primitive.name in ('checkpoint', 'remat', 'remat2') for e in jaxpr.jaxpr.eqns)


def test_remat_gives_same_outputs_and_gradients():
  # One dense layer per DCR halves the graph to compile; remat wraps the MHEB either way.
  # The unrolled form (the default), where each MHEB is its own top-level checkpoint
  # (test_scan covers remat inside the scan).
  kwargs = dict(TINY, dcr_layers=1, scan_blocks=False)
  params = random_params(model_lib.MH2FNet(**kwargs))
  x = images((2, 8, 8, 3))
  target = images((2, 8, 8, 3), seed=2)
  results = {}
  for remat in (False, True):
    model = model_lib.MH2FNet(**kwargs, remat=remat)
    assert _remat_count(model, params, x) == (TINY['num_blocks'] if remat else 0)

    def loss(p, model=model):
      y = model.apply({'params': p}, x)
      return jnp.mean((y - target) ** 2), y

    results[remat] = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  (loss0, y0), g0 = results[False]
  (loss1, y1), g1 = results[True]
  np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(loss1, loss0, rtol=1e-5)
  # Gradients reach the inside of every MHEB (gamma != 0), so the comparison has teeth.
  for i in range(TINY['num_blocks']):
    assert float(jnp.abs(g0[f'mheb_{i}']['bottom']['dense_0']['kernel']).max()) > 0
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6), g1, g0)


def test_fresh_default_model_output_stays_in_range():
  model = model_lib.MH2FNet()
  x = images((1, 32, 32, 3))
  # The model's own initialisers; the 'unsafe_rbg' key only makes drawing ~1.2M numbers
  # cheap to compile on CPU (the distribution does not depend on the generator).
  y, variables = model.init_with_output(jax.random.key(0, impl='unsafe_rbg'), x)
  params = variables['params']
  assert model_lib.count_params(params) == 1_191_856
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  for i in range(8):
    assert not np.any(params[f'mheb_{i}']['gamma'])  # zero-initialised (spec)
  assert y.shape == x.shape
  assert bool(jnp.all(jnp.isfinite(y)))
  # Input range is [0, 1]; without gamma = 0 an 8-block stack reaches 1e4 to 1e6.
  assert float(jnp.max(jnp.abs(y))) <= 10.0
