"""Starting a run from trained weights (``config.init_from``) instead of random ones.

``init_from`` names a workdir (its best checkpoint, else its latest), ``DIR:STEP`` (or
``DIR:best``, ``DIR:latest``), or a bare parameters file
(``mh2f-export --format=params``). A workdir gives its EMA parameters where the run
kept them, as eval and derain do. Only the parameters are taken: the run starts at step
0 with a fresh optimizer and schedule. This is not a resume: a workdir that already has
checkpoints continues from them, whatever ``init_from`` says.

The match is strict: every parameter must exist on both sides with the same shape, else
one error names the first differences. ``init_from_skip`` lists name patterns (fnmatch on
the ``/``-joined path, e.g. ``rpff/*``) kept at their fresh initialisation; they are
logged by name, and a pattern that matches nothing is an error (a typo would otherwise
silently load everything).
"""

from __future__ import annotations

import fnmatch
import os
import re
from typing import Any

from absl import logging
from flax import traverse_util
import jax
import ml_collections
import numpy as np

from mh2f_jax.errors import UserError
from mh2f_jax.model import params as params_lib
from mh2f_jax.model import params_file
from mh2f_jax.training import steps
from mh2f_jax.workdir import loading

_DIR_AND_CHECKPOINT = re.compile(r'^(?P<dir>.+):(?P<checkpoint>\d+|best|latest)$')


def skip_patterns(value: Any) -> list[str]:
  """``init_from_skip`` as a list: a tuple of patterns, or one comma-separated string."""
  if isinstance(value, str):
    return [p.strip() for p in value.split(',') if p.strip()]
  return [str(p) for p in (value or ())]


def load(spec: str, own_workdir: str | None = None) -> tuple[Any, dict[str, Any]]:
  """Reads the parameters ``init_from`` names.

  Args:
    spec: a workdir, ``DIR:STEP`` / ``DIR:best`` / ``DIR:latest``, or a parameters file.
    own_workdir: the workdir of the run that starts, which ``spec`` must not name.

  Returns:
    ``(params, origin)``: the NumPy parameter tree, and what it is (``init_from``: the
    absolute path; ``checkpoint``, ``step`` and ``params`` for a workdir).

  Raises:
    UserError: no such workdir or file, the run's own workdir, no such checkpoint, a
      corrupt checkpoint, an unreadable file.
  """
  path = os.path.abspath(os.path.expanduser(spec))
  if os.path.isfile(path):
    return params_file.read_params(path), {'init_from': path, 'kind': 'parameters file'}
  match = _DIR_AND_CHECKPOINT.match(path)
  workdir, checkpoint = (match['dir'], match['checkpoint']) if match and not os.path.isdir(
      path) else (path, 'best')
  if not os.path.isdir(workdir):
    raise UserError(f'init_from {spec}: no such workdir or parameters file (give a '
                    'workdir, DIR:STEP or an exported .msgpack file)')
  if own_workdir is not None and os.path.samefile(workdir, own_workdir):
    # Its checkpoints, had it any, would have been resumed instead (see the docstring).
    raise UserError(f'init_from {spec} is the workdir of this run, which has no checkpoint '
                    'to start from: name another run (its workdir or DIR:STEP) or a '
                    'parameters file, or leave init_from unset for random weights')
  try:
    config, params, step = loading.load_workdir(
        workdir, checkpoint, fallback=True,
        another=f'name another checkpoint as init_from={workdir}:STEP')
  except UserError as e:
    raise UserError(f'init_from {spec}: {e}') from None
  return params, {'init_from': workdir, 'kind': 'workdir', 'checkpoint': checkpoint,
                  'step': int(step), 'params': loading.params_kind(config)}


def merge(fresh: Any, loaded: Any, patterns: list[str], source: str) -> tuple[Any, list[str]]:
  """The fresh parameters with every one not matching ``patterns`` taken from ``loaded``.

  Args:
    fresh: the model's freshly initialised parameters.
    loaded: the parameters read from ``source``.
    patterns: fnmatch patterns on ``/``-joined names, kept fresh.
    source: what ``loaded`` came from, for messages.

  Returns:
    ``(params, skipped)``: a flat ``{name: array}`` dict and the names kept fresh.

  Raises:
    UserError: a pattern that matches no parameter, or parameters (outside the
      patterns) that differ in name or shape.
  """
  flat_fresh = traverse_util.flatten_dict(fresh, sep='/')
  flat_loaded = traverse_util.flatten_dict(loaded, sep='/')
  for pattern in patterns:
    if not any(fnmatch.fnmatchcase(n, pattern) for n in {*flat_fresh, *flat_loaded}):
      raise UserError(f'init_from_skip pattern {pattern!r} matches no parameter; names '
                      f'look like {", ".join(sorted(flat_fresh)[:3])}')

  def kept(flat):
    return {n: v for n, v in flat.items()
            if not any(fnmatch.fnmatchcase(n, p) for p in patterns)}

  difference = params_lib.mismatch(
      traverse_util.unflatten_dict(kept(flat_loaded), sep='/'),
      traverse_util.unflatten_dict(kept(flat_fresh), sep='/'),
      got_name='init_from has', wanted_name='the model has')
  if difference:
    raise UserError(f'init_from {source}: its parameters do not fit the model: '
                    f'{difference}; list the differing ones in init_from_skip to keep them '
                    'at their fresh initialisation')
  skipped = sorted(set(flat_fresh) - set(kept(flat_fresh)))
  return {n: flat_loaded[n] if n not in skipped else v for n, v in flat_fresh.items()}, skipped


def _replicated(value: Any, like: jax.Array, mesh: jax.sharding.Mesh) -> jax.Array:
  """``value`` as a replicated array of ``like``'s dtype (every process gives the same)."""
  host = np.asarray(value, dtype=like.dtype)
  return jax.make_array_from_callback(host.shape, steps.replicated(mesh), lambda i: host[i])


def initial_state(config: ml_collections.ConfigDict, model: Any, tx: Any,
                  mesh: jax.sharding.Mesh, ema: bool,
                  workdir: str | None = None) -> tuple[steps.TrainState, dict]:
  """The state of step 0: fresh, with ``config.init_from``'s parameters where set.

  Args:
    config: the run's config (``seed``, ``init_from``, ``init_from_skip``).
    model: the network.
    tx: the optimizer.
    mesh: the device mesh.
    ema: keep EMA parameters (``ema_decay`` set); they start as the parameters.
    workdir: the run's own workdir, which ``init_from`` must not name.

  Returns:
    ``(state, origin)``; ``origin`` says where the weights came from (for the run's
    record): ``{'init_from': None, 'seed': ...}`` for a random start.

  Raises:
    UserError: see :func:`load` and :func:`merge`.
  """
  state = steps.create_train_state(model, tx, config.seed, mesh, ema)
  spec = config.get('init_from')
  if not spec:
    return state, {'init_from': None, 'seed': int(config.seed)}
  loaded, origin = load(spec, workdir)
  flat, skipped = merge(state.params, loaded, skip_patterns(config.get('init_from_skip')),
                        spec)
  like = traverse_util.flatten_dict(state.params, sep='/')
  params = traverse_util.unflatten_dict(
      {n: like[n] if n in skipped else _replicated(v, like[n], mesh)
       for n, v in flat.items()}, sep='/')
  # Adam's moments start at zero and its count at 0 whatever the parameters, so the
  # fresh optimizer state stays as created: only the weights change.
  state = state.replace(params=params, ema_params=jax.tree.map(lambda x: x.copy(), params)
                        if ema else None)
  described = origin['init_from'] + (f' (step {origin["step"]}, {origin["params"]} '
                                     'parameters)' if 'step' in origin else '')
  logging.info('weights from %s; fresh optimizer and schedule from step 0', described)
  if skipped:
    logging.info('kept at their fresh initialisation (init_from_skip): %s', ', '.join(skipped))
  return state, {**origin, 'skipped': skipped}
