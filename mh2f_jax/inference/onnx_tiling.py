"""The exact tiling's stages as ONNX Runtime sessions: exact tiles on the fast CPU backend.

:func:`mh2f_jax.inference.tiling.run_exact` runs the network stage by stage over tile windows
(head, each MHEB, each HADB unit in two passes, the final fusion and tail). On JAX every
window of a stage has one shape (one compilation), and a method interceptor zeroes the
input of every spatial convolution outside the image: the zero padding the whole image
gets at its border. ONNX Runtime compiles nothing per shape, so here a window that
overhangs the image is cropped to the image's part before it runs: the graph's own zero
'SAME' padding then falls exactly on the image border. The crop starts and ends on
multiples of 4 (windows and the padded image are aligned), so the hourglass poolings see
the whole image's grid, and the output tile still equals the whole-image pass to float
rounding. The stage graphs are plain NCHW pieces of :mod:`mh2f_jax.model.onnx_graph`'s graph,
so ONNX Runtime runs them as fast as the whole network.

One session per stage and parameter set (the head, each MHEB, each HADB unit's two
passes, the final stage), built on first use. :func:`stages` returns functions with the
signatures of ``tiling.jax_stages``; ``inference.Derainer`` uses them when its backend
is 'onnxruntime'.
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from mh2f_jax.inference import backends
from mh2f_jax import model as model_lib
from mh2f_jax.model import onnx_graph


def image_part(valid: np.ndarray, shape: Sequence[int]) -> tuple[slice, slice]:
  """The rows and columns of a window inside the image.

  Args:
    valid: ``[row0, row1, col0, col1]``, the image's part of the window (may reach
      beyond the window).
    shape: the window's (height, width).
  """
  return (slice(max(int(valid[0]), 0), min(int(valid[1]), shape[0])),
          slice(max(int(valid[2]), 0), min(int(valid[3]), shape[1])))


class _Stage:
  """One stage graph in an ONNX Runtime session, called with NHWC arrays."""

  def __init__(self, body: Callable[..., str], channels: Sequence[int], *,
               mean: int | None = None, summed: bool = False):
    """Builds the graph: NHWC inputs ``in0, in1, ...`` -> ``body(g, *nchw)`` -> ``out``.

    Args:
      body: ``(builder, *nchw_input_names[, mean_name]) -> output name`` (NCHW).
      channels: the channels of each input.
      mean: channels of an extra ``mean`` input (1, C, 1, 1), when the body takes one.
      summed: the output is the per-channel sum (C,) of the body's, not a map.
    """
    g = onnx_graph.Builder()
    names = [f'in{k}' for k in range(len(channels))]
    args = [g.op('Transpose', [n], 'nchw', perm=[0, 3, 1, 2]) for n in names]
    inputs = [(n, [1, 'H', 'W', c]) for n, c in zip(names, channels)]
    if mean is not None:
      args.append('mean')
      inputs.append(('mean', [1, mean, 1, 1]))
    y = body(g, *args)
    if summed:
      g.nodes.append(g.onnx.helper.make_node('ReduceSum', [y, g.const(
          np.array([0, 2, 3], np.int64))], ['out'], keepdims=0))
      out_dims = ['C']
    else:
      g.nodes.append(g.onnx.helper.make_node('Transpose', [y], ['out'], perm=[0, 2, 3, 1]))
      out_dims = [1, 'H', 'W', 'C']
    proto = onnx_graph.make_model(g, inputs, [('out', out_dims)], doc='exact tiling stage')
    self.session = backends.onnxruntime_session(proto, tiles=True)

  def __call__(self, *arrays: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    feed = {f'in{k}': np.ascontiguousarray(a, np.float32) for k, a in enumerate(arrays)}
    if mean is not None:
      feed['mean'] = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    return self.session.run(['out'], feed)[0]


def _tile(stage: _Stage, windows: Sequence[np.ndarray], valid: np.ndarray,
          core: tuple[int, int], mean: np.ndarray | None = None) -> np.ndarray:
  """The (h, w, C) output tile at the windows' centre, run on their image part."""
  shape = windows[0].shape[1:3]
  rows, cols = image_part(valid, shape)
  y = stage(*(w[:, rows, cols] for w in windows), mean=mean)
  out = np.zeros((*core, y.shape[-1]), np.float32)  # Off the image: trimmed by the caller.
  my, mx = (shape[0] - core[0]) // 2, (shape[1] - core[1]) // 2  # as tiling._core
  r0, r1 = max(rows.start, my), min(rows.stop, my + core[0])
  c0, c1 = max(cols.start, mx), min(cols.stop, mx + core[1])
  out[r0 - my:r1 - my, c0 - mx:c1 - mx] = y[0, r0 - rows.start:r1 - rows.start,
                                             c0 - cols.start:c1 - cols.start]
  return out


def _unit_sum_body(p: Mapping[str, Any]) -> Callable[..., str]:
  """A HADB unit's head activations (summed over the image part by the stage)."""
  return lambda g, *inputs: onnx_graph.unit_head(g, g.cat(list(inputs)), p, 'unit')


def _build(model: model_lib.MH2FNet, params: Mapping[str, Any], key: tuple) -> _Stage:
  """One stage's session: ('head',), ('mheb', i), ('sum'|'apply', i), ('final',), ('model',)."""
  c = model.features
  kind = key[0]
  if kind == 'head':
    return _Stage(lambda g, x: onnx_graph.head(g, params, x), [3])
  if kind == 'model':
    return _Stage(lambda g, x: onnx_graph.network(g, model, params, x), [3])
  if kind == 'mheb':
    body = lambda g, x: onnx_graph.mheb(g, x, params[f'mheb_{key[1]}'], model.dcr_layers,
                                         'mheb')
    return _Stage(body, [c])
  if kind == 'final':
    return _Stage(lambda g, x, le, ld: onnx_graph.final(g, model, params, x, le, ld),
                  [3, c, c])
  p = params['hadb'][f'unit_{key[1]}']
  channels = [c] if key[1] == 0 else [c, c]
  if kind == 'sum':
    return _Stage(_unit_sum_body(p), channels, summed=True)
  body = lambda g, *args: onnx_graph.distill_unit(g, g.cat(list(args[:-1])), p, 'unit',
                                                   mean=args[-1])
  return _Stage(body, channels, mean=c)


def stages(model: model_lib.MH2FNet, params: Any) -> dict[str, Callable[..., Any]]:
  """The stage functions of ``tiling.run_exact`` on ONNX Runtime (see ``tiling.jax_stages``).

  Args:
    model: the module (float32 graphs whatever its dtype, as the ONNX export).
    params: its parameters (numpy or jax arrays).

  Returns:
    A dict of the same functions as ``tiling.jax_stages``; sessions are built on first use.
  """
  params = jax.tree.map(np.asarray, params)
  get = functools.lru_cache(maxsize=None)(lambda key: _build(model, params, key))

  def unit_sum(i, wins, valid):
    rows, cols = image_part(valid, wins[0].shape[1:3])
    return get(('sum', i))(*(w[:, rows, cols] for w in wins))

  return {
      'head': lambda x, **kw: _tile(get(('head',)), [x], **kw),
      'model': lambda x, **kw: _tile(get(('model',)), [x], **kw),
      'final': lambda x, le, ld, **kw: _tile(get(('final',)), [x, le, ld], **kw),
      'mheb': lambda i, feats, **kw: _tile(get(('mheb', i)), [feats], **kw),
      'unit_sum': unit_sum,
      'unit_apply': lambda i, wins, mean, **kw: _tile(get(('apply', i)), wins, mean=mean,
                                                      **kw),
  }
