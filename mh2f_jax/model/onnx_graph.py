"""MH2F-Net as an ONNX graph in NCHW layout, built from the Flax parameters.

The graph mirrors :mod:`mh2f_jax.model` op by op (convolutions, ReLU, 2x2 max pooling,
nearest x2 upsampling, concatenation, sigmoid, channel means, the bottom/right edge
padding to a multiple of 4 and the crop back). At its boundary it takes and returns
NHWC float32 images like the Flax model, with dynamic batch, height and width; inside,
it transposes once to NCHW and back once at the end.

Why built by hand instead of traced with a converter (jax2onnx): a traced graph keeps
JAX's NHWC layout, and ONNX Runtime's CPU convolutions are NCHW (NCHWc after its layout
optimiser), so such a graph spends its time in per-convolution transposes and ran slower
than XLA. The hand-built NCHW graph is what makes the ONNX Runtime backend faster than
both (figures in ``docs/performance.md``). Its equality with the Flax forward pass is
checked by the tests and by ``mh2f_jax.export`` on every export.

Only float32 graphs are built: a model configured with ``dtype=bfloat16`` is exported
with its (float32) parameters and computes in float32.

``onnx`` is imported here only, so the package imports without it.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mh2f_jax.model import network as model_lib

# Opset 17: ReduceMean/ReduceMax take their axes as an attribute, and every ONNX Runtime
# release of the last years runs it.
OPSET = 17
INPUT_NAME = 'images'
OUTPUT_NAME = 'derained'


class Builder:
  """Collects nodes and initializers under unique names."""

  def __init__(self):
    import onnx  # pylint: disable=import-outside-toplevel
    self.onnx = onnx
    self.nodes = []
    self.initializers = []
    self._count = 0

  def _name(self, hint: str) -> str:
    self._count += 1
    return f'{hint}_{self._count}'

  def const(self, value: np.ndarray, hint: str = 'const') -> str:
    name = self._name(hint)
    self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
    return name

  def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
    out = self._name(hint or op_type.lower())
    self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], **attrs))
    return out

  def conv(self, x: str, p: Mapping[str, Any], hint: str) -> str:
    """A stride-1 'SAME' convolution from a Flax ``{'kernel': HWIO, 'bias'}`` dict."""
    kernel = np.asarray(p['kernel'], np.float32)
    k_h, k_w = kernel.shape[:2]
    # Odd kernels only (1, 3, 7): 'SAME' at stride 1 pads k // 2 on each side.
    w = self.const(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), f'{hint}_w')
    b = self.const(np.asarray(p['bias'], np.float32), f'{hint}_b')
    return self.op('Conv', [x, w, b], hint, kernel_shape=[k_h, k_w],
                   pads=[k_h // 2, k_w // 2, k_h // 2, k_w // 2], strides=[1, 1])

  def relu(self, x: str) -> str:
    return self.op('Relu', [x])

  def add(self, a: str, b: str) -> str:
    return self.op('Add', [a, b])

  def cat(self, xs: list[str]) -> str:
    return xs[0] if len(xs) == 1 else self.op('Concat', xs, axis=1)


def _dcr(g: Builder, x: str, p: Mapping[str, Any], layers: int, hint: str) -> str:
  feats = [x]
  for i in range(layers):
    feats.append(g.relu(g.conv(g.cat(feats), p[f'dense_{i}'], f'{hint}_dense_{i}')))
  return g.add(x, g.conv(g.cat(feats), p['fuse'], f'{hint}_fuse'))


def mheb(g: Builder, x: str, p: Mapping[str, Any], layers: int, hint: str) -> str:
  """One MHEB (``model.MHEB``) on NCHW ``x``; returns its output's name."""
  def dcr(inp, name):
    return _dcr(g, inp, p[name], layers, f'{hint}_{name}')

  def pool(inp):
    return g.op('MaxPool', [inp], kernel_shape=[2, 2], strides=[2, 2])

  scales = g.const(np.array([1, 1, 2, 2], np.float32), 'up2_scales')

  def up(inp):
    # Nearest x2 with asymmetric coordinates and floor: output pixel i reads input i // 2,
    # exactly jnp.repeat(x, 2) on both axes.
    return g.op('Resize', [inp, '', scales], mode='nearest',
                coordinate_transformation_mode='asymmetric', nearest_mode='floor')

  s0 = dcr(x, 'skip0')
  d1 = dcr(pool(x), 'down1')
  s1 = dcr(d1, 'skip1')
  d2 = dcr(pool(d1), 'bottom')
  u1 = dcr(g.add(s1, up(d2)), 'up1')
  u0 = dcr(g.add(s0, up(u1)), 'out')
  gamma = g.const(np.asarray(p['gamma'], np.float32).reshape(1, -1, 1, 1), f'{hint}_gamma')
  return g.add(x, g.op('Mul', [gamma, u0]))


def unit_head(g: Builder, z: str, p: Mapping[str, Any], hint: str) -> str:
  """A HADB unit's 1x1 head bottleneck and ReLU (what its channel attention averages)."""
  return g.relu(g.conv(z, p['head'], f'{hint}_head'))


def distill_unit(g: Builder, z: str, p: Mapping[str, Any], hint: str, *,
                 mean: str | None = None) -> str:
  """One HADB unit (``model.DistillUnit``) on NCHW ``z``.

  ``mean``, when given, is used in place of the channel attention's mean of the head's
  output (the image's mean, in exact tiling).
  """
  h = unit_head(g, z, p, hint)
  w = mean or g.op('ReduceMean', [h], axes=[2, 3], keepdims=1)
  w = g.relu(g.conv(w, p['ca_reduce'], f'{hint}_ca_reduce'))
  ca = g.op('Mul', [h, g.op('Sigmoid', [g.conv(w, p['ca_expand'], f'{hint}_ca_expand')])])
  pooled = g.cat([g.op('ReduceMean', [h], axes=[1], keepdims=1),
                  g.op('ReduceMax', [h], axes=[1], keepdims=1)])
  sa = g.op('Mul', [h, g.op('Sigmoid', [g.conv(pooled, p['sa_conv'], f'{hint}_sa_conv')])])
  a = g.conv(g.cat([ca, sa]), p['merge'], f'{hint}_merge')
  return g.add(h, g.conv(a, p['end'], f'{hint}_end'))


def _distill(g: Builder, model: model_lib.MH2FNet, params: Mapping[str, Any],
             levels: list[str]) -> str:
  if model.distill == 'concat':
    return g.conv(g.cat(levels), params['distill_concat'], 'distill_concat')
  p = params['hadb']
  s = distill_unit(g, levels[0], p['unit_0'], 'hadb_unit_0')
  for n, level in enumerate(levels[1:], start=1):
    s = distill_unit(g, g.cat([s, level]), p[f'unit_{n}'], f'hadb_unit_{n}')
  return s


def fuse(g: Builder, model: model_lib.MH2FNet, params: Mapping[str, Any],
          lo: str, le: str, ld: str) -> str:
  if model.fusion == 'rpff':
    p = params['rpff']
    fed = g.add(g.relu(g.conv(g.op('Sub', [le, ld]), p['conv_r'], 'rpff_conv_r')), le)
    inner = g.add(lo, g.relu(g.conv(fed, p['conv_f'], 'rpff_conv_f')))
    return g.relu(g.conv(inner, p['conv_o'], 'rpff_conv_o'))
  if model.fusion == 'add':
    p = params['fusion_add']
    return g.relu(g.conv(g.add(g.add(lo, le), ld), p['conv_o'], 'fusion_add_conv_o'))
  p = params['fusion_concat']
  x = g.conv(g.cat([lo, le, ld]), p['project'], 'fusion_concat_project')
  return g.relu(g.conv(x, p['conv_o'], 'fusion_concat_conv_o'))


def _pad_to_multiple(g: Builder, x: str) -> tuple[str, str]:
  """Edge-pads NCHW ``x`` at the bottom/right to a multiple of 4; also returns [H, W]."""
  hw = g.op('Slice', [g.op('Shape', [x]), g.const(np.array([2], np.int64)),
                      g.const(np.array([4], np.int64))], 'hw')
  # ONNX integer Mod takes the divisor's sign (as Python's %): (-n) mod 4 is the padding.
  pad_hw = g.op('Mod', [g.op('Neg', [hw]),
                        g.const(np.array([model_lib.PAD_MULTIPLE], np.int64))], 'pad_hw')
  pads = g.op('Concat', [g.const(np.zeros(6, np.int64)), pad_hw], axis=0)
  return g.op('Pad', [x, pads], 'padded', mode='edge'), hw


def head(g: Builder, params: Mapping[str, Any], x: str) -> str:
  """``Lo``: the 3x3 head conv on NCHW ``x``."""
  return g.conv(x, params['head'], 'head')


def final(g: Builder, model: model_lib.MH2FNet, params: Mapping[str, Any], x: str,
          le: str, ld: str, lo: str | None = None) -> str:
  """The network after its MHEBs and distillation: fusion, tail, global residual.

  Without ``lo`` the head runs again on ``x``: the exact tiling's last stage recomputes
  ``Lo``, which costs less than keeping it.
  """
  lo = head(g, params, x) if lo is None else lo
  y = g.conv(fuse(g, model, params, lo, le, ld), params['tail'], 'tail')
  return g.add(y, x) if model.global_residual else y


def network(g: Builder, model: model_lib.MH2FNet, params: Mapping[str, Any], x: str) -> str:
  """The network on NCHW ``x`` (H and W multiples of 4); returns the raw output's name."""
  lo = head(g, params, x)
  levels, h = [], lo
  for i in range(model.num_blocks):
    h = mheb(g, h, params[f'mheb_{i}'], model.dcr_layers, f'mheb_{i}')
    levels.append(h)
  ld = _distill(g, model, params, levels[:-1])
  return final(g, model, params, x, levels[-1], ld, lo)


def make_model(g: Builder, inputs: Sequence[tuple[str, list[Any]]],
               outputs: Sequence[tuple[str, list[Any]]], doc: str) -> Any:
  """A checked ``onnx.ModelProto`` of the builder's nodes; float32 ``(name, dims)`` IO."""
  onnx = g.onnx
  info = lambda name, dims: onnx.helper.make_tensor_value_info(
      name, onnx.TensorProto.FLOAT, dims)
  graph = onnx.helper.make_graph(g.nodes, 'mh2f_net', [info(*i) for i in inputs],
                                 [info(*o) for o in outputs], initializer=g.initializers)
  proto = onnx.helper.make_model(
      graph, opset_imports=[onnx.helper.make_opsetid('', OPSET)],
      producer_name='mh2f_jax', doc_string=doc)
  # Files from older runtimes: keep the IR version the chosen opset was released with.
  proto.ir_version = 8
  onnx.checker.check_model(proto)
  return proto


def build(model: model_lib.MH2FNet, params: Mapping[str, Any]) -> Any:
  """The ONNX model computing ``model.apply({'params': params}, images)`` in float32.

  Args:
    model: the Flax module (any configuration: distill, fusion, global residual).
    params: its ``params`` pytree (numpy or jax arrays).

  Returns:
    An ``onnx.ModelProto`` with input ``images`` and output ``derained``, both float32
    ``(N, H, W, 3)`` with dynamic N, H, W; checked with ``onnx.checker``.
  """
  g = Builder()
  x = g.op('Transpose', [INPUT_NAME], 'nchw', perm=[0, 3, 1, 2])
  x, hw = _pad_to_multiple(g, x)
  y = network(g, model, params, x)
  y = g.op('Slice', [y, g.const(np.zeros(2, np.int64)), hw,
                     g.const(np.array([2, 3], np.int64))], 'cropped')
  g.nodes.append(g.onnx.helper.make_node('Transpose', [y], [OUTPUT_NAME], perm=[0, 2, 3, 1]))
  dims = ['N', 'H', 'W', 3]
  return make_model(g, [(INPUT_NAME, dims)], [(OUTPUT_NAME, dims)], doc=(
      'MH2F-Net deraining: NHWC float32 images in [0, 1] -> raw NHWC float32 output '
      '(clip to [0, 1] for display)'))
