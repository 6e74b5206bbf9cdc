"""mh2f-bench --quick end to end (tiny model, a stand-in peer), and the batch search."""

import contextlib
import io
import json
import os
import sys

import signal

import jax
import pytest

import faults_helper
import train_helper
from mh2f_jax import bench
from mh2f_jax.benchmark import input_speed
from mh2f_jax.benchmark import runner
from mh2f_jax.benchmark import train_speed
from mh2f_jax.datasets import memory_cache

# Stands in for the PyTorch peer: fixed figures, and a failure for --compile.
_FAKE_PEER = """
import json, os, sys
if '--compile' in sys.argv:
    sys.exit('no compiler here')
print('a line the bench ignores')
print(json.dumps({'peer': 'fake', 'train_img_per_s': 2.0, 'infer_s_per_mp': 4.0,
                  'argv': sys.argv[1:], 'tunables': os.environ.get('GLIBC_TUNABLES')}))
"""
_SECTIONS = ('versions', 'devices', 'model', 'correctness', 'train step', 'input pipeline',
             'training run', 'inference', 'peer')


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
  """One quick run; its exit status, stdout, output folder and bench.json."""
  folder = tmp_path_factory.mktemp('bench')
  peer = folder / 'fake_peer.py'
  peer.write_text(_FAKE_PEER)
  output = str(folder / 'out')
  stdout = io.StringIO()
  with contextlib.redirect_stdout(stdout):
    status = bench.run(['--output', output, '--quick', '--features', '8', '--blocks', '2',
                        '--peer', str(peer), '--peer_python', sys.executable])
  with open(os.path.join(output, 'bench.json'), encoding='utf-8') as f:
    result = json.load(f)
  return status, stdout.getvalue(), output, result


def _rows(result, section):
  return result['sections'][section]['rows']


def test_quick_run_writes_every_section_and_both_files(quick_run):
  status, stdout, output, result = quick_run
  assert status == 0
  assert list(result['sections']) == list(_SECTIONS)
  assert result['quick'] is True
  with open(os.path.join(output, 'bench.md'), encoding='utf-8') as f:
    markdown = f.read()
  for name in _SECTIONS:
    assert f'\n== {name}' in stdout
    assert f'## {name}' in markdown
  assert f'wrote {os.path.join(output, "bench.json")}' in stdout


def test_table_has_the_promised_figures(quick_run):
  _, _, _, result = quick_run
  versions = {r['package']: r['version'] for r in _rows(result, 'versions')}
  assert versions['jax'] == jax.__version__
  assert _rows(result, 'model')[0]['parameters'] == 20344  # features 8, 2 blocks
  assert _rows(result, 'model')[0]['gflops'] > 0
  train = _rows(result, 'train step')
  assert [(r['dtype'], r['batch']) for r in train] == [
      ('bfloat16', 16), ('float32', 16), ('bfloat16', 32), ('float32', 32)]
  for row in train:
    assert row['images_per_s'] == pytest.approx(row['batch'] / (row['step_ms'] / 1e3))
    assert row['loss_finite'] is True
  assert _rows(result, 'input pipeline')[0]['crops_per_s'] > 0
  run = _rows(result, 'training run')[0]
  assert run['steps'] == 4 and run['steps_per_s'] > 0
  assert 0 <= run['input_wait_share'] < 1
  cases = [(r['case'], r['tiling']) for r in _rows(result, 'inference')]
  assert cases == [('square', 'whole'), ('photo', 'whole'), ('photo', 'exact, tile 64')]


def test_correctness_line_passes_at_highest_precision(quick_run):
  _, stdout, _, result = quick_run
  highest, default = _rows(result, 'correctness')
  assert highest['precision'] == 'highest' and highest['passed'] is True
  assert highest['max_abs_error'] <= 1e-4
  assert default['precision'] == 'default' and default['passed'] is None
  assert 'correctness: passed' in stdout


def test_peer_ratios_are_project_speed_over_peer_speed(quick_run):
  from mh2f_jax.benchmark import peer  # pylint: disable=g-import-not-at-top
  from mh2f_jax.runtime import host_memory  # pylint: disable=g-import-not-at-top
  _, _, _, result = quick_run
  rows = _rows(result, 'peer')
  # On a CPU the peer also runs with the project's allocator settings, like for like.
  assert [r['variant'] for r in rows] == ['float32', peer.SAME_ALLOCATOR, 'bfloat16']
  assert result['peer'][peer.SAME_ALLOCATOR]['tunables'] == host_memory.GLIBC_TUNABLES
  assert result['peer']['float32']['tunables'] == os.environ.get('GLIBC_TUNABLES')
  project = {r['dtype']: r['images_per_s'] for r in _rows(result, 'train step')
             if r['batch'] == 16}
  square = _rows(result, 'inference')[0]['s_per_mp']
  for row, dtype in zip(rows, ('float32', 'float32', 'bfloat16')):
    assert row['ratio_train'] == pytest.approx(project[dtype] / 2.0)
    assert row['ratio_infer'] == pytest.approx(4.0 / square)
  assert any('no compiler here' in n for n in result['sections']['peer']['notes'])
  assert '--bf16' in result['peer']['bfloat16']['argv']
  assert result['peer']['float32']['argv'][:2] == ['--device', 'cpu']


def test_existing_results_are_refused_before_anything_runs(quick_run, capsys):
  _, _, output, _ = quick_run
  path = os.path.join(output, 'bench.json')
  before = os.stat(path).st_mtime_ns
  assert bench.run(['--output', output, '--quick']) == 2
  assert 'error:' in capsys.readouterr().err
  assert os.stat(path).st_mtime_ns == before


def _error_lines(text):
  return [line for line in text.splitlines() if line.startswith('error:')]


def test_an_unwritable_output_is_refused_before_anything_runs(tmp_path, capsys,
                                                              monkeypatch):
  def ran(*args):
    raise AssertionError('the benchmark ran before its output was checked')
  monkeypatch.setattr(runner, '_system', ran)
  with faults_helper.read_only_folder(str(tmp_path / 'ro')) as folder:
    for output in (folder, os.path.join(folder, 'out')):
      assert bench.run(['--output', output, '--quick']) == 2
      errors = _error_lines(capsys.readouterr().err)
      assert len(errors) == 1 and f'cannot write to the output folder {output}' in errors[0]
    assert os.listdir(folder) == []


def _only_the_training_run(monkeypatch):
  """The bench with every section but the input ones stubbed, on tiny in-memory pairs.

  The training run trains the tests' tiny config, whose train step other tests compile
  into the session's compilation cache.
  """
  monkeypatch.setattr(runner, 'base_config', lambda options: train_helper.tiny_config())
  monkeypatch.setattr(runner, '_system', lambda table: None)
  monkeypatch.setattr(runner, '_model', lambda table, config, size: table.section(
      'correctness', ['passed']))

  def train(table, config, s):
    del config, s
    table.section('train step', ['dtype', 'batch', 'images_per_s'])
    table.row('train step', dtype='float32', batch=16, images_per_s=1.0)
  monkeypatch.setattr(runner, '_train', train)
  monkeypatch.setattr(runner, '_inference', lambda table, config, s: [{'s_per_mp': 1.0}])
  monkeypatch.setattr(input_speed, 'synthetic_source', lambda pairs: memory_cache.MemorySource(
      train_helper.fake_pairs(pairs, 16, 16, seed=1)))


def test_ctrl_c_in_the_training_run_stops_the_bench_saving_nothing(tmp_path, capsys,
                                                                  monkeypatch):
  _only_the_training_run(monkeypatch)
  original, calls = input_speed.TimedIterator.__next__, []

  def next_then_ctrl_c(self):
    calls.append(None)
    if len(calls) == 2:  # Ctrl-C while the run trains its first steps.
      os.kill(os.getpid(), signal.SIGINT)
    return original(self)
  monkeypatch.setattr(input_speed.TimedIterator, '__next__', next_then_ctrl_c)
  output = str(tmp_path / 'out')
  status = bench.run(['--output', output, '--quick', '--run_steps', '20',
                      '--peer', str(tmp_path / 'absent.py')])
  assert status == 130, capsys.readouterr().out[-2000:]
  assert 'mh2f-bench: interrupted' in capsys.readouterr().err
  assert os.listdir(output) == []  # Nothing half-written, no result of a cut run.


def _fake_measure(fits):
  def measure(config, batch, **kwargs):
    del config, kwargs
    if batch > fits:
      raise jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: Out of memory allocating')
    return {'batch': batch}
  return measure


def test_batch_search_steps_down_past_out_of_memory(monkeypatch):
  monkeypatch.setattr(train_speed, 'measure', _fake_measure(64))
  row, refused = train_speed.largest_batch(None, max_batch=256, min_batch=32)
  assert row == {'batch': 64} and refused == [256, 128]
  monkeypatch.setattr(train_speed, 'measure', _fake_measure(16))
  assert train_speed.largest_batch(None, max_batch=256, min_batch=32) == (
      None, [256, 128, 64, 32])


def test_batch_search_lets_other_errors_through(monkeypatch):
  def broken(config, batch, **kwargs):
    raise jax.errors.JaxRuntimeError('INTERNAL: something else')
  monkeypatch.setattr(train_speed, 'measure', broken)
  with pytest.raises(jax.errors.JaxRuntimeError, match='INTERNAL'):
    train_speed.largest_batch(None, max_batch=64, min_batch=32)


def test_peer_without_torch_is_skipped_with_the_reason(tmp_path):
  from mh2f_jax.benchmark import peer
  got = peer.run_peer(sys.executable, str(tmp_path / 'absent.py'), [], timeout=60)
  assert 'error' in got and not got.get('no_torch')
  script = tmp_path / 'needs_torch.py'
  script.write_text('import torch\n')
  got = peer.run_peer(sys.executable, str(script), [], timeout=60)
  assert got['no_torch'] is True and "No module named 'torch'" in got['error']
  assert peer.run_peer('/no/such/python', str(script), [], timeout=60)['no_torch'] is True


def test_peer_gets_the_environment_it_is_given(tmp_path):
  # The like-for-like variant runs the peer with the project's allocator settings.
  from mh2f_jax.benchmark import peer
  from mh2f_jax.runtime import host_memory
  script = tmp_path / 'env.py'
  script.write_text('import json, os\nprint(json.dumps({"tunables": '
                    'os.environ.get("GLIBC_TUNABLES")}))\n')
  variants = {name: env for name, _, env in peer.VARIANTS}
  got = peer.run_peer(sys.executable, str(script), [], timeout=60,
                      env=variants[peer.SAME_ALLOCATOR])
  assert got == {'tunables': host_memory.GLIBC_TUNABLES}
  assert peer.run_peer(sys.executable, str(script), [], timeout=60,
                       env=variants['float32'])['tunables'] == os.environ.get('GLIBC_TUNABLES')
