"""Correctness on the accelerator: the model's output against the same computation on the CPU.

The parameters and the input are fixed (initialised from the seed on the CPU); the
forward pass is compiled for the accelerator and for the CPU separately and the outputs
compared. With ``jax.default_matmul_precision('highest')`` both sides compute
convolutions in full float32, so any difference beyond float rounding is a wrong number
(the check passes at ``TOLERANCE``). With JAX's default precision, recent NVIDIA GPUs
use TF32 (10-bit mantissa) inside convolutions: that error is reported, not checked.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from mh2f_jax import model as model_lib

TOLERANCE = 1e-4  # Largest absolute difference allowed at 'highest' precision.


def fixed_inputs(model: model_lib.MH2FNet, seed: int, size: int) -> tuple[Any, np.ndarray]:
  """Parameters initialised on the CPU from ``seed`` and one fixed image in [0, 1]."""
  cpu = jax.devices('cpu')[0]
  with jax.default_device(cpu):
    params = jax.jit(model.init)(jax.random.key(seed),
                                 np.zeros((1, 16, 16, 3), np.float32))['params']
  image = np.random.default_rng(seed).random((1, size, size, 3), dtype=np.float32)
  return jax.device_get(params), image


def forward_on(model: model_lib.MH2FNet, params: Any, image: np.ndarray, device: Any,
               precision: str | None) -> np.ndarray:
  """The model's output computed on ``device`` at ``precision`` (None: JAX's default)."""
  apply = lambda p, x: model.apply({'params': p}, x)
  params, image = jax.device_put((params, image), device)
  if precision is None:
    return np.asarray(jax.jit(apply)(params, image))
  with jax.default_matmul_precision(precision):
    # Compiled inside the context: the precision is part of the compiled computation.
    return np.asarray(jax.jit(apply)(params, image))


def check(model: model_lib.MH2FNet, seed: int, size: int) -> list[dict[str, Any]]:
  """Compares the default device's output with the CPU's, at both precisions.

  Args:
    model: a float32 network.
    seed: seeds the parameters and the input.
    size: the input image's side.

  Returns:
    Two rows: ``precision``, ``device``, ``max_abs_error``, ``mean_abs_error``,
    ``output_range`` (the reference's max minus min, for scale) and ``passed`` (True or
    False at 'highest'; None at the default precision, which is only reported).
  """
  params, image = fixed_inputs(model, seed, size)
  device, cpu = jax.devices()[0], jax.devices('cpu')[0]
  reference = forward_on(model, params, image, cpu, 'highest')
  rows = []
  for precision in ('highest', None):
    if device == cpu and precision == 'highest':
      output = reference  # A CPU-only machine: the same computation, compiled once.
    else:
      output = forward_on(model, params, image, device, precision)
    error = np.abs(output.astype(np.float64) - reference)
    max_error = float(error.max())
    rows.append({'precision': precision or 'default', 'device': device.device_kind,
                 'image': f'{size}x{size}', 'max_abs_error': max_error,
                 'mean_abs_error': float(error.mean()),
                 'output_range': float(reference.max() - reference.min()),
                 'passed': (bool(np.isfinite(max_error) and max_error <= TOLERANCE)
                            if precision else None)})
  return rows
