"""Tests for deraining with exported model files (``mh2f_jax.inference.exported``, ``--model``)."""

import os

import numpy as np
import pytest
from PIL import Image

from mh2f_jax.inference import backends
from mh2f_jax import derain
from mh2f_jax import errors
from mh2f_jax.export import __main__ as export_cli
from mh2f_jax.inference import exported
from mh2f_jax import inference

from inference_helper import fake_pair  # pylint: disable=g-bad-import-order
from inference_helper import tiny_run  # pylint: disable=g-bad-import-order

# Max abs difference allowed between an export and the JAX forward pass (as test_export).
TOL = 1e-4
needs_ort = pytest.mark.skipif(not backends.onnxruntime_available(),
                               reason='onnx and onnxruntime are not installed (the [export] extra)')


@pytest.fixture(name='run', scope='session')
def _run_fixture(tmp_path_factory):
  return tiny_run(tmp_path_factory)


@pytest.fixture(name='files', scope='module')
def _files(run, tmp_path_factory):
  """The tiny run exported once in each format, as ``mh2f-export`` writes them."""
  folder = tmp_path_factory.mktemp('exported')
  paths = {}
  for fmt, extra in (('onnx', []), ('jax', ['--platforms=cpu'])):
    if fmt == 'onnx' and not backends.onnxruntime_available():
      continue
    paths[fmt] = str(folder / f'model.{fmt}')
    assert export_cli.run([f'--workdir={run.workdir}', f'--format={fmt}',
                       f'--output={paths[fmt]}', *extra]) == 0
  return paths


@pytest.fixture(name='reference', scope='module')
def _reference(run):
  return inference.Derainer.from_workdir(run.workdir, 'latest', backend='jax')


@pytest.mark.parametrize('fmt', [pytest.param('onnx', marks=needs_ort), 'jax'])
def test_loaded_file_derains_as_the_workdir(files, reference, fmt):
  model = exported.load(files[fmt])
  assert model.format == fmt and model.tiling == 'approx'
  assert model.backend == {'onnx': 'onnxruntime', 'jax': 'jax'}[fmt]
  if fmt == 'onnx':  # ONNX files carry the step and model config.
    assert model.step == reference.step and model.model_config['features'] == 8
  x = np.random.default_rng(0).random((1, 30, 22, 3), dtype=np.float32)
  assert np.max(np.abs(model.derain_raw(x) - reference.derain_raw(x))) <= TOL
  # Large images: the same blended tiles as the workdir's 'approx' tiling, and the flips
  # ensemble on top.
  small_tiles = {'tile_size': 16, 'tile_overlap': 8, 'tile_margin': 2,
                 'max_untiled_pixels': 100}
  model.set_tiling(tiling='approx', **small_tiles)
  reference.set_tiling(tiling='approx', **small_tiles)
  try:
    photo = fake_pair(37, 45, seed=4)[0].astype(np.float32) / 255
    got = model.derain_raw(photo[None], self_ensemble='flips')
    want = reference.derain_raw(photo[None], self_ensemble='flips')
    assert np.max(np.abs(got - want)) <= TOL
  finally:
    reference.set_tiling()


@needs_ort
def test_exact_tiling_needs_the_model_code(files):
  with pytest.raises(errors.UserError, match="'exact' tiling needs the model's code"):
    exported.load(files['onnx'], tiling='exact')


def test_unreadable_files_are_user_errors(tmp_path):
  with pytest.raises(errors.UserError, match='cannot read model file'):
    exported.load(tmp_path / 'missing.onnx')
  (tmp_path / 'garbage.jax').write_bytes(b'\x00' * 64)
  with pytest.raises(errors.UserError, match='neither an ONNX model'):
    exported.load(tmp_path / 'garbage.jax')


@needs_ort
def test_foreign_onnx_files_are_refused(tmp_path):
  import onnx
  (tmp_path / 'garbage.onnx').write_bytes(b'not a model')
  with pytest.raises(errors.UserError, match='not a readable ONNX model'):
    exported.load(tmp_path / 'garbage.onnx')
  x = onnx.helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, [1])
  y = onnx.helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, [1])
  graph = onnx.helper.make_graph([onnx.helper.make_node('Relu', ['x'], ['y'])], 'g', [x], [y])
  onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid('', 17)]),
            tmp_path / 'other.onnx')
  with pytest.raises(errors.UserError, match='not an MH2F-Net export'):
    exported.load(tmp_path / 'other.onnx')


def _main(capsys, *args):
  status = derain.run(list(args))
  captured = capsys.readouterr()
  assert 'Traceback' not in captured.err
  return status, captured


@needs_ort
def test_derain_cli_with_a_model_file_writes_the_workdirs_output(run, files, tmp_path, capsys):
  photo = tmp_path / 'in' / 'street.png'
  photo.parent.mkdir()
  Image.fromarray(fake_pair(28, 36, seed=5)[0]).save(photo)
  status, captured = _main(capsys, f'--model={files["onnx"]}', f'--input={photo}',
                           f'--output={tmp_path / "model"}')
  assert status == 0, captured.err
  assert f'model: {files["onnx"]} (onnx export, step ' in captured.out
  status, captured = _main(capsys, f'--workdir={run.workdir}', '--checkpoint=latest',
                           '--backend=onnxruntime', f'--input={photo}',
                           f'--output={tmp_path / "workdir"}')
  assert status == 0, captured.err
  # The same graph in the same runtime: the same bytes.
  assert ((tmp_path / 'model' / 'street.png').read_bytes()
          == (tmp_path / 'workdir' / 'street.png').read_bytes())


def test_derain_cli_model_flag_mistakes_are_one_line(run, files, tmp_path, capsys):
  photo = tmp_path / 'p.png'
  Image.fromarray(fake_pair(8, 8, seed=6)[0]).save(photo)
  common = (f'--input={photo}', f'--output={tmp_path / "out"}')
  model = f'--model={files["jax"]}'
  for args, expected in (
      ((), 'give either --workdir'),
      ((f'--workdir={run.workdir}', model), 'give either --workdir'),
      ((model, '--checkpoint=latest'), '--checkpoint applies to --workdir'),
      ((model, '--backend=jax'), '--backend applies to --workdir'),
      ((model, '--tiling=exact'), "'exact' tiling needs the model's code"),
      ((f'--model={tmp_path / "nope.onnx"}',), 'cannot read model file'),
  ):
    status, captured = _main(capsys, *args, *common)
    lines = captured.err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith('error: '), captured.err
    assert expected in lines[0], lines[0]
  assert not os.path.exists(tmp_path / 'out')
