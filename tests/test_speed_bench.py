"""Checks that benchmarks/speed.py runs and prints the peer's keys (tiny model)."""

import importlib.util
import json
import os

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     'benchmarks', 'speed.py')


def _load():
  spec = importlib.util.spec_from_file_location('speed_bench', _PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_speed_benchmark_prints_one_json_line_with_the_peer_keys(capsys):
  result = _load().main(['--features', '4', '--blocks', '2', '--batch', '2', '--patch',
                         '8', '--size', '12', '--steps', '1'])
  line = capsys.readouterr().out.strip().splitlines()[-1]
  assert json.loads(line) == result
  for key in ('train_s_per_step', 'train_img_per_s', 'first_step_s', 'infer_s',
              'infer_s_per_mp', 'compile_s', 'device_kind'):
    assert key in result
  assert result['train_img_per_s'] == 2 / result['train_s_per_step']
  assert result['infer_s_per_mp'] == result['infer_s'] / (12 * 12 / 1e6)
  assert result['batch'] == 2 and result['infer_size'] == 12
  assert result['infer_backend'] in ('jax', 'onnxruntime')
