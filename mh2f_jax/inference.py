"""Deraining images with a trained MH2F-Net: loading, full-resolution and tiled inference.

``Derainer`` loads the parameters once (from a training workdir or a bare parameters
file) and derains images of any size:

* Images up to ``max_untiled_pixels`` run whole, which is exactly what the network
  computes on the full image. One jitted forward function per model configuration
  (:func:`forward_fn`) serves every image; XLA compiles it once per distinct input shape
  and caches it, so a benchmark whose images share one or two sizes compiles once or
  twice. (Padding images up to shape buckets would avoid recompiles but changes the
  outputs near the border, so it is not done.)
* Larger images are cut into overlapping tiles (default 512x512, overlap 64) whose
  outputs are blended. The image is first edge-padded at the bottom/right to a multiple
  of 4, exactly as the network pads internally, and every tile starts at a multiple of 4
  and is a multiple of 4 in size, so the two 2x2 poolings of each hourglass see the same
  pixel grid as on the whole image. Each tile's pixels within ``tile_margin`` of an
  edge shared with another tile get weight zero (they see the tile's zero padding
  instead of the neighbouring image); the next ``overlap - 2 * margin`` pixels ramp
  linearly, and the blended output is the weight-normalised sum. For a network without
  global operations, tiled and whole-image outputs agree to float rounding when
  ``tile_margin`` covers the receptive field. HADB's channel attention averages over the
  whole (tile) image, so for the paper's model tiling is a close approximation, not an
  identity; evaluation therefore runs benchmark-sized images whole.
* Optional x8 self-ensemble: the 8 flips/rotations of the input are derained, mapped
  back and averaged (raw outputs, before clipping).

Parameters file format (``from_params_file``/``export_params``): the ``params`` pytree
(nested dicts of float32 arrays, Flax names) serialised with
``flax.serialization.msgpack_serialize``. The model's hyper-parameters are not inside:
pass the ``model`` block of the workdir's ``config.json`` (or that file's path).
"""

import functools
import json
import os
from collections.abc import Mapping
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from mh2f_jax import errors
from mh2f_jax import files
from mh2f_jax import model as model_lib

# Defaults, chosen for CPU and GPU memory alike: a 512x512 tile of the default model
# needs well under 1 GiB of activations; a 64-pixel overlap costs ~30 % extra compute.
DEFAULT_TILE_SIZE = 512
DEFAULT_TILE_OVERLAP = 64
DEFAULT_TILE_MARGIN = 16
# Images up to this many pixels run whole (every benchmark test image does).
DEFAULT_MAX_UNTILED_PIXELS = 1024 * 1024
# The network pads to this multiple itself; tiles align to it.
_ALIGN = model_lib.PAD_MULTIPLE


def _align_up(n: int, multiple: int = _ALIGN) -> int:
  return -(-n // multiple) * multiple


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
  """Start offsets of tiles covering ``[0, length)`` along one axis.

  Args:
    length: axis length, a multiple of 4 (the padded image).
    tile: tile length, a multiple of 4.
    overlap: minimum overlap of neighbouring tiles, a multiple of 4.

  Returns:
    Sorted starts, all multiples of 4; the last tile ends exactly at ``length``. A single
    start 0 when ``length <= tile`` (the tile is then shortened to ``length``).
  """
  if length <= tile:
    return [0]
  stride = tile - overlap
  starts = list(range(0, length - tile, stride))
  starts.append(length - tile)
  return starts


def blend_profile(size: int, start: int, length: int, margin: int, ramp: int) -> np.ndarray:
  """1-D blending weights of a tile covering ``[start, start + size)`` of ``length``.

  Edges on the image boundary keep weight 1 (the tile sees the same border as the whole
  image); edges shared with a neighbour get ``margin`` zeros then a linear ramp of
  ``ramp`` pixels.

  Args:
    size: tile length.
    start: tile start.
    length: padded image length.
    margin: zero-weight pixels at each inner edge.
    ramp: ramp length after the margin.

  Returns:
    float32 weights of shape ``(size,)``.
  """
  d = np.arange(size, dtype=np.float32)
  rise = np.clip((d - margin + 1) / (ramp + 1), 0.0, 1.0)
  w = np.ones(size, np.float32)
  if start > 0:
    w = np.minimum(w, rise)
  if start + size < length:
    w = np.minimum(w, rise[::-1])
  return w


@functools.lru_cache(maxsize=None)
def forward_fn(model: model_lib.MH2FNet):
  """The jitted ``(params, images) -> raw output`` function of a model configuration.

  One function per configuration (modules are hashable), shared by every ``Derainer`` of
  that configuration: XLA compiles it once per input shape and reuses the executable for
  every image, parameter set and ``Derainer`` with that shape.
  """
  return jax.jit(lambda params, images: model.apply({'params': params}, images))


def _resolve_model_config(model_config: Any) -> Any:
  """A model block from a mapping/ConfigDict, or from a JSON file (config.json or block)."""
  if isinstance(model_config, (str, os.PathLike)):
    path = os.fspath(model_config)
    try:
      with open(path) as f:
        data = json.load(f)
    except OSError as e:
      raise errors.UserError(f'cannot read model config {path}: {e.strerror or e}') from None
    except json.JSONDecodeError as e:
      raise errors.UserError(f'model config {path} is not valid JSON: {e}') from None
    if not isinstance(data, dict):
      raise errors.UserError(f'model config {path} must hold a JSON object')
    return data.get('model', data)
  return model_config


def _check_params(model: model_lib.MH2FNet, params: Any, source: str) -> None:
  """Raises UserError when ``params`` does not fit ``model`` (names or shapes)."""
  expected = model_lib.abstract_params(model)
  want = {jax.tree_util.keystr(k): tuple(v.shape)
          for k, v in jax.tree_util.tree_leaves_with_path(expected)}
  try:
    got = {jax.tree_util.keystr(k): tuple(np.shape(v))
           for k, v in jax.tree_util.tree_leaves_with_path(params)}
  except Exception:  # pylint: disable=broad-except
    got = {}
  missing = sorted(set(want) - set(got))
  extra = sorted(set(got) - set(want))
  wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
  if missing or extra or wrong:
    parts = []
    if missing:
      parts.append(f'missing {", ".join(missing[:3])}' + (' ...' if len(missing) > 3 else ''))
    if extra:
      parts.append(f'unexpected {", ".join(extra[:3])}' + (' ...' if len(extra) > 3 else ''))
    if wrong:
      parts.append(', '.join(f'{k} has shape {got[k]}, model wants {want[k]}'
                             for k in wrong[:3]))
    raise errors.UserError(
        f'the parameters in {source} do not fit the model config '
        f'({"; ".join(parts)}); was the file exported from a different config?')


class Derainer:
  """A loaded MH2F-Net that derains images of any size.

  Attributes:
    model: the Flax module.
    params: the parameters (on the default device).
    step: training step of the parameters (None when loaded from a bare file).
    checkpoint: what was loaded ('latest', 'best', a step, or the file path).
    tile_size: tile side in pixels (multiple of 4); 0 disables tiling.
    tile_overlap: minimum overlap of neighbouring tiles (multiple of 4).
    tile_margin: pixels at each inner tile edge that get zero weight.
    max_untiled_pixels: images with more pixels than this are tiled.
    self_ensemble: default for :meth:`derain`'s x8 self-ensemble.
  """

  def __init__(self, model: model_lib.MH2FNet, params: Any, *,
               tile_size: int = DEFAULT_TILE_SIZE,
               tile_overlap: int = DEFAULT_TILE_OVERLAP,
               tile_margin: int = DEFAULT_TILE_MARGIN,
               max_untiled_pixels: int = DEFAULT_MAX_UNTILED_PIXELS,
               self_ensemble: bool = False,
               step: int | None = None, checkpoint: Any = None):
    """Wraps a model and its parameters.

    Args:
      model: the module (e.g. from ``model.from_config``).
      params: its ``params`` pytree (numpy or jax arrays).
      tile_size: see the class attributes.
      tile_overlap: see the class attributes.
      tile_margin: see the class attributes.
      max_untiled_pixels: see the class attributes.
      self_ensemble: see the class attributes.
      step: training step, for reports.
      checkpoint: description of the source, for reports.

    Raises:
      errors.UserError: (also a ValueError) for invalid tiling settings.
    """
    self.model = model
    # Eval and deraining run on one device: parameters are replicated onto the default
    # device whatever device count the checkpoint was written with.
    self.params = jax.device_put(params)
    self.step = step
    self.checkpoint = checkpoint
    self.self_ensemble = bool(self_ensemble)
    self.set_tiling(tile_size, tile_overlap, tile_margin, max_untiled_pixels)
    self._forward = forward_fn(model)

  def set_tiling(self, tile_size: int = DEFAULT_TILE_SIZE,
                 tile_overlap: int = DEFAULT_TILE_OVERLAP,
                 tile_margin: int = DEFAULT_TILE_MARGIN,
                 max_untiled_pixels: int = DEFAULT_MAX_UNTILED_PIXELS) -> None:
    """Changes the tiling settings (see the class attributes).

    Raises:
      errors.UserError: for a tile size or overlap that is not a multiple of 4, an
        overlap not in ``[2 * margin, tile_size)``, or negative values.
    """
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
      if not 2 * tile_margin <= tile_overlap < tile_size:
        raise _SettingError(
            f'tile overlap must be at least 2 * margin ({2 * tile_margin}) and below the '
            f'tile size ({tile_size}), got {tile_overlap}')
    self.tile_size = int(tile_size)
    self.tile_overlap = int(tile_overlap)
    self.tile_margin = int(tile_margin)
    self.max_untiled_pixels = int(max_untiled_pixels)

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
    from mh2f_jax import checkpointing  # Lazy: keeps Orbax off the params-file path.
    workdir = os.fspath(workdir)
    checkpoint = checkpointing.resolve_checkpoint(workdir, checkpoint,
                                                  fallback=fallback_to_latest)
    config, values, step = checkpointing.load_workdir(workdir, checkpoint, params=params)
    if checkpointing.params_kind(config, params) == 'ema':
      checkpoint = f'{checkpoint}, EMA'
    return cls.from_params(config.model, values, step=step, checkpoint=checkpoint,
                           source=f'{workdir} (step {step})', **kwargs)

  @classmethod
  def from_params(cls, model_config: Any, params: Any, *, step: int | None = None,
                  checkpoint: Any = None, source: str = 'the given parameters',
                  **kwargs: Any) -> 'Derainer':
    """Builds the model of a config block and checks that ``params`` fit it.

    Args:
      model_config: the ``model`` block of a config (dict or ConfigDict).
      params: its ``params`` pytree.
      step: training step, for reports.
      checkpoint: description of the source, for reports.
      source: how error messages name where the parameters came from.
      **kwargs: tiling / self-ensemble settings for the constructor.

    Returns:
      The derainer.

    Raises:
      errors.UserError: parameters that do not fit the config, or a bad config.
    """
    model = model_lib.from_config(model_config)
    _check_params(model, params, source)
    return cls(model, params, step=None if step is None else int(step),
               checkpoint=checkpoint, **kwargs)

  @classmethod
  def from_params_file(cls, path: str | os.PathLike[str], model_config: Any,
                       **kwargs: Any) -> 'Derainer':
    """Loads a bare parameters file (see the module docstring for the format).

    Args:
      path: a ``.msgpack`` file written by :func:`export_params` (or by
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
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise errors.UserError(f'cannot read parameters file {path}: {e.strerror or e}') from None
    try:
      params = flax.serialization.msgpack_restore(data)
    except Exception:  # pylint: disable=broad-except
      # msgpack raises several unrelated types for corrupt input.
      raise errors.UserError(
          f'{path} is not a parameters file (expected Flax msgpack)') from None
    if isinstance(params, Mapping) and set(params) == {'params'}:
      params = params['params']
    return cls.from_params(_resolve_model_config(model_config), params, checkpoint=path,
                           source=path, **kwargs)

  # -------------------------------------------------------------------- inference

  def will_tile(self, height: int, width: int) -> bool:
    """Whether an image of this size is derained in tiles."""
    return bool(self.tile_size) and height * width > self.max_untiled_pixels

  def _run(self, batch: np.ndarray) -> np.ndarray:
    """Raw network output for a float32 (B, H, W, 3) batch."""
    return np.asarray(self._forward(self.params, jnp.asarray(batch)))

  def _run_tiled(self, image: np.ndarray) -> np.ndarray:
    """Raw output for one float32 (H, W, 3) image, tile by tile with blending."""
    height, width, _ = image.shape
    ph, pw = _align_up(height), _align_up(width)
    # Same bottom/right edge padding as the network applies to the whole image, so the
    # tiles' pooling grid matches the whole image's.
    padded = np.pad(image, ((0, ph - height), (0, pw - width), (0, 0)), mode='edge')
    th, tw = min(self.tile_size, ph), min(self.tile_size, pw)
    ramp = self.tile_overlap - 2 * self.tile_margin
    out = np.zeros((ph, pw, 3), np.float32)
    total = np.zeros((ph, pw, 1), np.float32)
    for y0 in tile_starts(ph, self.tile_size, self.tile_overlap):
      wy = blend_profile(th, y0, ph, self.tile_margin, ramp)
      for x0 in tile_starts(pw, self.tile_size, self.tile_overlap):
        wx = blend_profile(tw, x0, pw, self.tile_margin, ramp)
        weight = (wy[:, None] * wx[None, :])[..., None]
        tile = padded[y0:y0 + th, x0:x0 + tw]
        out[y0:y0 + th, x0:x0 + tw] += weight * self._run(tile[None])[0]
        total[y0:y0 + th, x0:x0 + tw] += weight
    return (out / total)[:height, :width]

  def _raw_single(self, image: np.ndarray) -> np.ndarray:
    height, width, _ = image.shape
    if self.will_tile(height, width):
      return self._run_tiled(image)
    return self._run(image[None])[0]

  def _raw_ensemble(self, image: np.ndarray) -> np.ndarray:
    acc = np.zeros(image.shape, np.float32)
    for k in range(4):
      for flip in (False, True):
        t = np.rot90(image, k)
        if flip:
          t = t[:, ::-1]
        y = self._raw_single(np.ascontiguousarray(t))
        if flip:
          y = y[:, ::-1]
        acc += np.rot90(y, -k)
    return acc / 8.0

  def derain_raw(self, images: np.ndarray, *, self_ensemble: bool | None = None) -> np.ndarray:
    """Raw (unclipped) float32 network output for a float32 (B, H, W, 3) batch.

    Args:
      images: float32 (B, H, W, 3) in [0, 1].
      self_ensemble: x8 self-ensemble; None uses the instance default.

    Returns:
      float32 (B, H, W, 3), not clipped.
    """
    ensemble = self.self_ensemble if self_ensemble is None else self_ensemble
    b, h, w, _ = images.shape
    if not ensemble and not self.will_tile(h, w) and b * h * w <= max(
        self.max_untiled_pixels, h * w):
      return self._run(images)
    fn = self._raw_ensemble if ensemble else self._raw_single
    return np.stack([fn(img) for img in images])

  def derain(self, image: Any, *, self_ensemble: bool | None = None) -> np.ndarray:
    """Derains one image or a batch.

    Args:
      image: (H, W, 3) or (B, H, W, 3); uint8, or float in [0, 1] (numpy or jax).
      self_ensemble: x8 self-ensemble (flips and rotations); None uses the instance
        default.

    Returns:
      A numpy array of the input's shape and dtype: uint8 rounded with
      ``metrics.to_uint8``, or float clipped to [0, 1].

    Raises:
      ValueError: wrong rank, not 3 channels, an empty side, or a dtype other than uint8
        or float.
    """
    if isinstance(image, jax.Array):
      image = np.asarray(image)
    image = np.asarray(image)
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
    batch = x if x.ndim == 4 else x[None]
    y = self.derain_raw(batch, self_ensemble=self_ensemble)
    if image.ndim == 3:
      y = y[0]
    if dtype == np.uint8:
      from mh2f_jax import metrics  # The one rounding rule for 8-bit outputs.
      return metrics.to_uint8(y)
    return np.clip(y, 0.0, 1.0).astype(dtype)

  __call__ = derain


class _SettingError(errors.UserError, ValueError):
  """An invalid tiling setting (a ValueError for library callers)."""


def export_params(workdir: str | os.PathLike[str], path: str | os.PathLike[str],
                  checkpoint: Any = 'best') -> dict[str, Any]:
  """Writes a workdir's parameters to a bare parameters file.

  Args:
    workdir: a training workdir.
    path: output ``.msgpack`` path (written atomically; refuses to replace
      ``config.json`` or anything inside the workdir's checkpoints).
    checkpoint: 'best' (falls back to 'latest' when there is no best checkpoint), 'latest' or
      a step.

  Returns:
    ``{'path', 'step', 'model_config'}``; ``model_config`` is the dict to pass to
    :meth:`Derainer.from_params_file` (the workdir's config.json works too).

  Raises:
    errors.UserError: as :meth:`Derainer.from_workdir`, or an unsafe output path.
  """
  from mh2f_jax import checkpointing
  workdir, path = os.fspath(workdir), os.fspath(path)
  protected = [os.path.join(workdir, 'config.json'), os.path.join(workdir, 'checkpoints')]
  target = os.path.realpath(path)
  for p in protected:
    p = os.path.realpath(p)
    if target == p or target.startswith(p + os.sep):
      raise errors.UserError(f'refusing to write parameters over {p}')
  config, params, step = checkpointing.load_workdir(workdir, checkpoint)
  params = jax.tree.map(np.asarray, params)
  files.write_atomic(path, flax.serialization.msgpack_serialize(params))
  model_config = config.model.to_dict() if hasattr(config.model, 'to_dict') else dict(
      config.model)
  return {'path': path, 'step': int(step), 'model_config': model_config}
