"""The model's size and cost: parameters and XLA's FLOP count for one image."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from mh2f_jax import model as model_lib


def flops(fn: Any, *args: Any) -> float | None:
  """FLOPs of ``fn(*args)`` from XLA's cost analysis of the compiled computation."""
  analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older jax: one dict per computation.
    analysis = analysis[0] if analysis else None
  if not analysis or 'flops' not in analysis:
    return None
  return float(analysis['flops'])


def model_cost(model: model_lib.MH2FNet, params: Any, size: int = 256) -> dict[str, Any]:
  """Parameters and forward GFLOPs per ``size`` x ``size`` image (float32, batch 1).

  Args:
    model: the network.
    params: its parameters.
    size: the image side.

  Returns:
    ``{'parameters', 'image', 'gflops'}``; ``gflops`` is None where the backend's cost
    analysis gives no FLOP count.
  """
  image = np.zeros((1, size, size, 3), np.float32)
  count = flops(lambda p, x: model.apply({'params': p}, x), params, image)
  return {'parameters': model_lib.count_params(params), 'image': f'{size}x{size}',
          'gflops': None if count is None else count / 1e9}
