"""Exports a trained MH2F-Net: ``python -m mh2f_jax.export --workdir=W --format=F --output=P``.

Formats (details and loading examples in ``docs/export.md``):

* ``onnx``: an ONNX graph (opset 17) in NCHW layout with NHWC float32 input ``images``
  and output ``derained`` of dynamic batch, height and width. Needs the ``onnx`` and
  ``onnxruntime`` packages.
* ``jax``: a serialized ``jax.export`` artifact (StableHLO, parameters inside) with
  symbolic batch, height and width, lowered for CPU and CUDA; it runs with ``jax`` alone.

Before anything is written, the exported model is run (ONNX Runtime, or the deserialized
artifact) on seeded random images of two sizes, one of them not a multiple of 4, and its
outputs are compared with the JAX forward pass: a difference above ``TOLERANCE`` is an
error and nothing is written. The checkpoint defaults to the workdir's best (the latest
when no validation was recorded), as for ``mh2f_jax.derain``.

Safety: an existing output file is never replaced without ``--overwrite``; the file is
written atomically (a reader never sees half of it), and never into the workdir's
``config.json`` or checkpoints.

Exit status: 0 on success, 2 for a user error (one ``error:`` line), 1 when the exported
model does not match the JAX forward pass.
"""

from collections.abc import Sequence
import json
import os
import sys
from typing import Any

from absl import flags
from absl import logging as absl_logging
import numpy as np

from mh2f_jax import cli
from mh2f_jax import errors
from mh2f_jax import files

FORMATS = ('onnx', 'jax')
# Max abs difference allowed between the exported model and the JAX forward pass.
TOLERANCE = 1e-4
# Check images: (batch, height, width); the first is not a multiple of 4.
CHECK_SHAPES = ((1, 37, 45), (2, 64, 48))
# What jax.export lowers for.
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')


def define_flags(values: flags.FlagValues, argv: Sequence[str]) -> None:
  """Defines the export flags on ``values``."""
  del argv  # No config overrides.
  flags.DEFINE_string('workdir', None, 'Training workdir (config.json and checkpoints/).',
                      flag_values=values, required=True)
  flags.DEFINE_enum('format', None, list(FORMATS), 'onnx or jax.', flag_values=values,
                    required=True)
  flags.DEFINE_string('output', None, 'The file to write.', flag_values=values,
                      required=True)
  flags.DEFINE_string('checkpoint', 'best', "'best' (default; 'latest' when no validation "
                      "was recorded), 'latest' or a step number.", flag_values=values)
  flags.DEFINE_string('platforms', 'cpu,cuda', '--format=jax only: comma-separated '
                      'platforms to lower for.', flag_values=values)
  flags.DEFINE_bool('overwrite', False, 'Replace the output file if it exists.',
                    flag_values=values)


def write_new(path: str, data: bytes, overwrite: bool) -> None:
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
  files.refuse_inside(path, [os.path.join(workdir, 'config.json'),
                             os.path.join(workdir, 'checkpoints')], 'the export')


def _platforms(text: str) -> list[str]:
  """The --platforms list, validated."""
  import jax  # pylint: disable=import-outside-toplevel
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
  from mh2f_jax import backends  # pylint: disable=import-outside-toplevel
  if not backends.onnxruntime_available():
    raise errors.UserError(f'--format=onnx needs onnx and onnxruntime: {backends.INSTALL_HINT}')
  from mh2f_jax import onnx_export  # pylint: disable=import-outside-toplevel
  proto = onnx_export.build(model, params)
  model_config = {f: getattr(model, f) for f in ('features', 'num_blocks', 'dcr_layers',
                                                 'dcr_growth', 'attention_reduction',
                                                 'distill', 'fusion', 'global_residual')}
  for key, value in (('step', str(step)), ('checkpoint', str(checkpoint)),
                     ('model_config', json.dumps(model_config))):
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, value
  data = proto.SerializeToString()
  return data, backends.session_forward(backends.onnxruntime_session(data))


def _to_jax(model, params, platforms: Sequence[str]) -> tuple[bytes, Any]:
  """Serialized ``jax.export`` bytes and a forward function running the deserialized copy."""
  import jax  # pylint: disable=import-outside-toplevel
  from mh2f_jax import jax_export  # pylint: disable=import-outside-toplevel
  exported = jax_export.export(model, params, platforms)
  data = bytes(exported.serialize())
  loaded = jax.export.deserialize(bytearray(data))
  return data, lambda x: np.asarray(loaded.call(x))


def max_difference(forward, reference) -> tuple[float, list[str]]:
  """Largest abs difference of two forward functions on the seeded ``CHECK_SHAPES``."""
  rng = np.random.default_rng(0)
  worst, sizes = 0.0, []
  for b, h, w in CHECK_SHAPES:
    x = rng.random((b, h, w, 3), dtype=np.float32)
    worst = max(worst, float(np.max(np.abs(forward(x) - reference(x)))))
    sizes.append(f'{b}x{h}x{w}')
  return worst, sizes


def export_workdir(args: flags.FlagValues, positional: Sequence[str] = ()) -> int:
  """Exports, checks against the JAX forward pass and writes; returns the exit status.

  Raises:
    errors.UserError: bad workdir/checkpoint, existing or unsafe output, missing packages.
  """
  if positional:
    raise errors.UserError(f'unexpected arguments: {" ".join(positional)}')
  from mh2f_jax import inference  # pylint: disable=import-outside-toplevel
  workdir = os.fspath(args.workdir)
  _check_output_path(args.output, workdir, args.overwrite)
  platforms = _platforms(args.platforms) if args.format == 'jax' else None
  derainer = inference.Derainer.from_workdir(workdir, args.checkpoint, backend='jax')
  print(f'model: {workdir} at step {derainer.step} ({derainer.checkpoint})')
  if args.format == 'onnx':
    data, forward = _to_onnx(derainer.model, derainer.params, derainer.step,
                             derainer.checkpoint)
  else:
    data, forward = _to_jax(derainer.model, derainer.params, platforms)
  worst, sizes = max_difference(forward, derainer.forward)
  runtime = 'ONNX Runtime' if args.format == 'onnx' else 'the deserialized artifact'
  if not worst <= TOLERANCE:
    print(f'error: {runtime} differs from the JAX forward pass by {worst:.3g} '
          f'(> {TOLERANCE:g}) on {", ".join(sizes)} images; nothing written', file=sys.stderr)
    return 1
  write_new(args.output, data, args.overwrite)
  print(f'checked in {runtime}: max abs difference to JAX {worst:.2g} on '
        f'{" and ".join(sizes)} (NxHxW) images')
  print(f'wrote {args.output} ({args.format}, {len(data) / 2**20:.1f} MiB)')
  return 0


def run(argv: Sequence[str] | None = None) -> int:
  """The ``export`` command; returns the exit status.

  Args:
    argv: arguments without the program name; None reads ``sys.argv``.

  Returns:
    0 on success, 1 if the export does not match JAX, 2 for a user error.
  """
  # Orbax reports routine restore details as absl warnings: only errors are shown.
  return cli.run(export_workdir, define_flags, argv, prog='python -m mh2f_jax.export',
                 doc=__doc__, log_level=absl_logging.ERROR)


if __name__ == '__main__':
  cli.exit_with(run())
