"""Derains your own photos: ``python -m mh2f_jax.derain --workdir=DIR --input=X --output=DIR``.

``--model=FILE`` takes a file written by ``mh2f-export`` (ONNX or ``jax.export``) in
place of ``--workdir`` (see docs/export.md); everything else is the same.

``--input`` is an image file or a folder (its image files, not sub-folders: every file
with an extension Pillow reads). Each output is written to ``--output`` as a PNG named
after the input (``photo.jpg`` -> ``photo.png``; ``photo.jpg.png`` if two inputs share a
stem), at the input's size. How pixel formats are handled:

* EXIF orientation is applied first (``PIL.ImageOps.exif_transpose``): the output is the
  upright image, without an orientation tag.
* RGB: derained as is. Palette, CMYK, YCbCr and other colour modes are converted to RGB
  (RGBA if they carry transparency) and written as such.
* RGBA / LA: the alpha channel is kept aside and put back unchanged.
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
runs); outputs are written atomically. An unreadable file, or one declaring more than
``--max_pixels`` pixels (default 100 million; checked in its header before decoding), is
reported by name and skipped; the others go on.

Exit status: 0 when every image was derained, 1 when some files failed, 2 for a usage
error (missing workdir or checkpoints, no images, unsafe output) with a one-line message.
"""

from collections.abc import Sequence
import dataclasses
import io
import itertools
import os
import sys
from typing import Any
import warnings

from absl import flags
from absl import logging as absl_logging
import numpy as np

from mh2f_jax import cli
from mh2f_jax import errors
from mh2f_jax import files

# White gap between the two halves of a --compare image, in pixels.
_COMPARE_GAP = 8
# ITU-R 601-2 luma, the weights Pillow uses for RGB -> L.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_COLOUR_MODES_TO_RGB = ('P', 'PA', 'CMYK', 'YCbCr', 'LAB', 'HSV', 'RGBX', 'RGBa', 'La')


@dataclasses.dataclass
class LoadedImage:
  """An input photo split into what is derained and what is restored afterwards.

  Attributes:
    kind: 'rgb', 'rgba', 'gray', 'gray_alpha', 'gray16' or 'float'.
    pixels: uint8 (H, W, 3) for 8-bit kinds; float32 (H, W, 3) in [0, 1] otherwise.
    alpha: uint8 (H, W) alpha channel, or None.
    icc_profile: the input's ICC profile when the output keeps its colour mode.
  """
  kind: str
  pixels: np.ndarray
  alpha: np.ndarray | None = None
  icc_profile: bytes | None = None


def read_image(path: str) -> LoadedImage:
  """Reads a photo (any format and mode Pillow reads), upright per its EXIF orientation.

  Args:
    path: the file.

  Returns:
    The :class:`LoadedImage`.

  Raises:
    Exception: whatever Pillow raises for an unreadable or corrupt file.
  """
  from PIL import Image
  from PIL import ImageOps
  with Image.open(path) as opened:
    opened.seek(0)
    img = ImageOps.exif_transpose(opened)
    img.load()
  icc = img.info.get('icc_profile')
  mode = img.mode
  if mode in _COLOUR_MODES_TO_RGB:
    transparent = 'transparency' in img.info or mode in ('PA', 'RGBa', 'La')
    if mode == 'La':
      img, mode = img.convert('LA'), 'LA'
    else:
      img = img.convert('RGBA' if transparent else 'RGB')
      mode = img.mode
    icc = None  # The profile described the old colour space.
  if mode == '1':
    img, mode = img.convert('L'), 'L'
  if mode == 'RGB':
    return LoadedImage('rgb', np.asarray(img, np.uint8), icc_profile=icc)
  if mode == 'RGBA':
    arr = np.asarray(img, np.uint8)
    return LoadedImage('rgba', arr[..., :3].copy(), arr[..., 3].copy(), icc)
  if mode == 'L':
    arr = np.asarray(img, np.uint8)
    return LoadedImage('gray', np.repeat(arr[..., None], 3, axis=-1), icc_profile=icc)
  if mode == 'LA':
    arr = np.asarray(img, np.uint8)
    return LoadedImage('gray_alpha', np.repeat(arr[..., :1], 3, axis=-1), arr[..., 1].copy(),
                       icc)
  if mode.startswith('I'):
    arr = np.clip(np.asarray(img).astype(np.float32), 0, 65535) / 65535.0
    return LoadedImage('gray16', np.repeat(arr[..., None], 3, axis=-1))
  if mode == 'F':
    arr = np.clip(np.nan_to_num(np.asarray(img, np.float32)), 0.0, 1.0)
    return LoadedImage('float', np.repeat(arr[..., None], 3, axis=-1))
  raise ValueError(f'unsupported image mode {mode}')


def output_extension(kind: str) -> str:
  """The output file extension for a kind of input."""
  return '.tif' if kind == 'float' else '.png'


def encode_output(loaded: LoadedImage, derained: np.ndarray) -> bytes:
  """Encodes a derained image in the input's pixel format.

  Args:
    loaded: the input as read.
    derained: uint8 (H, W, 3) for 8-bit kinds, float (H, W, 3) in [0, 1] otherwise.

  Returns:
    PNG (TIFF for 'float') bytes.
  """
  from PIL import Image
  kind = loaded.kind
  if kind in ('rgb', 'rgba'):
    img = Image.fromarray(derained, 'RGB')
    if kind == 'rgba':
      img.putalpha(Image.fromarray(loaded.alpha, 'L'))
  elif kind in ('gray', 'gray_alpha'):
    img = Image.fromarray(derained, 'RGB').convert('L')
    if kind == 'gray_alpha':
      img.putalpha(Image.fromarray(loaded.alpha, 'L'))
  elif kind == 'gray16':
    gray = np.clip(derained.astype(np.float32) @ _LUMA, 0.0, 1.0)
    img = Image.fromarray(np.floor(gray * 65535.0 + 0.5).astype(np.uint16))
  elif kind == 'float':
    img = Image.fromarray(np.clip(derained.astype(np.float32) @ _LUMA, 0.0, 1.0))
  else:
    raise ValueError(f'unknown kind {kind}')
  buf = io.BytesIO()
  extra = {'icc_profile': loaded.icc_profile} if loaded.icc_profile else {}
  img.save(buf, format='TIFF' if kind == 'float' else 'PNG', **extra)
  return buf.getvalue()


def write_comparison(path_stem: str, before: np.ndarray, after: np.ndarray) -> str:
  """Writes ``before | after`` side by side to a new PNG, never replacing a file.

  Args:
    path_stem: the path without ``.png``; ``-2``, ``-3``, ... are appended while taken.
    before: the input, uint8 or float in [0, 1], (H, W, 3).
    after: the derained image, same shape and kind.

  Returns:
    The path written.

  Raises:
    OSError: the folder cannot be created or written.
  """
  from mh2f_jax import metrics  # pylint: disable=g-import-not-at-top
  halves = [metrics.to_uint8(a) if a.dtype != np.uint8 else a for a in (before, after)]
  gap = np.full((before.shape[0], _COMPARE_GAP, 3), 255, np.uint8)
  data = files.encode_png(np.concatenate([halves[0], gap, halves[1]], axis=1))
  os.makedirs(os.path.dirname(os.path.abspath(path_stem)), exist_ok=True)
  for n in itertools.count(1):
    path = f'{path_stem}.png' if n == 1 else f'{path_stem}-{n}.png'
    try:
      files.write_new(path, data)
      return path
    except FileExistsError:
      continue


def _file_ids(paths: Sequence[str]) -> set[Any]:
  """Real paths and (device, inode) pairs of existing files, to catch links too."""
  ids = set()
  for p in paths:
    ids.add(os.path.realpath(p))
    try:
      st = os.stat(p)
      ids.add((st.st_dev, st.st_ino))
    except OSError:
      pass
  return ids


def _is_one_of(path: str, ids: set[Any]) -> bool:
  if os.path.realpath(path) in ids:
    return True
  try:
    st = os.stat(path)
  except OSError:
    return False
  return (st.st_dev, st.st_ino) in ids


def _planned_extension(path: str) -> str:
  """The extension :func:`output_extension` will give ``path``, from its header."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # Size warnings: --max_pixels decides when it is read.
      with Image.open(path) as img:
        return output_extension('float' if img.mode == 'F' else 'rgb')
  except Exception:  # pylint: disable=broad-except  (reported when it is read)
    return '.png'


def output_stems(paths: Sequence[str]) -> list[str]:
  """Output names without extension: the input's stem, or its full name when taken.

  Two inputs with one stem (``a.jpg``, ``a.png``) keep both outputs.
  """
  stems, used = [], set()
  for path in paths:
    name = os.path.basename(path)
    stem = os.path.splitext(name)[0]
    stem = stem if stem not in used else name
    used.add(stem)
    stems.append(stem)
  return stems


def plan_outputs(input_path: str, output_dir: str, *, overwrite: bool = False
                 ) -> list[tuple[str, str]]:
  """Pairs every input image with its output path, refusing anything unsafe.

  Args:
    input_path: an image file or a folder.
    output_dir: the output folder (may not exist yet).
    overwrite: whether existing files (other than inputs) may be replaced.

  Returns:
    ``[(input_file, output_stem_path)]``: the output path without its extension, which
    depends on the pixel format (see :func:`output_extension`).

  Raises:
    errors.UserError: missing input, a folder without images, an output that is a file,
      the input folder as output, an output path equal to an input file, or (without
      ``overwrite``) outputs that exist.
  """
  if not os.path.exists(input_path):
    raise errors.UserError(f'input {input_path} does not exist')
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise errors.UserError(f'output {output_dir} exists and is not a folder')
  if os.path.isdir(input_path):
    if _is_one_of(output_dir, _file_ids([input_path])):
      raise errors.UserError(
          f'--output {output_dir} is the input folder: choose another folder so that no '
          f'input is overwritten')
    inputs = files.list_images(input_path)
    if not inputs:
      raise errors.UserError(f'no images in {input_path} (looked for files with an '
                             f'extension Pillow reads, e.g. .png, .jpg, .tif)')
  else:
    inputs = [input_path]
  plan = [(path, os.path.join(output_dir, stem))
          for path, stem in zip(inputs, output_stems(inputs))]
  input_ids = _file_ids(inputs)
  for path, out_stem in plan:
    for ext in ('.png', '.tif'):
      if _is_one_of(out_stem + ext, input_ids):
        raise errors.UserError(
            f'refusing to overwrite the input {out_stem + ext}: choose another --output '
            f'folder')
  existing = [] if overwrite else [
      out for out in (stem + _planned_extension(path) for path, stem in plan)
      if os.path.lexists(out)]
  if existing:
    more = f' and {len(existing) - 3} more' if len(existing) > 3 else ''
    raise errors.UserError(
        f'{len(existing)} output(s) exist: {", ".join(existing[:3])}{more}; pass '
        '--overwrite to replace them, or choose another --output folder')
  return plan


def define_model_flags(values: flags.FlagValues) -> None:
  """Defines --workdir and --model, the two ways to name a model (derain, the web page)."""
  flags.DEFINE_string('workdir', None, 'Training workdir (config.json and checkpoints/); '
                      'or give --model.', flag_values=values)
  flags.DEFINE_string('model', None, 'A model file written by mh2f-export (.onnx, or a '
                      'jax.export artifact) instead of --workdir; large photos are tiled '
                      'with --tiling=approx.', flag_values=values)


def load_model(values: flags.FlagValues, **settings: Any) -> Any:
  """The derainer that --workdir or --model names, with the tiling flags applied.

  Args:
    values: parsed flags from :func:`define_model_flags` and the tiling flags (--tile,
      --overlap, and where defined --tiling, --checkpoint, --params, --backend).
    **settings: further ``Derainer`` settings (e.g. ``self_ensemble``).

  Returns:
    An ``inference.Derainer`` (workdir) or ``exported.ExportedDerainer`` (model file).

  Raises:
    errors.UserError: neither or both of --workdir and --model, a workdir-only flag
      given with --model, or a model that cannot be loaded.
  """
  if (values.workdir is None) == (values.model is None):
    raise errors.UserError('give either --workdir (a training workdir) or --model (a file '
                           'written by mh2f-export)')
  given = lambda name: name in values and values[name].present
  for name, value in (('tile', 'tile_size'), ('overlap', 'tile_overlap'),
                      ('tiling', 'tiling')):
    if name in values and values[name].value is not None:
      settings[value] = values[name].value
  if values.model is not None:
    from mh2f_jax import exported  # pylint: disable=g-import-not-at-top
    for name in ('checkpoint', 'params', 'backend'):
      if given(name):
        raise errors.UserError(f'--{name} applies to --workdir, not to --model')
    if not given('tiling'):
      settings['tiling'] = 'approx'  # The only tiling an exported file can run.
    return exported.load(values.model, **settings)
  from mh2f_jax import inference  # pylint: disable=g-import-not-at-top
  for name in ('params', 'backend'):
    if name in values:
      settings[name] = values[name].value
  return inference.Derainer.from_workdir(values.workdir, values.checkpoint, **settings)


def describe(values: flags.FlagValues, derainer: Any) -> str:
  """What :func:`load_model` loaded, for the first line of a tool's output."""
  if values.model is not None:
    step = '' if derainer.step is None else f', step {derainer.step}'
    return f'{values.model} ({derainer.format} export{step})'
  return f'{values.workdir} at step {derainer.step} ({derainer.checkpoint})'


def define_flags(values: flags.FlagValues, argv: Sequence[str]) -> None:
  """Defines the derain flags on ``values``."""
  del argv  # No config overrides.
  define_model_flags(values)
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
  cli.define_max_pixels_flag(values, 'Skip images')


def derain_files(values: flags.FlagValues, positional: Sequence[str]) -> int:
  """Derains every input the flags name; returns the exit status (0, or 1 if some failed).

  Raises:
    errors.UserError: see :func:`plan_outputs` and ``Derainer.from_workdir``.
  """
  if positional:
    raise errors.UserError(f'unexpected arguments: {" ".join(positional)}')
  from mh2f_jax import ensemble as ensemble_lib  # pylint: disable=g-import-not-at-top
  plan = plan_outputs(values.input, values.output, overwrite=values.overwrite)
  ensemble = ensemble_lib.from_flags(values.self_ensemble, values.ensemble)
  derainer = load_model(values, self_ensemble=ensemble)
  print(f'model: {describe(values, derainer)}, backend {derainer.backend}')
  failed = 0
  write = files.write_atomic if values.overwrite else files.write_new
  for path, out_stem in plan:
    try:
      with files.pixel_limit(values.max_pixels):
        loaded = read_image(path)
    except Exception as e:  # pylint: disable=broad-except
      # Pillow raises many unrelated types for corrupt files; the run must go on.
      print(f'error: cannot read {path}: {e}', file=sys.stderr)
      failed += 1
      continue
    derained = derainer.derain(loaded.pixels)
    out_path = out_stem + output_extension(loaded.kind)
    try:
      write(out_path, encode_output(loaded, derained))
    except FileExistsError:
      print(f'error: {out_path} exists (pass --overwrite to replace it)', file=sys.stderr)
      failed += 1
      continue
    except OSError as e:
      print(f'error: cannot write {out_path}: {e}', file=sys.stderr)
      failed += 1
      continue
    height, width = loaded.pixels.shape[:2]
    tiled = ', tiled' if derainer.will_tile(height, width) else ''
    print(f'{path} -> {out_path} ({width}x{height}, {loaded.kind}{tiled})')
    if values.compare:
      stem = os.path.join(values.output, 'compare', os.path.basename(out_stem))
      try:
        print(f'  side by side: {write_comparison(stem, loaded.pixels, derained)}')
      except OSError as e:
        print(f'error: cannot write the comparison {stem}.png: {e}', file=sys.stderr)
        failed += 1
  done = len(plan) - failed
  print(f'derained {done} of {len(plan)} image(s) into {values.output}')
  if failed:
    print(f'error: {failed} file(s) could not be derained (see above)', file=sys.stderr)
  return 1 if failed else 0


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
