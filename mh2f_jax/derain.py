"""Derains your own photos: ``python -m mh2f_jax.derain --workdir=DIR --input=X --output=DIR``.

``--model=FILE`` takes a file written by ``mh2f-export`` (ONNX or ``jax.export``) in
place of ``--workdir`` (see docs/export.md); everything else is the same.

``--input`` is an image file or a folder (its image files, not sub-folders: every file
with an extension Pillow reads). Each output is written to ``--output`` as a PNG at the
input's size, named from the input's own name whatever else is in the folder: a PNG
keeps its name (``a.png`` -> ``a.png``), any other file gains ``.png`` (``a.jpg`` ->
``a.jpg.png``), so ``a.png`` and ``a.jpg`` side by side keep both outputs (see
docs/evaluation.md for the whole rule). How pixel formats are handled:

* EXIF orientation is applied first (``PIL.ImageOps.exif_transpose``): the output is the
  upright image, without an orientation tag.
* RGB: derained as is. Palette, CMYK, YCbCr and other colour modes are converted to RGB
  (RGBA if they carry transparency) and written as such.
* RGBA / LA: the alpha channel is kept aside and put back unchanged. An RGB or grayscale
  PNG with a transparent colour (``tRNS``) is read as RGBA / LA.
* 8-bit grayscale (L): replicated to RGB, derained, converted back to L with Pillow's
  ITU-R 601-2 luma (``L = 0.299 R + 0.587 G + 0.114 B``); ``1`` (bilevel) becomes L.
* 16-bit grayscale (``I;16``, and 32-bit integer ``I``, clipped to 0..65535): scaled to
  [0, 1] (divided by 65535), derained in float without 8-bit rounding, converted back with
  the same luma weights and written as a 16-bit PNG. (Pillow reads 16-bit RGB PNGs as
  8-bit RGB, so those are derained as 8-bit.)
* 32-bit float grayscale (``F``, e.g. TIFF): values clipped to [0, 1], written back as a
  float TIFF (``.tif``).
* Multi-frame files (GIF, TIFF): the first frame.

With ``--compare``, a side-by-side PNG (input | derained, 8-bit RGB, alpha dropped, an
8-pixel white gap) is also written to ``<output>/compare/<name>.png``, ``<name>`` being
the output's name without its extension. An existing file there is never replaced: the
next free name (``<name>-2.png``, ...) is used.

Safety: no output is ever written onto an input (``--output`` equal to the input folder,
or an output path equal to an input file, is refused before anything runs), nor onto any
existing file unless ``--overwrite`` is given (existing outputs are listed and nothing
runs); ``--skip_existing`` derains only the inputs without an output (an interrupted run
continues where it stopped). Outputs are written atomically: Ctrl-C leaves the finished
ones complete and no partial file. The output folder is checked writable before the
model is loaded, and a full disk or a refused write stops the run at once. An unreadable
file, or one declaring more than ``--max_pixels`` pixels (default 100 million; checked in
its header before decoding), is reported by name and skipped; the others go on. Entries
of an input folder that are not regular files (dangling links, FIFOs, devices) are
skipped with a note each; an ``--input`` that is a FIFO or a device is refused.

Exit status: 0 when every image was derained, 1 when some files failed, 2 for a usage
error (missing workdir or checkpoints, no images, unsafe output, an output folder that
cannot be written) with a one-line message, 130 after Ctrl-C.
"""

from collections.abc import Sequence
import sys

from absl import flags
from absl import logging as absl_logging

from mh2f_jax import cli
from mh2f_jax import errors
from mh2f_jax import files


def define_flags(values: flags.FlagValues, argv: Sequence[str]) -> None:
  """Defines the derain flags on ``values``."""
  del argv  # No config overrides.
  cli.define_model_flags(values)
  flags.DEFINE_string('input', None, 'An image file or a folder of images.',
                      flag_values=values, required=True)
  flags.DEFINE_string('output', None, 'Output folder (created if missing).',
                      flag_values=values, required=True)
  flags.DEFINE_string('checkpoint', 'best', "'best' (default; 'latest' when no validation "
                      "was recorded), 'latest' or a step number.", flag_values=values)
  flags.DEFINE_enum('params', 'ema', ['ema', 'raw'],
                    "'ema': the EMA parameters of a run that kept them (ema_decay), else "
                    "the raw ones; 'raw': the raw parameters.", flag_values=values)
  flags.DEFINE_integer('tile', None, 'Tile size for images above 1 megapixel (multiple of '
                       '4, default 512); 0 never tiles.', flag_values=values)
  flags.DEFINE_enum('tiling', 'exact', ['exact', 'approx'], "'exact': tiled output equals "
                    "the whole-image pass; 'approx': blended overlapping tiles, faster "
                    '(see docs/evaluation.md).', flag_values=values)
  flags.DEFINE_integer('overlap', None, 'Tile overlap in pixels for --tiling=approx '
                       '(multiple of 4, default 64).', flag_values=values)
  flags.DEFINE_bool('self_ensemble', False, 'Average the derained flipped copies (as '
                    '--ensemble=flips).', flag_values=values)
  flags.DEFINE_enum('ensemble', None, ['none', 'flips', 'x8'], 'Self-ensemble by name: '
                    'flips (identity, left-right, up-down and both flips; 4x slower) or x8 '
                    '(adds 90 degree rotations, which turn rain sideways: usually worse; 8x '
                    'slower).', flag_values=values)
  flags.DEFINE_enum('backend', 'auto', ['auto', 'jax', 'onnxruntime'], "'auto': ONNX "
                    'Runtime on CPU when installed (faster), else JAX; '
                    "'jax'; 'onnxruntime' (see docs/export.md).", flag_values=values)
  flags.DEFINE_bool('compare', False, 'Also write input | derained side by side to '
                    'OUTPUT/compare/<name>.png (never replacing a file).', flag_values=values)
  flags.DEFINE_bool('overwrite', False, 'Replace outputs that exist (inputs never are).',
                    flag_values=values)
  flags.DEFINE_bool('skip_existing', False, 'Derain only the inputs whose output does not '
                    'exist yet (to continue an interrupted run).', flag_values=values)
  cli.define_max_pixels_flag(values, 'Skip images')


def derain_files(values: flags.FlagValues, positional: Sequence[str]) -> int:
  """Derains every input the flags name; returns the exit status (0, or 1 if some failed).

  Raises:
    errors.UserError: see ``photos.plan_outputs`` and ``Derainer.from_workdir``.
  """
  if positional:
    raise errors.UserError(f'unexpected arguments: {" ".join(positional)}')
  # Imported here so that --help and flag errors come back at once.
  from mh2f_jax.inference import ensemble  # pylint: disable=g-import-not-at-top
  from mh2f_jax.inference import photo_run  # pylint: disable=g-import-not-at-top
  from mh2f_jax.inference import photos  # pylint: disable=g-import-not-at-top
  from mh2f_jax.runtime import compile_count  # pylint: disable=g-import-not-at-top
  if values.skip_existing and values.overwrite:
    raise errors.UserError('give --overwrite or --skip_existing, not both')
  plan = photos.plan_outputs(values.input, values.output,
                             overwrite=values.overwrite or values.skip_existing)
  # Before the model is loaded; what the check made goes again if that fails.
  files.check_writable_folder(values.output, keep=False)
  with compile_count.counting() as compiled:
    derainer = cli.load_derainer(
        values, self_ensemble=ensemble.from_flags(values.self_ensemble, values.ensemble))
    print(f'model: {cli.describe_derainer(values, derainer)}, backend {derainer.backend}')
    summary = photo_run.derain_photos(derainer, plan, photo_run.Options(
        values.output, values.overwrite, values.compare, values.max_pixels,
        values.skip_existing))
  print(f'derained {summary.derained} of {summary.planned - summary.skipped} image(s) '
        f'into {values.output}')
  print(compiled.summary())
  if summary.failed:
    print(f'error: {summary.failed} file(s) could not be derained (see above)',
          file=sys.stderr)
  return 1 if summary.failed else 0


def run(argv: Sequence[str] | None = None) -> int:
  """The ``derain`` command; returns the exit status.

  Args:
    argv: arguments without the program name; None reads ``sys.argv``.

  Returns:
    0 on success, 1 if some files failed, 2 for a usage error.
  """
  # Orbax reports routine restore details as absl warnings: only errors are shown.
  return cli.run(derain_files, define_flags, argv, prog='python -m mh2f_jax.derain',
                 doc=__doc__, log_level=absl_logging.ERROR)


if __name__ == '__main__':
  cli.exit_with(run())
