"""Shared pytest setup: keep JAX on the CPU and quiet, and make the repo importable."""

import atexit
import os
import shutil
import sys
import tempfile

import numpy as np
import pytest

from metrics_helper import streaks

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One CPU device in every test process and the commands they start, whatever the order in
# which a pytest-xdist worker runs its tests (config.cpu_devices would otherwise split the
# host for the rest of a worker's tests whenever a run happens to start JAX first). The
# tests of the split and of several devices set their own count.
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The entry points turn JAX's persistent compilation cache on; under the tests it lives in
# a temporary folder (shared by the subprocesses the tests start), never in ~/.cache.
# Each test process makes its own, pytest-xdist's workers too, although they inherit the
# main process's environment: JAX writes an entry without a lock, so a process could read
# one that another has half written. A folder the user set is kept.
_OWN_CACHE = "MH2F_TEST_COMPILATION_CACHE"  # the folder made here, as opposed to the user's
if os.environ.get("MH2F_COMPILATION_CACHE") in (None, os.environ.get(_OWN_CACHE)):
  _cache_dir = tempfile.mkdtemp(prefix="mh2f-test-jax-cache-")
  os.environ["MH2F_COMPILATION_CACHE"] = os.environ[_OWN_CACHE] = _cache_dir
  atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)


# Shared by the loss and SSIM tests: photo crops and degraded versions of them (the
# float64 SSIM they are checked against is in metrics_helper.py). Helpers that tests import
# live in *_helper.py modules, never here: the test folders are not packages, so any
# conftest.py is imported under the one module name "conftest".
_H, _W = 48, 64


@pytest.fixture(scope='session')
def degraded_batch():
  """Clean photo crops and degraded versions (noise, blur, streaks), float32."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  from skimage import data  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  clean = np.stack([
      data.astronaut()[150:150 + _H, 180:180 + _W],
      data.coffee()[100:100 + _H, 200:200 + _W],
      data.chelsea()[80:80 + _H, 150:150 + _W],
  ]).astype(np.float64) / 255.0
  noisy = clean[0] + rng.normal(0.0, 0.08, clean[0].shape)  # leaves [0, 1]
  blurred = ndimage.gaussian_filter(clean[1], sigma=(1.5, 1.5, 0))
  streaked = streaks(clean[2], rng)
  pred = np.stack([noisy, blurred, streaked])
  return pred.astype(np.float32), clean.astype(np.float32)


# The inference tests share one Derainer per module.
@pytest.fixture(name='hadb_derainer', scope='module')
def _hadb_derainer():
  """A Derainer of a random tiny model with HADB (one per test module)."""
  from mh2f_jax import inference  # pylint: disable=g-import-not-at-top
  from inference_helper import _tiny_model_and_params  # pylint: disable=g-import-not-at-top
  return inference.Derainer(*_tiny_model_and_params('hadb'))
