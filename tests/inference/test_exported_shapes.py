"""Exported files with the right names but other shapes: one error line, never a traceback."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from mh2f_jax import derain
from mh2f_jax.inference import backends
from mh2f_jax.model import onnx_graph

needs_ort = pytest.mark.skipif(not backends.onnxruntime_available(),
                               reason='onnx and onnxruntime are not installed (the [export] extra)')


def _jax_file(path, fn, shape):
  dims = jax.export.symbolic_shape('b, h, w')
  sizes = {'B': dims[0], 'H': dims[1], 'W': dims[2], '3': 3}
  spec = jax.ShapeDtypeStruct(tuple(sizes[d] for d in shape), jnp.float32)
  exported = jax.export.export(jax.jit(fn), platforms=['cpu'])(spec)
  path.write_bytes(exported.serialize())
  return path


def _onnx_file(path, op, in_shape, out_shape, **attrs):
  import onnx  # pylint: disable=import-outside-toplevel
  from onnx import helper  # pylint: disable=import-outside-toplevel
  node = helper.make_node(op, [onnx_graph.INPUT_NAME], [onnx_graph.OUTPUT_NAME], **attrs)
  graph = helper.make_graph(
      [node], 'not-mh2f',
      [helper.make_tensor_value_info(onnx_graph.INPUT_NAME, onnx.TensorProto.FLOAT, in_shape)],
      [helper.make_tensor_value_info(onnx_graph.OUTPUT_NAME, onnx.TensorProto.FLOAT,
                                     out_shape)])
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
  model.ir_version = 8
  path.write_bytes(model.SerializeToString())
  return path


def _derain_with(model, tmp_path, capsys):
  photo = tmp_path / 'photo.png'
  Image.fromarray(np.full((12, 16, 3), 100, np.uint8)).save(photo)
  status = derain.run([f'--model={model}', f'--input={photo}', f'--output={tmp_path / "o"}'])
  err = capsys.readouterr().err
  return status, [line for line in err.splitlines() if line.strip()]


CASES = {
    'jax, one output channel': lambda p: _jax_file(p / 'one.jax', lambda x: x[..., :1],
                                                   'BHW3'),
    'jax, NCHW': lambda p: _jax_file(p / 'nchw.jax', lambda x: x, 'B3HW'),
    'onnx, one output channel': lambda p: _onnx_file(
        p / 'one.onnx', 'ReduceMean', ['N', 'H', 'W', 3], ['N', 'H', 'W', 1], axes=[3]),
    'onnx, NCHW': lambda p: _onnx_file(p / 'nchw.onnx', 'Identity', ['N', 3, 'H', 'W'],
                                       ['N', 3, 'H', 'W']),
    # Declares a free channel count: found when it runs.
    'onnx, one channel found on the first run': lambda p: _onnx_file(
        p / 'free.onnx', 'ReduceMean', ['N', 'H', 'W', 3], ['N', 'H', 'W', 'C'], axes=[3]),
}


@pytest.mark.parametrize('case', list(CASES))
def test_a_file_of_other_shapes_is_one_error_line(case, tmp_path, capsys):
  if case.startswith('onnx') and not backends.onnxruntime_available():
    pytest.skip('onnx and onnxruntime are not installed')
  model = CASES[case](tmp_path)
  status, lines = _derain_with(model, tmp_path, capsys)
  assert status == 2, lines
  assert len(lines) == 1 and lines[0].startswith(f'error: {model} is not an MH2F-Net export')
  assert not (tmp_path / 'o' / 'photo.png').exists()
