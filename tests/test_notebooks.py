"""Runs the notebooks end to end in their reduced setting, so that they cannot rot.

Each notebook is executed with nbclient in a Jupyter kernel running this interpreter
(``sys.executable``, so the kernel sees the same virtual environment), started in
``notebooks/`` as Jupyter starts it. ``MH2F_NOTEBOOK_SMOKE=1`` makes the notebooks train a
tiny model for a few steps; ``MH2F_RUNS_DIR`` and ``MH2F_DATA_DIR`` send their workdirs
and prepared datasets to a temporary folder, so nothing is written into the checkout or
``~/tensorflow_datasets``. Both notebooks share a temporary JAX compilation cache: the
second one trains the same tiny model and reuses the first one's compiled programs.
"""

import json
import os
import re
import sys

import nbformat
from nbclient import NotebookClient
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(REPO, 'notebooks')
NOTEBOOKS = ('quickstart.ipynb', 'train_on_your_data.ipynb')
# Generous: the cells take seconds in smoke mode, but a busy machine can stretch that.
CELL_TIMEOUT_S = 900


@pytest.fixture(scope='module')
def kernel_env(tmp_path_factory):
  """Environment for the kernels: smoke mode, outputs under a temporary folder."""
  root = tmp_path_factory.mktemp('notebooks')
  # A kernelspec naming this interpreter: a 'python3' kernelspec elsewhere on the Jupyter
  # path (e.g. in ~/.local/share/jupyter) could otherwise start another Python.
  spec_dir = root / 'jupyter' / 'kernels' / 'python3'
  spec_dir.mkdir(parents=True)
  (spec_dir / 'kernel.json').write_text(json.dumps({
      'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
      'display_name': 'Python 3 (tests)', 'language': 'python'}))
  return {
      'MH2F_NOTEBOOK_SMOKE': '1',
      'MH2F_RUNS_DIR': str(root / 'runs'),
      'MH2F_DATA_DIR': str(root / 'data'),
      'JUPYTER_PATH': str(root / 'jupyter'),
      'JAX_PLATFORMS': 'cpu',
      'JAX_COMPILATION_CACHE_DIR': str(root / 'jax_cache'),
      'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
      'MPLBACKEND': 'module://matplotlib_inline.backend_inline',
  }


def _run(name: str, env: dict[str, str], monkeypatch) -> nbformat.NotebookNode:
  """Executes a notebook (in memory: the file keeps its cleared outputs)."""
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
  client = NotebookClient(nb, kernel_name='python3', timeout=CELL_TIMEOUT_S,
                          resources={'metadata': {'path': NOTEBOOK_DIR}})
  client.execute()  # Raises CellExecutionError, with the traceback, if a cell fails.
  return nb


def _text(nb: nbformat.NotebookNode) -> str:
  parts = []
  for cell in nb.cells:
    for out in cell.get('outputs', []):
      if out.output_type == 'stream':
        parts.append(out.text)
      elif 'text/plain' in out.get('data', {}):
        parts.append(out.data['text/plain'])
  return ''.join(parts)


def _num_images(nb: nbformat.NotebookNode) -> int:
  return sum('image/png' in out.get('data', {})
             for cell in nb.cells for out in cell.get('outputs', []))


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_committed_notebook_is_valid_and_has_no_outputs(name):
  nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
  nbformat.validate(nb)
  assert nb.nbformat == 4
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert code, name
  for cell in code:
    assert not cell.outputs and cell.execution_count is None, (
        f'{name}: clear the outputs before committing')
  # The install cell runs only in Colab; elsewhere it must not install anything.
  assert "if 'google.colab' in sys.modules:" in code[0].source


def test_quickstart(kernel_env, monkeypatch):
  nb = _run('quickstart.ipynb', kernel_env, monkeypatch)
  text = _text(nb)
  assert 'smoke mode: True' in text
  match = re.search(r'PSNR-Y rainy (\d+\.\d+) dB, derained (\d+\.\d+) dB', text)
  assert match, text[-2000:]
  # The rainy input's PSNR against its clean image is finite and plausible for rain.
  assert 5 < float(match.group(1)) < 40
  # The loss curve and the rainy | derained | clean figure.
  assert _num_images(nb) >= 2
  workdir = os.path.join(kernel_env['MH2F_RUNS_DIR'], 'quickstart-smoke')
  assert os.path.isfile(os.path.join(workdir, 'config.json'))
  # The synthetic set was built in the data folder the test chose.
  assert os.path.isdir(os.path.join(kernel_env['MH2F_DATA_DIR'], 'synthetic_rain', 'heavy'))


def test_train_on_your_data(kernel_env, monkeypatch):
  nb = _run('train_on_your_data.ipynb', kernel_env, monkeypatch)
  text = _text(nb)
  assert 'stand-in data (not your data)' in text
  runs = kernel_env['MH2F_RUNS_DIR']
  data = os.path.join(runs, 'stand_in-smoke', 'data')
  num_test = len(os.listdir(os.path.join(data, 'test', 'rainy')))
  assert num_test == len(os.listdir(os.path.join(data, 'test', 'clean'))) > 0
  assert re.search(r"pairs per split: \{.*'test': %d" % num_test, text), text[-2000:]

  workdir = os.path.join(runs, 'stand_in_example-smoke')
  eval_dirs = os.listdir(os.path.join(workdir, 'eval'))
  assert len(eval_dirs) == 1 and eval_dirs[0].startswith('paired_folder-test-step4')
  with open(os.path.join(workdir, 'eval', eval_dirs[0], 'summary.json')) as f:
    summary = json.load(f)
  assert summary['num_images'] == num_test
  assert re.search(r'derained +PSNR-Y \d+\.\d+ dB', text)
  # The derained stand-in photo, at the input's size.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  photo = os.path.join(runs, 'stand_in-smoke', 'photos', 'rocket_rainy.png')
  derained = os.path.join(workdir, 'derained_photos', 'rocket_rainy.png')
  with Image.open(photo) as a, Image.open(derained) as b:
    assert a.size == b.size
  # The fine-tuned run: the first run's weights, a 3:1 mixture of the pairs and synthetic rain.
  with open(os.path.join(runs, 'stand_in_example-smoke-finetuned', 'run.json')) as f:
    record = json.load(f)
  assert record['weights']['init_from'] == workdir and record['weights']['step'] == 4
  assert [(d['dataset'], d['weight']) for d in record['trained_on']] == [
      ('paired_folder', 0.75), ('synthetic_rain/light', 0.25)]
  # The training pair, the evaluation figure and the photo before/after.
  assert _num_images(nb) >= 3
