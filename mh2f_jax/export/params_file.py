"""Bare parameters files: a workdir's parameters as one Flax msgpack file.

``Derainer.from_params_file`` reads such a file back with the workdir's model config.
"""

import os
from typing import Any

import flax.serialization
import jax
import numpy as np

from mh2f_jax import files
from mh2f_jax.workdir import checkpoints
from mh2f_jax.workdir import loading


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
  workdir, path = os.fspath(workdir), os.fspath(path)
  files.refuse_inside(path, [os.path.join(workdir, checkpoints.CONFIG_FILE),
                             os.path.join(workdir, checkpoints.CHECKPOINT_DIR)], 'parameters')
  config, params, step = loading.load_workdir(workdir, checkpoint)
  params = jax.tree.map(np.asarray, params)
  files.write_atomic(path, flax.serialization.msgpack_serialize(params))
  model_config = config.model.to_dict() if hasattr(config.model, 'to_dict') else dict(
      config.model)
  return {'path': path, 'step': int(step), 'model_config': model_config}
