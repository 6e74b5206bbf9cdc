"""One build of a dataset at a time, and the folders of killed builds removed.

TFDS builds a dataset in ``<data_dir>/<name>[/<config>]/incomplete.XXXXXX_<version>/``
and renames it when complete; a build that is killed leaves that folder behind for good
(tens of GB for the large sets). Each build therefore holds an exclusive ``flock`` on
``.prepare.lock`` in that same folder. Holding it proves that no live process on this
host (and on any host, where the file system carries flocks across hosts: NFSv4, or
NFSv3 with the lock daemon) is building this dataset, so every ``incomplete.*`` folder
found then is a dead build's, and is removed before the new build starts. A second
build started while one runs is refused at once, naming the holder.

Where flocks are not supported (an error from ``flock``), the build goes on without
the lock and removes only ``incomplete.*`` folders untouched for a day.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import time

from mh2f_jax.errors import UserError

_log = logging.getLogger(__name__)

LOCK_FILE = '.prepare.lock'
INCOMPLETE_PREFIX = 'incomplete.'
# Without flocks, a folder untouched this long is taken for a dead build's.
UNLOCKED_MIN_AGE_S = 24 * 3600


def _newest_mtime(folder: str) -> float:
  newest = os.stat(folder).st_mtime
  for root, dirs, names in os.walk(folder):
    for name in dirs + names:
      try:
        newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
      except OSError:
        pass
  return newest


def remove_dead_builds(folder: str, *, min_age_s: float = 0.0) -> list[str]:
  """Removes the ``incomplete.*`` folders in ``folder`` untouched for ``min_age_s``.

  Call it only holding the build lock (or with a ``min_age_s`` that no live build
  could reach).

  Returns:
    The removed paths.
  """
  removed = []
  try:
    names = os.listdir(folder)
  except FileNotFoundError:
    return removed
  for name in sorted(names):
    path = os.path.join(folder, name)
    if not name.startswith(INCOMPLETE_PREFIX) or not os.path.isdir(path):
      continue
    if min_age_s and time.time() - _newest_mtime(path) < min_age_s:
      continue
    shutil.rmtree(path, ignore_errors=True)
    removed.append(path)
    _log.warning('removed %s, left by a dataset build that did not finish', path)
  return removed


@contextlib.contextmanager
def exclusive_build(data_dir: str, name: str) -> Iterator[None]:
  """Holds the build lock of the dataset whose final folder is ``data_dir``.

  Args:
    data_dir: the builder's versioned folder (``builder.data_dir``).
    name: the dataset's name, for messages.

  Raises:
    UserError: another process holds the lock.
  """
  folder = os.path.dirname(os.path.abspath(os.fspath(data_dir)))
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      locked = True
    except BlockingIOError:
      holder = os.pread(fd, 4096, 0).decode(errors='replace').strip() or 'unknown'
      raise UserError(f'{name} is being prepared by another process ({holder}); wait for '
                      f'it to finish (lock: {path})') from None
    except OSError as e:
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        raise
      locked = False
    if locked:
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps({'host': socket.gethostname(), 'pid': os.getpid()}).encode(), 0)
    remove_dead_builds(folder, min_age_s=0.0 if locked else UNLOCKED_MIN_AGE_S)
    yield
  finally:
    os.close(fd)  # Releases the flock.
