"""What the benchmark runs on: library versions, devices and their memory."""

from __future__ import annotations

from importlib import metadata
import os
import platform
from typing import Any

import jax

from mh2f_jax.runtime import host_memory

# The CUDA plugin's distribution names (jax[cuda12] / jax[cuda13]).
_PLUGINS = ('jax-cuda13-plugin', 'jax-cuda12-plugin', 'jax-cuda13-pjrt', 'jax-cuda12-pjrt')
GIB = 1024 ** 3


def versions() -> dict[str, str | None]:
  """Versions of Python, jax, jaxlib, flax and the CUDA plugin (None where absent)."""
  found = {'python': platform.python_version()}
  for name in ('jax', 'jaxlib', 'flax', 'optax', 'grain', *_PLUGINS):
    try:
      found[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      if name not in _PLUGINS:
        found[name] = None
  return found


def memory_stats(device: Any) -> dict[str, int] | None:
  """``device.memory_stats()``, or None where the platform keeps none (the CPU)."""
  try:
    stats = device.memory_stats()
  except (AttributeError, NotImplementedError, RuntimeError):
    return None
  return dict(stats) if stats else None


def peak_gib(device: Any) -> float | None:
  """The device's peak memory in use since the process started, in GiB (None: unknown)."""
  stats = memory_stats(device)
  if not stats or 'peak_bytes_in_use' not in stats:
    return None
  return stats['peak_bytes_in_use'] / GIB


def describe_devices() -> list[dict[str, Any]]:
  """One dict per visible device: id, platform, kind and memory limit (GiB, or None)."""
  rows = []
  for device in jax.devices():
    stats = memory_stats(device) or {}
    limit = stats.get('bytes_limit')
    rows.append({'device': device.id, 'platform': device.platform,
                 'kind': device.device_kind,
                 'memory_gib': None if limit is None else limit / GIB})
  return rows


def host() -> dict[str, Any]:
  """The host: CPUs, the 1-minute load average (other work slows every figure), the allocator."""
  return {'cpus': os.cpu_count(), 'load_avg_1min': os.getloadavg()[0],
          'host_memory': host_memory.keep_freed_memory(),
          'process_count': jax.process_count()}
