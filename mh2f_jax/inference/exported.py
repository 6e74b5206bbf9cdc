"""Deraining with an exported model file (``mh2f-export``), without the model's code.

``load(path)`` reads an ONNX file (``*.onnx``, run in ONNX Runtime) or a serialized
``jax.export`` artifact (any other name, run with ``jax.export.deserialize``) and returns
an :class:`ExportedDerainer`: the same deraining as ``derainer.Derainer`` from the
forward function on (uint8 and float images, self-ensemble, tiling of large photos), so
``mh2f-derain --model=FILE`` and ``mh2f-app --model=FILE`` treat photos exactly as they
do with a workdir.

One difference: an exported file holds the whole network as one function, so large
photos are tiled with blended overlapping tiles (``tiling='approx'``); the exact tiling
runs the network stage by stage and needs the model's code (a workdir).
"""

import json
import os
from typing import Any

import numpy as np

from mh2f_jax.inference import backends
from mh2f_jax import errors
from mh2f_jax.inference import derainer


class ExportedDerainer(derainer.DerainerBase):
  """An exported MH2F-Net file that derains images of any size.

  Attributes (besides those of ``derainer.DerainerBase``):
    path: the file.
    format: 'onnx' or 'jax'.
    model_config: the model block recorded in the file (ONNX), else None.
  """

  tilings = ('approx',)

  def __init__(self, path: str, fmt: str, forward: backends.ForwardFn, backend: str, *,
               model_config: dict[str, Any] | None = None, **kwargs: Any):
    """Wraps a loaded file's forward function; use :func:`load` to read one.

    Args:
      path: the file, for reports.
      fmt: 'onnx' or 'jax'.
      forward: its forward function (float32 NHWC in, raw float32 NHWC out).
      backend: what runs it ('onnxruntime' or 'jax').
      model_config: the model block recorded in the file, if any.
      **kwargs: tiling and self-ensemble settings, step and checkpoint, as for
        ``derainer.Derainer`` ('approx' tiling only).
    """
    kwargs.setdefault('tiling', 'approx')
    kwargs.setdefault('checkpoint', path)
    super().__init__(**kwargs)
    self.path = path
    self.format = fmt
    self.forward = forward
    self.backend = backend
    self.model_config = model_config


def file_format(path: str) -> str:
  """'onnx' for a ``.onnx`` name, else 'jax' (a serialized ``jax.export`` artifact)."""
  return 'onnx' if path.lower().endswith('.onnx') else 'jax'


def _read(path: str) -> bytes:
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise errors.UserError(f'cannot read model file {path}: {e.strerror or e}') from None


def _onnx(path: str, data: bytes) -> tuple[backends.ForwardFn, dict[str, Any]]:
  """The ONNX Runtime forward function of an ONNX file, and its metadata."""
  if not backends.onnxruntime_available():
    raise errors.UserError(f'{path} is an ONNX model, which needs onnx and onnxruntime: '
                           f'{backends.INSTALL_HINT}')
  try:
    session = backends.onnxruntime_session(data)
  except Exception as e:  # pylint: disable=broad-except
    # ONNX Runtime raises its own exception types (Fail, InvalidGraph, ...).
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise errors.UserError(f'{path} is not a readable ONNX model ({first})') from None
  from mh2f_jax.model.onnx_graph import INPUT_NAME, OUTPUT_NAME  # pylint: disable=import-outside-toplevel
  names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
  if names != ([INPUT_NAME], [OUTPUT_NAME]):
    raise errors.UserError(f'{path} is not an MH2F-Net export (inputs {names[0]}, outputs '
                           f'{names[1]}; expected {INPUT_NAME} -> {OUTPUT_NAME})')
  _check_declared(path, [i.shape for i in session.get_inputs()],
                  [o.shape for o in session.get_outputs()])
  # pylint: disable-next=import-outside-toplevel  (onnxruntime is optional)
  from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors
  forward = backends.session_forward(session)

  def run(batch: np.ndarray) -> np.ndarray:
    try:
      return forward(batch)
    except (ort_errors.InvalidArgument, ort_errors.Fail) as e:
      # The graph refuses an RGB image batch: the file is not what its names promise.
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise errors.UserError(f'{path} cannot derain a batch of shape {batch.shape}: '
                             f'{first}') from None

  return _checked_output(path, run), dict(session.get_modelmeta().custom_metadata_map)


def _check_declared(path: str, inputs: list[Any], outputs: list[Any]) -> None:
  """Refuses a file whose declared input or output is not one batch of RGB images.

  Args:
    path: the file, for the message.
    inputs: the declared shape of each input (ints for fixed sizes, anything else, a
      name or a symbolic size, for free ones).
    outputs: the same for each output.

  Raises:
    errors.UserError: not exactly one (batch, height, width, 3) input and output.
  """
  for what, shapes in (('input', inputs), ('output', outputs)):
    shape = tuple(shapes[0]) if len(shapes) == 1 and shapes[0] is not None else None
    if shape is None or len(shape) != 4 or not _is_fixed(shape[-1], 3):
      shown = ', '.join(str(d) for d in shape) if shape is not None else shapes
      raise errors.UserError(
          f'{path} is not an MH2F-Net export: its {what} has shape ({shown}); expected '
          '(batch, height, width, 3), RGB images in NHWC order')


def _is_fixed(size: Any, value: int) -> bool:
  return isinstance(size, (int, np.integer)) and int(size) == value


def _checked_output(path: str, forward: backends.ForwardFn) -> backends.ForwardFn:
  """``forward``, checked to give back the shape it is given (a batch of RGB images)."""
  def run(batch: np.ndarray) -> np.ndarray:
    out = forward(batch)
    if tuple(out.shape) != tuple(batch.shape):
      raise errors.UserError(
          f'{path} is not an MH2F-Net export: it gave shape {tuple(out.shape)} for images '
          f'of shape {tuple(batch.shape)}; expected the same shape back')
    return out
  return run


def _jax(path: str, data: bytes) -> backends.ForwardFn:
  """The forward function of a serialized ``jax.export`` artifact."""
  import jax  # pylint: disable=import-outside-toplevel
  try:
    exported = jax.export.deserialize(bytearray(data))
  except Exception:  # pylint: disable=broad-except
    # Flatbuffer and version errors come in several types; the name is what matters.
    raise errors.UserError(f'{path} is neither an ONNX model (.onnx) nor a jax.export '
                           'artifact written by mh2f-export') from None
  here = jax.default_backend()
  if here not in exported.platforms:
    raise errors.UserError(f'{path} was exported for {", ".join(exported.platforms)}, not '
                           f'{here}: export it again with --platforms including {here}')
  _check_declared(path, [a.shape for a in exported.in_avals],
                  [a.shape for a in exported.out_avals])
  call = jax.jit(exported.call)  # Compiled once per image shape, like the model's own.
  return _checked_output(path, lambda batch: np.asarray(call(np.asarray(batch, np.float32))))


def load(path: str | os.PathLike[str], **kwargs: Any) -> ExportedDerainer:
  """Loads an exported model file.

  Args:
    path: a file written by ``mh2f-export``: ``*.onnx``, or a ``jax.export`` artifact.
    **kwargs: tiling and self-ensemble settings (see ``derainer.Derainer``).

  Returns:
    The derainer. ONNX files report the training step and model config they recorded.

  Raises:
    errors.UserError: a missing or unreadable file, a file that is not an MH2F-Net
      export (names, or declared shapes other than NHWC RGB images in and out), ONNX
      Runtime not installed for an ONNX file, an artifact lowered for other platforms,
      or 'exact' tiling asked for.
  """
  path = os.fspath(path)
  data = _read(path)
  fmt = file_format(path)
  if fmt == 'onnx':
    forward, meta = _onnx(path, data)
    step = meta.get('step')
    model_config = json.loads(meta['model_config']) if 'model_config' in meta else None
    return ExportedDerainer(
        path, fmt, forward, 'onnxruntime', model_config=model_config,
        step=int(step) if step and step.isdigit() else None, **kwargs)
  return ExportedDerainer(path, fmt, _jax(path, data), 'jax', **kwargs)
