"""Lets TFDS write splits larger than 1 GB without TensorFlow.

TFDS keeps a split's serialized examples in memory up to 1 GB, then spills them into
temporary bucket files through ``tf.io.gfile`` (``tensorflow_datasets/core/shuffle.py``,
checked with tensorflow-datasets 4.9.10). That is the one place in the array_record
write path that still needs TensorFlow, and real benchmarks cross the limit: Rain200H's
training split is about 1 GB, Rain1400 and Rain13K several GB, SPA-Data tens of GB.

When TensorFlow is not installed, :func:`install` gives that module a stand-in for the
four names it uses (``tf.io.gfile.GFile``/``exists``/``remove`` and
``tf.errors.ResourceExhaustedError``), built on Python files. With TensorFlow installed
nothing is changed. tests/datasets/test_datasets.py forces a spill to keep this honest.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import types

from tensorflow_datasets.core import shuffle


class _ResourceExhaustedError(Exception):
  """Raised like TensorFlow's, so TFDS's own 'Too many open files' handling applies."""

  def __init__(self, message: str):
    super().__init__(message)
    self.message = message


class _LazyFile:
  """A file opened on first use, as ``tf.io.gfile.GFile`` is.

  TFDS creates up to 1000 bucket files and catches "Too many open files" on the first
  write (then raises the process limit and writes again), so opening must happen there.
  """

  def __init__(self, path, mode: str = 'r'):
    self._path = os.fspath(path)
    self._mode = mode
    self._file = None

  def _open(self):
    if self._file is None:
      try:
        self._file = open(self._path, self._mode)  # pylint: disable=consider-using-with
      except OSError as e:
        if e.errno == errno.EMFILE:
          raise _ResourceExhaustedError(f'{self._path}: Too many open files') from e
        raise
    return self._file

  def write(self, data):
    return self._open().write(data)

  def read(self, size: int = -1):
    return self._open().read(size)

  def flush(self):
    if self._file is not None:
      self._file.flush()

  def close(self):
    if self._file is not None:
      self._file.close()
      self._file = None

  def __enter__(self):
    self._open()
    return self

  def __exit__(self, *exc):
    self.close()


_STAND_IN = types.SimpleNamespace(
    io=types.SimpleNamespace(gfile=types.SimpleNamespace(
        GFile=_LazyFile, exists=os.path.exists, remove=os.remove)),
    errors=types.SimpleNamespace(ResourceExhaustedError=_ResourceExhaustedError),
)


def install() -> bool:
  """Gives TFDS's shuffler Python file I/O when TensorFlow is absent.

  Returns:
    True if the stand-in is in place, False if TensorFlow is installed (then TFDS is
    left as it is).
  """
  if importlib.util.find_spec('tensorflow') is not None:
    return False
  shuffle.tf = _STAND_IN
  return True
