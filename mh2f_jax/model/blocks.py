"""The blocks of MH2F-Net as Flax linen modules: DCR, MHEB, HADB and the fusions.

:class:`mh2f_jax.model.network.MH2FNet` wires them (paper 3.1); this module holds one
class per block of the paper:

* Paper 3.2, Fig. 2 (MHEB and its DCR unit): :class:`MHEB` (three-scale hourglass with
  nearest upsampling and additive skips, plus the zero-initialised per-channel ``gamma``
  on the block residual) and :class:`DCR` (densely connected residual block).
* Paper 3.3, Fig. 3 (HADB): :class:`HADB` feeds the MHEB outputs in one at a time, each
  through a :class:`DistillUnit` (1x1 head bottleneck, channel + spatial attention,
  1x1 merge and end bottleneck).
* Paper 3.4, Fig. 4, eqs. 3-4 (RPFF): :class:`RPFF`; the ablations of paper 4.3:
  :class:`AddFusion` and :class:`ConcatFusion`.

The ONNX form of the same blocks is :mod:`mh2f_jax.model.onnx_graph`, beside this one.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mh2f_jax.model import conv as conv_lib

def conv_layer(features: int, kernel: int, dtype: Any, name: str) -> nn.Conv:
  """Square stride-1 conv with bias and zero 'SAME' padding; float32 parameters."""
  return nn.Conv(features, (kernel, kernel), strides=1, padding='SAME', use_bias=True,
                 dtype=dtype, param_dtype=jnp.float32, name=name,
                 conv_general_dilated=conv_lib.current())


def pool2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')


def up2(x: jax.Array) -> jax.Array:
  # Nearest neighbour x2: every pixel becomes a 2x2 block (exact, no interpolation).
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def cat(xs: Sequence[jax.Array]) -> jax.Array:
  return jnp.concatenate(list(xs), axis=-1)


class DCR(nn.Module):
  """Densely connected residual block (paper 3.2, Fig. 2b).

  ``layers`` 3x3 conv + ReLU layers, each seeing the concatenation of the input and all
  earlier outputs, then a 1x1 local fusion (no activation) added back to the input.

  Attributes:
    features: channels in and out.
    growth: channels added by each dense layer.
    layers: number of dense layers.
    dtype: computation dtype.
  """
  features: int
  growth: int
  layers: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    feats = [x]
    for i in range(self.layers):
      feats.append(nn.relu(conv_layer(self.growth, 3, self.dtype, f'dense_{i}')(cat(feats))))
    return x + conv_layer(self.features, 1, self.dtype, 'fuse')(cat(feats))


class MHEB(nn.Module):
  """Multi-scale hourglass extraction block (paper 3.2, Fig. 2a).

  Scales 1, 1/2 and 1/4 with a DCR at every position (``skip0, down1, skip1, bottom,
  up1, out``), 2x2 max pooling down, nearest upsampling with additive skips up. The
  block output is ``x + gamma * hourglass(x)`` with ``gamma`` (shape ``(features,)``)
  initialised to zero: the network has no normalisation, and without this scale the
  stacked residual hourglasses blow the initial activations up by orders of magnitude.

  Attributes:
    features: channels in and out.
    growth: DCR growth.
    layers: DCR dense layers.
    dtype: computation dtype.
  """
  features: int
  growth: int
  layers: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dcr = functools.partial(DCR, self.features, self.growth, self.layers, self.dtype)
    s0 = dcr(name='skip0')(x)
    d1 = dcr(name='down1')(pool2(x))
    s1 = dcr(name='skip1')(d1)
    d2 = dcr(name='bottom')(pool2(d1))
    u1 = dcr(name='up1')(s1 + up2(d2))
    u0 = dcr(name='out')(s0 + up2(u1))
    gamma = self.param('gamma', nn.initializers.zeros, (self.features,), jnp.float32)
    return x + gamma.astype(self.dtype) * u0


class DistillUnit(nn.Module):
  """One HADB distillation unit (paper 3.3, Fig. 3).

  1x1 head bottleneck + ReLU, then channel attention (global mean, 1x1 reduce by
  ``reduction`` + ReLU, 1x1 expand + sigmoid) and spatial attention (channel mean and max,
  7x7 conv + sigmoid) side by side, a 1x1 ``merge`` of both, and a 1x1 ``end``
  bottleneck added back to the head's output.

  Attributes:
    features: output channels.
    reduction: channel-attention reduction ratio.
    dtype: computation dtype.
  """
  features: int
  reduction: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    c = self.features
    h = nn.relu(conv_layer(c, 1, self.dtype, 'head')(z))
    w = jnp.mean(h, axis=(1, 2), keepdims=True)
    w = nn.relu(conv_layer(c // self.reduction, 1, self.dtype, 'ca_reduce')(w))
    ca = h * nn.sigmoid(conv_layer(c, 1, self.dtype, 'ca_expand')(w))
    pooled = cat([jnp.mean(h, axis=-1, keepdims=True), jnp.max(h, axis=-1, keepdims=True)])
    sa = h * nn.sigmoid(conv_layer(1, 7, self.dtype, 'sa_conv')(pooled))
    a = conv_layer(c, 1, self.dtype, 'merge')(cat([ca, sa]))
    return h + conv_layer(c, 1, self.dtype, 'end')(a)


def scan_block(block: nn.Module, params: Sequence[Any], h: jax.Array,
               xs: jax.Array | None = None, *, remat: bool = False,
               combine: Callable[[jax.Array, jax.Array], jax.Array] | None = None
               ) -> jax.Array:
  """Chains copies of ``block`` with the given parameters as one ``jax.lax.scan``.

  The block is traced (and compiled) once whatever the number of copies; the copies'
  parameter trees are stacked along a new leading axis for the loop, so that the
  parameters themselves keep their per-block names and their gradients flow back to
  them unchanged.

  Args:
    block: an unbound module, applied as ``block.apply({'params': p}, z)``.
    params: one parameter tree per copy, in order (all the same shapes).
    h: the first copy's input (the carry).
    xs: optional (len(params), ...) per-copy inputs; each copy then sees
      ``combine(h, xs[i])``.
    remat: recompute each copy in the backward pass instead of storing its activations.
    combine: how a copy's input is formed from the carry and its ``xs`` entry.

  Returns:
    The stacked outputs of all copies, shape (len(params),) + the output's shape.
  """
  def one(p, z):
    return block.apply({'params': p}, z)

  if remat:
    one = jax.checkpoint(one)

  def body(carry, item):
    p, x = item
    y = one(p, carry if x is None else combine(carry, x))
    return y, y

  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *params)
  _, ys = jax.lax.scan(body, h, (stacked, xs))
  return ys


class HADB(nn.Module):
  """Hierarchical attentive distillation block (paper 3.3, eq. 1).

  The MHEB outputs enter one at a time: ``s = unit_0(L1)``, then
  ``s = unit_{n-1}(cat[s, Ln])`` for ``n = 2 .. N-1``.

  Attributes:
    features: channels of every unit's output.
    reduction: channel-attention reduction ratio.
    dtype: computation dtype.
    scan: run units ``1 .. N-2`` (which share one shape) as one :func:`scan_block`
      over their stored parameters instead of one after another; needs the
      parameters to exist (not at initialisation).
  """
  features: int
  reduction: int
  dtype: Any = jnp.float32
  scan: bool = False

  @nn.compact
  def __call__(self, levels: Sequence[jax.Array] | jax.Array) -> jax.Array:
    """Distils ``levels`` (a list, or one stacked (N-1, B, H, W, C) array)."""
    unit = functools.partial(DistillUnit, self.features, self.reduction, self.dtype)
    s = unit(name='unit_0')(levels[0])
    if self.scan and len(levels) > 1:
      params = [self.variables['params'][f'unit_{n}'] for n in range(1, len(levels))]
      rest = levels[1:] if isinstance(levels, jax.Array) else jnp.stack(levels[1:])
      return scan_block(unit(parent=None), params, s, rest,
                        combine=lambda carry, level: cat([carry, level]))[-1]
    for n, level in enumerate(levels[1:], start=1):
      s = unit(name=f'unit_{n}')(cat([s, level]))
    return s


class RPFF(nn.Module):
  """Residual projected feature fusion (paper 3.4, eqs. 3-4).

  ``Fed = relu(conv_r(Le - Ld)) + Le``; ``Ls = relu(conv_o(Lo + relu(conv_f(Fed))))``,
  all 3x3 convs.

  Attributes:
    features: channels.
    dtype: computation dtype.
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, lo: jax.Array, le: jax.Array, ld: jax.Array) -> jax.Array:
    conv = functools.partial(conv_layer, self.features, 3, self.dtype)
    fed = nn.relu(conv('conv_r')(le - ld)) + le
    return nn.relu(conv('conv_o')(lo + nn.relu(conv('conv_f')(fed))))


class AddFusion(nn.Module):
  """Ablation 'add' (paper 4.3): ``Ls = relu(conv_o(Lo + Le + Ld))``, 3x3 ``conv_o``."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, lo: jax.Array, le: jax.Array, ld: jax.Array) -> jax.Array:
    return nn.relu(conv_layer(self.features, 3, self.dtype, 'conv_o')(lo + le + ld))


class ConcatFusion(nn.Module):
  """Ablation 'concat' (paper 4.3): ``Ls = relu(conv_o(project(cat[Lo, Le, Ld])))``.

  ``project`` is the 1x1 conv from ``3 * features`` to ``features`` channels; ``conv_o``
  the 3x3 conv also used by the other fusions.
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, lo: jax.Array, le: jax.Array, ld: jax.Array) -> jax.Array:
    x = conv_layer(self.features, 1, self.dtype, 'project')(cat([lo, le, ld]))
    return nn.relu(conv_layer(self.features, 3, self.dtype, 'conv_o')(x))
