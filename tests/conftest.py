"""Shared pytest setup: keep JAX on the CPU and quiet, and make the repo importable."""

import atexit
import os
import shutil
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The entry points turn JAX's persistent compilation cache on; under the tests it lives in
# a temporary folder (shared by the subprocesses the tests start), never in ~/.cache.
if "MH2F_COMPILATION_CACHE" not in os.environ:
  _cache_dir = tempfile.mkdtemp(prefix="mh2f-test-jax-cache-")
  os.environ["MH2F_COMPILATION_CACHE"] = _cache_dir
  atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
