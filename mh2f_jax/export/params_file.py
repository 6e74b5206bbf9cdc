"""A workdir's parameters as a bare parameters file.

The format is the model's (:mod:`mh2f_jax.model.params_file`). :func:`export_params`
writes one from Python; ``mh2f-export --format=params`` does the same from the command
line, checked like the other formats. The file is read back by training's ``init_from``
and by ``Derainer.from_params_file`` (with the workdir's model config).
"""

import os
from typing import Any

from mh2f_jax import files
from mh2f_jax.model import params_file
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
  files.write_atomic(path, params_file.to_bytes(params))
  model_config = config.model.to_dict() if hasattr(config.model, 'to_dict') else dict(
      config.model)
  return {'path': path, 'step': int(step), 'model_config': model_config}
