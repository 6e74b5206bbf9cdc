"""host_memory: a large block freed by a worker thread is reused, not faulted in again."""

import json
import os
import subprocess
import sys

import pytest

from mh2f_jax.runtime import host_memory

# A worker thread allocates, fills and frees 256 MiB twice, as XLA's temporaries of two
# executions; the page faults of the second fill are printed.
_SCRIPT = r'''
import json, resource, sys, threading
import numpy as np
np._core.multiarray._set_madvise_hugepage(False)  # Count 4 KiB pages, as XLA's are.
from mh2f_jax.runtime import host_memory
if sys.argv[1] == 'keep':
  allocator = host_memory.keep_freed_memory()
else:
  allocator = 'untouched'
faults = []
def step():
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  block = np.ones(64 << 20, np.float32)
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
  del block
for _ in range(2):
  t = threading.Thread(target=step); t.start(); t.join()
print(json.dumps({'allocator': allocator, 'faults': faults}))
'''


def _run(mode, **env):
  out = subprocess.run([sys.executable, '-c', _SCRIPT, mode], capture_output=True,
                       text=True, check=True, env={**os.environ, **env}, timeout=120)
  return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.mark.skipif(host_memory._glibc() is None, reason='glibc only')
def test_a_freed_block_is_reused_without_page_faults():
  kept, _ = _run('keep')
  assert kept['allocator'] == host_memory.KEPT
  pages = (256 << 20) // 4096
  assert kept['faults'][0] > pages // 2  # The first fill touches fresh memory.
  assert kept['faults'][1] < pages // 50, kept
  # glibc's defaults give the block back and fault every page in again.
  plain, _ = _run('plain')
  assert plain['faults'][1] > pages // 2, plain


@pytest.mark.skipif(host_memory._glibc() is None, reason='glibc only')
def test_system_keeps_the_defaults_without_a_note():
  kept, stderr = _run('keep', MH2F_HOST_MEMORY='system')
  assert kept['allocator'].startswith('system default')
  assert kept['faults'][1] > (256 << 20) // 4096 // 2
  assert 'note' not in stderr


def test_another_c_library_is_noted_once(monkeypatch, caplog):
  monkeypatch.setattr(host_memory, '_state', {})
  monkeypatch.setattr(host_memory, '_glibc', lambda: None)
  monkeypatch.delenv(host_memory.ENV, raising=False)
  with caplog.at_level('WARNING', logger='mh2f_jax'):
    first = host_memory.keep_freed_memory()
    assert host_memory.keep_freed_memory() == first
  notes = [r.getMessage() for r in caplog.records if r.name == 'mh2f_jax']
  assert len(notes) == 1 and 'is kept as it is' in notes[0], notes

