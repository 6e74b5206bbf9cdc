"""Files on disk: atomic writes, PNG encoding, image listing and example names.

Also what every tool shares about files it cannot write or should not decode: write
faults (a full disk, a read-only mount) told apart from bugs, and the decoding cap
(``--max_pixels``).

Every file the project writes for a user (configs, reports, derained images, exported
parameters) goes through :func:`write_atomic`, so a reader never sees a half-written
file and an interrupted write leaves the old file intact.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import re
import shutil
import stat
import uuid
import warnings
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import numpy as np

from mh2f_jax.errors import UserError


def _temp_beside(path: str, data: bytes) -> str:
  """Writes ``data`` to a new hidden temporary file in ``path``'s folder; returns it."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  # The start of the name tells a left-over file's origin; 32 characters keep the
  # temporary name short (at most 166 bytes) for any name the file system takes.
  tmp = os.path.join(folder, f'.{os.path.basename(path)[:32]}.{uuid.uuid4().hex}.tmp')
  try:
    with open(tmp, 'xb') as f:
      f.write(data)
  except BaseException as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, OSError) and e.filename in (None, tmp):
      # A full disk fails the write without a name, or names the hidden temporary file:
      # the error names the file the user asked for.
      raise OSError(e.errno, e.strerror, path) from e
    raise
  return tmp


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
  """Writes ``data`` to ``path`` through a temporary file and ``os.replace``.

  Parent folders are created. The file gets the usual permissions under the user's
  umask (``tempfile.mkstemp`` would make it private to the user).

  Args:
    path: destination.
    data: the bytes to write.
  """
  path = os.fspath(path)
  tmp = _temp_beside(path, data)
  try:
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_new(path: str | os.PathLike[str], data: bytes) -> None:
  """Like :func:`write_atomic`, but never replaces an existing file.

  The complete temporary file is hard-linked to ``path``, which fails if ``path``
  exists, even when another process creates it in the meantime.

  Raises:
    FileExistsError: ``path`` exists.
  """
  path = os.fspath(path)
  tmp = _temp_beside(path, data)
  try:
    try:
      os.link(tmp, path)
    except FileExistsError:
      raise
    except OSError:
      # No hard links on this file system (some FUSE and SMB mounts): check, then rename.
      if os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, 'File exists', path) from None
      os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def refuse_inside(path: str | os.PathLike[str], protected: Collection[str], what: str
                  ) -> None:
  """Refuses a write to ``path`` when it is one of ``protected`` or inside one.

  Symbolic links are resolved on both sides.

  Raises:
    UserError: 'refusing to write WHAT over P' for the protected path ``P``.
  """
  target = os.path.realpath(path)
  for p in map(os.path.realpath, protected):
    if target == p or target.startswith(p + os.sep):
      raise UserError(f'refusing to write {what} over {p}')


# Write failures that the user fixes (free space, permissions, a read-only mount), not bugs.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def _write_fault(error: BaseException | None) -> tuple[int, str | None] | None:
  """``(errno, file name or None)`` of a write fault in ``error`` or its causes."""
  for _ in range(8):  # The error and the errors it was raised from.
    if error is None:
      return None
    if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
      return error.errno, error.filename
    # TensorStore (Orbax's array writer) raises ValueError('... "FILE" ...
    # [os_error_code=\'28\']') instead of OSError.
    code = re.search(r"os_error_code='?(\d+)", str(error))
    if code and int(code.group(1)) in WRITE_ERRNOS:
      name = re.search(r'"([^"]+)"', str(error))
      return int(code.group(1)), name.group(1) if name else None
    error = error.__cause__ or error.__context__
  return None


def is_write_fault(error: BaseException | None) -> bool:
  """Whether ``error`` comes from a full disk, a quota, a read-only mount or a denial."""
  return _write_fault(error) is not None


def describe_write_fault(error: BaseException, where: str) -> str:
  """'cannot write FILE: No space left on device' (FILE, or ``where`` if unnamed)."""
  code, name = _write_fault(error) or (None, None)
  reason = os.strerror(code) if code is not None else str(error)
  return f'cannot write {name or where}: {reason}'


# Decoding cap of every tool that reads images (--max_pixels). Pillow's own limit is
# 2 * 89,478,485 = 179 MP (a warning from 89 MP on); a 100 MP RGB image already takes
# 1.2 GB as float32 while it is derained.
DEFAULT_MAX_PIXELS = 100_000_000


class ImageTooLargeError(UserError):
  """An image declares more pixels than the decoding cap."""


@contextlib.contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
  """Makes Pillow refuse, before decoding, any image above ``max_pixels`` (0: no cap).

  Pillow checks the size an image declares in its header when it opens it; here that
  check raises for anything above ``max_pixels`` (Pillow itself only warns between its
  limit and twice it). The previous setting comes back afterwards.

  Raises:
    ImageTooLargeError: an image opened in the block is too large (unless the code in
      the block catches Pillow's error itself).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  previous = Image.MAX_IMAGE_PIXELS
  # Pillow raises above twice its limit and warns above it: the warning becomes an error.
  Image.MAX_IMAGE_PIXELS = max_pixels or None
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('error', Image.DecompressionBombWarning)
      yield
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise ImageTooLargeError(too_large_message(e, max_pixels)) from None
  finally:
    Image.MAX_IMAGE_PIXELS = previous


def too_large_message(error: Exception, max_pixels: int) -> str:
  """The one-line refusal of an image above ``max_pixels``, from Pillow's error."""
  found = re.search(r'\((\d+) pixels\)', str(error))
  size = f'{int(found.group(1)):,} pixels' if found else 'too many pixels'
  return (f'image of {size} is above --max_pixels={max_pixels:,} (pass a larger '
          '--max_pixels, or 0 for no cap, to read it)')


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
  """Writes ``obj`` as indented, key-sorted JSON to ``path`` atomically.

  Args:
    path: destination file.
    obj: a JSON-serialisable object.
  """
  text = json.dumps(obj, indent=2, sort_keys=True) + '\n'
  write_atomic(path, text.encode())


def encode_png(image: np.ndarray, compress_level: int = 6) -> bytes:
  """PNG bytes of a uint8 (H, W, 3) or (H, W) array, or a uint16 (H, W) array (16-bit).

  Args:
    image: the pixels.
    compress_level: zlib level 0-9; 1 is a few times faster than the default 6 and
      makes files about 10 % larger.

  Returns:
    The encoded file.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top  (only saving needs Pillow)
  buf = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(image)).save(buf, format='PNG',
                                                    compress_level=compress_level)
  return buf.getvalue()


def image_extensions() -> frozenset[str]:
  """Lower-case file extensions (with the dot) that Pillow knows."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  return frozenset(e.lower() for e in Image.registered_extensions())


def list_images(folder: str, extensions: Collection[str] | None = None,
                skipped: list[tuple[str, str]] | None = None) -> list[str]:
  """Image files directly inside ``folder``, sorted (hidden files and folders skipped).

  Args:
    folder: a directory.
    extensions: lower-case extensions with the dot; None: every one Pillow knows.
    skipped: if given, receives ``(path, why)`` for each entry with one of those
      extensions that is not a readable regular file (a dangling symbolic link, a FIFO, a
      device), sorted.

  Returns:
    Paths of the regular files with one of those extensions (in any case).
  """
  extensions = image_extensions() if extensions is None else extensions
  found, odd = [], []
  with os.scandir(folder) as it:
    for entry in it:
      if entry.name.startswith('.') or entry.is_dir():
        continue
      if os.path.splitext(entry.name)[1].lower() not in extensions:
        continue
      why = not_a_regular_file(entry.path)
      if why is None:
        found.append(entry.path)
      else:
        odd.append((entry.path, why))
  if skipped is not None:
    skipped.extend(sorted(odd))
  return sorted(found)


def not_a_regular_file(path: str) -> str | None:
  """Why ``path`` is not a regular file one can read without blocking, or None if it is.

  A FIFO would block the reader until something writes to it; a device is no photo.
  """
  try:
    mode = os.stat(path).st_mode
  except FileNotFoundError:
    return 'a dangling symbolic link' if os.path.islink(path) else 'missing'
  except OSError as e:
    return e.strerror or str(e)
  if stat.S_ISREG(mode):
    return None
  if stat.S_ISFIFO(mode):
    return 'a FIFO (named pipe)'
  if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
    return 'a device file'
  if stat.S_ISSOCK(mode):
    return 'a socket'
  return 'not a regular file'


def check_writable_folder(folder: str, *, keep: bool = True) -> None:
  """Creates ``folder`` if missing and checks that a file can be written there.

  A probe file is written and removed, so a read-only mount, a denied folder or a
  path under a file is found before any work is done.

  Args:
    folder: the folder.
    keep: keep the folders the check created; False removes them again, for a check
      made before steps that may still fail (the work creates them when it writes).

  Raises:
    UserError: the folder cannot be created or written, naming it and the reason.
  """
  probe = os.path.join(folder, f'.write-probe-{uuid.uuid4().hex}')
  missing = os.path.abspath(folder)
  while not os.path.lexists(os.path.dirname(missing)) and missing != os.path.dirname(missing):
    missing = os.path.dirname(missing)
  created = not os.path.lexists(missing)
  try:
    os.makedirs(folder, exist_ok=True)
    with open(probe, 'xb') as f:
      f.write(b'probe')
    os.remove(probe)
  except OSError as e:
    raise UserError(f'cannot write to the output folder {folder}: '
                    f'{e.strerror or e}') from None
  if created and not keep:
    shutil.rmtree(missing, ignore_errors=True)


def decode_name(name: Any) -> str:
  """Returns an example's name as ``str`` (TFDS data sources give ``bytes``).

  Args:
    name: ``str``, ``bytes`` or a numpy scalar or 0-d array holding either.

  Returns:
    The name as a Python string (invalid UTF-8 replaced).
  """
  if isinstance(name, np.ndarray):
    name = name.item()
  if isinstance(name, bytes):
    return name.decode('utf-8', errors='replace')
  return str(name)


def json_safe(obj: Any) -> Any:
  """Copy of ``obj`` with non-finite floats as the strings 'inf', '-inf', 'nan'.

  ``json.dumps`` would otherwise write ``Infinity``, which is not JSON.
  Dicts, lists and tuples are walked; NumPy scalars become Python numbers.
  """
  if isinstance(obj, Mapping):
    return {k: json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_safe(v) for v in obj]
  if isinstance(obj, (np.floating, float)):
    v = float(obj)
    if math.isnan(v):
      return 'nan'
    if math.isinf(v):
      return 'inf' if v > 0 else '-inf'
    return v
  if isinstance(obj, np.integer):
    return int(obj)
  return obj
