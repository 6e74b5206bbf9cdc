"""One training run per workdir: ``WORKDIR/train.lock`` names the run that owns it.

Two runs writing one workdir destroy each other's record (one truncates
``metrics.jsonl`` while the other appends to it, and their checkpoints interleave), so
a run takes the lock before it writes anything and gives it back when it ends.

The rule:

* The lock is a file created with ``O_CREAT | O_EXCL``: of two runs that try at once,
  exactly one creates it. It holds JSON naming the holder: host name, pid, the time the
  run started and the process's start time in clock ticks since boot (Linux), which
  tells a live holder from a new process that happens to reuse a dead holder's pid.
* A second run finds the file and is refused at once, with a message naming the holder.
* A stale lock (its holder was killed and never removed it) is taken over with a note,
  but only when the holder's host is this host and its pid is not running (or runs a
  process that started at another time). A lock held on another host is never judged
  by pid, since pids of other hosts mean nothing here: it is refused, and the message
  says how to remove it by hand once that run is known to be over.
* A multi-process (multi-host) run shares one workdir: only process 0 takes the lock,
  then tells every process the outcome, so that all of them stop together.

Why not ``fcntl.flock``/``lockf``: on NFS they depend on the lock daemon (NLM), which
some mounts lack or configure off (``nolock``), some network and FUSE file systems
ignore them, and a flock says nothing about who holds it. An exclusive create works on
every POSIX file system, including NFSv3 and later, and the file is there to read.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
from typing import Any

from mh2f_jax import files
from mh2f_jax.runtime import hosts
from mh2f_jax.workdir import checkpoints
from mh2f_jax.errors import UserError

_log = logging.getLogger(__name__)

LOCK_FILE = 'train.lock'


class WorkdirLockedError(UserError):
  """Another run holds the workdir's lock."""


def _process_start_ticks(pid: int) -> int | None:
  """The process's start time in clock ticks since boot (Linux), or None."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      # The command name (field 2) may hold spaces: count fields after its ')'.
      return int(f.read().rsplit(')', 1)[1].split()[19])
  except (OSError, IndexError, ValueError):
    return None


def _holder_is_running(holder: dict[str, Any]) -> bool:
  """Whether the holder, a process on this host, still runs."""
  pid = holder.get('pid')
  if not isinstance(pid, int) or pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # Runs, as another user.
  ticks = holder.get('start_ticks')
  now_ticks = _process_start_ticks(pid)
  return ticks is None or now_ticks is None or ticks == now_ticks


def describe(holder: dict[str, Any]) -> str:
  """'host H, pid P, started T' for a lock's content."""
  started = holder.get('started')
  when = (time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(started))
          if isinstance(started, (int, float)) else 'at an unknown time')
  return f'host {holder.get("host", "?")}, pid {holder.get("pid", "?")}, started {when}'


def _read(path: str) -> dict[str, Any] | None:
  """The lock's content; {} for an unreadable one; None when there is no lock."""
  try:
    with open(path) as f:
      data = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}  # Cut short by a crash between create and write: judged by its age.
  return data if isinstance(data, dict) else {}


def _is_stale(path: str, holder: dict[str, Any]) -> bool:
  if not holder:
    # No content: a run killed between creating and writing it, or one doing so now.
    try:
      return time.time() - os.stat(path).st_mtime > 60
    except FileNotFoundError:
      return True
  return holder.get('host') == socket.gethostname() and not _holder_is_running(holder)


def _create(path: str, content: bytes) -> bool:
  """Creates the lock file exclusively; False if it exists."""
  try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  except FileExistsError:
    return False
  try:
    os.write(fd, content)
    os.fsync(fd)
  except BaseException:
    os.close(fd)
    os.remove(path)
    raise
  os.close(fd)
  return True


def acquire(workdir: str) -> dict[str, Any]:
  """Takes ``WORKDIR/train.lock`` for this process (see the module docstring).

  Args:
    workdir: an existing folder.

  Returns:
    The lock's content (pass it to :func:`release`).

  Raises:
    WorkdirLockedError: a live run holds it, or a run on another host.
  """
  path = os.path.join(workdir, LOCK_FILE)
  pid = os.getpid()
  mine = {'host': socket.gethostname(), 'pid': pid, 'started': time.time(),
          'start_ticks': _process_start_ticks(pid)}
  content = (json.dumps(mine, sort_keys=True) + '\n').encode()
  for _ in range(3):  # Another run may take over the same stale lock at the same time.
    if _create(path, content):
      return mine
    holder = _read(path)
    if holder is None:
      continue  # Removed since: try again.
    if not _is_stale(path, holder):
      where = ('' if holder.get('host') == mine['host'] else
               ' on another host; if that run is over, delete the lock file')
      raise WorkdirLockedError(
          f'workdir {workdir} is in use by another training run ({describe(holder)}){where}; '
          f'wait for it to end or use another --workdir (lock: {path})')
    # Renamed away first, so that of two runs taking over, one removes the stale lock
    # and the other finds it gone instead of removing a fresh one.
    aside = f'{path}.stale.{pid}'
    try:
      os.rename(path, aside)
    except FileNotFoundError:
      continue
    if _read(aside) != holder:
      # Another run took over first and this rename caught its fresh lock: put it back.
      os.rename(aside, path)
      continue
    os.remove(aside)
    _log.warning('took over the lock of a run that is no longer running (%s)',
                 describe(holder))
  raise WorkdirLockedError(f'could not take the lock {path}: other runs keep taking it')


def release(workdir: str, mine: dict[str, Any]) -> None:
  """Removes the lock if it is still this run's."""
  path = os.path.join(workdir, LOCK_FILE)
  if _read(path) == mine:
    try:
      os.remove(path)
    except FileNotFoundError:
      pass


def held(function):
  """Runs ``function(config, workdir, ...)`` holding the workdir's lock.

  Process 0 takes the lock; all processes stop with ``WorkdirLockedError`` if it could
  not. The workdir is created first (a file in its place is refused). A write the
  system refuses (full disk, quota, read-only) ends the run with a ``UserError`` that
  names the file and the last complete checkpoint.
  """
  @functools.wraps(function)
  def wrapper(config, workdir, *args, **kwargs):
    import jax  # pylint: disable=g-import-not-at-top
    path = make_workdir(workdir)
    mine, refusal = None, None
    if jax.process_index() == 0:
      try:
        mine = acquire(path)
      except WorkdirLockedError as e:
        refusal = e
    if not hosts.agree(refusal is None, 'first'):
      raise refusal or WorkdirLockedError(
          f'workdir {path} is in use by another training run (see process 0)')
    try:
      return function(config, workdir, *args, **kwargs)
    except Exception as e:  # pylint: disable=broad-except  (re-raised unless a write fault)
      if not files.is_write_fault(e):
        raise
      raise UserError(f'{files.describe_write_fault(e, path)}; {_last_checkpoint(path)}'
                      ) from None
    finally:
      if mine is not None:
        release(path, mine)
  return wrapper


def _last_checkpoint(workdir: str) -> str:
  done = checkpoints.checkpoint_steps(workdir)
  return (f'the last complete checkpoint is step {done[-1]}: free space (or make the '
          'workdir writable) and run the same command to resume' if done else
          'no checkpoint was complete yet')


def make_workdir(workdir: str) -> str:
  """Creates the workdir if needed; returns its absolute path.

  Raises:
    UserError: it exists as a file, or cannot be created (read-only, no permission).
  """
  path = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f'workdir {workdir} exists and is not a folder')
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create workdir {workdir}: {e.strerror}') from None
  if not os.access(path, os.W_OK):
    raise UserError(f'workdir {workdir} is not writable')
  return path
