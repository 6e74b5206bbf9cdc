"""Photos in and out: reading any format upright, naming outputs, writing results.

The one path from a photo file to the derainer's input and from its output back to a
file, shared by ``mh2f-derain`` and the web page. How each pixel format is handled:

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
  the same luma weights and written as a 16-bit PNG. (Pillow reads 16-bit RGB PNGs and
  TIFFs as 8-bit RGB, so those are derained and written as 8-bit, with a note saying so.)
* 32-bit float grayscale (``F``, e.g. TIFF): values clipped to [0, 1], written back as a
  float TIFF (``.tif``).
* Multi-frame files (GIF, TIFF): the first frame.

Output names (:func:`output_stem`) depend on the input's own file name only, never on
the other files present: a PNG keeps its name (``a.png`` -> ``a.png``), any other input
keeps its whole name and gains ``.png`` (``a.jpg`` -> ``a.jpg.png``), so no two inputs
of a folder share an output and a rerun finds each input's output where it left it.
:func:`plan_outputs` refuses to write onto an input. :func:`write_comparison` writes
input | derained side by side (8-bit RGB, alpha dropped, an 8-pixel white gap) under the
next free name.
"""

import dataclasses
import hashlib
import io
import itertools
import logging
import os
from collections.abc import Sequence
from typing import Any
import warnings

import numpy as np

from mh2f_jax import errors
from mh2f_jax import files
from mh2f_jax import metrics

_log = logging.getLogger(__name__)

_COMPARE_GAP = 8
# ITU-R 601-2 luma, the weights Pillow uses for RGB -> L.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_COLOUR_MODES_TO_RGB = ('P', 'PA', 'CMYK', 'YCbCr', 'LAB', 'HSV', 'RGBX', 'RGBa', 'La')
# Longest output name without its extension, in bytes: with '.png' and a comparison's
# '-NNN' it stays within NAME_MAX (255 bytes on Linux and macOS file systems).
_MAX_STEM_BYTES = 240
_HASH_CHARS = 16


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
    if _is_16bit_colour(opened):
      _log.warning('%s has 16 bits per colour channel: it is derained and written as '
                   '8-bit (16 bits are kept for grayscale only)', path)
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
  if mode in ('RGB', 'L') and 'transparency' in img.info:
    # A transparent colour (PNG tRNS) is an alpha channel in all but name.
    img = img.convert('RGBA' if mode == 'RGB' else 'LA')
    mode = img.mode
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


def _is_16bit_colour(opened: Any) -> bool:
  """Whether an opened file stores 16-bit RGB(A), which Pillow decodes to 8 bits."""
  if opened.mode not in ('RGB', 'RGBA') or not opened.tile:
    return False
  args = opened.tile[0].args
  rawmode = args[0] if isinstance(args, tuple) and args else args
  return isinstance(rawmode, str) and ';16' in rawmode


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


def output_stem(name: str) -> str:
  """The output's name without its extension, from the input's file name alone.

  A name ending in ``.png`` loses it (``a.png`` -> ``a``, written ``a.png``); any other
  name is kept whole (``a.jpg`` -> ``a.jpg``, written ``a.jpg.png``), and so is a
  ``.png`` name whose rest ends in an image extension (``a.jpg.png``, which ``a.jpg``
  would otherwise meet). No two names with image extensions (all a folder lists) give
  one output: a kept ``.png`` name would have to be another input's whole name plus
  ``.png``, and that input's name ends in an image extension. A stem over
  ``_MAX_STEM_BYTES`` is cut and ends in ``~`` and a hash of the whole name.

  Args:
    name: the input's file name (no folder).

  Returns:
    The output's name without ``.png`` or ``.tif`` (see :func:`output_extension`).
  """
  stem, ext = os.path.splitext(name)
  if not (ext == '.png' and os.path.splitext(stem)[1].lower() not in files.image_extensions()):
    stem = name
  # Lengths in the bytes the OS has (undecodable bytes are surrogates in the name).
  sizes = [len(c.encode('utf-8', 'surrogateescape')) for c in stem]
  if sum(sizes) <= _MAX_STEM_BYTES:
    return stem
  digest = hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:_HASH_CHARS]
  # Cut between characters, never inside one.
  keep = int(np.searchsorted(np.cumsum(sizes), _MAX_STEM_BYTES - _HASH_CHARS - 1, 'right'))
  return f'{stem[:keep]}~{digest}'


def output_stems(paths: Sequence[str]) -> list[str]:
  """:func:`output_stem` of each file of one folder (distinct, as their names are)."""
  return [output_stem(os.path.basename(path)) for path in paths]


def upload_stems(paths: Sequence[str]) -> list[str]:
  """Output stems of the uploads of one web request, which may share a file name.

  Each upload gets :func:`output_stem` of its name unless an earlier upload of the request
  took it; then ``' (2)'``, ``' (3)'``, ... is added, the first that is free.
  """
  stems, used = [], set()
  for path in paths:
    stem = candidate = output_stem(os.path.basename(path))
    for k in itertools.count(2):
      if candidate not in used:
        break
      candidate = f'{stem} ({k})'
    used.add(candidate)
    stems.append(candidate)
  return stems


def plan_outputs(input_path: str, output_dir: str, *, overwrite: bool = False
                 ) -> list[tuple[str, str]]:
  """Pairs every input image with its output path, refusing anything unsafe.

  Entries of an input folder that look like images but are not regular files (dangling
  symbolic links, FIFOs, devices) are skipped with one note each.

  Args:
    input_path: an image file or a folder.
    output_dir: the output folder (may not exist yet).
    overwrite: whether existing files (other than inputs) may be replaced.

  Returns:
    ``[(input_file, output_stem_path)]``: the output path without its extension, which
    depends on the pixel format (see :func:`output_extension`).

  Raises:
    errors.UserError: missing input, an input that is a FIFO or a device, a folder without
      images, an output that is a file, the input folder as output, an output path equal
      to an input file, or (without ``overwrite``) outputs that exist.
  """
  inputs = _list_inputs(input_path, output_dir)
  plan = [(path, os.path.join(output_dir, stem))
          for path, stem in zip(inputs, output_stems(inputs))]
  input_ids = _file_ids(inputs)
  for path, out_stem in plan:
    for ext in ('.png', '.tif'):
      if _is_one_of(out_stem + ext, input_ids):
        raise errors.UserError(
            f'refusing to overwrite the input {out_stem + ext}: choose another --output '
            f'folder')
  existing = [] if overwrite else [out for _, out in existing_outputs(plan)]
  if existing:
    more = f' and {len(existing) - 3} more' if len(existing) > 3 else ''
    raise errors.UserError(
        f'{len(existing)} output(s) exist: {", ".join(existing[:3])}{more}; pass '
        '--overwrite to replace them, --skip_existing to derain only the others, or '
        'choose another --output folder')
  return plan


def _list_inputs(input_path: str, output_dir: str) -> list[str]:
  """The input files :func:`plan_outputs` pairs; see there for what it refuses."""
  if not os.path.lexists(input_path):
    raise errors.UserError(f'input {input_path} does not exist')
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise errors.UserError(f'output {output_dir} exists and is not a folder')
  if not os.path.isdir(input_path):
    why = files.not_a_regular_file(input_path)
    if why is not None:
      raise errors.UserError(f'input {input_path} is {why}, not an image file')
    return [input_path]
  if _is_one_of(output_dir, _file_ids([input_path])):
    raise errors.UserError(
        f'--output {output_dir} is the input folder: choose another folder so that no '
        f'input is overwritten')
  skipped = []
  inputs = files.list_images(input_path, skipped=skipped)
  for path, why in skipped:
    _log.warning('skipped %s: %s', path, why)
  if not inputs:
    raise errors.UserError(f'no images in {input_path} (looked for files with an '
                           f'extension Pillow reads, e.g. .png, .jpg, .tif)')
  return inputs


def existing_outputs(plan: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
  """``(input, output path)`` for each entry of a plan whose output file exists."""
  found = []
  for path, stem in plan:
    out = stem + _planned_extension(path)
    if os.path.lexists(out):
      found.append((path, out))
  return found
