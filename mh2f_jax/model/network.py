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

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mh2f_jax.model import blocks
from mh2f_jax.model import conv as conv_lib
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
                 'dtype', 'remat', 'conv_kernel_grad', 'scan_blocks')
# The fields that change the function the network computes (not how it is computed):
# what an exported file records.
ARCHITECTURE_FIELDS = CONFIG_FIELDS[:8]


class ModelConfigError(errors.UserError, ValueError):
  """A bad model setting.

  A ``ValueError`` for library callers and a ``UserError`` so that entry points report
  it on one line without a traceback.
  """


def pad_to_multiple(images: jax.Array) -> jax.Array:
  """Edge-pads ``(N, H, W, C)`` at the bottom and right to a multiple of ``PAD_MULTIPLE``.

  Replicated borders continue the image where zero padding would add black bars that the
  pooled scales smear inwards. Written as a gather so that symbolic H and W
  (``jax.export``) work too. The ONNX graph pads the same way (``onnx_graph``).
  """
  _, height, width, _ = images.shape
  m = PAD_MULTIPLE
  if isinstance(height, int) and isinstance(width, int) and not (height % m or width % m):
    return images
  rows = jnp.minimum(jnp.arange(m * ((height + m - 1) // m)), height - 1)
  cols = jnp.minimum(jnp.arange(m * ((width + m - 1) // m)), width - 1)
  return jnp.take(jnp.take(images, rows, axis=1), cols, axis=2)


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
    conv_kernel_grad: 'xla', 'gemm' (``mh2f_jax.model.conv``) or 'auto' ('gemm' on a CPU
      of one device only).
    scan_blocks: run the MHEBs (and the HADB units after the first) as one
      ``jax.lax.scan`` over their stacked parameters, so that the block is traced and
      compiled once; False runs them one after another. Same parameters (still stored
      as ``mheb_{i}``), same outputs.

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
  scan_blocks: bool = False

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
    for name in ('global_residual', 'remat', 'scan_blocks'):
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
    x = pad_to_multiple(x)

    lo = blocks.conv_layer(c, 3, dtype, 'head')(x.astype(dtype))
    levels = self._mhebs(lo)
    le = levels[-1]

    if self.distill == 'hadb':
      ld = blocks.HADB(c, self.attention_reduction, dtype, scan=self._scanning(),
                       name='hadb')(levels[:-1])
    else:
      ld = blocks.conv_layer(c, 1, dtype, 'distill_concat')(blocks.cat(levels[:-1]))

    if self.fusion == 'rpff':
      ls = blocks.RPFF(c, dtype, name='rpff')(lo, le, ld)
    elif self.fusion == 'add':
      ls = blocks.AddFusion(c, dtype, name='fusion_add')(lo, le, ld)
    else:
      ls = blocks.ConcatFusion(c, dtype, name='fusion_concat')(lo, le, ld)

    # Output in float32 so losses and metrics see full precision under bfloat16 compute.
    y = blocks.conv_layer(3, 3, dtype, 'tail')(ls).astype(jnp.float32)
    if self.global_residual:
      y = y + x
    return y[:, :height, :width, :]


  def _scanning(self) -> bool:
    # Initialisation runs the blocks one by one: each draws its parameters from its own
    # name's random stream, exactly as the unrolled network does.
    return self.scan_blocks and not self.is_initializing()

  def _mhebs(self, lo: jax.Array) -> Sequence[jax.Array] | jax.Array:
    """``L1 .. LN``: a list, or one (N, B, H, W, C) array when the blocks are scanned."""
    block = blocks.MHEB(self.features, self.growth, self.dcr_layers, self.dtype, parent=None)
    if self._scanning():
      params = [self.variables['params'][f'mheb_{i}'] for i in range(self.num_blocks)]
      return blocks.scan_block(block, params, lo, remat=self.remat)
    mheb = nn.remat(blocks.MHEB) if self.remat else blocks.MHEB
    levels, h = [], lo
    for i in range(self.num_blocks):
      h = mheb(self.features, self.growth, self.dcr_layers, self.dtype, name=f'mheb_{i}')(h)
      levels.append(h)
    return levels


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
