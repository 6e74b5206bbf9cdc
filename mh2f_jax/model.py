"""MH2F-Net (Multi-scale Hourglass Hierarchical Fusion Network) as Flax linen modules.

The network is the project's pinned version of the paper (CVPRW 2021): every width and
operator the paper leaves open is fixed, with its reason, in ``docs/architecture.md``.
Map from the paper to this file:

* Paper 3.1, eqs. 1-2 (overall structure): :class:`MH2FNet`. ``head`` is the 3x3 conv
  giving ``Lo``; ``mheb_0 .. mheb_{N-1}`` form the Stacked Hourglass Group giving
  ``L1 .. LN`` and ``Le = LN``; ``hadb`` distils ``[L1 .. L{N-1}]`` into ``Ld`` (eq. 1);
  ``rpff`` fuses ``(Lo, Le, Ld)`` and ``tail`` maps to RGB (eq. 2).
* Paper 3.2, Fig. 2 (MHEB and its DCR unit): :class:`MHEB` (three-scale hourglass with
  nearest upsampling and additive skips, plus the zero-initialised per-channel ``gamma``
  on the block residual) and :class:`DCR` (densely connected residual block).
* Paper 3.3, Fig. 3 (HADB): :class:`HADB` feeds the MHEB outputs in one at a time, each
  through a :class:`DistillUnit` (1x1 head bottleneck, channel + spatial attention,
  1x1 merge and end bottleneck).
* Paper 3.4, Fig. 4, eqs. 3-4 (RPFF): :class:`RPFF`.
* Paper 4.3 (ablations): ``num_blocks``; ``distill='concat'`` (HADB replaced by a 1x1
  conv ``distill_concat`` over the concatenated MHEB outputs); ``fusion='add'``
  (:class:`AddFusion`) and ``fusion='concat'`` (:class:`ConcatFusion`).

Inputs are NHWC images in [0, 1]; H and W are edge-padded at the bottom and right up to a
multiple of 4 (the hourglass pools twice) and the output is cropped back. The output is
raw (not clipped) and always float32; ``dtype`` sets the computation dtype only, the
parameters stay float32.
"""

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mh2f_jax import conv as conv_lib
from mh2f_jax import errors

DISTILL_CHOICES = ('hadb', 'concat')
FUSION_CHOICES = ('rpff', 'add', 'concat')
# Config strings accepted for the computation dtype.
DTYPE_CHOICES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# Two 2x2 poolings inside every MHEB: H and W must divide by 4.
PAD_MULTIPLE = 4

# Fields of MH2FNet a config block may set (the model section of the config schema).
CONFIG_FIELDS = ('features', 'num_blocks', 'dcr_layers', 'dcr_growth',
                 'attention_reduction', 'distill', 'fusion', 'global_residual',
                 'dtype', 'remat', 'conv_kernel_grad')


class ModelConfigError(errors.UserError, ValueError):
  """A bad model setting.

  A ``ValueError`` for library callers and a ``UserError`` so that entry points report
  it on one line without a traceback.
  """


def _conv(features: int, kernel: int, dtype: Any, name: str) -> nn.Conv:
  """Square stride-1 conv with bias and zero 'SAME' padding; float32 parameters."""
  return nn.Conv(features, (kernel, kernel), strides=1, padding='SAME', use_bias=True,
                 dtype=dtype, param_dtype=jnp.float32, name=name,
                 conv_general_dilated=conv_lib.current())


def _pool2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')


def _up2(x: jax.Array) -> jax.Array:
  # Nearest neighbour x2: every pixel becomes a 2x2 block (exact, no interpolation).
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _cat(xs: Sequence[jax.Array]) -> jax.Array:
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
      feats.append(nn.relu(_conv(self.growth, 3, self.dtype, f'dense_{i}')(_cat(feats))))
    return x + _conv(self.features, 1, self.dtype, 'fuse')(_cat(feats))


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
    d1 = dcr(name='down1')(_pool2(x))
    s1 = dcr(name='skip1')(d1)
    d2 = dcr(name='bottom')(_pool2(d1))
    u1 = dcr(name='up1')(s1 + _up2(d2))
    u0 = dcr(name='out')(s0 + _up2(u1))
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
    h = nn.relu(_conv(c, 1, self.dtype, 'head')(z))
    w = jnp.mean(h, axis=(1, 2), keepdims=True)
    w = nn.relu(_conv(c // self.reduction, 1, self.dtype, 'ca_reduce')(w))
    ca = h * nn.sigmoid(_conv(c, 1, self.dtype, 'ca_expand')(w))
    pooled = _cat([jnp.mean(h, axis=-1, keepdims=True), jnp.max(h, axis=-1, keepdims=True)])
    sa = h * nn.sigmoid(_conv(1, 7, self.dtype, 'sa_conv')(pooled))
    a = _conv(c, 1, self.dtype, 'merge')(_cat([ca, sa]))
    return h + _conv(c, 1, self.dtype, 'end')(a)


class HADB(nn.Module):
  """Hierarchical attentive distillation block (paper 3.3, eq. 1).

  The MHEB outputs enter one at a time: ``s = unit_0(L1)``, then
  ``s = unit_{n-1}(cat[s, Ln])`` for ``n = 2 .. N-1``.

  Attributes:
    features: channels of every unit's output.
    reduction: channel-attention reduction ratio.
    dtype: computation dtype.
  """
  features: int
  reduction: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, levels: Sequence[jax.Array]) -> jax.Array:
    unit = functools.partial(DistillUnit, self.features, self.reduction, self.dtype)
    s = unit(name='unit_0')(levels[0])
    for n, level in enumerate(levels[1:], start=1):
      s = unit(name=f'unit_{n}')(_cat([s, level]))
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
    conv = functools.partial(_conv, self.features, 3, self.dtype)
    fed = nn.relu(conv('conv_r')(le - ld)) + le
    return nn.relu(conv('conv_o')(lo + nn.relu(conv('conv_f')(fed))))


class AddFusion(nn.Module):
  """Ablation 'add' (paper 4.3): ``Ls = relu(conv_o(Lo + Le + Ld))``, 3x3 ``conv_o``."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, lo: jax.Array, le: jax.Array, ld: jax.Array) -> jax.Array:
    return nn.relu(_conv(self.features, 3, self.dtype, 'conv_o')(lo + le + ld))


class ConcatFusion(nn.Module):
  """Ablation 'concat' (paper 4.3): ``Ls = relu(conv_o(project(cat[Lo, Le, Ld])))``.

  ``project`` is the 1x1 conv from ``3 * features`` to ``features`` channels; ``conv_o``
  the 3x3 conv also used by the other fusions.
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, lo: jax.Array, le: jax.Array, ld: jax.Array) -> jax.Array:
    x = _conv(self.features, 1, self.dtype, 'project')(_cat([lo, le, ld]))
    return nn.relu(_conv(self.features, 3, self.dtype, 'conv_o')(x))


def _check_int(name: str, value: Any, minimum: int, why: str = '') -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ModelConfigError(
        f'model.{name} must be an integer >= {minimum}{why}, got {value!r}')


class MH2FNet(nn.Module):
  """MH2F-Net for single image deraining (paper 3.1, Fig. 1).

  Attributes:
    features: channel width ``C`` of every feature map.
    num_blocks: number of MHEBs ``N`` (>= 2: HADB needs at least one input).
    dcr_layers: dense layers per DCR block.
    dcr_growth: channels added per DCR dense layer; None means ``features // 2``.
    attention_reduction: HADB channel-attention reduction ratio ``r``.
    distill: 'hadb' (paper) or 'concat' (ablation: 1x1 conv over the concatenation).
    fusion: 'rpff' (paper), 'add' or 'concat' (ablations).
    global_residual: add the input image to the output (off: the paper says RPFF
      replaces global residual learning).
    dtype: computation dtype; parameters are always float32, the output float32.
    remat: rematerialise each MHEB in the backward pass (less memory, more compute).
    conv_kernel_grad: 'xla', 'gemm' (``mh2f_jax.conv``) or 'auto' ('gemm' on CPU only).

  Raises:
    ModelConfigError: (a ``ValueError``) at construction for an invalid field.
  """
  features: int = 32
  num_blocks: int = 8
  dcr_layers: int = 3
  dcr_growth: int | None = None
  attention_reduction: int = 4
  distill: str = 'hadb'
  fusion: str = 'rpff'
  global_residual: bool = False
  dtype: Any = jnp.float32
  remat: bool = False
  conv_kernel_grad: str = 'auto'

  def __post_init__(self):
    self._validate()
    super().__post_init__()

  def _validate(self) -> None:
    _check_int('features', self.features, 1)
    _check_int('num_blocks', self.num_blocks, 2, ' (HADB needs at least one MHEB output)')
    _check_int('dcr_layers', self.dcr_layers, 1)
    if self.dcr_growth is None:
      if self.features // 2 < 1:
        raise ModelConfigError(
            f'model.dcr_growth=None means features // 2, which is 0 for '
            f'features={self.features}: set model.dcr_growth to an integer >= 1')
    else:
      _check_int('dcr_growth', self.dcr_growth, 1)
    _check_int('attention_reduction', self.attention_reduction, 1)
    if self.attention_reduction > self.features:
      raise ModelConfigError(
          f'model.attention_reduction must be between 1 and features={self.features} '
          f'(the channel attention keeps features // attention_reduction channels), '
          f'got {self.attention_reduction}')
    if self.distill not in DISTILL_CHOICES:
      raise ModelConfigError(
          f'model.distill must be one of {", ".join(map(repr, DISTILL_CHOICES))}, '
          f'got {self.distill!r}')
    if self.fusion not in FUSION_CHOICES:
      raise ModelConfigError(
          f'model.fusion must be one of {", ".join(map(repr, FUSION_CHOICES))}, '
          f'got {self.fusion!r}')
    for name in ('global_residual', 'remat'):
      if not isinstance(getattr(self, name), (bool, np.bool_)):
        raise ModelConfigError(f'model.{name} must be True or False, '
                               f'got {getattr(self, name)!r}')
    if self.conv_kernel_grad not in conv_lib.KERNEL_GRAD_CHOICES:
      raise ModelConfigError('model.conv_kernel_grad must be one of %s, got %r' % (
          ', '.join(map(repr, conv_lib.KERNEL_GRAD_CHOICES)), self.conv_kernel_grad))
    try:
      floating = jnp.issubdtype(jnp.dtype(self.dtype), jnp.floating)
    except TypeError:
      floating = False
    if not floating:
      raise ModelConfigError(
          f'model.dtype must be a floating dtype (float32 or bfloat16), got {self.dtype!r}')

  @property
  def growth(self) -> int:
    """The DCR growth actually used."""
    return self.features // 2 if self.dcr_growth is None else self.dcr_growth

  def __call__(self, images: jax.Array) -> jax.Array:
    """Derains a batch.

    Args:
      images: (B, H, W, 3) float images in [0, 1]; any H, W >= 1.

    Returns:
      (B, H, W, 3) float32 derained images, raw (not clipped to [0, 1]).

    Raises:
      ValueError: if ``images`` is not a 4-D float array with 3 channels.
    """
    with conv_lib.kernel_grad(self.conv_kernel_grad):
      return self._network(images)

  @nn.compact
  def _network(self, images: jax.Array) -> jax.Array:
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'images must have shape (B, H, W, 3), got {images.shape}')
    if not jnp.issubdtype(images.dtype, jnp.floating):
      raise ValueError(f'images must be float in [0, 1], got dtype {images.dtype}')
    c, dtype = self.features, self.dtype
    _, height, width, _ = images.shape
    x = images.astype(jnp.float32)
    # Replicate padding at the bottom/right: border pixels continue the image instead of
    # adding black bars the pooled scales would smear inwards.
    pad_h, pad_w = -height % PAD_MULTIPLE, -width % PAD_MULTIPLE
    if pad_h or pad_w:
      x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode='edge')

    lo = _conv(c, 3, dtype, 'head')(x.astype(dtype))
    mheb = nn.remat(MHEB) if self.remat else MHEB
    levels = []
    h = lo
    for i in range(self.num_blocks):
      h = mheb(c, self.growth, self.dcr_layers, dtype, name=f'mheb_{i}')(h)
      levels.append(h)
    le = levels[-1]

    if self.distill == 'hadb':
      ld = HADB(c, self.attention_reduction, dtype, name='hadb')(levels[:-1])
    else:
      ld = _conv(c, 1, dtype, 'distill_concat')(_cat(levels[:-1]))

    if self.fusion == 'rpff':
      ls = RPFF(c, dtype, name='rpff')(lo, le, ld)
    elif self.fusion == 'add':
      ls = AddFusion(c, dtype, name='fusion_add')(lo, le, ld)
    else:
      ls = ConcatFusion(c, dtype, name='fusion_concat')(lo, le, ld)

    # Output in float32 so losses and metrics see full precision under bfloat16 compute.
    y = _conv(3, 3, dtype, 'tail')(ls).astype(jnp.float32)
    if self.global_residual:
      y = y + x
    return y[:, :height, :width, :]


def from_config(model_config: Any) -> MH2FNet:
  """Builds :class:`MH2FNet` from the ``config.model`` block.

  Args:
    model_config: an ``ml_collections.ConfigDict`` or a mapping with any of the fields
      in ``CONFIG_FIELDS``; absent fields take the defaults. ``dtype`` is a string,
      'float32' or 'bfloat16'; ``dcr_growth`` None means ``features // 2``.

  Returns:
    The (unbound) module.

  Raises:
    ModelConfigError: (a ``ValueError`` and ``UserError``) for an unknown field or an
      invalid value, naming the field and the allowed values.
  """
  if hasattr(model_config, 'to_dict'):
    cfg = dict(model_config.to_dict())
  elif isinstance(model_config, Mapping):
    cfg = dict(model_config)
  else:
    raise ModelConfigError(
        f'model config must be a ConfigDict or a dict, got {type(model_config).__name__}')
  unknown = sorted(set(cfg) - set(CONFIG_FIELDS))
  if unknown:
    raise ModelConfigError(f'unknown model config field(s) {", ".join(unknown)}; '
                           f'allowed: {", ".join(CONFIG_FIELDS)}')
  if 'dtype' in cfg:
    name = cfg['dtype']
    if not isinstance(name, str):
      # Also accept a dtype object (jnp.float32, np.dtype('bfloat16')) for library use.
      try:
        name = jnp.dtype(name).name
      except TypeError:
        pass
    if name not in DTYPE_CHOICES:
      raise ModelConfigError(
          f'model.dtype must be one of {", ".join(map(repr, DTYPE_CHOICES))}, '
          f'got {cfg["dtype"]!r}')
    cfg['dtype'] = DTYPE_CHOICES[name]
  return MH2FNet(**cfg)


def abstract_params(model: MH2FNet, image_size: int = 8) -> Any:
  """Parameter shapes and dtypes of ``model`` without allocating or computing anything.

  Args:
    model: the module.
    image_size: side of the dummy image traced through (the shapes do not depend on it).

  Returns:
    The ``params`` collection as a pytree of ``jax.ShapeDtypeStruct``.
  """
  images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
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
