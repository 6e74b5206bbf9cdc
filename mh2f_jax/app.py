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

import dataclasses
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
import numpy as np

from mh2f_jax import cli
from mh2f_jax import errors
from mh2f_jax import files

# Previews in the slider are shrunk to this longest side; downloads keep the full size.
_PREVIEW_SIDE = 1600
# One request is derained at a time (each may take all the memory a large photo needs);
# at most this many wait, later ones are turned away until the queue has room.
QUEUE_SIZE = 8


@dataclasses.dataclass
class Result:
  """One uploaded photo after deraining.

  Attributes:
    name: the uploaded file's name.
    output: the derained file (PNG, or TIFF for float images), as the CLI writes it.
    before: an 8-bit RGB(A) preview of the upright input.
    after: the matching preview of the derained image.
    message: one line for the status box.
  """
  name: str
  output: str
  before: str
  after: str
  message: str


def _preview(pixels: np.ndarray, path: str) -> str:
  """Writes an 8-bit, at most _PREVIEW_SIDE pixels wide/high PNG of an image."""
  from PIL import Image
  from mh2f_jax import metrics
  if pixels.dtype != np.uint8:
    pixels = metrics.to_uint8(pixels)
  image = Image.fromarray(pixels, 'RGB')
  image.thumbnail((_PREVIEW_SIDE, _PREVIEW_SIDE))
  image.save(path)
  return path


def quality_text(before: np.ndarray, after: np.ndarray, scorer: Any = None) -> str:
  """No-reference scores of a photo, rainy -> derained, or why a measure has none.

  Args:
    before: the rainy photo, (H, W, 3) uint8 or float in [0, 1].
    after: the derained photo, same shape.
    scorer: a ``metrics.no_reference.Scorer``; None loads one (BRISQUE where its model
      files are supplied, see docs/evaluation.md).

  Returns:
    One line such as ``NIQE 6.21 -> 4.87, BRISQUE 41.2 -> 30.5 (lower is better)``.
  """
  from mh2f_jax.metrics import no_reference  # pylint: disable=g-import-not-at-top
  scorer = scorer if scorer is not None else no_reference.Scorer.load()
  rainy, reasons = scorer.score(before)
  derained, _ = scorer.score(after)
  parts = []
  for measure in ('niqe', 'brisque'):
    label = no_reference.LABELS[measure]
    if rainy[measure] is None:
      parts.append(f'{label}: {reasons[measure]}')
    else:
      parts.append(f'{label} {rainy[measure]:.2f} -> {derained[measure]:.2f}')
  return ', '.join(parts) + ' (lower is better)'


def derain_uploads(derainer: Any, paths: Sequence[str], out_dir: str, *,
                 self_ensemble: bool = False, progress=None,
                 max_pixels: int = files.DEFAULT_MAX_PIXELS) -> tuple[list[Result], list[str]]:
  """Derains uploaded files the way ``mh2f-derain`` does, one after the other.

  Args:
    derainer: an ``inference.Derainer`` or ``exported.ExportedDerainer``.
    paths: the uploaded files.
    out_dir: an empty folder for the outputs and previews.
    self_ensemble: average the flipped copies (the 'flips' self-ensemble).
    progress: ``progress((done, total), desc=...)`` is called before each photo.
    max_pixels: a file declaring more pixels is refused from its header, before it is
      decoded (0: no cap).

  Returns:
    The results, and one error line per file that could not be read, naming the file as
    it was uploaded (never the server's copy).
  """
  os.makedirs(os.path.join(out_dir, 'previews'), exist_ok=True)
  results, failures = [], []
  from mh2f_jax.inference import photos  # pylint: disable=g-import-not-at-top  (fast --help)
  stems = photos.output_stems(paths)
  for i, (path, stem) in enumerate(zip(paths, stems)):
    name = os.path.basename(path)
    try:
      with files.pixel_limit(max_pixels):
        loaded = photos.read_image(path)
    except Exception as e:  # pylint: disable=broad-except
      # Pillow raises many unrelated types for corrupt files; the others go on. Its
      # messages name the server's copy of the upload: the user knows the file by name.
      failures.append(f'cannot read {name}: {str(e).replace(path, name)}')
      continue
    height, width = loaded.pixels.shape[:2]
    tiled = ', in tiles' if derainer.will_tile(height, width) else ''
    if progress is not None:
      progress((i, len(paths)), desc=f'deraining {name} ({width}x{height}{tiled})')
    derained = derainer.derain(loaded.pixels, self_ensemble=self_ensemble)
    output = os.path.join(out_dir, stem + photos.output_extension(loaded.kind))
    files.write_atomic(output, photos.encode_output(loaded, derained))
    previews = os.path.join(out_dir, 'previews', f'{i}')
    results.append(Result(
        name, output, _preview(loaded.pixels, previews + '-before.png'),
        _preview(derained, previews + '-after.png'),
        f'{name} -> {os.path.basename(output)} ({width}x{height}, {loaded.kind}{tiled})'
        # A Markdown line break keeps the scores inside the result's list item.
        f'  \n  {quality_text(loaded.pixels, derained)}'))
  if progress is not None:
    progress((len(paths), len(paths)), desc='done')
  return results, failures


def build_page(derainer: Any, title: str, work_root: str, *,
               max_pixels: int = files.DEFAULT_MAX_PIXELS):
  """The Gradio page for one loaded model, queued: one request at a time, QUEUE_SIZE wait.

  Args:
    derainer: an ``inference.Derainer`` or ``exported.ExportedDerainer``.
    title: what the page says about the model (workdir and step).
    work_root: a folder that receives one sub-folder of outputs per request.
    max_pixels: the cap on the pixels an uploaded photo declares (see
      :func:`derain_uploads`).

  Returns:
    The ``gradio.Blocks`` (not launched).
  """
  import gradio as gr

  def run(files, self_ensemble, progress=gr.Progress()):
    if not files:
      raise gr.Error('upload one or more photos first')
    out_dir = tempfile.mkdtemp(prefix='request-', dir=work_root)
    results, failures = derain_uploads(derainer, list(files), out_dir,
                                     self_ensemble=self_ensemble, progress=progress,
                                     max_pixels=max_pixels)
    # Keyed by the output's name, unique like the command's outputs.
    pairs = {os.path.basename(r.output): (r.before, r.after) for r in results}
    lines = [r.message for r in results] + [f'error: {f}' for f in failures]
    status = f'derained {len(results)} of {len(files)} photo(s)\n\n' + '\n'.join(
        f'- {line}' for line in lines)
    first = next(iter(pairs), None)
    return (pairs, [r.output for r in results], pairs.get(first),
            gr.update(choices=list(pairs), value=first), status)

  # Gradio keeps its copies of uploads and results in its cache: drop them after an hour
  # and when the server stops.
  with gr.Blocks(title='MH2F-Net deraining', analytics_enabled=False,
                 delete_cache=(600, 3600)) as page:
    gr.Markdown(f'# MH2F-Net deraining\n{title}')
    pairs = gr.State({})
    with gr.Row():
      with gr.Column(scale=1):
        uploads = gr.File(label='Photos', file_count='multiple', file_types=['image'],
                          elem_id='photos')
        ensemble = gr.Checkbox(label='Self-ensemble: average 4 flipped copies (4 times slower)')
        button = gr.Button('Derain', variant='primary', elem_id='derain')
        status = gr.Markdown(elem_id='status')
      with gr.Column(scale=2):
        shown = gr.Dropdown(label='Show', choices=[], elem_id='shown')
        slider = gr.ImageSlider(label='rainy | derained', type='filepath', format='png',
                                interactive=False, elem_id='slider')
        outputs = gr.File(label='Derained photos (full size)', file_count='multiple',
                          interactive=False, elem_id='results')
    button.click(run, [uploads, ensemble], [pairs, outputs, slider, shown, status])
    shown.change(lambda name, p: p.get(name), [shown, pairs], slider)
  return page.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)


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
  work_root = tempfile.mkdtemp(prefix='mh2f-app-')
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
    page = build_page(derainer, f'Model: `{model}`.', work_root, max_pixels=args.max_pixels)
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
