"""Evaluation of a workdir on photos that have no clean twin (real rain), by NIQE and BRISQUE.

``evaluate_photos(workdir, folder)`` derains every photo directly inside ``folder`` (read
as ``mh2f-derain`` reads it: EXIF orientation, alpha dropped, 16-bit and float images
rounded to 8 bits for scoring) and scores the rainy input and the derained output with
the no-reference measures of :mod:`mh2f_jax.metrics.no_reference`: NIQE as the LIVE
release computes it (grey by ``rgb2gray``; the headline), NIQE on Y (BasicSR's input)
and BRISQUE (the release's model ships with the package). Lower is better for all
three, so a negative change is an improvement. It writes, each file atomically:

```
WORKDIR/eval/photos-<folder name>-<hash>-step<STEP>[-flips|-x8][-raw]/
  per_image.csv   name, width, height, input/derained/change of niqe, niqe_y and brisque,
                  note (why a photo or a measure has no score)
  summary.json    means over the photos each measure scored, and run facts
  results.md      the means as a table, the photos that could not be scored
  figure.png      rainy | derained of the photos whose NIQE improved most and least
  images/         derained PNGs (with save_images), named as mh2f-derain names outputs
```
A photo that cannot be read or scored (NIQE needs 192x192 pixels; a flat photo gets NaN)
gets its reason in ``note`` and the run goes on; BRISQUE without its model files leaves
its columns empty and says why once, in ``summary.json`` and ``results.md``.

``<hash>`` is 8 hex digits of the SHA-256 of the folder's resolved absolute path, so two
folders of one name (``trip1/photos``, ``trip2/photos``) never share a report. The report
is built in a hidden folder beside it and moved into place when complete: a rerun replaces
the previous run's report whole (no file of it is left), and an interrupted run leaves
the previous report as it was and nothing half-written.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import logging
import os
import shutil
import time
import uuid
from typing import Any

import numpy as np
from tqdm import tqdm

from mh2f_jax import errors
from mh2f_jax import files
from mh2f_jax import inference
from mh2f_jax.evaluation import evaluator
from mh2f_jax.evaluation import figures
from mh2f_jax.inference import ensemble as ensemble_lib
from mh2f_jax.metrics import no_reference

MEASURES = no_reference.MEASURES
# The measure that ranks photos for the figure: the release's NIQE.
RANKING = 'niqe'
PER_IMAGE_FIELDS = ('name', 'width', 'height',
                    *(f'{kind}_{m}' for m in MEASURES
                      for kind in ('input', 'derained', 'change')), 'note')
# Characters of the folder's name in the report's name (file names stop at 255 bytes).
_NAME_CHARS = 40
# The report's files but the figure, by their keys in evaluate_photos' result.
_REPORT_FILES = {'per_image_csv': 'per_image.csv', 'summary_json': 'summary.json',
                 'results_md': 'results.md'}

_log = logging.getLogger(__name__)


def photos_dir_name(folder: str, step: int, *, self_ensemble: Any = False,
                    raw_of_ema: bool = False) -> str:
  """The report's folder name under ``WORKDIR/eval``: ``photos-<name>-<hash>-step<STEP>...``.

  ``<name>`` is the folder's name (its first 40 characters), ``<hash>`` 8 hex digits of
  the SHA-256 of its resolved absolute path: one folder, however it is named on the
  command line, has one report, and two folders never share one.
  """
  resolved = os.path.realpath(folder)
  name = os.path.basename(resolved)[:_NAME_CHARS] or 'root'
  digest = hashlib.sha256(resolved.encode('utf-8', 'surrogateescape')).hexdigest()[:8]
  return evaluator.eval_dir_name('photos', f'{name}-{digest}', step,
                                 self_ensemble=self_ensemble, raw_of_ema=raw_of_ema)


def list_photos(folder: str) -> list[str]:
  """The image files directly inside ``folder``, sorted; a UserError if there are none."""
  if not os.path.isdir(folder):
    what = 'does not exist' if not os.path.exists(folder) else 'is not a folder'
    raise errors.UserError(f'--photos {folder} {what}')
  skipped = []
  paths = files.list_images(folder, skipped=skipped)
  for path, why in skipped:
    _log.warning('skipped %s: %s', path, why)
  if not paths:
    raise errors.UserError(f'--photos {folder} holds no image files')
  return paths


def _read_photo(path: str, max_pixels: int) -> tuple[dict[str, Any], Any]:
  """A photo's CSV row so far, and the photo (``photos.LoadedImage``; None if unreadable)."""
  from mh2f_jax.inference import photos  # pylint: disable=g-import-not-at-top
  row = {'name': os.path.basename(path), 'width': None, 'height': None, 'note': ''}
  try:
    with files.pixel_limit(max_pixels):
      return row, photos.read_image(path)
  except Exception as e:  # pylint: disable=broad-except
    # Pillow raises many unrelated types for corrupt files; the other photos go on.
    row['note'] = f'cannot read: {e}'
    return row, None


def _score_photo(scorer: no_reference.Scorer, row: dict[str, Any], loaded: Any,
                 derained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Fills the row of a read photo from its scores; its (rainy, derained) uint8 pair."""
  from mh2f_jax import metrics  # pylint: disable=g-import-not-at-top
  pixels = loaded.pixels
  rainy = pixels if pixels.dtype == np.uint8 else metrics.to_uint8(pixels)
  row['height'], row['width'] = rainy.shape[:2]
  derained = metrics.to_uint8(derained)
  before, reasons = scorer.score(rainy)
  after, _ = scorer.score(derained)
  for m in MEASURES:
    row[f'input_{m}'], row[f'derained_{m}'] = before[m], after[m]
    row[f'change_{m}'] = None if before[m] is None else after[m] - before[m]
  # BRISQUE's missing model is said once for the run, not on every row.
  notes = dict.fromkeys(r for m, r in reasons.items()
                        if not (m == 'brisque' and scorer.brisque_model is None))
  row['note'] = '; '.join([*notes, *_nan_notes(before, after)])
  return rainy, derained


def _nan_notes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
  """Why a measure gave NaN, for the rainy and for the derained photo."""
  notes = []
  for side, values in (('rainy', before), ('derained', after)):
    nan = [no_reference.LABELS[m] for m in MEASURES
           if values[m] is not None and np.isnan(values[m])]
    if nan:
      notes.append(f'{side} photo: {", ".join(nan)} no score (NaN): too flat to measure, '
                   'as in the releases (no texture for their statistics)')
  return notes


def _cell(value: Any) -> str:
  if value is None:
    return ''
  return repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)


def per_image_csv(rows: list[dict[str, Any]]) -> str:
  """``per_image.csv`` text: empty cells where a measure gave no score."""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=PER_IMAGE_FIELDS, lineterminator='\n')
  writer.writeheader()
  for row in rows:
    writer.writerow({k: _cell(row.get(k)) for k in PER_IMAGE_FIELDS})
  return buf.getvalue()


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
  """Per measure: photos scored, mean input, derained and change, photos improved.

  NaN scores (the release gives NaN for a flat image) are left out of the means.
  """
  summary = {'num_photos': len(rows),
             'num_unreadable': sum(r['width'] is None for r in rows)}
  for m in MEASURES:
    scored = [r for r in rows if r.get(f'change_{m}') is not None
              and np.isfinite(r[f'change_{m}'])]
    mean = lambda key, part=scored: (float(np.mean([r[key] for r in part]))
                                     if part else None)
    summary[m] = {'photos': len(scored), 'input': mean(f'input_{m}'),
                  'derained': mean(f'derained_{m}'), 'change': mean(f'change_{m}'),
                  'improved': sum(r[f'change_{m}'] < 0 for r in scored)}
  return summary


def _fmt(value: float | None) -> str:
  return '-' if value is None else f'{value:.3f}'


def results_markdown(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
  """``results.md``: the mean scores, the BRISQUE note and the photos without a score."""
  lines = [f'# {summary["folder"]}: no-reference scores, step {summary["step"]}', '',
           f'{summary["num_photos"]} photos; lower is better for every measure, so a '
           'negative change is an improvement.', '',
           '| measure | photos scored | rainy input | derained | change | improved |',
           '|---|---|---|---|---|---|']
  for m in MEASURES:
    s = summary[m]
    lines.append(f'| {no_reference.LABELS[m]} | {s["photos"]} | {_fmt(s["input"])} | '
                 f'{_fmt(s["derained"])} | {_fmt(s["change"])} | {s["improved"]} |')
  lines += ['', 'NIQE: the LIVE release (96x96 blocks, its pristine model, grey by MATLAB '
            '`rgb2gray`); NIQE-Y: the same on Y of YCbCr (BasicSR `calculate_niqe`); '
            'BRISQUE: the LIVE release. See docs/evaluation.md.']
  if summary['brisque_unavailable']:
    lines += ['', f'BRISQUE not scored: {summary["brisque_unavailable"]}']
  unscored = [r for r in rows if r['note']]
  if unscored:
    lines += ['', '## Photos without every score', '']
    lines += [f'- {r["name"]}: {r["note"]}' for r in unscored]
  return '\n'.join(lines) + '\n'


def _extremes(rows: list[dict[str, Any]]) -> tuple[str, str] | None:
  """Names of the photos whose NIQE improved most and least (None: none was scored)."""
  ranked = sorted((r[f'change_{RANKING}'], r['name']) for r in rows
                  if r.get(f'change_{RANKING}') is not None
                  and np.isfinite(r[f'change_{RANKING}']))
  return (ranked[0][1], ranked[-1][1]) if ranked else None


def _figure_rows(rows: list[dict[str, Any]], pairs: dict[str, tuple]) -> list[tuple]:
  """(label, panels) of the best and the worst change, for ``figures.save_grid``."""
  best, worst = _extremes(rows)
  by_name = {r['name']: r for r in rows}
  out = []
  for label, name in (('best', best), ('worst', worst))[:1 if best == worst else 2]:
    row, (rainy, derained) = by_name[name], pairs[name]
    out.append((f'{label}: {name}', [
        (f'rainy: NIQE {row[f"input_{RANKING}"]:.3f}', rainy),
        (f'derained: NIQE {row[f"derained_{RANKING}"]:.3f} '
         f'({row[f"change_{RANKING}"]:+.3f})', derained)]))
  return out


def _score_all(derainer: Any, scorer: no_reference.Scorer, paths: list[str], *,
               images_dir: str | None, progress: bool, max_pixels: int
               ) -> tuple[list[dict[str, Any]], dict[str, tuple]]:
  """Rows of every photo, and the image pairs of the current best and worst only."""
  from mh2f_jax.inference import photos  # pylint: disable=g-import-not-at-top
  rows, kept = [], {}
  # One photo ahead: the next photo runs while this one is scored.
  stream = inference.derain_stream(
      derainer, map(functools.partial(_read_photo, max_pixels=max_pixels), paths),
      image_of=lambda read: None if read[1] is None else read[1].pixels)
  for (row, loaded), derained in tqdm(stream, total=len(paths), desc='eval photos',
                                      unit='img', disable=not progress):
    rows.append(row)
    if loaded is None:
      continue
    pair = _score_photo(scorer, row, loaded, derained)
    if images_dir is not None:  # Named as mh2f-derain names its outputs.
      files.write_atomic(os.path.join(images_dir, photos.output_stem(row['name']) + '.png'),
                         files.encode_png(pair[1]))
    kept[row['name']] = pair
    # Holding every photo would take the memory of the whole folder.
    keep = set(_extremes(rows) or ())
    kept = {name: p for name, p in kept.items() if name in keep}
  return rows, kept


def evaluate_photos(workdir: str, folder: str, *, checkpoint: Any = 'latest',
                    self_ensemble: Any = False, params: str = 'ema',
                    save_images: bool = False, progress: bool = True,
                    brisque_dir: str | None = None, backend: str = 'jax',
                    max_pixels: int = files.DEFAULT_MAX_PIXELS) -> dict[str, Any]:
  """Derains the photos of a folder, scores input and output, and writes the report.

  Args:
    workdir: the training workdir (``config.json``, ``checkpoints/``).
    folder: the photos (image files directly inside it; sub-folders are not read).
    checkpoint: 'latest', 'best' or a step.
    self_ensemble: 'flips' (or True), 'x8' or 'none' (or False).
    params: 'ema' or 'raw' (as ``evaluator.evaluate``).
    save_images: also write the derained PNGs under ``images/``.
    progress: show a tqdm progress bar.
    brisque_dir: folder of BRISQUE's ``allmodel``/``allrange``; None: as
      ``metrics.brisque.load_model``.
    backend: 'jax', 'onnxruntime' or 'auto' (``inference.backends``).
    max_pixels: a photo declaring more pixels is not decoded and gets a note (0: no cap).

  Returns:
    The summary written to ``summary.json``, plus the paths ``eval_dir``,
    ``per_image_csv``, ``summary_json``, ``results_md``, ``figure`` (None when no photo
    was scored) and ``images_dir`` (None without ``save_images``).

  Raises:
    errors.UserError: a missing folder or one without images, a workdir, checkpoint,
      ensemble or backend that cannot be used, a damaged BRISQUE model file, or a report
      location that cannot be written (all before any photo is derained).
  """
  from mh2f_jax.workdir import loading  # pylint: disable=g-import-not-at-top
  paths = list_photos(folder)
  # A damaged BRISQUE model is refused before any work, and before the report folder.
  scorer = no_reference.Scorer.load(brisque_dir)
  ensemble = ensemble_lib.ensemble_name(self_ensemble)
  config, values, step = loading.load_workdir(workdir, checkpoint, fallback=False,
                                              params=params)
  out_dir = os.path.join(workdir, 'eval', photos_dir_name(
      folder, step, self_ensemble=ensemble,
      raw_of_ema=params == 'raw' and config.get('ema_decay') is not None))
  staging = _staging_folder(os.path.dirname(out_dir))
  try:
    derainer = inference.Derainer.from_params(
        config.model, values, step=step, checkpoint=checkpoint, self_ensemble=ensemble,
        backend=backend)
    start = time.time()
    rows, kept = _score_all(
        derainer, scorer, paths, progress=progress, max_pixels=max_pixels,
        images_dir=os.path.join(staging, 'images') if save_images else None)
    summary = {**summarise(rows), 'folder': os.path.abspath(folder), 'step': int(step),
               'checkpoint': str(checkpoint), 'params': loading.params_kind(config, params),
               'self_ensemble': ensemble, 'backend': derainer.backend, 'ranking': RANKING,
               'brisque_unavailable': scorer.brisque_reason,
               'seconds': round(time.time() - start, 2)}
    figure = _write_report(staging, summary, rows, kept)
    _publish(staging, out_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)  # Ctrl-C too: nothing half-written.
    raise
  return {**summary, 'eval_dir': out_dir,
          **{key: os.path.join(out_dir, name) for key, name in _REPORT_FILES.items()},
          'figure': os.path.join(out_dir, 'figure.png') if figure else None,
          'images_dir': os.path.join(out_dir, 'images') if save_images else None}


def _write_report(folder: str, summary: dict[str, Any], rows: list[dict[str, Any]],
                  kept: dict[str, tuple]) -> str | None:
  """Writes the report's files into ``folder``; returns the figure's path (None: none)."""
  texts = {'per_image_csv': per_image_csv(rows), 'summary_json': evaluator.summary_json(summary),
           'results_md': results_markdown(summary, rows)}
  for key, name in _REPORT_FILES.items():
    files.write_atomic(os.path.join(folder, name), texts[key].encode())
  if not kept:
    return None
  return figures.save_grid(os.path.join(folder, 'figure.png'), _figure_rows(rows, kept),
                           title=f'NIQE change, step {summary["step"]}')


def _staging_folder(parent: str) -> str:
  """A new hidden folder in ``parent`` where a report is built until it is complete.

  Raises:
    errors.UserError: ``parent`` cannot be created or written.
  """
  files.check_writable_folder(parent)
  # A short name (file names stop at 255 bytes); os.mkdir gives the umask's permissions.
  staging = os.path.join(parent, f'.photos-{uuid.uuid4().hex[:12]}.tmp')
  os.mkdir(staging)
  return staging


def _publish(staging: str, out_dir: str) -> None:
  """Moves a complete report to ``out_dir``, replacing this report's previous run whole."""
  old = None
  if os.path.lexists(out_dir):
    old = staging + '.old'
    os.rename(out_dir, old)
  os.rename(staging, out_dir)
  if old is not None:
    if os.path.isdir(old) and not os.path.islink(old):
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.remove(old)


def format_summary(result: dict[str, Any]) -> str:
  """A few human-readable lines of an :func:`evaluate_photos` result."""
  lines = [f'{result["folder"]}, step {result["step"]}, {result["num_photos"]} photos, '
           f'backend {result["backend"]} (lower is better):']
  for m in MEASURES:
    s = result[m]
    if s['photos']:
      lines.append(f'  {no_reference.LABELS[m]:8s} rainy {s["input"]:.3f} -> derained '
                   f'{s["derained"]:.3f} ({s["change"]:+.3f}; {s["improved"]} of '
                   f'{s["photos"]} improved)')
  if result['brisque_unavailable']:
    lines.append(f'  BRISQUE not scored: {result["brisque_unavailable"]}')
  return '\n'.join(lines)
