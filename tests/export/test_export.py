"""Tests for the ONNX graph builder, the jax.export artifact and ``python -m mh2f_jax.export``."""

import os
import subprocess
import sys
import textwrap

import flax
import numpy as np
import pytest

from mh2f_jax import errors
from mh2f_jax.export import __main__ as export_cli
from mh2f_jax.export import exporter
from mh2f_jax import inference
from mh2f_jax.inference import forward
from mh2f_jax import model as model_lib
from mh2f_jax.model import params_file
from mh2f_jax.workdir import loading

from inference_helper import random_params  # pylint: disable=g-bad-import-order
from inference_helper import tiny_run  # pylint: disable=g-bad-import-order

# Max abs difference the issue allows between an export and the JAX forward pass.
TOL = 1e-4
# (batch, height, width): not multiples of 4, a batch of 2, and smaller than one pooling.
SHAPES = ((1, 37, 45), (2, 40, 48), (1, 5, 3))


@pytest.fixture(name='run', scope='session')
def _run_fixture(tmp_path_factory):
  return tiny_run(tmp_path_factory)


def _images(b, h, w, seed=0):
  return np.random.default_rng(seed).random((b, h, w, 3), dtype=np.float32)


@pytest.mark.parametrize('variant', [
    {},
    {'distill': 'concat', 'fusion': 'add', 'global_residual': True, 'num_blocks': 3},
    {'fusion': 'concat', 'dcr_layers': 2, 'dcr_growth': 3},
])
def test_onnx_graph_equals_flax_forward(variant):
  pytest.importorskip('onnxruntime', reason='onnxruntime is not installed (the [export] extra)')
  from mh2f_jax.inference import backends
  from mh2f_jax.model import onnx_graph
  model = model_lib.MH2FNet(**{'features': 8, 'num_blocks': 2, **variant})
  params = random_params(model)
  proto = onnx_graph.build(model, params)
  dims = [d.dim_param or d.dim_value
          for d in proto.graph.input[0].type.tensor_type.shape.dim]
  assert dims == ['N', 'H', 'W', 3]  # one graph for every size
  session = backends.onnxruntime_session(proto)
  reference = forward.forward_fn(model)
  # Every size for the paper's variant; one size not a multiple of 4 for the others.
  for b, h, w in SHAPES if not variant else SHAPES[:1]:
    x = _images(b, h, w)
    got = session.run(None, {'images': x})[0]
    want = np.asarray(reference(params, x))
    assert got.shape == (b, h, w, 3)
    assert np.max(np.abs(got - want)) <= TOL, (b, h, w)


def test_jax_export_has_symbolic_shapes_and_matches():
  from mh2f_jax.export import jax_artifact
  model = model_lib.MH2FNet(features=8, num_blocks=2)
  params = random_params(model)
  exported = jax_artifact.export(model, params, platforms=('cpu',))
  assert str(exported.in_avals[0].shape) == '(n, h, w, 3)'
  import jax
  loaded = jax.export.deserialize(exported.serialize())
  reference = forward.forward_fn(model)
  for b, h, w in SHAPES[::2]:
    x = _images(b, h, w, seed=1)
    got = np.asarray(loaded.call(x))
    assert got.shape == (b, h, w, 3)
    assert np.max(np.abs(got - np.asarray(reference(params, x)))) <= TOL, (b, h, w)


def _main(capsys, *args):
  status = export_cli.run(list(args))
  captured = capsys.readouterr()
  assert 'Traceback' not in captured.err
  return status, captured


def test_export_onnx_cli(run, tmp_path, capsys):
  ort = pytest.importorskip('onnxruntime',
                            reason='onnxruntime is not installed (the [export] extra)')
  out = tmp_path / 'sub' / 'model.onnx'
  status, captured = _main(capsys, f'--workdir={run.workdir}', '--format=onnx',
                           f'--output={out}')
  assert status == 0, captured.err
  assert 'checked in ONNX Runtime' in captured.out and '1x37x45' in captured.out
  assert 'latest' in captured.err  # 'best' fell back, with a note

  # The file alone, in a plain ONNX Runtime session, gives the workdir's JAX output.
  session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
  meta = session.get_modelmeta().custom_metadata_map
  derainer = inference.Derainer.from_workdir(run.workdir, 'latest')
  assert meta['step'] == str(derainer.step) and '"features": 8' in meta['model_config']
  x = _images(1, 30, 22, seed=2)
  got = session.run(['derained'], {'images': x})[0]
  assert np.max(np.abs(got - derainer.derain_raw(x))) <= TOL

  # Never replaced without --overwrite: one error line, the file untouched.
  before = out.read_bytes()
  out.write_bytes(b'precious')
  status, captured = _main(capsys, f'--workdir={run.workdir}', '--format=onnx',
                           f'--output={out}')
  assert status == 2 and captured.err.strip().startswith('error: ')
  assert '--overwrite' in captured.err and len(captured.err.strip().splitlines()) == 1
  assert out.read_bytes() == b'precious'
  status, captured = _main(capsys, f'--workdir={run.workdir}', '--format=onnx',
                           f'--output={out}', '--overwrite')
  assert status == 0, captured.err
  assert out.read_bytes() == before  # deterministic export
  assert sorted(os.listdir(out.parent)) == ['model.onnx']  # no temporary files left


def test_export_jax_cli_runs_without_the_project(run, tmp_path, capsys):
  out = tmp_path / 'model.jax'
  status, captured = _main(capsys, f'--workdir={run.workdir}', '--format=jax',
                           f'--output={out}')
  assert status == 0, captured.err
  assert 'checked in the deserialized artifact' in captured.out

  # A fresh interpreter outside the checkout, with jax and numpy only.
  x = _images(1, 27, 34, seed=3)
  np.save(tmp_path / 'x.npy', x)
  code = textwrap.dedent(f"""
      import sys, jax, numpy as np
      exported = jax.export.deserialize(bytearray(open({str(out)!r}, 'rb').read()))
      y = exported.call(np.load({str(tmp_path / 'x.npy')!r}))
      np.save({str(tmp_path / 'y.npy')!r}, np.asarray(y))
      assert not any(m.startswith('mh2f_jax') for m in sys.modules), 'project imported'
      print(sorted(exported.platforms))
      """)
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['JAX_PLATFORMS'] = 'cpu'
  proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert "['cpu', 'cuda']" in proc.stdout
  want = inference.Derainer.from_workdir(run.workdir, 'latest').derain_raw(x)
  assert np.max(np.abs(np.load(tmp_path / 'y.npy') - want)) <= TOL


def test_export_params_cli_writes_the_file_init_from_and_derainer_read(run, tmp_path, capsys):
  out = tmp_path / 'model.msgpack'
  status, captured = _main(capsys, f'--workdir={run.workdir}', '--format=params',
                           f'--output={out}', '--checkpoint=latest')
  assert status == 0, captured.err
  assert 'checked in the Flax network on the parameters read back' in captured.out
  assert f'wrote {out} (params' in captured.out
  # The file holds the checkpoint's parameters, name for name and bit for bit.
  _, stored, _ = loading.load_workdir(run.workdir, 'latest')
  loaded = flax.traverse_util.flatten_dict(params_file.read_params(out))
  stored = flax.traverse_util.flatten_dict(stored)
  assert loaded.keys() == stored.keys()
  for name, value in stored.items():
    np.testing.assert_array_equal(loaded[name], value, err_msg=str(name))
  want = inference.Derainer.from_workdir(run.workdir, 'latest')
  got = inference.Derainer.from_params_file(out, os.path.join(run.workdir, 'config.json'))
  x = _images(1, 30, 22, seed=4)
  np.testing.assert_array_equal(got.derain_raw(x), want.derain_raw(x))


def test_export_user_errors_are_one_line(run, tmp_path, capsys):
  def error(*args):
    status, captured = _main(capsys, *args)
    lines = captured.err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith('error: '), captured.err
    return lines[0]

  assert 'does not exist' in error(f'--workdir={tmp_path / "missing"}', '--format=jax',
                                   f'--output={tmp_path / "m.jax"}')
  assert 'is a folder' in error(f'--workdir={run.workdir}', '--format=jax',
                                f'--output={tmp_path}')
  inside = os.path.join(run.workdir, 'checkpoints', 'm.jax')
  assert 'refusing' in error(f'--workdir={run.workdir}', '--format=jax', f'--output={inside}')
  assert 'platforms' in error(f'--workdir={run.workdir}', '--format=jax',
                              '--platforms=nosuchchip', f'--output={tmp_path / "m.jax"}')
  assert not os.path.exists(tmp_path / 'm.jax')


def test_write_output_never_replaces(tmp_path):
  path = str(tmp_path / 'f.bin')
  exporter.write_output(path, b'one', overwrite=False)
  with pytest.raises(errors.UserError, match='exists'):
    exporter.write_output(path, b'two', overwrite=False)
  assert open(path, 'rb').read() == b'one'
  exporter.write_output(path, b'three', overwrite=True)
  assert open(path, 'rb').read() == b'three'
  assert os.listdir(tmp_path) == ['f.bin']
