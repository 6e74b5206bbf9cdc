"""Deraining images with a trained MH2F-Net: loading, full-resolution and tiled inference.

``Derainer`` loads the parameters once (from a training workdir or a bare parameters
file) and derains images of any size:

* Images up to ``max_untiled_pixels`` run whole, which is exactly what the network
  computes on the full image. On JAX, every image is padded up to its size bucket
  (:mod:`mh2f_jax.inference.size_buckets`) with the padding masked out of every layer,
  so any mix of sizes compiles a bounded number of programs and the output is still
  the unpadded network's.
* Larger images are derained in tiles (:mod:`mh2f_jax.inference.tiling`) so that device memory
  stays bounded by the tile size. The default, ``tiling='exact'``, runs the network stage
  by stage over tiles with the image's feature maps on the host and HADB's channel means
  accumulated over the whole image: the output equals the whole-image pass to float
  rounding. ``tiling='approx'`` blends overlapping whole-network tiles instead (each tile
  sees only its own channel means); see docs/evaluation.md for what each costs.
* Optional self-ensemble (:mod:`mh2f_jax.inference.ensemble`): flipped copies of the input
  ('flips', the default when enabled) or also its 90 degree rotations ('x8', which turn
  rain sideways) are derained, mapped back and averaged (raw outputs, before clipping).

``from_params_file`` reads a bare parameters file (:mod:`mh2f_jax.model.params_file`)
with the ``model`` block of the workdir's ``config.json`` (or that file's path).
"""

import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mh2f_jax.inference import backends
from mh2f_jax.inference import ensemble as ensemble_lib
from mh2f_jax.model import params_file
from mh2f_jax.inference import forward
from mh2f_jax import errors
from mh2f_jax import model as model_lib
from mh2f_jax.inference import blended_tiling
from mh2f_jax.inference import tiling as tiling_lib

_log = logging.getLogger(__name__)

# Defaults, chosen for CPU and GPU memory alike: a 512x512 tile of the default model
# needs well under 1 GiB of activations; a 64-pixel overlap costs ~30 % extra compute.
DEFAULT_TILE_SIZE = 512
DEFAULT_TILE_OVERLAP = 64
DEFAULT_TILE_MARGIN = 16
# 'exact': staged tiles, equal to the whole-image pass; 'approx': blended whole-net tiles.
TILING_CHOICES = ('exact', 'approx')
DEFAULT_TILING = 'exact'
# Images up to this many pixels run whole (every benchmark test image does).
DEFAULT_MAX_UNTILED_PIXELS = 1024 * 1024
# The network pads to this multiple itself; tiles align to it.
_ALIGN = tiling_lib.ALIGN


def _as_input(y: np.ndarray, ndim: int, dtype: np.dtype) -> np.ndarray:
  """Raw output ``y`` (B, H, W, 3) as the input's rank and dtype (see ``derain``)."""
  if ndim == 3:
    y = y[0]
  if dtype == np.uint8:
    from mh2f_jax import metrics  # The one rounding rule for 8-bit outputs.
    return metrics.to_uint8(y)
  return np.clip(y, 0.0, 1.0).astype(dtype)


class DerainerBase:
  """Deraining with any forward function: tiling, self-ensemble, uint8 and float images.

  ``Derainer`` (below) runs the Flax model; ``mh2f_jax.inference.exported.ExportedDerainer`` runs
  an exported file. Both derain the same way from the forward function on.

  Attributes:
    forward: ``float32 (B, H, W, 3) -> float32 (B, H, W, 3)``, the raw network output.
    step: training step of the parameters (None when unknown).
    checkpoint: what was loaded ('latest', 'best', a step, or a file path).
    backend: what runs the forward function ('jax' or 'onnxruntime').
    tile_size: tile side in pixels (multiple of 4); 0 disables tiling. With exact
      tiling, the output tile: each stage's window adds its margin
      (``tiling.stage_margins``).
    tile_overlap: 'approx' tiling: minimum overlap of neighbouring tiles (multiple of 4).
    tile_margin: 'approx' tiling: pixels at each inner tile edge that get zero weight.
    max_untiled_pixels: images with more pixels than this are tiled.
    tiling: 'exact' (equal to the whole-image pass) or 'approx' (blended tiles).
    self_ensemble: default self-ensemble of :meth:`derain`: 'none', 'flips' or 'x8'.
  """

  # The tilings a subclass can run; 'exact' needs the model's stages.
  tilings: tuple[str, ...] = ('approx',)
  forward: backends.ForwardFn
  # Set where the backend runs asynchronously (JAX): see start.
  dispatch: backends.DispatchFn | None = None
  backend: str

  def __init__(self, *, tile_size: int = DEFAULT_TILE_SIZE,
               tile_overlap: int = DEFAULT_TILE_OVERLAP,
               tile_margin: int = DEFAULT_TILE_MARGIN,
               max_untiled_pixels: int = DEFAULT_MAX_UNTILED_PIXELS,
               tiling: str = DEFAULT_TILING,
               self_ensemble: bool | str | None = False,
               step: int | None = None, checkpoint: Any = None):
    self._warned_x8 = False
    self.step = step
    self.checkpoint = checkpoint
    self.self_ensemble = self._ensemble(self_ensemble)
    self.set_tiling(tile_size, tile_overlap, tile_margin, max_untiled_pixels, tiling)

  def set_tiling(self, tile_size: int = DEFAULT_TILE_SIZE,
                 tile_overlap: int = DEFAULT_TILE_OVERLAP,
                 tile_margin: int = DEFAULT_TILE_MARGIN,
                 max_untiled_pixels: int = DEFAULT_MAX_UNTILED_PIXELS,
                 tiling: str = DEFAULT_TILING) -> None:
    """Changes the tiling settings (see the class attributes).

    Raises:
      errors.UserError: for a tile size or overlap that is not a multiple of 4, an
        overlap not in ``[2 * margin, tile_size)`` with 'approx' tiling, negative values,
        or an unknown ``tiling``.
    """
    if tiling not in TILING_CHOICES:
      raise _SettingError(f'tiling must be one of {", ".join(map(repr, TILING_CHOICES))}, '
                          f'got {tiling!r}')
    if tiling not in self.tilings:
      raise _SettingError(f"{tiling!r} tiling needs the model's code (a workdir or "
                          "parameters file); an exported model tiles with 'approx'")
    for name, value in (('tile_size', tile_size), ('tile_overlap', tile_overlap),
                        ('tile_margin', tile_margin),
                        ('max_untiled_pixels', max_untiled_pixels)):
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise _SettingError(f'{name} must be an integer >= 0, got {value!r}')
    if tile_size:
      if tile_size % _ALIGN or tile_overlap % _ALIGN:
        raise _SettingError(
            f'tile size and overlap must be multiples of {_ALIGN} (the network pools '
            f'twice by 2), got tile {tile_size}, overlap {tile_overlap}')
      if tiling == 'approx' and not 2 * tile_margin <= tile_overlap < tile_size:
        raise _SettingError(
            f'tile overlap must be at least 2 * margin ({2 * tile_margin}) and below the '
            f'tile size ({tile_size}), got {tile_overlap}')
    self.tile_size = int(tile_size)
    self.tile_overlap = int(tile_overlap)
    self.tile_margin = int(tile_margin)
    self.max_untiled_pixels = int(max_untiled_pixels)
    self.tiling = tiling

  # -------------------------------------------------------------------- inference

  def will_tile(self, height: int, width: int) -> bool:
    """Whether an image of this size is derained in tiles."""
    return bool(self.tile_size) and height * width > self.max_untiled_pixels

  def _run(self, batch: np.ndarray) -> np.ndarray:
    """Raw network output for a float32 (B, H, W, 3) batch."""
    return self._start_run(batch)()

  def _start_run(self, batch: np.ndarray) -> Callable[[], np.ndarray]:
    """Starts :meth:`_run`; asynchronous where the backend has ``dispatch``."""
    if self.dispatch is not None:
      return self.dispatch(batch)
    y = self.forward(batch)
    return lambda: y

  def _run_tiled(self, image: np.ndarray) -> np.ndarray:
    """Raw output for one float32 (H, W, 3) image, tile by tile ('approx' here)."""
    return blended_tiling.run_blended(self._run, image, self.tile_size, self.tile_overlap,
                                  self.tile_margin)

  def _raw_single(self, image: np.ndarray) -> np.ndarray:
    height, width, _ = image.shape
    if self.will_tile(height, width):
      return self._run_tiled(image)
    return self._run(image[None])[0]

  def _ensemble(self, value: Any) -> str:
    name = ensemble_lib.ensemble_name(value)
    if name == 'x8' and not self._warned_x8:
      self._warned_x8 = True  # Once per Derainer, not once per image.
      _log.warning(ensemble_lib.X8_WARNING)
    return name

  def derain_raw(self, images: np.ndarray, *,
                 self_ensemble: bool | str | None = None) -> np.ndarray:
    """Raw (unclipped) float32 network output for a float32 (B, H, W, 3) batch.

    Args:
      images: float32 (B, H, W, 3) in [0, 1].
      self_ensemble: 'flips' (or True), 'x8', 'none' (or False); None uses the instance
        default.

    Returns:
      float32 (B, H, W, 3), not clipped.
    """
    return self._start_raw(images, self_ensemble)()

  def _start_raw(self, images: np.ndarray,
                 self_ensemble: bool | str | None) -> Callable[[], np.ndarray]:
    """Starts :meth:`derain_raw`; returns a function that waits for its output.

    Only a whole-image pass (:meth:`_start_run`) can run asynchronously; tiles and
    self-ensembles are computed here.
    """
    ensemble = self.self_ensemble if self_ensemble is None else self._ensemble(self_ensemble)
    b, h, w, _ = images.shape
    if ensemble == 'none' and not self.will_tile(h, w) and b * h * w <= max(
        self.max_untiled_pixels, h * w):
      return self._start_run(images)
    y = np.stack([ensemble_lib.average(self._raw_single, img, ensemble) for img in images])
    return lambda: y

  def derain(self, image: Any, *, self_ensemble: bool | str | None = None) -> np.ndarray:
    """Derains one image or a batch.

    Args:
      image: (H, W, 3) or (B, H, W, 3); uint8, or float in [0, 1] (numpy or jax).
      self_ensemble: 'flips' (or True: identity, left-right, up-down and both flips
        averaged, 4 passes), 'x8' (adds the 90 degree rotations, which turn rain
        sideways; 8 passes), 'none' (or False); None uses the instance default.

    Returns:
      A numpy array of the input's shape and dtype: uint8 rounded with
      ``metrics.to_uint8``, or float clipped to [0, 1].

    Raises:
      ValueError: wrong rank, not 3 channels, an empty side, a dtype other than uint8
        or float, or an unknown ``self_ensemble``.
    """
    return self.start(image, self_ensemble=self_ensemble)()

  def start(self, image: Any, *,
            self_ensemble: bool | str | None = None) -> Callable[[], np.ndarray]:
    """Checks and starts :meth:`derain`; returns a function that waits for its output.

    On a backend with ``dispatch`` (JAX) a whole image's forward pass runs in the
    background until the output is asked for; see :mod:`mh2f_jax.inference.streaming`.
    Raises what :meth:`derain` raises, at once.
    """
    image = np.asarray(image)  # jax.Array too
    if image.ndim not in (3, 4) or image.shape[-1] != 3:
      raise ValueError(f'image must have shape (H, W, 3) or (B, H, W, 3), got {image.shape}')
    if 0 in image.shape:
      raise ValueError(f'image has an empty dimension: {image.shape}')
    dtype = image.dtype
    if dtype == np.uint8:
      x = image.astype(np.float32) / 255.0
    elif jnp.issubdtype(dtype, jnp.floating):
      x = image.astype(np.float32)
    else:
      raise ValueError(f'image must be uint8 or float in [0, 1], got dtype {dtype}')
    wait = self._start_raw(x if x.ndim == 4 else x[None], self_ensemble)
    return lambda: _as_input(wait(), image.ndim, dtype)

  __call__ = derain


class Derainer(DerainerBase):
  """A loaded MH2F-Net that derains images of any size.

  Attributes (besides those of :class:`DerainerBase`):
    model: the Flax module.
    params: the parameters (on the default device).
  """

  tilings = TILING_CHOICES

  def __init__(self, model: model_lib.MH2FNet, params: Any, *,
               backend: str = 'jax', **kwargs: Any):
    """Wraps a model and its parameters.

    Args:
      model: the module (e.g. from ``model.from_config``).
      params: its ``params`` pytree (numpy or jax arrays).
      backend: 'jax' (default: the reference), 'onnxruntime' (faster on CPU; needs the
        onnx and onnxruntime packages) or 'auto' (ONNX Runtime on CPU when installed,
        else JAX with a one-line note); see :mod:`mh2f_jax.inference.backends`.
      **kwargs: tile_size, tile_overlap, tile_margin, max_untiled_pixels, tiling,
        self_ensemble (True or 'flips', 'x8', or False / None / 'none'), step and
        checkpoint: see the class attributes.

    Raises:
      errors.UserError: (also a ValueError) for invalid tiling or ensemble settings, or an
        unknown or unavailable backend.
    """
    super().__init__(**kwargs)
    self.model = model
    # Eval and deraining run on one device: parameters are replicated onto the default
    # device whatever device count the checkpoint was written with.
    self.params = jax.device_put(params)
    # The one place the forward function is chosen: whole images and tiles both go
    # through ``self.forward``, or its asynchronous twin ``self.dispatch`` (see _start_run).
    self.backend, self.forward = backends.make_forward(model, self.params, backend)
    if self.backend == 'jax':
      self.dispatch = backends.jax_dispatch(model, self.params)
    self._onnx_stages = None  # The exact tiling's sessions, built on first use.

  def _run_tiled(self, image: np.ndarray) -> np.ndarray:
    if self.tiling == 'exact':
      if self.backend == 'onnxruntime' and self._onnx_stages is None:
        from mh2f_jax.inference import onnx_tiling  # pylint: disable=import-outside-toplevel
        self._onnx_stages = onnx_tiling.stages(self.model, self.params)
      return tiling_lib.run_exact(self.model, self.params, image, self.tile_size,
                                  stages=self._onnx_stages)
    return super()._run_tiled(image)

  # ----------------------------------------------------------------- construction

  @classmethod
  def from_workdir(cls, workdir: str | os.PathLike[str], checkpoint: Any = 'best', *,
                   fallback_to_latest: bool = True, params: str = 'ema',
                   **kwargs: Any) -> 'Derainer':
    """Loads the model config and parameters of a training workdir.

    Args:
      workdir: a training workdir (``config.json`` and ``checkpoints/``).
      checkpoint: 'best' (the best-validation checkpoint), 'latest', or a step.
        'best' falls back to 'latest' with a logged warning when the workdir has no
        best checkpoint (no validation was run), unless ``fallback_to_latest`` is False.
      fallback_to_latest: see ``checkpoint``.
      params: 'ema' (the EMA parameters where the run kept them, else the raw ones) or
        'raw'; ``checkpoint`` then reads e.g. 'best, EMA'.
      **kwargs: tiling / self-ensemble settings for the constructor.

    Returns:
      The derainer.

    Raises:
      errors.UserError: missing workdir or config.json, no checkpoints, unknown step,
        parameters that do not fit the config.
    """
    from mh2f_jax.workdir import loading  # Lazy: keeps Orbax off the params-file path.
    workdir = os.fspath(workdir)
    checkpoint = loading.resolve_checkpoint(workdir, checkpoint, fallback=fallback_to_latest)
    config, values, step = loading.load_workdir(workdir, checkpoint, params=params)
    if loading.params_kind(config, params) == 'ema':
      checkpoint = f'{checkpoint}, EMA'
    return cls.from_params(
        config.model, values, step=step, checkpoint=checkpoint,
        source=f'{workdir} (step {step})', mismatch_hint=(
            f"was {os.path.join(workdir, 'config.json')} changed after the run was trained?"),
        **kwargs)

  @classmethod
  def from_params(cls, model_config: Any, params: Any, *, step: int | None = None,
                  checkpoint: Any = None, source: str = 'the given parameters',
                  mismatch_hint: str = 'were they made with another model config?',
                  **kwargs: Any) -> 'Derainer':
    """Builds the model of a config block and checks that ``params`` fit it.

    Args:
      model_config: the ``model`` block of a config (dict or ConfigDict).
      params: its ``params`` pytree.
      step: training step, for reports.
      checkpoint: description of the source, for reports.
      source: how error messages name where the parameters came from.
      mismatch_hint: the likely cause, for that source, of parameters that do not fit.
      **kwargs: tiling / self-ensemble settings for the constructor.

    Returns:
      The derainer.

    Raises:
      errors.UserError: parameters that do not fit the config, or a bad config.
    """
    model = model_lib.from_config(model_config)
    forward.check_params(model, params, source, mismatch_hint)
    return cls(model, params, step=None if step is None else int(step),
               checkpoint=checkpoint, **kwargs)

  @classmethod
  def from_params_file(cls, path: str | os.PathLike[str], model_config: Any,
                       **kwargs: Any) -> 'Derainer':
    """Loads a bare parameters file (see the module docstring for the format).

    Args:
      path: a ``.msgpack`` file written by :func:`mh2f_jax.export.params_file.export_params` (or by
        ``flax.serialization.msgpack_serialize(params)``).
      model_config: the model block (dict or ConfigDict), or the path of a JSON file
        holding it: a workdir's ``config.json`` (its ``model`` entry is used) or the
        block alone.
      **kwargs: tiling / self-ensemble settings for the constructor.

    Returns:
      The derainer.

    Raises:
      errors.UserError: unreadable or malformed file, parameters that do not fit.
    """
    path = os.fspath(path)
    params = params_file.read_params(path)
    return cls.from_params(
        forward.read_model_config(model_config), params, checkpoint=path, source=path,
        mismatch_hint='was the file exported from another config? Give the config.json of '
        'the run that wrote it', **kwargs)


class _SettingError(errors.UserError, ValueError):
  """An invalid tiling setting (a ValueError for library callers)."""
