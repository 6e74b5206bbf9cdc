"""Deraining photo files: load the model a user named, derain a planned list of files.

``mh2f-derain`` is flags around these two calls; the web page loads its model with
:func:`load_derainer` too. Photos are read and written by :mod:`.photos`.
"""

import dataclasses
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mh2f_jax import errors
from mh2f_jax import files
from mh2f_jax.inference import derainer as derainer_lib
from mh2f_jax.inference import exported
from mh2f_jax.inference import photos
from mh2f_jax.inference import streaming


def load_derainer(*, workdir: str | None = None, model: str | None = None,
                  checkpoint: Any = 'best', params: str = 'ema', backend: str = 'auto',
                  tiling: str | None = None, **settings: Any) -> Any:
  """The derainer of a training workdir or of an exported model file.

  Args:
    workdir: a training workdir; or give ``model``.
    model: a file written by ``mh2f-export`` (ONNX or ``jax.export``).
    checkpoint: ``workdir`` only: 'best', 'latest' or a step.
    params: ``workdir`` only: 'ema' or 'raw'.
    backend: ``workdir`` only: 'auto', 'jax' or 'onnxruntime'.
    tiling: 'exact' or 'approx'; None: 'exact' for a workdir, 'approx' for a model file
      (the only tiling an exported file can run).
    **settings: further derainer settings (``tile_size``, ``tile_overlap``,
      ``self_ensemble``).

  Returns:
    A ``Derainer`` (workdir) or ``exported.ExportedDerainer`` (model file).

  Raises:
    errors.UserError: neither or both of ``workdir`` and ``model``, or a model that cannot
      be loaded.
  """
  if (workdir is None) == (model is None):
    raise errors.UserError('give either --workdir (a training workdir) or --model (a file '
                           'written by mh2f-export)')
  if model is not None:
    return exported.load(model, tiling=tiling or 'approx', **settings)
  return derainer_lib.Derainer.from_workdir(workdir, checkpoint, params=params,
                                            backend=backend, tiling=tiling or 'exact',
                                            **settings)


def describe(derainer: Any, *, workdir: str | None = None, model: str | None = None) -> str:
  """What :func:`load_derainer` loaded, for the first line of a tool's output."""
  if model is not None:
    step = '' if derainer.step is None else f', step {derainer.step}'
    return f'{model} ({derainer.format} export{step})'
  return f'{workdir} at step {derainer.step} ({derainer.checkpoint})'


@dataclasses.dataclass
class Options:
  """How :func:`derain_photos` writes: replace or skip existing outputs, comparisons, cap."""
  output: str
  overwrite: bool = False
  compare: bool = False
  max_pixels: int | None = None
  skip_existing: bool = False


@dataclasses.dataclass
class Summary:
  """What :func:`derain_photos` did: inputs planned, skipped (output existed), failed."""
  planned: int
  skipped: int = 0
  failed: int = 0
  derained: int = 0


def derain_photos(derainer: Any, plan: Sequence[tuple[str, str]], options: Options
                  ) -> Summary:
  """Derains each ``(input path, output stem)`` of ``plan``.

  The output folder is checked writable before the first photo. A file that cannot be
  read, or whose output exists, is reported on stderr and the run goes on; a write
  refused by the system (full disk, read-only mount, permission) stops the run, as the
  photos after it would meet the same fault.

  Raises:
    errors.UserError: the output folder cannot be written, before or during the run.
  """
  summary = Summary(len(plan))
  files.check_writable_folder(options.output)
  if options.skip_existing:
    done = {path for path, _ in photos.existing_outputs(plan)}
    plan = [entry for entry in plan if entry[0] not in done]
    summary.skipped = len(done)
    print(f'skipped {len(done)} input(s) whose output exists in {options.output}')
  # One photo ahead: the next is read and started while the current one runs.
  stream = streaming.derain_stream(
      derainer, _read_each(plan, options),
      image_of=lambda entry: None if entry[2] is None else entry[2].pixels)
  for (path, out_stem, loaded, why), derained in stream:
    if why is not None:
      print(f'error: cannot read {path}: {why}', file=sys.stderr)
      summary.failed += 1
    elif _write_one(derainer, path, out_stem, loaded, derained, options, summary):
      summary.derained += 1
    else:
      summary.failed += 1
  return summary


def _read_each(plan: Sequence[tuple[str, str]], options: Options
               ) -> Iterator[tuple[str, str, photos.LoadedImage | None, Exception | None]]:
  """``(path, out_stem, loaded, None)``, or ``(path, out_stem, None, why)`` if unreadable."""
  for path, out_stem in plan:
    loaded, why = None, None
    try:
      with files.pixel_limit(options.max_pixels):
        loaded = photos.read_image(path)
    except Exception as e:  # pylint: disable=broad-except
      # Pillow raises many unrelated types for corrupt files; the run must go on.
      why = e
    yield path, out_stem, loaded, why


def _write_one(derainer: Any, path: str, out_stem: str, loaded: photos.LoadedImage,
               derained: np.ndarray, options: Options, summary: Summary) -> bool:
  """Writes one derained photo (and its comparison); False if it failed."""
  write = files.write_atomic if options.overwrite else files.write_new
  out_path = out_stem + photos.output_extension(loaded.kind)
  try:
    write(out_path, photos.encode_output(loaded, derained))
  except FileExistsError:
    print(f'error: {out_path} exists (pass --overwrite to replace it)', file=sys.stderr)
    return False
  except OSError as e:
    _stop_at_a_write_fault(e, out_path, summary)
    print(f'error: cannot write {out_path}: {e}', file=sys.stderr)
    return False
  height, width = loaded.pixels.shape[:2]
  tiled = ', tiled' if derainer.will_tile(height, width) else ''
  print(f'{path} -> {out_path} ({width}x{height}, {loaded.kind}{tiled})')
  if options.compare:
    stem = os.path.join(options.output, 'compare', os.path.basename(out_stem))
    try:
      print(f'  side by side: {photos.write_comparison(stem, loaded.pixels, derained)}')
    except OSError as e:
      _stop_at_a_write_fault(e, f'{stem}.png', summary)
      print(f'error: cannot write the comparison {stem}.png: {e}', file=sys.stderr)
      return False
  return True


def _stop_at_a_write_fault(error: OSError, path: str, summary: Summary) -> None:
  """Raises the run's last word if ``error`` is a full disk, a read-only mount, a denial."""
  if files.is_write_fault(error):
    # Named by the output, not by the hidden temporary file the error may name.
    raise errors.UserError(
        f'cannot write {path}: {os.strerror(error.errno)}; stopped after '
        f'{summary.derained} of {summary.planned - summary.skipped} image(s)')
