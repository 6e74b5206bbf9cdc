"""The tiny trained workdir and random parameters the inference-side tests share.

:func:`tiny_run` builds one tiny trained workdir per test process under pytest's base
temp folder; the evaluation, deraining, export and web page tests all use it.
"""

import dataclasses
import fcntl
import os
import shutil

import jax
import numpy as np
from PIL import Image

from mh2f_jax import metrics
from mh2f_jax import model as model_lib


# Test images of two sizes (one not a multiple of 4) keep the compile count low.
_TEST_SIZES = ((40, 48), (40, 48), (37, 45))


@dataclasses.dataclass
class TinyRun:
  """A tiny trained workdir and the paired_folder data it was trained on."""
  workdir: str
  manual_dir: str
  data_dir: str
  # name (as the dataset reports it) -> (rainy, clean) uint8, read from the PNG files.
  test_pairs: dict[str, tuple[np.ndarray, np.ndarray]]


def fake_pair(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """A smooth 'clean' image and a 'rainy' one with bright diagonal streaks (uint8)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width]
  freq = rng.uniform(0.05, 0.3, size=(3, 2))
  phase = rng.uniform(0, 6.28, size=3)
  clean = np.stack([0.5 + 0.4 * np.sin(freq[c, 0] * yy + freq[c, 1] * xx + phase[c])
                    for c in range(3)], -1)
  streaks = ((xx + 2 * yy + rng.integers(0, 7)) % 7 == 0) * rng.uniform(0.3, 0.6)
  rainy = np.clip(clean + streaks[..., None], 0, 1)
  return metrics.to_uint8(rainy), metrics.to_uint8(clean)


def rainy_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
  """The rainy half of :func:`fake_pair` (uint8)."""
  return fake_pair(height, width, seed)[0]


def _write_dataset(root: str) -> None:
  """A paired_folder tree: <split>/rainy/img<i>.png + <split>/clean/img<i>.png."""
  for split, sizes in (('train', ((32, 32),) * 4), ('test', _TEST_SIZES)):
    for i, (h, w) in enumerate(sizes):
      rainy, clean = fake_pair(h, w, seed=100 * (split == 'test') + i)
      for kind, image in (('rainy', rainy), ('clean', clean)):
        os.makedirs(os.path.join(root, split, kind), exist_ok=True)
        Image.fromarray(image).save(os.path.join(root, split, kind, f'img{i}.png'))


_RUNS: dict[str, TinyRun] = {}


def tiny_run(tmp_path_factory) -> TinyRun:
  """Builds (once per test session) a workdir trained for one step of a tiny model.

  The model is features=8, num_blocks=2 on a 4-pair paired_folder dataset; there is no
  validation, so the workdir has training checkpoints but no best checkpoint. Under
  pytest-xdist the workers share one build (the usual lock-file recipe of the xdist
  docs), in the folder above their own base temp folders.
  """
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent
  base = str(root / 'mh2f_tiny_run')
  if base in _RUNS:
    return _RUNS[base]
  with open(str(root / 'mh2f_tiny_run.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    manual_dir = os.path.join(base, 'data')
    workdir = os.path.join(base, 'workdir')
    done = os.path.join(base, 'DONE')
    if not os.path.exists(done):
      if os.path.exists(base):
        shutil.rmtree(base)
      _write_dataset(manual_dir)
      _train(manual_dir, os.path.join(base, 'tfds'), workdir)
      open(done, 'w').close()
  test_pairs = {}
  for name in _test_names():
    rainy, clean = (np.asarray(Image.open(os.path.join(manual_dir, name.replace('rainy', kind))))
                    for kind in ('rainy', 'clean'))
    test_pairs[name] = (rainy, clean)
  run = TinyRun(workdir, manual_dir, os.path.join(base, 'tfds'), test_pairs)
  _RUNS[base] = run
  return run


def _test_names() -> list[str]:
  return [f'test/rainy/img{i}.png' for i in range(len(_TEST_SIZES))]


def _train(manual_dir: str, data_dir: str, workdir: str) -> None:
  from absl import flags
  flags.FLAGS.mark_as_parsed()  # Grain reads absl flags.
  from configs import default
  from mh2f_jax.training import trainer
  config = default.get_config()
  config.data.dataset = 'paired_folder'
  config.data.manual_dir = manual_dir
  config.data.data_dir = data_dir
  config.data.patch_size = 16
  config.model.features = 8
  config.model.num_blocks = 2
  config.batch_size = 2
  config.num_train_steps = 1
  config.log_every_steps = 1
  config.checkpoint_every_steps = 1
  config.eval_every_steps = 0
  config.image_every_steps = 0
  config.num_eval_images = 0
  trainer.train_and_evaluate(config, workdir)


def random_params(model, seed: int = 0):
  """Random parameters of the right shapes, made with NumPy.

  (Quicker than ``model.init``, whose compilation takes long on a busy 2-core machine.)
  Kernels are normals of variance 0.5 / fan_in (the output then stays O(1)
  without normalisation), biases small, and ``gamma`` (zero at initialisation,
  which would make every MHEB the identity) is 0.5 so that the hourglasses, and with
  them the whole receptive field, take part.
  """
  rng = np.random.default_rng(seed)

  def make(path, leaf):
    name = jax.tree_util.keystr(path)
    if 'gamma' in name:
      return np.full(leaf.shape, 0.5, np.float32)
    if 'kernel' in name:
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) * np.sqrt(0.5 / fan_in)).astype(np.float32)
    return (0.01 * rng.standard_normal(leaf.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(make, model_lib.abstract_params(model))


def _tiny_model_and_params(distill: str = 'hadb'):
  model = model_lib.MH2FNet(features=8, num_blocks=2, distill=distill)
  return model, random_params(model)
