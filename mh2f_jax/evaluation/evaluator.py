"""Evaluation of a training workdir on a test split, as published deraining tables do it.

``evaluate(workdir)`` reads ``WORKDIR/config.json``, restores the parameters only (on any
device count: they come back as NumPy and go to one device), derains every test image at
full resolution (``inference.Derainer``: one compiled forward per size bucket, not per
image size; images above ``inference.DEFAULT_MAX_UNTILED_PIXELS`` are tiled so memory
stays bounded) and scores the 8-bit output (``metrics.to_uint8``) and the rainy input
against the clean image with ``metrics.evaluate_pair`` (protocol B or A). Metrics are
averaged per image, then per dataset. It writes, each file atomically:

```
WORKDIR/eval/<dataset, '/' -> '_'>-<split>-step<STEP>[-protocolA][-flips|-x8][-first<N>][-raw]/
  per_image.csv   name, psnr_y, ssim_y, psnr_rgb, ssim_rgb, input_psnr_y, input_ssim_y,
                  input_psnr_rgb, input_ssim_rgb
  summary.json    means and run facts; infinite PSNR (identical images) is the string
                  "inf" because JSON has no infinity
  results.md      measured rows beside the paper's Table 2 row ("paper's reported numbers")
                  and what the run trained on and started from (WORKDIR/run.json)
  figure.png      rainy | derained | clean of the first test image, PSNR-Y in the titles
  images/         derained PNGs (with save_images), named after the test images
```
The default options keep the folder name of the workdir contract; non-default protocol,
self-ensemble, a subset, or the raw parameters of a run that kept an EMA add a suffix so
that no run overwrites another's numbers. ``results.md`` links the run's training curves
(``WORKDIR/curves.png``) when training drew them.
Evaluation runs in one process on one device.
"""

import csv
import io
import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from tqdm import tqdm

from mh2f_jax.training import curves
from mh2f_jax.inference import ensemble as ensemble_lib
from mh2f_jax import errors
from mh2f_jax.evaluation import figures
from mh2f_jax import files
from mh2f_jax import inference
from mh2f_jax import metrics
from mh2f_jax.evaluation import paper
from mh2f_jax.workdir import run_record

PER_IMAGE_FIELDS = ('name', 'psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb', 'input_psnr_y',
                    'input_ssim_y', 'input_psnr_rgb', 'input_ssim_rgb')
_METRIC_KEYS = ('psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb')

PROTOCOL_TEXT = {
    'B': ("protocol B (Restormer/DRSformer MATLAB script): Y of MATLAB rgb2ycbcr on the "
          "8-bit images, rounded; PSNR with peak 255 over the whole Y plane; SSIM with the "
          "11x11 Gaussian window (sigma 1.5), valid region, no downsampling"),
    'A': ("protocol A (PReNet/RCDNet scripts): unrounded Y; PSNR with peak 255; SSIM with "
          "Zhou Wang's automatic downsampling, then the 11x11 Gaussian window (sigma 1.5)"),
}


def eval_dir_name(dataset: str, split: str, step: int, *, protocol: str = 'B',
                  self_ensemble: bool | str | None = False,
                  num_images: int | None = None, raw_of_ema: bool = False) -> str:
  """The folder name of one evaluation under ``WORKDIR/eval``.

  Args:
    dataset: dataset name ('/' and other characters unsafe in file names become '_').
    split: split name (same replacement).
    step: checkpoint step.
    protocol: 'B' (no suffix) or 'A' (suffix '-protocolA').
    self_ensemble: 'flips' (or True) adds '-flips', 'x8' adds '-x8'.
    num_images: a subset size adds '-first<N>'.
    raw_of_ema: the raw parameters of a run that kept an EMA add '-raw'.

  Returns:
    The folder name.
  """
  def safe(text: str) -> str:
    # '/' (synthetic_rain/heavy) and TFDS slicing ('test[:10]') make poor folder names.
    return re.sub(r'[^A-Za-z0-9._+-]', '_', text)

  name = f'{safe(dataset)}-{safe(split)}-step{step}'
  if protocol != 'B':
    name += f'-protocol{protocol}'
  ensemble = ensemble_lib.ensemble_name(self_ensemble)
  if ensemble != 'none':
    name += f'-{ensemble}'
  if num_images is not None:
    name += f'-first{num_images}'
  if raw_of_ema:
    name += '-raw'
  return name


def _image_path(images_dir: str, name: str, used: set[str]) -> str:
  """A PNG path under ``images_dir`` for a test image's name, unique and inside it."""
  parts = [p for p in name.replace('\\', '/').split('/') if p not in ('', '.', '..')]
  rel = os.path.join(*parts) if parts else 'image'
  stem, ext = os.path.splitext(rel)
  candidate = stem + '.png'
  # Two test images differing only by extension (a.jpg, a.png) keep both outputs.
  if candidate in used:
    candidate = rel + '.png'
  k = 1
  while candidate in used:
    candidate = f'{stem}-{k}.png'
    k += 1
  used.add(candidate)
  return os.path.join(images_dir, candidate)


def _fmt(value: float, digits: int) -> str:
  if isinstance(value, str):
    return value
  if value is None or np.isnan(value):
    return 'n/a'
  if np.isinf(value):
    return 'inf'
  return f'{value:.{digits}f}'


PARAMS_TEXT = {'ema': 'EMA parameters', 'raw': 'raw (not averaged) parameters'}


def _results_markdown(summary: dict[str, Any]) -> str:
  """The results.md text: measured rows beside the paper's Table 2 row."""
  dataset, split, step = summary['dataset'], summary['split'], summary['step']
  lines = [
      f'# Evaluation of MH2F-Net on {dataset} ({split} split), step {step}',
      '',
      f'- Checkpoint: {summary["checkpoint"]} (step {step}), '
      f'{PARAMS_TEXT[summary.get("params", "raw")]}; '
      f'self-ensemble: {summary["self_ensemble"]}; '
      f'{summary["num_images"]} images at full resolution.',
      f'- Metrics: {PROTOCOL_TEXT[summary["protocol"]]}. Averaged per image, then over '
      f'the dataset.',
      *run_record.markdown_lines(summary.get('run')),
      '',
      '| Row | PSNR-Y (dB) | SSIM-Y | PSNR-RGB (dB) | SSIM-RGB |',
      '|---|---|---|---|---|',
      f'| MH2F-Net, this evaluation | {_fmt(summary["psnr_y"], 2)} | '
      f'{_fmt(summary["ssim_y"], 4)} | {_fmt(summary["psnr_rgb"], 2)} | '
      f'{_fmt(summary["ssim_rgb"], 4)} |',
      f'| Rainy input, this evaluation | {_fmt(summary["input_psnr_y"], 2)} | '
      f'{_fmt(summary["input_ssim_y"], 4)} | {_fmt(summary["input_psnr_rgb"], 2)} | '
      f'{_fmt(summary["input_ssim_rgb"], 4)} |',
  ]
  row = paper.table2_row(dataset)
  notes = []
  if row is not None:
    lines += [
        f"| MH2F-Net, paper's reported numbers ({row.display_name}, Table 2) | "
        f'{row.psnr:.2f} | {row.ssim:.4f} | - | - |',
        f"| Rainy input, paper's reported numbers ({row.display_name}, Table 2) | "
        f'{row.input_psnr:.2f} | {row.input_ssim:.4f} | - | - |',
    ]
    notes.append(
        f"The paper's reported numbers are copied from {paper.CITATION} "
        f'({row.test_images} test images). The paper does not state its metric protocol '
        f'(Y or RGB, rounding, SSIM variant); they are placed in the Y columns as the '
        f'closest convention.')
    if split != 'test':
      notes.append(f"The paper's numbers are for the test split; this evaluation used "
                   f"the '{split}' split.")
  else:
    notes.append(paper.not_reported_note(dataset))
  if summary.get('num_tiled_images'):
    notes.append(f'{summary["num_tiled_images"]} image(s) were too large to run whole and '
                 f'were derained in tiles, stage by stage, which gives the whole-image '
                 f'output to float rounding (see docs/evaluation.md, Tiling).')
  if any(isinstance(summary[k], str) or np.isinf(summary[k])
         for k in ('psnr_y', 'psnr_rgb', 'input_psnr_y', 'input_psnr_rgb')):
    notes.append('An infinite PSNR means at least one image was reproduced exactly.')
  if summary.get('curves'):
    notes.append(f'Training curves of the run: [{os.path.basename(summary["curves"])}]'
                 f'({summary["curves"]}).')
  lines += [''] + [f'{n}' for n in notes] + ['']
  return '\n'.join(lines)


def _per_image_csv(rows: list[dict[str, Any]]) -> str:
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=PER_IMAGE_FIELDS, lineterminator='\n')
  writer.writeheader()
  for row in rows:
    # repr keeps full precision; infinite PSNR is written as 'inf' (float('inf') reads it).
    writer.writerow({k: (repr(float(row[k])) if k != 'name' else row[k])
                     for k in PER_IMAGE_FIELDS})
  return buf.getvalue()


def summary_json(summary: dict[str, Any]) -> str:
  """``summary.json`` text: strict JSON, non-finite floats as the strings 'inf'/'nan'.

  JSON has no infinity; an identical derained image gives PSNR = inf (and so an infinite
  mean), which is written as the string "inf" (``float("inf")`` parses it back).
  """
  return json.dumps(files.json_safe(summary), indent=2, allow_nan=False) + '\n'


def _checked_pairs(iterator: Any) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
  """``(name, rainy, clean)`` of each test example; a UserError for a pair that differs in size."""
  for example in iterator:
    name = files.decode_name(example['name'])
    rainy, clean = np.asarray(example['rainy']), np.asarray(example['clean'])
    if rainy.shape != clean.shape:
      raise errors.UserError(f'test image {name}: rainy {rainy.shape} and clean '
                             f'{clean.shape} differ in size')
    yield name, rainy, clean


def _score_images(derainer: inference.Derainer, source: Any, total: int, protocol: str, *,
                  images_dir: str | None, figure_path: str, title: str, progress: bool
                  ) -> tuple[list[dict[str, Any]], set[tuple[int, ...]], int]:
  """Derains and scores the first ``total`` test images; draws the first one's figure.

  Returns:
    ``(rows, shapes, num_tiled)``: one metrics row per image, the distinct image shapes,
    and how many images were derained in tiles.

  Raises:
    errors.UserError: a pair whose images differ in size, or images too small to score.
  """
  from mh2f_jax.datasets import input_pipeline  # pylint: disable=g-import-not-at-top
  rows, shapes, used_names, num_tiled = [], set(), set(), 0
  iterator = input_pipeline.create_eval_iterator(source, num_images=total)
  pairs = inference.derain_stream(derainer, _checked_pairs(iterator),
                                  image_of=lambda pair: pair[1])
  for i, ((name, rainy, clean), derained) in enumerate(tqdm(  # derained: uint8
      pairs, total=total, desc=f'eval {title}', unit='img', disable=not progress)):
    shapes.add(rainy.shape)
    num_tiled += derainer.will_tile(*rainy.shape[:2])
    try:
      scores = metrics.evaluate_pair(derained, clean, protocol)
      input_scores = metrics.evaluate_pair(rainy, clean, protocol)
    except ValueError as e:
      raise errors.UserError(f'test image {name}: {e}') from None
    rows.append({'name': name, **scores,
                 **{f'input_{k}': v for k, v in input_scores.items()}})
    if images_dir is not None:
      files.write_atomic(_image_path(images_dir, name, used_names), files.encode_png(derained))
    if i == 0:
      figures.save_comparison(figure_path, rainy, derained, clean,
                              title=f'{title}: {name} (step {derainer.step})')
  return rows, shapes, num_tiled


def _check_settings(protocol: str, num_images: int | None,
                    self_ensemble: bool | str | None) -> tuple[str, str]:
  """The protocol (upper case) and ensemble name, or a UserError naming the bad one."""
  protocol = str(protocol).upper()
  if protocol not in metrics.PROTOCOLS:
    raise errors.UserError(f'protocol must be one of {", ".join(metrics.PROTOCOLS)}, '
                           f'got {protocol!r}')
  if num_images is not None and num_images < 1:
    raise errors.UserError(f'num_images must be >= 1 or None, got {num_images}')
  return protocol, ensemble_lib.ensemble_name(self_ensemble)


def _open_split(data_config: Any, split: str, data_dir: str | None,
                num_images: int | None) -> tuple[str, Any, int]:
  """The dataset validation used (``data.eval_dataset``, else the first), its split's
  source and how many of its images to score (a UserError if none)."""
  from mh2f_jax import datasets  # pylint: disable=g-import-not-at-top
  name, source = datasets.eval_source(data_config, split, data_dir=data_dir)
  total = len(source) if num_images is None else min(num_images, len(source))
  if total == 0:
    raise errors.UserError(f'{name} split {split!r} has no images')
  return name, source, total


def evaluate(workdir: str, *, checkpoint: Any = 'latest', split: str = 'test',
             protocol: str = 'B', save_images: bool = False,
             self_ensemble: bool | str | None = False,
             data_dir: str | None = None, num_images: int | None = None,
             progress: bool = True, params: str = 'ema', backend: str = 'jax') -> dict:
  """Evaluates a workdir's checkpoint on a split of its dataset and writes the report.

  Args:
    workdir: the training workdir (``config.json``, ``checkpoints/``).
    checkpoint: 'latest', 'best' (an error if no validation was recorded) or a step.
    split: the dataset split.
    protocol: 'B' or 'A' (see ``metrics.evaluate_pair``).
    save_images: also write the derained PNGs under ``images/``.
    self_ensemble: 'flips' (or True), 'x8' or 'none' (or False); see
      ``inference.Derainer.derain``.
    data_dir: TFDS data dir; None uses ``config.data.data_dir``.
    num_images: evaluate only the first N images (the folder name says so); None = all.
    progress: show a tqdm progress bar.
    params: 'ema' (the EMA parameters where the run kept them, else raw) or 'raw'.
    backend: 'jax' (the reference), 'onnxruntime' or 'auto' (``inference.backends``).

  Returns:
    The summary written to ``summary.json`` (floats, infinite PSNR as float('inf')),
    plus the paths ``eval_dir``, ``per_image_csv``, ``summary_json``, ``results_md``,
    ``figure`` and ``images_dir`` (None without ``save_images``).

  Raises:
    errors.UserError: missing workdir/config/checkpoint, an unknown protocol or split,
      a test pair whose images differ in size, an empty split.
  """
  from mh2f_jax.workdir import loading  # pylint: disable=g-import-not-at-top
  protocol, self_ensemble = _check_settings(protocol, num_images, self_ensemble)
  config, values, step = loading.load_workdir(workdir, checkpoint, fallback=False,
                                              params=params)
  derainer = inference.Derainer.from_params(config.model, values, step=step,
                                            checkpoint=checkpoint,
                                            self_ensemble=self_ensemble, backend=backend)
  dataset, source, total = _open_split(config.data, split, data_dir, num_images)
  out_dir = os.path.join(workdir, 'eval', eval_dir_name(
      dataset, split, step, protocol=protocol, self_ensemble=self_ensemble,
      num_images=num_images,
      raw_of_ema=params == 'raw' and config.get('ema_decay') is not None))
  images_dir = os.path.join(out_dir, 'images') if save_images else None
  files.check_writable_folder(out_dir)  # Before the scoring, which takes the time.
  figure_path = os.path.join(out_dir, 'figure.png')
  start = time.time()
  rows, shapes, num_tiled = _score_images(
      derainer, source, total, protocol, images_dir=images_dir, figure_path=figure_path,
      title=f'{dataset} {split}', progress=progress)

  summary = {
      **metrics.mean_metrics({k: row[k] for k in PER_IMAGE_FIELDS[1:]} for row in rows),
      'num_images': len(rows), 'protocol': protocol, 'step': int(step), 'dataset': dataset,
      'split': split, 'checkpoint': str(checkpoint),
      'params': loading.params_kind(config, params),
      'curves': _curves_link(workdir, out_dir), 'self_ensemble': self_ensemble,
      'run': run_record.load(workdir),
      'num_tiled_images': int(num_tiled), 'num_distinct_sizes': len(shapes),
      'seconds': round(time.time() - start, 2)}
  return {**summary, **_write_report(out_dir, rows, summary, images_dir)}


def _curves_link(workdir: str, out_dir: str) -> str | None:
  """The path of the run's ``curves.png`` relative to the report, or None if absent."""
  path = os.path.join(workdir, curves.CURVES_FILE)
  return os.path.relpath(path, out_dir) if os.path.isfile(path) else None


def _write_report(out_dir: str, rows: list[dict[str, Any]], summary: dict[str, Any],
                  images_dir: str | None) -> dict[str, Any]:
  """Writes per_image.csv, summary.json and results.md; returns every output's path."""
  paths = {
      'eval_dir': out_dir,
      'per_image_csv': os.path.join(out_dir, 'per_image.csv'),
      'summary_json': os.path.join(out_dir, 'summary.json'),
      'results_md': os.path.join(out_dir, 'results.md'),
      'figure': os.path.join(out_dir, 'figure.png'),
      'images_dir': images_dir,
  }
  files.write_atomic(paths['per_image_csv'], _per_image_csv(rows).encode())
  files.write_atomic(paths['summary_json'], summary_json(summary).encode())
  files.write_atomic(paths['results_md'], _results_markdown(summary).encode())
  return paths


def _ensemble_text(ensemble: Any) -> str:
  name = ensemble_lib.ensemble_name(ensemble)
  return '' if name == 'none' else f', {name} self-ensemble'


def format_summary(result: dict[str, Any]) -> str:
  """A few human-readable lines of an :func:`evaluate` result."""
  return '\n'.join([
      f'{result["dataset"]} {result["split"]}, step {result["step"]}, '
      f'{result["num_images"]} images, protocol {result["protocol"]}'
      f'{_ensemble_text(result["self_ensemble"])}:',
      f'  derained     PSNR-Y {_fmt(result["psnr_y"], 2)} dB  SSIM-Y '
      f'{_fmt(result["ssim_y"], 4)}  PSNR-RGB {_fmt(result["psnr_rgb"], 2)} dB  SSIM-RGB '
      f'{_fmt(result["ssim_rgb"], 4)}',
      f'  rainy input  PSNR-Y {_fmt(result["input_psnr_y"], 2)} dB  SSIM-Y '
      f'{_fmt(result["input_ssim_y"], 4)}',
  ])
