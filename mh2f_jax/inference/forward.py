"""The network as a function for inference: the jitted forward pass, and its inputs.

:func:`forward_fn` is the JAX backend of every deraining path; :func:`check_params`
checks a parameter tree against a model before it is used; :func:`read_model_config`
reads the model block that goes with a bare parameters file.
"""

import functools
import json
import os
from typing import Any

import jax

from mh2f_jax import errors
from mh2f_jax import model as model_lib
from mh2f_jax.model import params as params_lib


@functools.lru_cache(maxsize=None)
def forward_fn(model: model_lib.MH2FNet):
  """The jitted ``(params, images) -> raw output`` function of a model configuration.

  One function per configuration (modules are hashable), shared by every ``Derainer`` of
  that configuration: XLA compiles it once per input shape and reuses the executable for
  every image, parameter set and ``Derainer`` with that shape.
  """
  return jax.jit(lambda params, images: model.apply({'params': params}, images))


def read_model_config(model_config: Any) -> Any:
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


def check_params(model: model_lib.MH2FNet, params: Any, source: str,
                 hint: str = 'were they made with another model config?') -> None:
  """Raises UserError when ``params`` does not fit ``model`` (names or shapes).

  Args:
    model: the model the config builds.
    params: the parameter tree.
    source: where the parameters came from, for the message (a workdir, a file).
    hint: the likely cause for that source, ending the message.
  """
  try:
    diff = params_lib.mismatch(params, params_lib.abstract_params(model),
                               got_name='the parameters have', wanted_name='the model wants')
  except Exception:  # pylint: disable=broad-except  (not a tree of arrays at all)
    diff = 'not a tree of arrays'
  if diff:
    raise errors.UserError(
        f'the parameters in {source} do not fit the model config ({diff}); {hint}')
