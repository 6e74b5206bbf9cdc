"""Exports a trained MH2F-Net: ``python -m mh2f_jax.export --workdir=W --format=F --output=P``.

Formats (details and loading examples in ``docs/export.md``):

* ``onnx``: an ONNX graph (opset 17) in NCHW layout with NHWC float32 input ``images``
  and output ``derained`` of dynamic batch, height and width. Needs the ``onnx`` and
  ``onnxruntime`` packages.
* ``jax``: a serialized ``jax.export`` artifact (StableHLO, parameters inside) with
  symbolic batch, height and width, lowered for CPU and CUDA; it runs with ``jax`` alone.
* ``params``: a bare parameters file (the ``params`` tree as Flax msgpack, no model config
  inside), what training's ``init_from`` and ``Derainer.from_params_file`` read.

Before anything is written, the exported model is run (ONNX Runtime, the deserialized
artifact, or the Flax network on the parameters read back) on seeded random images of
two sizes, one of them not a multiple of 4, and its outputs are compared with the JAX
forward pass: a difference above ``TOLERANCE`` is an error and nothing is written. The checkpoint defaults to the workdir's best (the latest
when no validation was recorded), as for ``mh2f_jax.derain``.

Safety: an existing output file is never replaced without ``--overwrite``; the file is
written atomically (a reader never sees half of it), and never into the workdir's
``config.json`` or checkpoints.

Exit status: 0 on success, 2 for a user error (one ``error:`` line), 1 when the exported
model does not match the JAX forward pass.
"""

from collections.abc import Sequence
import sys

from absl import flags
from absl import logging as absl_logging

from mh2f_jax import cli
from mh2f_jax import errors

FORMATS = ('onnx', 'jax', 'params')

def define_flags(values: flags.FlagValues, argv: Sequence[str]) -> None:
  """Defines the export flags on ``values``."""
  del argv  # No config overrides.
  flags.DEFINE_string('workdir', None, 'Training workdir (config.json and checkpoints/).',
                      flag_values=values, required=True)
  flags.DEFINE_enum('format', None, list(FORMATS), 'onnx, jax or params.', flag_values=values,
                    required=True)
  flags.DEFINE_string('output', None, 'The file to write.', flag_values=values,
                      required=True)
  flags.DEFINE_string('checkpoint', 'best', "'best' (default; 'latest' when no validation "
                      "was recorded), 'latest' or a step number.", flag_values=values)
  flags.DEFINE_string('platforms', 'cpu,cuda', '--format=jax only: comma-separated '
                      'platforms to lower for.', flag_values=values)
  flags.DEFINE_bool('overwrite', False, 'Replace the output file if it exists.',
                    flag_values=values)


def export_workdir(args: flags.FlagValues, positional: Sequence[str] = ()) -> int:
  """Exports, checks against the JAX forward pass and writes; returns the exit status.

  Raises:
    errors.UserError: bad workdir/checkpoint, existing or unsafe output, missing packages.
  """
  if positional:
    raise errors.UserError(f'unexpected arguments: {" ".join(positional)}')
  from mh2f_jax.export import exporter  # pylint: disable=import-outside-toplevel  (fast --help)
  result = exporter.export_workdir(args.workdir, args.format, args.output,
                                   checkpoint=args.checkpoint, platforms=args.platforms,
                                   overwrite=args.overwrite)
  print(f'model: {args.workdir} at step {result.step} ({result.checkpoint})')
  if not result.ok:
    print(f'error: {result.runtime} differs from the JAX forward pass by '
          f'{result.max_difference:.3g} (> {exporter.TOLERANCE:g}) on '
          f'{", ".join(result.check_sizes)} images; nothing written', file=sys.stderr)
    return 1
  print(f'checked in {result.runtime}: max abs difference to JAX {result.max_difference:.2g} '
        f'on {" and ".join(result.check_sizes)} (NxHxW) images')
  print(f'wrote {args.output} ({args.format}, {len(result.data) / 2**20:.1f} MiB)')
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
