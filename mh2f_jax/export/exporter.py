"""Exports a workdir's model to a file, checked against the JAX forward pass first.

Formats: ``onnx`` (:mod:`mh2f_jax.model.onnx_graph`'s graph with the run's step and model
config in its metadata), ``jax`` (:mod:`mh2f_jax.export.jax_artifact`) and ``params`` (the
bare parameters file of :mod:`mh2f_jax.model.params_file`, what ``init_from`` and
``Derainer.from_params_file`` read). Nothing is written unless the exported model, run by
its own runtime (for ``params``: the Flax network on the parameters read back from the
bytes) on seeded images of ``CHECK_SHAPES``, is within ``TOLERANCE`` of JAX.
"""

from collections.abc import Sequence
import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np

from mh2f_jax import errors
from mh2f_jax import files
from mh2f_jax import inference
from mh2f_jax import model as model_lib
from mh2f_jax.export import jax_artifact
from mh2f_jax.inference import backends
from mh2f_jax.model import onnx_graph
from mh2f_jax.model import params_file
from mh2f_jax.workdir import checkpoints

# Max abs difference allowed between the exported model and the JAX forward pass.
TOLERANCE = 1e-4
# Check images: (batch, height, width); the first is not a multiple of 4.
CHECK_SHAPES = ((1, 37, 45), (2, 64, 48))
# What jax.export lowers for.
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')
# What runs each format's file for the check.
RUNTIMES = {'onnx': 'ONNX Runtime', 'jax': 'the deserialized artifact',
            'params': 'the Flax network on the parameters read back'}


@dataclasses.dataclass
class Export:
  """What :func:`export_workdir` made: the bytes, and how they compare with JAX."""
  data: bytes
  step: int
  checkpoint: Any
  runtime: str  # What ran the exported model for the check.
  max_difference: float
  check_sizes: list[str]

  @property
  def ok(self) -> bool:
    return self.max_difference <= TOLERANCE


def write_output(path: str, data: bytes, overwrite: bool) -> None:
  """Writes ``data`` atomically; without ``overwrite``, never replaces an existing file.

  Raises:
    errors.UserError: the file exists and ``overwrite`` is False.
  """
  if overwrite:
    files.write_atomic(path, data)
    return
  try:
    files.write_new(path, data)
  except FileExistsError:
    raise errors.UserError(f'{path} exists: pass --overwrite to replace it') from None


def _check_output_path(path: str, workdir: str, overwrite: bool) -> None:
  if os.path.isdir(path):
    raise errors.UserError(f'--output {path} is a folder: give a file name')
  if os.path.exists(path) and not overwrite:
    raise errors.UserError(f'{path} exists: pass --overwrite to replace it')
  files.refuse_inside(path, [os.path.join(workdir, checkpoints.CONFIG_FILE),
                             os.path.join(workdir, checkpoints.CHECKPOINT_DIR)], 'the export')
  files.check_writable_folder(os.path.dirname(os.path.abspath(path)))


def _platforms(text: str) -> list[str]:
  """The --platforms list, validated."""
  platforms = [p.strip() for p in text.split(',') if p.strip()]
  if not platforms or set(platforms) - set(PLATFORMS):
    raise errors.UserError(f'--platforms must name some of {", ".join(PLATFORMS)}, '
                           f'got {text!r}')
  here = jax.export.default_export_platform()
  if here not in platforms:
    raise errors.UserError(f'--platforms must include {here}: the artifact is checked by '
                           f'running it on this machine')
  return platforms


def _to_onnx(model, params, step: int, checkpoint: Any) -> tuple[bytes, Any]:
  """Serialized ONNX bytes and a forward function running them in ONNX Runtime."""
  if not backends.onnxruntime_available():
    raise errors.UserError(f'--format=onnx needs onnx and onnxruntime: {backends.INSTALL_HINT}')
  proto = onnx_graph.build(model, params)
  model_config = {f: getattr(model, f) for f in model_lib.ARCHITECTURE_FIELDS}
  for key, value in (('step', str(step)), ('checkpoint', str(checkpoint)),
                     ('model_config', json.dumps(model_config))):
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, value
  data = proto.SerializeToString()
  return data, backends.session_forward(backends.onnxruntime_session(data))


def _to_jax(model, params, platforms: Sequence[str]) -> tuple[bytes, Any]:
  """Serialized ``jax.export`` bytes and a forward function running the deserialized copy."""
  exported = jax_artifact.export(model, params, platforms)
  data = bytes(exported.serialize())
  loaded = jax.export.deserialize(bytearray(data))
  return data, lambda x: np.asarray(loaded.call(x))


def _to_params(model, params) -> tuple[bytes, Any]:
  """Parameters file bytes and a JAX forward function on the parameters read back."""
  data = params_file.to_bytes(params)
  loaded = params_file.from_bytes(data, 'the parameters file')
  apply = jax.jit(lambda p, x: model.apply({'params': p}, x))
  return data, lambda x: np.asarray(apply(loaded, x))


def max_difference(forward, reference) -> tuple[float, list[str]]:
  """Largest abs difference of two forward functions on the seeded ``CHECK_SHAPES``."""
  rng = np.random.default_rng(0)
  worst, sizes = 0.0, []
  for b, h, w in CHECK_SHAPES:
    x = rng.random((b, h, w, 3), dtype=np.float32)
    worst = max(worst, float(np.max(np.abs(forward(x) - reference(x)))))
    sizes.append(f'{b}x{h}x{w}')
  return worst, sizes


def export_workdir(workdir: str, fmt: str, output: str, *, checkpoint: Any = 'best',
                   platforms: str = 'cpu,cuda', overwrite: bool = False) -> Export:
  """Exports a workdir's model and checks it; writes ``output`` only if the check holds.

  Args:
    workdir: a training workdir.
    fmt: one of ``FORMATS``.
    output: the file to write.
    checkpoint: 'best', 'latest' or a step.
    platforms: ``fmt='jax'`` only: comma-separated platforms to lower for.
    overwrite: replace ``output`` if it exists.

  Returns:
    The :class:`Export`; ``output`` holds ``data`` when ``ok``, and is untouched otherwise.

  Raises:
    errors.UserError: bad workdir/checkpoint, existing or unsafe output, missing packages.
  """
  workdir = os.fspath(workdir)
  _check_output_path(output, workdir, overwrite)
  platform_list = _platforms(platforms) if fmt == 'jax' else None
  derainer = inference.Derainer.from_workdir(workdir, checkpoint, backend='jax')
  if fmt == 'onnx':
    data, forward = _to_onnx(derainer.model, derainer.params, derainer.step,
                             derainer.checkpoint)
  elif fmt == 'params':
    data, forward = _to_params(derainer.model, derainer.params)
  else:
    data, forward = _to_jax(derainer.model, derainer.params, platform_list)
  worst, sizes = max_difference(forward, derainer.forward)
  runtime = RUNTIMES[fmt]
  result = Export(data, derainer.step, derainer.checkpoint, runtime, worst, sizes)
  if result.ok:
    write_output(output, data, overwrite)
  return result
