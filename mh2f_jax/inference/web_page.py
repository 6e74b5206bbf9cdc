"""The web page's library: one Gradio page that derains uploaded photos as mh2f-derain does.

:func:`derain_uploads` takes each upload the command line's path (reading, tiling,
encoding: :mod:`mh2f_jax.inference.photos`), so a download is byte for byte what
``mh2f-derain`` writes; :func:`quality_text` adds NIQE and BRISQUE of the rainy and the
derained photo; :func:`build_page` lays out the page and queues its requests. The
``mh2f-app`` command (:mod:`mh2f_jax.app`) serves it.
"""

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

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

  Outputs are named as the command names them (``photos.output_stem``); an upload whose
  name an earlier upload of the request already had gets `` (2)``, `` (3)``, ... before
  the extension (``photos.upload_stems``).

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
  stems = photos.upload_stems(paths)  # Uploads of one request may share a name.
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
