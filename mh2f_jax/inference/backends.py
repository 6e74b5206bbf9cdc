"""Forward functions for inference: the jitted JAX forward pass or ONNX Runtime.

A forward function maps a float32 ``(B, H, W, 3)`` NumPy batch in [0, 1] to the raw
float32 network output of the same shape. ``derainer.Derainer`` holds one and calls it
for whole images and tiles alike, so every deraining path can run on either backend.

Backends:

* ``'jax'``: :func:`mh2f_jax.inference.size_buckets.forward`, the reference; runs wherever JAX
  runs (CPU, GPU, TPU) and compiles one program per size bucket, not per size.
* ``'onnxruntime'``: the model as an NCHW ONNX graph (:mod:`mh2f_jax.model.onnx_graph`) in an
  ONNX Runtime CPU session; no compilation, any input shape. Faster than JAX on CPU
  (``docs/performance.md``). Needs the optional ``onnx`` and ``onnxruntime`` packages.
* ``'auto'``: ONNX Runtime when JAX's default backend is the CPU, the model computes in
  float32 and both packages are installed; JAX otherwise. On a CPU without the packages
  it logs a one-line note saying how to get the faster backend.
"""

import functools
import importlib.util
import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mh2f_jax import errors
from mh2f_jax import model as model_lib
from mh2f_jax.inference import size_buckets

_log = logging.getLogger(__name__)

BACKENDS = ('auto', 'jax', 'onnxruntime')
INSTALL_HINT = "pip install onnx onnxruntime (or the package's [export] extra)"

ForwardFn = Callable[[np.ndarray], np.ndarray]
# Starts a forward pass and returns a function that waits for its output.
DispatchFn = Callable[[np.ndarray], Callable[[], np.ndarray]]


def onnxruntime_available() -> bool:
  """Whether the packages of the 'onnxruntime' backend (onnx, onnxruntime) import."""
  return all(importlib.util.find_spec(name) is not None for name in ('onnx', 'onnxruntime'))


def choose_backend(backend: str, model: model_lib.MH2FNet) -> str:
  """The concrete backend ('jax' or 'onnxruntime') for a requested one.

  Args:
    backend: one of ``BACKENDS``.
    model: the module (its computation dtype matters for 'auto').

  Returns:
    'jax' or 'onnxruntime'.

  Raises:
    errors.UserError: (also a ValueError) for an unknown backend, or 'onnxruntime'
      requested but not installed.
  """
  if backend not in BACKENDS:
    raise _BackendError(f'backend must be one of {", ".join(map(repr, BACKENDS))}, '
                        f'got {backend!r}')
  if backend == 'onnxruntime':
    if not onnxruntime_available():
      raise _BackendError(f'the onnxruntime backend needs onnx and onnxruntime: {INSTALL_HINT}')
    return backend
  if backend == 'jax' or jax.default_backend() != 'cpu':
    return 'jax'
  if jnp.dtype(model.dtype) != jnp.float32:
    # The ONNX graph computes in float32; keep the configured bfloat16 numerics.
    return 'jax'
  if not onnxruntime_available():
    _log.warning('onnxruntime is not installed: deraining with JAX, which is slower on '
                 'CPU (%s)', INSTALL_HINT)
    return 'jax'
  return 'onnxruntime'


def jax_forward(model: model_lib.MH2FNet, params: Any) -> ForwardFn:
  """The jitted JAX forward pass as a forward function (params bound, on device).

  Images go through their size bucket (:mod:`mh2f_jax.inference.size_buckets`): any mix
  of sizes compiles a bounded number of programs, with the unpadded network's output.
  """
  return lambda batch: size_buckets.forward(model, params, batch)


def jax_dispatch(model: model_lib.MH2FNet, params: Any) -> DispatchFn:
  """:func:`jax_forward`, asynchronous: the output is waited for when asked for."""
  return lambda batch: size_buckets.dispatch(model, params, batch)


def onnxruntime_session(proto_or_bytes: Any, *, tiles: bool = False) -> Any:
  """An ONNX Runtime CPU session for an ``onnx.ModelProto`` or serialized model bytes.

  ``tiles=True`` (the exact tiling's many stage sessions): the session allocates from one
  memory arena shared by all such sessions, instead of its own arena, which would keep
  its largest activations allocated after it ran (a few hundred MB per stage).
  """
  import onnxruntime as ort  # pylint: disable=import-outside-toplevel
  if not isinstance(proto_or_bytes, (bytes, bytearray)):
    proto_or_bytes = proto_or_bytes.SerializeToString()
  options = ort.SessionOptions()
  options.log_severity_level = 3  # Errors only: its notes are not for the user.
  if tiles:
    _shared_arena(ort)
    options.add_session_config_entry('session.use_env_allocators', '1')
  return ort.InferenceSession(proto_or_bytes, options, providers=['CPUExecutionProvider'])


@functools.lru_cache(maxsize=None)
def _shared_arena(ort: Any) -> None:
  """Registers one CPU memory arena for every session that asks for it (once)."""
  info = ort.OrtMemoryInfo('Cpu', ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                           ort.OrtMemType.DEFAULT)
  ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))


def onnxruntime_forward(model: model_lib.MH2FNet, params: Any) -> ForwardFn:
  """The model as an NCHW ONNX graph in an ONNX Runtime session, as a forward function."""
  from mh2f_jax.model import onnx_graph  # pylint: disable=import-outside-toplevel
  proto = onnx_graph.build(model, jax.tree.map(np.asarray, params))
  return session_forward(onnxruntime_session(proto))


def session_forward(session: Any) -> ForwardFn:
  """The forward function of a session of the exported graph (``images -> derained``)."""
  from mh2f_jax.model import onnx_graph  # pylint: disable=import-outside-toplevel

  def forward(batch: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(batch, np.float32)
    return session.run([onnx_graph.OUTPUT_NAME], {onnx_graph.INPUT_NAME: x})[0]

  return forward


def make_forward(model: model_lib.MH2FNet, params: Any,
                 backend: str = 'jax') -> tuple[str, ForwardFn]:
  """Resolves ``backend`` and builds its forward function.

  Args:
    model: the module.
    params: its ``params`` pytree; bound into the function.
    backend: one of ``BACKENDS``.

  Returns:
    ``(name, forward)``: the backend used ('jax' or 'onnxruntime') and the function.

  Raises:
    errors.UserError: see :func:`resolve`.
  """
  name = choose_backend(backend, model)
  if name == 'onnxruntime':
    return name, onnxruntime_forward(model, params)
  return name, jax_forward(model, params)


class _BackendError(errors.UserError, ValueError):
  """An unknown or unavailable backend (a ValueError for library callers)."""
