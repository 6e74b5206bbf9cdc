"""The PyTorch peer (``bench_torch.py``, kept outside the project), run as a subprocess.

The peer is MH2F-Net built again in PyTorch; its script times the same train step and
a forward pass and prints one JSON line. It runs in its own interpreter
(``--peer_python``: torch is never a dependency of this project) on the same device as
the project, in float32, with ``--bf16`` and with ``--compile``; and on a CPU in float32
with the host-memory settings the project's commands apply to themselves
(:mod:`mh2f_jax.runtime.host_memory`, given to the peer as ``GLIBC_TUNABLES``), so the
ratio is also known like for like.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from mh2f_jax.runtime import host_memory

# Where the peer lives beside a checkout: <root>/shared/peer or <root>/../shared/peer.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_LOCATIONS = (os.path.join(_ROOT, 'shared', 'peer', 'bench_torch.py'),
                     os.path.join(os.path.dirname(_ROOT), 'shared', 'peer', 'bench_torch.py'))
# (name, flags, environment added); the allocator variant runs on a CPU only.
SAME_ALLOCATOR = 'float32, host_memory allocator'
VARIANTS = (('float32', (), {}),
            (SAME_ALLOCATOR, (), {'GLIBC_TUNABLES': host_memory.GLIBC_TUNABLES}),
            ('bfloat16', ('--bf16',), {}), ('float32, compiled', ('--compile',), {}))


def find_script(path: str | None) -> str | None:
  """The peer script: ``path`` when given, else the first default location that exists."""
  if path:
    return path if os.path.isfile(path) else None
  return next((p for p in DEFAULT_LOCATIONS if os.path.isfile(p)), None)


def run_peer(python: str, script: str, args: list[str], timeout: float,
             env: dict[str, str] | None = None) -> dict[str, Any]:
  """Runs the peer once; its JSON line, or ``{'error': ...}`` (a failure, a timeout).

  Args:
    python: the interpreter (one with torch).
    script: ``bench_torch.py``.
    args: its flags.
    timeout: seconds before it is stopped.
    env: variables added to this process's environment for the peer.
  """
  try:
    done = subprocess.run([python, script, *args], capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, **(env or {})})
  except subprocess.TimeoutExpired:
    return {'error': f'timed out after {timeout:.0f} s'}
  except OSError as e:  # No such interpreter.
    return {'error': f'{python}: {e.strerror}', 'no_torch': True}
  lines = [l for l in done.stdout.splitlines() if l.startswith('{')]
  if done.returncode or not lines:
    tail = (done.stderr.strip().splitlines() or ['no output'])[-1]
    return {'error': f'exit status {done.returncode}: {tail}',
            'no_torch': "No module named 'torch'" in done.stderr}
  return json.loads(lines[-1])


def peer_args(platform: str, batch: int, patch: int, size: int, steps: int,
              model: dict[str, int]) -> list[str]:
  """The peer's flags for the project's device and sizes."""
  return ['--device', 'cuda' if platform == 'gpu' else 'cpu', '--batch', str(batch),
          '--patch', str(patch), '--size', str(size), '--steps', str(steps),
          '--features', str(model['features']), '--blocks', str(model['num_blocks'])]


def default_python() -> str:
  """The interpreter the peer runs with unless ``--peer_python`` says otherwise."""
  return sys.executable
