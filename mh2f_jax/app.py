"""A web page to try a trained model: ``mh2f-app --workdir=runs/demo`` (or ``--model=F``).

Upload photos, derain them, compare rainy and derained with a slider, download the
results. Every photo takes the command line's path (``mh2f_jax.derain``): the same
reading (EXIF orientation, alpha, 16-bit and float images), the same
``inference.Derainer`` with its tiling of large photos, the same PNG/TIFF encoding, so a
downloaded file is byte for byte what ``mh2f-derain`` writes for that photo. With
``--model``, the page serves a file written by ``mh2f-export`` (ONNX or ``jax.export``),
as ``mh2f-derain --model`` does.

Needs the ``app`` extra (``pip install "mh2f-jax[app]"``, which installs Gradio). The page
is served on 127.0.0.1 unless ``--host`` says otherwise; nothing is sent elsewhere.
"""

import errno
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

from absl import flags

from mh2f_jax import cli
from mh2f_jax import errors
from mh2f_jax import files

def define_flags(values: flags.FlagValues, argv: Sequence[str]) -> None:
  """Defines the web page's flags on ``values``."""
  del argv  # No config overrides.
  cli.define_model_flags(values)
  flags.DEFINE_string('checkpoint', 'best', "--workdir: 'best' (default; 'latest' when no "
                      "validation was recorded), 'latest' or a step number.",
                      flag_values=values)
  flags.DEFINE_integer('tile', None, 'Tile size for photos above 1 megapixel (as '
                       'mh2f-derain).', flag_values=values)
  flags.DEFINE_integer('overlap', None, 'Tile overlap in pixels (as mh2f-derain).',
                       flag_values=values)
  flags.DEFINE_string('host', '127.0.0.1', 'Address to serve on (default 127.0.0.1: this '
                      'machine only; 0.0.0.0 serves the network).', flag_values=values)
  flags.DEFINE_integer('port', 7860, 'Port (1 to 65535).', flag_values=values,
                       lower_bound=1, upper_bound=65535)
  cli.define_max_pixels_flag(values, 'Refuse uploaded photos')


def serve(args: flags.FlagValues, positional: Sequence[str] = ()) -> int:
  """Loads the model, then serves the page until interrupted.

  SIGTERM or Ctrl-C, at any moment, removes the temporary folder (the page's outputs and
  Gradio's copies of the uploads) and ends the process with 143 or 130.

  Raises:
    errors.UserError: Gradio missing, an address that cannot be served, or a workdir or
      model file that cannot be loaded.
  """
  if positional:
    raise errors.UserError(f'unexpected arguments: {" ".join(positional)}')
  _check_address(args.host, args.port)
  # Before Gradio is imported: no usage statistics or version checks leave the machine.
  os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
  work_root = _make_work_root()
  previous = _exit_on_signals(work_root)
  # Gradio reads its upload folder when it is imported: its copies go under ours too.
  os.environ['GRADIO_TEMP_DIR'] = os.path.join(work_root, 'gradio')
  try:
    try:
      import gradio  # pylint: disable=unused-import
    except ImportError:
      raise errors.UserError('the web page needs Gradio: pip install "mh2f-jax[app]" '
                             '(or pip install gradio)') from None
    derainer = cli.load_derainer(args)
    model = cli.describe_derainer(args, derainer)
    print(f'model: {model}', flush=True)  # Seen even if a signal ends the process.
    from mh2f_jax.inference import web_page  # pylint: disable=g-import-not-at-top  (fast --help)
    page = web_page.build_page(derainer, f'Model: `{model}`.', work_root,
                               max_pixels=args.max_pixels)
    try:
      page.launch(server_name=args.host, server_port=args.port, show_error=True,
                  allowed_paths=[work_root])
    except OSError as e:
      reason = str(e).split('. ')[0]  # Gradio's advice after it is about its own API.
      raise errors.UserError(f'cannot serve on {args.host}:{args.port} ({reason})') from None
  finally:
    _remove(work_root)
    for signum, handler in previous.items():
      signal.signal(signum, handler)
  return 0


def _check_address(host: str, port: int) -> None:
  """Refuses, naming the real cause, an address the page could not be served on.

  Raises:
    errors.UserError: a host that is no address or name, one not of this machine, a port
      in use or reserved.
  """
  try:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
  except (socket.gaierror, UnicodeError) as e:
    reason = getattr(e, 'strerror', None) or str(e)
    raise errors.UserError(f'--host={host} is not an address or a known host name '
                           f'({reason})') from None
  with socket.socket(family, kind, proto) as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      probe.bind(address)
    except OSError as e:
      if e.errno == errno.EADDRINUSE:
        raise errors.UserError(f'port {port} on {host} is in use: choose another '
                               '--port') from None
      if e.errno == errno.EACCES:
        raise errors.UserError(f'port {port} is reserved for the system administrator: '
                               'choose a --port above 1023') from None
      raise errors.UserError(f'cannot serve on --host={host} ({e.strerror}): give an '
                             'address of this machine, 127.0.0.1 or 0.0.0.0') from None


def _make_work_root() -> str:
  """Creates the page's temporary folder and checks it can be written, before the model.

  Raises:
    errors.UserError: the temporary folder cannot be created or written.
  """
  try:
    work_root = tempfile.mkdtemp(prefix='mh2f-app-')
  except OSError as e:
    raise errors.UserError(f"cannot write the page's temporary folder in "
                           f'{tempfile.gettempdir()}: {e.strerror} (set TMPDIR to a folder '
                           'you can write)') from None
  try:
    files.check_writable_folder(work_root)  # A full disk lets a folder be made.
  except errors.UserError:
    _remove(work_root)
    raise
  return work_root


def _remove(folder: str) -> None:
  # A request still running may add a file while the folder is removed: try again.
  for _ in range(3):
    shutil.rmtree(folder, ignore_errors=True)
    if not os.path.exists(folder):
      return


def _exit_on_signals(work_root: str) -> dict[int, Any]:
  """Makes SIGTERM and SIGINT remove ``work_root`` and end the process at once.

  Returns the previous handlers (none are set outside the main thread, where Python
  cannot set them). Not by raising in the main thread and returning: the interpreter's
  shutdown, while Gradio's worker thread is inside XLA deraining a photo, aborts the
  process ("terminate called ...", exit 134) and leaves the temporary files behind.
  """
  def stop(signum, frame):
    del frame
    _remove(work_root)
    # os.write: print may be in the middle of a write of the main thread.
    os.write(2, f'mh2f-app: stopped ({signal.Signals(signum).name}); temporary files '
                'removed\n'.encode())
    os._exit(128 + signum)  # pylint: disable=protected-access

  if threading.current_thread() is not threading.main_thread():
    return {}
  return {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}


def run(argv: Sequence[str] | None = None) -> int:
  """The ``mh2f-app`` command; ``argv`` without the program name (None: ``sys.argv``)."""
  return cli.run(serve, define_flags, argv, prog='mh2f-app', doc=__doc__)


if __name__ == '__main__':
  cli.exit_with(run())
