"""The commands of docs/training.md: training on a mixture, then fine-tuning.

Stand-in pairs of one's own are prepared as ``paired_folder``; a tiny run trains on a
mixture given on the command line (two splits of those pairs, 1:3; the synthetic sets
would do the same but take a minute to build); then the fine-tuning commands train with
``init_from`` that run and evaluate. The reports must say what each run trained on and
where its weights came from.
"""

import json
import os
import subprocess
import sys

import numpy as np

from mh2f_jax import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests'))
import train_helper  # pylint: disable=g-import-not-at-top,wrong-import-position

TIMEOUT_S = 400
# The debug variant's tiny model, and only a few steps.
SHORT = ['--config.num_train_steps=2', '--config.eval_every_steps=2',
         '--config.checkpoint_every_steps=2', '--config.image_every_steps=0']


def _run(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
  result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _stand_in_pairs(root):
  """Folders of rainy/clean PNG pairs, as a user's own data would be laid out."""
  for split, count in (('train', 6), ('test', 2)):
    for pair in train_helper.fake_pairs(count, 24, 32, seed=len(split)):
      name = pair['name'].replace('.png', '')
      for kind in ('rainy', 'clean'):
        path = os.path.join(root, split, kind, f'{name}.png')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        files.write_atomic(path, files.encode_png(pair[kind]))


def test_mixture_then_fine_tuning_on_your_own_pairs(tmp_path):
  demo, mine = str(tmp_path / 'demo'), str(tmp_path / 'mydata_ft')
  # The three commands of docs/training.md, with a run to start from before the second.
  _stand_in_pairs(str(tmp_path / 'mydata'))
  prepared = str(tmp_path / 'prepared')
  _run('-m', 'mh2f_jax.datasets', 'prepare', 'paired_folder',
       f'--manual_dir={tmp_path / "mydata"}', f'--data_dir={prepared}')
  _run('train.py', '--config=configs/synthetic.py:debug', f'--workdir={demo}',
       '--config.data.dataset=paired_folder@train:1,paired_folder@test:3',
       f'--config.data.data_dir={prepared}', *SHORT)
  with open(os.path.join(demo, 'run.json')) as f:
    record = json.load(f)
  assert [(r['dataset'], r['split'], r['count'], r['weight'])
          for r in record['trained_on']] == [('paired_folder', 'train', 6, 0.25),
                                             ('paired_folder', 'test', 2, 0.75)]
  assert record['weights'] == {'init_from': None, 'seed': 0}
  _run('train.py', '--config=configs/synthetic.py:debug', f'--workdir={mine}',
       f'--config.init_from={demo}', '--config.data.dataset=paired_folder',
       f'--config.data.data_dir={prepared}', *SHORT)
  result = _run('eval.py', f'--workdir={mine}')

  report = os.path.join(mine, 'eval', 'paired_folder-test-step2', 'results.md')
  with open(report) as f:
    text = f.read()
  assert '- Trained on: paired_folder train (6 pairs, 100% of the batches).' in text
  assert f'- Started from: {demo}, step 2 (raw parameters).' in text, text
  with open(os.path.join(mine, 'config.json')) as f:
    assert json.load(f)['init_from'] == demo
  with open(os.path.join(os.path.dirname(report), 'summary.json')) as f:
    summary = json.load(f)
  assert summary['run']['weights']['step'] == 2
  assert np.isfinite(summary['psnr_y']) and 'paired_folder' in result.stdout
