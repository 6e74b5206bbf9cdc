"""Validation during training: PSNR/SSIM-Y on the eval split, image grids, the best record.

A :class:`Validator` owns the jitted eval step, the eval source, the best-validation
record and the manager of ``WORKDIR/best`` (see ``mh2f_jax.workdir.checkpoints``).
"""

from __future__ import annotations

from collections.abc import Sequence
import time
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from mh2f_jax.workdir import checkpoints
from mh2f_jax.datasets import input_pipeline
from mh2f_jax.training import metric_writer
from mh2f_jax import metrics as metrics_lib
from mh2f_jax.training import steps

# Eval images shown as rainy | derained | clean grids.
NUM_GRID_IMAGES = 2


class Validator:
  """Scores parameters on the first ``num_images`` eval images and keeps the best.

  Attributes:
    best: the best record ``{'step', 'psnr_y', 'ssim_y'}`` so far, or None.
  """

  def __init__(self, model, eval_source: Sequence[Any], workdir: str,
               num_images: int | None):
    """Prepares validation of a run.

    Args:
      model: the Flax module.
      eval_source: random-access eval examples ('rainy', 'clean', 'name').
      workdir: the run's directory (holds ``best/`` and ``best.json``).
      num_images: the first N eval images; None: all.
    """
    self._eval_step = steps.make_eval_step(model)
    self._source = eval_source
    self._workdir = workdir
    self._num_images = num_images
    self._best_manager = None
    self.best = checkpoints.read_best(workdir)

  def _predict(self, params: Any, num_images: int | None, num_grids: int):
    """Yields per-image (psnr_y, ssim_y) and collects the first ``num_grids`` grids."""
    psnrs, ssims, grids = [], [], []
    for i, example in enumerate(input_pipeline.create_eval_iterator(
        self._source, num_images=num_images)):
      pred, psnr_y, ssim_y = self._eval_step(params, example['rainy'][None],
                                             example['clean'][None])
      psnrs.append(float(psnr_y[0]))
      ssims.append(float(ssim_y[0]))
      if i < num_grids:
        derained = metrics_lib.to_uint8(np.asarray(pred[0]))
        grids.append(np.concatenate([example['rainy'], derained, example['clean']], 1))
    return psnrs, ssims, grids

  def grids(self, params: Any) -> list[np.ndarray]:
    """Rainy | derained | clean grids (uint8 HWC) of the first eval images."""
    return self._predict(steps.local_copy(params), NUM_GRID_IMAGES, NUM_GRID_IMAGES)[2]

  def run(self, step: int, params: Any, writer: metric_writer.MetricWriter, *,
          with_grids: bool, ema_params: Any = None) -> dict[str, Any]:
    """Validates the parameters, saves them as the new best if they are, writes the row.

    Must be called on every process (the best save is collective).

    Args:
      step: the training step of ``params``.
      params: the replicated parameters.
      writer: receives the validation row (prefix 'val') and the grids.
      with_grids: also write image grids.
      ema_params: the EMA of the parameters, or None. When given, these are the ones
        validated (and the best checkpoint holds both).

    Returns:
      The validation row: ``step``, ``psnr_y``, ``ssim_y``, ``num_images``,
      ``best_psnr_y``, ``best_step``, ``eval_sec``; empty when the split has no images.
    """
    start = time.perf_counter()
    scored = params if ema_params is None else ema_params
    psnrs, ssims, grids = self._predict(steps.local_copy(scored), self._num_images,
                                        NUM_GRID_IMAGES if with_grids else 0)
    writer.images(step, grids)
    if not psnrs:
      return {}
    psnr_y, ssim_y = float(np.mean(psnrs)), float(np.mean(ssims))
    if jax.process_count() > 1:
      # Every process evaluated the same images; take process 0's numbers so that all
      # agree on whether this is a new best (the save below is collective).
      values = multihost_utils.broadcast_one_to_all(np.array([psnr_y, ssim_y], np.float32))
      psnr_y, ssim_y = float(values[0]), float(values[1])
    is_best = self.best is None or psnr_y > self.best['psnr_y']
    if is_best:
      if self._best_manager is None:
        self._best_manager = checkpoints.create_best_manager(self._workdir)
      self.best = checkpoints.save_best(self._best_manager, self._workdir, step, params,
                                          psnr_y, ssim_y, ema_params=ema_params)
    logging.info('step %d: validation%s PSNR-Y %.3f dB, SSIM-Y %.4f on %d images%s', step,
                 '' if ema_params is None else ' (EMA)', psnr_y, ssim_y, len(psnrs),
                 ' (best so far)' if is_best else
                 f' (best {self.best["psnr_y"]:.3f} dB at step {self.best["step"]})')
    row = {'step': step, 'psnr_y': psnr_y, 'ssim_y': ssim_y, 'num_images': len(psnrs),
           'best_psnr_y': self.best['psnr_y'], 'best_step': self.best['step'],
           'eval_sec': time.perf_counter() - start}
    writer.row(row, 'val')
    return row

  def close(self) -> None:
    """Waits for and closes the best-checkpoint manager."""
    if self._best_manager is not None:
      self._best_manager.close()
      self._best_manager = None
