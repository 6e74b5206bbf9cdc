"""The Flax blocks against an independent float64 NumPy forward pass.

The reference below is written from the layer list in docs/architecture.md (Pinned
choices, Names) and calls nothing of ``mh2f_jax``: zero-padded 'SAME' cross-correlation
with bias in NHWC/HWIO, 2x2 max pooling, nearest x2 upsampling, and the DCR, MHEB and
HADB distillation unit built from them. The parameters are drawn here too, from the same
layer list; the test checks that the Flax modules hold exactly those names and shapes,
then compares their outputs (and, for the distillation unit, the output of each of its
convolutions) on random inputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mh2f_jax.model import blocks

FEATURES = 8
GROWTH = FEATURES // 2
REDUCTION = 4
TOL = 1e-5

# ------------------------------------------------------------------ NumPy reference


def conv(x, p):
  """Stride-1 cross-correlation with zero 'SAME' padding and bias; NHWC, HWIO, odd k."""
  k = p['kernel'].shape[0]
  r = k // 2
  n, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
  out = np.zeros((n, h, w, p['kernel'].shape[-1]))
  for i in range(k):
    for j in range(k):
      out += np.einsum('nhwc,cd->nhwd', xp[:, i:i + h, j:j + w, :], p['kernel'][i, j])
  return out + p['bias']


def relu(x):
  return np.maximum(x, 0.0)


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def cat(xs):
  return np.concatenate(xs, axis=-1)


def max_pool2(x):
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def up2(x):
  return x.repeat(2, axis=1).repeat(2, axis=2)


def dcr(p, x, layers):
  """Dense 3x3 conv + ReLU layers on all earlier maps, 1x1 fuse, plus the input."""
  feats = [x]
  for i in range(layers):
    feats.append(relu(conv(cat(feats), p[f'dense_{i}'])))
  return x + conv(cat(feats), p['fuse'])


def mheb(p, x, layers):
  """Three-scale hourglass of DCRs; the block output is ``x + gamma * hourglass(x)``."""
  s0 = dcr(p['skip0'], x, layers)
  d1 = dcr(p['down1'], max_pool2(x), layers)
  s1 = dcr(p['skip1'], d1, layers)
  d2 = dcr(p['bottom'], max_pool2(d1), layers)
  u1 = dcr(p['up1'], s1 + up2(d2), layers)
  u0 = dcr(p['out'], s0 + up2(u1), layers)
  return x + p['gamma'] * u0


def spatial_attention_logits(p, h):
  """The 7x7 conv over ``[mean over channels, max over channels]`` (before sigmoid)."""
  pooled = np.stack([h.mean(axis=-1), h.max(axis=-1)], axis=-1)
  return conv(pooled, p['sa_conv'])


def distill_unit(p, z):
  """HADB unit: 1x1 head + ReLU, channel and spatial attention, 1x1 merge, 1x1 end.

  Returns:
    The unit's output and each convolution's output, by parameter name.
  """
  convs = {'head': conv(z, p['head'])}
  h = relu(convs['head'])
  mean = h.mean(axis=(1, 2), keepdims=True)
  convs['ca_reduce'] = conv(mean, p['ca_reduce'])
  convs['ca_expand'] = conv(relu(convs['ca_reduce']), p['ca_expand'])
  ca = h * sigmoid(convs['ca_expand'])
  convs['sa_conv'] = spatial_attention_logits(p, h)
  sa = h * sigmoid(convs['sa_conv'])
  convs['merge'] = conv(cat([ca, sa]), p['merge'])
  convs['end'] = conv(convs['merge'], p['end'])
  return h + convs['end'], convs


# ------------------------------------------------------------------ parameters


def conv_params(rng, k, cin, cout):
  """Kernel scaled to keep activations of order 1; non-zero biases."""
  return {'kernel': rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin),
          'bias': 0.1 * rng.standard_normal(cout)}


def dcr_params(rng, c, growth, layers):
  p = {f'dense_{i}': conv_params(rng, 3, c + i * growth, growth) for i in range(layers)}
  p['fuse'] = conv_params(rng, 1, c + layers * growth, c)
  return p


def mheb_params(rng, c, growth, layers):
  p = {name: dcr_params(rng, c, growth, layers)
       for name in ('skip0', 'down1', 'skip1', 'bottom', 'up1', 'out')}
  p['gamma'] = 0.5 + 0.5 * rng.random(c)  # non-zero: the hourglass counts
  return p


def unit_params(rng, cin, c, reduction):
  return {'head': conv_params(rng, 1, cin, c),
          'ca_reduce': conv_params(rng, 1, c, c // reduction),
          'ca_expand': conv_params(rng, 1, c // reduction, c),
          'sa_conv': conv_params(rng, 7, 2, 1),
          'merge': conv_params(rng, 1, 2 * c, c),
          'end': conv_params(rng, 1, c, c)}


def as_float32(tree):
  """The float32 values Flax gets, and the same values in float64 for the reference."""
  f32 = jax.tree.map(lambda a: np.asarray(a, np.float32), tree)
  return jax.tree.map(jnp.asarray, f32), jax.tree.map(lambda a: a.astype(np.float64), f32)


def check_same_tree(module, params, x):
  """The module's own parameters have exactly the reference's names and shapes."""
  flax_shapes = jax.eval_shape(module.init, jax.random.key(0), x)['params']
  assert (jax.tree.map(lambda a: a.shape, dict(flax_shapes))
          == jax.tree.map(lambda a: a.shape, params))


def assert_close(got, want, what):
  got = np.asarray(got, np.float64)
  assert got.shape == want.shape, what
  error = np.abs(got - want).max()
  assert error <= TOL, f'{what}: max error {error:.3g} (values up to {np.abs(want).max():.3g})'


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize('layers', [3, 2])
def test_dcr_matches_the_numpy_reference(layers):
  rng = np.random.default_rng(layers)
  x32, x = as_float32(rng.standard_normal((2, 6, 7, FEATURES)))
  p32, p = as_float32(dcr_params(rng, FEATURES, GROWTH, layers))
  module = blocks.DCR(FEATURES, GROWTH, layers)
  check_same_tree(module, p, x32)
  assert_close(module.apply({'params': p32}, x32), dcr(p, x, layers), 'DCR')


def test_mheb_matches_the_numpy_reference():
  rng = np.random.default_rng(10)
  x32, x = as_float32(rng.standard_normal((2, 8, 12, FEATURES)))
  p32, p = as_float32(mheb_params(rng, FEATURES, GROWTH, 3))
  module = blocks.MHEB(FEATURES, GROWTH, 3)
  check_same_tree(module, p, x32)
  want = mheb(p, x, 3)
  # The hourglass contributes: the output is not the input.
  assert np.abs(want - x).max() > 0.1
  assert_close(module.apply({'params': p32}, x32), want, 'MHEB')


@pytest.mark.parametrize('cin', [FEATURES, 2 * FEATURES])  # unit_0, and unit_n on cat[s, Ln]
def test_distill_unit_and_its_attention_match_the_numpy_reference(cin):
  rng = np.random.default_rng(20 + cin)
  z32, z = as_float32(rng.standard_normal((2, 9, 11, cin)))
  p32, p = as_float32(unit_params(rng, cin, FEATURES, REDUCTION))
  module = blocks.DistillUnit(FEATURES, REDUCTION)
  check_same_tree(module, p, z32)
  want, want_convs = distill_unit(p, z)
  got, state = module.apply({'params': p32}, z32, capture_intermediates=True)
  convs = state['intermediates']
  # Each convolution's output first: a wrong attention shows where it goes wrong.
  for name in ('head', 'ca_reduce', 'ca_expand', 'sa_conv', 'merge', 'end'):
    assert_close(convs[name]['__call__'][0], want_convs[name], name)
  assert_close(got, want, 'DistillUnit')

