"""Tests for mh2f_jax/runtime/cpu_devices.py: how many CPU devices, and when it is set."""

import json
import os
import subprocess
import sys

import pytest

from mh2f_jax.runtime import cpu_devices

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize('setting,batch,accum,cores,expected', [
    (0, 16, 1, 2, 2), (0, 16, 1, 1, 1), (0, 15, 1, 2, 1), (0, 12, 1, 8, 6),
    (0, 16, 8, 4, 2), (0, 16, 16, 4, 1), (0, 1, 1, 16, 1), (0, 8, 3, 2, 1), (1, 16, 1, 2, 1), (3, 16, 1, 2, 3)])
def test_count_divides_the_batch_and_its_micro_batches(setting, batch, accum, cores, expected):
  assert cpu_devices.count(setting, batch, accum, available=cores) == expected


def _split(env, setting=0, batch=16):
  """In a fresh process: split_host's answer and JAX's device count after it."""
  code = ('import json; from mh2f_jax.runtime import cpu_devices; import jax; '
          f'got = cpu_devices.split_host({setting}, {batch}); '
          'print(json.dumps([got, jax.device_count()]))')
  # Without the tests' own one-device setting (conftest.py): a user's fresh shell.
  base = {k: v for k, v in os.environ.items() if k not in ('JAX_NUM_CPU_DEVICES', 'XLA_FLAGS')}
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        timeout=120, cwd=REPO, env={**base, 'JAX_PLATFORMS': 'cpu', **env},
                        check=True)
  return json.loads(done.stdout.strip().splitlines()[-1])


def test_split_host_sets_the_count_before_jax_starts():
  n = cpu_devices.count(0, 16)
  assert _split({}, 0, 16) == [n, n]
  assert _split({}, 3, 16) == [3, 3]
  assert _split({}, 1, 16) == [None, 1]  # One device: JAX's own.


def test_split_host_leaves_the_users_own_count():
  assert _split({'XLA_FLAGS': '--xla_force_host_platform_device_count=5'}) == [None, 5]
  assert _split({'JAX_NUM_CPU_DEVICES': '3'}) == [None, 3]


def test_split_host_after_jax_started_changes_nothing():
  import jax  # pylint: disable=g-import-not-at-top
  before = jax.device_count()  # Started (the test process).
  assert cpu_devices.split_host(0, 16) is None
  assert jax.device_count() == before
