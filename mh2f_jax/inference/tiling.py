"""Exact tiled inference for images too large to run whole: the network stage by stage.

**Exact tiling** (:func:`run_exact`, the default) gives the whole-image forward pass,
to float rounding, with device memory bounded by the tile size. The network runs stage
by stage over a grid of ``tile x tile`` output tiles, full-image feature maps staying on
the host (float32 NumPy):

1. ``head``: the 3x3 head conv, ``Lo``.
2. Each MHEB, over tiles widened by a margin covering that block's receptive field
   (:func:`stage_margins`), written back in place.
3. After MHEB ``i < N-1``, HADB unit ``i`` in two passes. Channel attention averages the
   unit's head activations over the whole image: pass 1 sums them tile by tile; pass 2
   runs the unit on every tile with that global mean put in place of the tile's own.
4. ``final``: head again (recomputing ``Lo`` costs less than keeping it), fusion, tail.

Variants without HADB (``distill='concat'``) have no global quantity: the whole network
runs on tiles with a margin covering its full receptive field.

Every stage calls the model's own modules (parameters and all), so no layer is written
twice. Two things keep a tile's arithmetic identical to the whole image's:

* Alignment: the image is edge-padded to a multiple of 4 as the network does, and every
  window starts and ends on multiples of 4, so the two 2x2 poolings of each hourglass see
  the whole image's pixel grid.
* Borders: every tile window has one fixed shape per stage (one compilation, reused by
  every tile and every MHEB); where a window overhangs the image, a Flax method
  interceptor zeroes the input of every spatial conv outside the image, which is the
  zero 'SAME' padding the whole image gets at its border, at every scale.

Blended tiling (``tiling='approx'``) is :mod:`mh2f_jax.inference.blended_tiling`; the
margins come from :mod:`mh2f_jax.model.receptive_field`.
"""

import collections
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mh2f_jax import model as model_lib

from mh2f_jax.model.receptive_field import ALIGN, stage_margins

# ------------------------------------------------------------------ per-tile execution


class _Captured(Exception):
  """Raised by the interceptor to return a module's input and skip the rest."""

  def __init__(self, value: jax.Array):
    super().__init__('captured')
    self.value = value


def zero_outside_image(x: jax.Array, valid: jax.Array,
                       window: tuple[int, int]) -> jax.Array:
  """Zeroes ``x`` (B, h, w, C) outside the image; ``valid`` is in full-scale window rows."""
  sy, sx = window[0] // x.shape[1], window[1] // x.shape[2]
  rows = jnp.arange(x.shape[1]) * sy
  cols = jnp.arange(x.shape[2]) * sx
  keep = (((rows >= valid[0]) & (rows < valid[1]))[:, None]
          & ((cols >= valid[2]) & (cols < valid[3]))[None, :])
  return jnp.where(keep[None, :, :, None], x, jnp.zeros((), x.dtype))


def _interceptor(valid: jax.Array, window: tuple[int, int], *,
                 substitute: Mapping[str, jax.Array] | None = None,
                 replace_input: Mapping[str, jax.Array] | None = None,
                 zero_outside: str | None = None, capture_input: str | None = None):
  """A Flax method interceptor for one tile window.

  Args:
    valid: int32 ``[row0, row1, col0, col1]``, the image's part of the window.
    window: the window's (height, width) at full scale.
    substitute: module name -> the output to return without running it.
    replace_input: module name -> the input to run it on instead.
    zero_outside: name of a module whose output is zeroed outside the image.
    capture_input: name of a module whose input is returned (via :class:`_Captured`).
  """
  substitute, replace_input = substitute or {}, replace_input or {}

  def intercept(next_fun, args, kwargs, context):
    module, name = context.module, context.module.name
    if context.method_name != '__call__' or name is None:  # None: the applied module
      return next_fun(*args, **kwargs)
    if name in substitute:
      return substitute[name]
    if name == capture_input:
      raise _Captured(args[0])
    if name in replace_input:
      args = (replace_input[name].astype(args[0].dtype),) + tuple(args[1:])
    if isinstance(module, nn.Conv) and max(module.kernel_size) > 1:
      # Zero 'SAME' padding happens at the image's border, not the window's.
      args = (zero_outside_image(args[0], valid, window),) + tuple(args[1:])
    out = next_fun(*args, **kwargs)
    return zero_outside_image(out, valid, window) if name == zero_outside else out

  return intercept


def _core(y: jax.Array, core: tuple[int, int]) -> jax.Array:
  my, mx = (y.shape[1] - core[0]) // 2, (y.shape[2] - core[1]) // 2
  return y[0, my:my + core[0], mx:mx + core[1]]


def _run(module: nn.Module, params: Any, x: jax.Array, valid: jax.Array,
         **options: Any) -> jax.Array:
  """``module`` on one tile window under :func:`_interceptor` with ``options``."""
  with nn.intercept_methods(_interceptor(valid, x.shape[1:3], **options)):
    try:
      return module.apply({'params': params}, x)
    except _Captured as captured:
      return captured.value


@functools.lru_cache(maxsize=None)
def _block_fns(mheb: model_lib.MHEB, unit: model_lib.DistillUnit) -> dict[str, Any]:
  """Per-tile MHEB and HADB-unit functions, shared by models with the same blocks."""
  dt = mheb.dtype

  def block(params, feats, valid, core):
    return _core(_run(mheb, params, feats.astype(dt), valid), core)

  def unit_sum(params, inputs, valid):
    z = jnp.concatenate(inputs, axis=-1).astype(dt)  # HADB's cat[s, L_n]
    mean = _run(unit, params, z, valid, zero_outside='head', capture_input='ca_reduce')
    return mean.astype(jnp.float32).reshape(-1) * (z.shape[1] * z.shape[2])

  def unit_apply(params, inputs, mean, valid, core):
    z = jnp.concatenate(inputs, axis=-1).astype(dt)
    return _core(_run(unit, params, z, valid,
                      replace_input={'ca_reduce': mean.reshape(1, 1, 1, -1)}), core)

  return {'mheb': jax.jit(block, static_argnames='core'),
          'unit_sum': jax.jit(unit_sum),
          'unit_apply': jax.jit(unit_apply, static_argnames='core')}


@functools.lru_cache(maxsize=None)
def stage_fns(model: model_lib.MH2FNet) -> dict[str, Callable[..., jax.Array]]:
  """The jitted per-tile functions of a model configuration.

  Each takes ``(params, *windows, ..., valid, core=(h, w))`` with (1, H, W, C) windows
  and returns the (h, w, C) output tile at the window's centre (for ``unit_sum``: the
  (C,) sum of the unit's head activations over the image part of the window). XLA
  compiles each once per window shape; all MHEBs share one compilation, and so do all
  HADB units but the first (which has half the input channels).
  """
  dt = model.dtype
  # The stages intercept the blocks by name (mheb_0's input, every MHEB's output): the
  # unrolled form calls each block as its own module; the parameters are the same.
  model = model.clone(scan_blocks=False)

  def head(params, x, valid, core):  # Lo: the whole network, stopped at mheb_0's input.
    return _core(_run(model, params, x, valid, capture_input='mheb_0'), core)

  def final(params, x, le, ld, valid, core):  # the network with its MHEBs and HADB given
    subs = {f'mheb_{i}': le.astype(dt) for i in range(model.num_blocks)}
    subs['hadb'] = ld.astype(dt)
    return _core(_run(model, params, x, valid, substitute=subs), core)

  def whole(params, x, valid, core):
    return _core(_run(model, params, x, valid), core)

  fns = {k: jax.jit(f, static_argnames='core')
         for k, f in (('head', head), ('final', final), ('model', whole))}
  fns.update(_block_fns(model_lib.MHEB(model.features, model.growth, model.dcr_layers, dt),
                        model_lib.DistillUnit(model.features, model.attention_reduction, dt)))
  return fns


# ---------------------------------------------------------------------- host-side loop


def _window(array: np.ndarray, y0: int, x0: int, shape: tuple[int, int]) -> np.ndarray:
  """``array[y0:y0+h, x0:x0+w]`` as a (1, h, w, C) float32 array, zeros off the image."""
  out = np.zeros((1, *shape, array.shape[-1]), np.float32)
  ya, xa = max(y0, 0), max(x0, 0)
  yb, xb = min(y0 + shape[0], array.shape[0]), min(x0 + shape[1], array.shape[1])
  out[0, ya - y0:yb - y0, xa - x0:xb - x0] = array[ya:yb, xa:xb]
  return out


class _Grid:
  """Output tiles of ``core`` pixels covering a (height, width) padded image."""

  def __init__(self, height: int, width: int, tile: int):
    self.height, self.width = height, width
    self.core = (min(tile, height), min(tile, width))
    self.rows = range(0, height, self.core[0])
    self.cols = range(0, width, self.core[1])

  def window(self, sources: Sequence[np.ndarray], y0: int, x0: int, margin: int):
    """The windows of every source around tile (y0, x0), and the image's part of them."""
    shape = (self.core[0] + 2 * margin, self.core[1] + 2 * margin)
    wins = [_window(s, y0 - margin, x0 - margin, shape) for s in sources]
    valid = np.array([margin - y0, self.height - y0 + margin,
                      margin - x0, self.width - x0 + margin], np.int32)
    return wins, valid


def _map_tiles(fn: Callable[..., jax.Array], grid: _Grid, sources: Sequence[np.ndarray],
               dest: np.ndarray, margin: int) -> None:
  """Writes ``fn``'s output tiles into ``dest``, which may be one of ``sources``.

  A row of tiles is kept aside until no later row's window reaches it, so updating a
  feature map in place costs ``1 + ceil(margin / tile)`` rows of tiles, not a full map.
  """
  lag = -(-margin // grid.core[0])
  pending = collections.deque()
  for y0 in grid.rows:
    stripe = np.empty((min(grid.core[0], grid.height - y0), grid.width, dest.shape[-1]),
                      np.float32)
    for x0 in grid.cols:
      wins, valid = grid.window(sources, y0, x0, margin)
      tile = np.asarray(fn(*wins, valid=valid, core=grid.core))
      w = min(grid.core[1], grid.width - x0)
      stripe[:, x0:x0 + w] = tile[:stripe.shape[0], :w]
    pending.append((y0, stripe))
    while len(pending) > lag:
      y, done = pending.popleft()
      dest[y:y + done.shape[0]] = done
  for y, done in pending:
    dest[y:y + done.shape[0]] = done


def _image_mean(fn: Callable[..., jax.Array], grid: _Grid,
                sources: Sequence[np.ndarray]) -> np.ndarray:
  """Per-channel mean over the image of what ``fn`` sums per tile."""
  total = 0.0
  for y0 in grid.rows:
    for x0 in grid.cols:
      wins, valid = grid.window(sources, y0, x0, 0)
      total = total + np.asarray(fn(tuple(wins), valid=valid), np.float64)
  return (total / (grid.height * grid.width)).astype(np.float32)


def jax_stages(model: model_lib.MH2FNet, params: Any) -> dict[str, Callable[..., Any]]:
  """:func:`run_exact`'s per-tile functions on JAX (``onnx_tiling.stages``: on ONNX Runtime).

  ``head(x)``, ``mheb(i, feats)``, ``unit_sum(i, windows)``, ``unit_apply(i, windows,
  mean)``, ``final(x, le, ld)``, ``model(x)``; ``valid=`` and ``core=`` keywords.
  """
  fns, unit = stage_fns(model), lambda i: params['hadb'][f'unit_{i}']
  return {
      'head': functools.partial(fns['head'], params),
      'final': functools.partial(fns['final'], params),
      'model': functools.partial(fns['model'], params),
      'mheb': lambda i, feats, **kw: fns['mheb'](params[f'mheb_{i}'], feats, **kw),
      'unit_sum': lambda i, wins, **kw: fns['unit_sum'](unit(i), wins, **kw),
      'unit_apply': lambda i, wins, mean, **kw: fns['unit_apply'](unit(i), wins, mean, **kw),
  }


def run_exact(model: model_lib.MH2FNet, params: Any, image: np.ndarray, tile: int, *,
              margins: Mapping[str, int] | None = None,
              stages: Mapping[str, Callable[..., Any]] | None = None) -> np.ndarray:
  """The network's raw output for one image, computed in tiles, equal to the whole pass.

  Args:
    model: the network.
    params: its parameters.
    image: float32 (H, W, 3) in [0, 1].
    tile: output tile side, a multiple of 4 (windows add each stage's margin).
    margins: per-stage context (default :func:`stage_margins`); smaller values break
      exactness (a test shows it).
    stages: the per-tile functions (default :func:`jax_stages`).

  Returns:
    float32 (H, W, 3), not clipped.
  """
  height, width, _ = image.shape
  margins = dict(margins or stage_margins(model))
  stages = stages or jax_stages(model, params)
  # The network's own bottom/right edge padding, done once on the host.
  x = np.pad(image.astype(np.float32),
             ((0, -height % ALIGN), (0, -width % ALIGN), (0, 0)), mode='edge')
  grid = _Grid(x.shape[0], x.shape[1], tile)
  if 'model' in margins:
    out = np.empty(x.shape, np.float32)
    _map_tiles(stages['model'], grid, [x], out, margins['model'])
    return out[:height, :width]
  feats = np.empty((*x.shape[:2], model.features), np.float32)
  _map_tiles(stages['head'], grid, [x], feats, margins['head'])
  s = None
  for i in range(model.num_blocks):
    _map_tiles(functools.partial(stages['mheb'], i), grid, [feats], feats, margins['mheb'])
    if i == model.num_blocks - 1:
      break
    sources = [feats] if s is None else [s, feats]
    mean = _image_mean(functools.partial(stages['unit_sum'], i), grid, sources)
    if s is None:
      s = np.empty_like(feats)
    apply = lambda *wins, i=i, mean=mean, **kw: stages['unit_apply'](i, wins, mean, **kw)
    _map_tiles(apply, grid, sources, s, margins['unit'])
  out = np.empty(x.shape, np.float32)
  _map_tiles(stages['final'], grid, [x, feats, s], out, margins['final'])
  return out[:height, :width]
