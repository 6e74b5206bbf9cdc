"""Files on disk: atomic writes, PNG encoding, image listing and example names.

Every file the project writes for a user (configs, reports, derained images, exported
parameters) goes through :func:`write_atomic`, so a reader never sees a half-written
file and an interrupted write leaves the old file intact.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Collection
from typing import Any

import numpy as np


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
  """Writes ``data`` to ``path`` through a temporary file and ``os.replace``.

  Parent folders are created. The file gets the usual permissions under the user's
  umask (``tempfile.mkstemp`` would make it private to the user).

  Args:
    path: destination.
    data: the bytes to write.
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, f'.{os.path.basename(path)}.{uuid.uuid4().hex}.tmp')
  try:
    with open(tmp, 'xb') as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_new(path: str | os.PathLike[str], data: bytes) -> None:
  """Writes ``data`` to a new file ``path`` atomically, never replacing an existing one.

  Args:
    path: destination; must not exist.
    data: the bytes to write.

  Raises:
    FileExistsError: ``path`` exists (it is left as it was).
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  tmp = os.path.join(folder, f'.{os.path.basename(path)}.{uuid.uuid4().hex}.new')
  write_atomic(tmp, data)
  try:
    # link() fails if the name exists: no window in which another file could be replaced.
    os.link(tmp, path)
  except FileExistsError:
    raise
  except OSError:
    # A file system without hard links: check, then rename (a short race remains).
    if os.path.exists(path):
      raise FileExistsError(path) from None
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


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


def list_images(folder: str, extensions: Collection[str] | None = None) -> list[str]:
  """Image files directly inside ``folder``, sorted (hidden files and folders skipped).

  Args:
    folder: a directory.
    extensions: lower-case extensions with the dot; None: every one Pillow knows.

  Returns:
    Paths of the files with one of those extensions (in any case).
  """
  extensions = image_extensions() if extensions is None else extensions
  found = []
  with os.scandir(folder) as it:
    for entry in it:
      if entry.name.startswith('.') or not entry.is_file():
        continue
      if os.path.splitext(entry.name)[1].lower() in extensions:
        found.append(entry.path)
  return sorted(found)


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
