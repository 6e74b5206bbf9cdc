"""Self-ensembles: derain transformed copies of an image, map them back, average.

Two ensembles, by name:

* ``'flips'`` (what ``self_ensemble=True`` and ``--self_ensemble`` mean): identity,
  left-right flip, up-down flip and both flips (= a 180 degree rotation); 4 passes. A
  flip mirrors a streak's lean (20 degrees right becomes 20 degrees left) but keeps it as
  near vertical as it was, and rain leaning either way is what deraining models train on.
* ``'x8'``: the flips plus their transposes (the 90 and 270 degree rotations and the two
  diagonal mirrors); 8 passes. Those turn near-vertical rain horizontal, which a model
  trained on near-vertical rain does not remove, so x8 usually scores below the single
  pass; it is kept by name for models trained on rain of every direction, and choosing
  it logs a warning.

``'none'`` is the single pass.
"""

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from mh2f_jax import errors

_log = logging.getLogger(__name__)

# (number of 90 degree rotations, left-right flip) per pass. A 180 degree rotation
# followed by a left-right flip is the up-down flip.
TRANSFORMS: dict[str, tuple[tuple[int, bool], ...]] = {
    'none': ((0, False),),
    'flips': ((0, False), (0, True), (2, True), (2, False)),
    'x8': tuple((k, flip) for k in range(4) for flip in (False, True)),
}
X8_WARNING = ("self-ensemble 'x8' rotates the image by 90 degrees, which turns the rain "
              "sideways; a model trained on near-vertical rain removes that worse, so "
              "'x8' usually scores below 'flips' and even below the single pass")


class EnsembleError(errors.UserError, ValueError):
  """An unknown self-ensemble (a ValueError for library callers)."""


def ensemble_name(value: Any) -> str:
  """The ensemble name of an API value.

  Args:
    value: True ('flips'), False / None ('none'), or a name in :data:`TRANSFORMS`.

  Returns:
    'none', 'flips' or 'x8'.

  Raises:
    EnsembleError: for anything else.
  """
  if value is None or value is False:
    return 'none'
  if value is True:
    return 'flips'
  if isinstance(value, str) and value in TRANSFORMS:
    return value
  raise EnsembleError(f'self_ensemble must be True, False or one of '
                      f'{", ".join(TRANSFORMS)}, got {value!r}')


def from_flags(self_ensemble: bool, ensemble: str | None) -> str:
  """The ensemble the CLI flags ``--self_ensemble`` and ``--ensemble=NAME`` ask for.

  ``--self_ensemble`` alone means 'flips'; ``--ensemble`` names one (with or without
  ``--self_ensemble``); neither means 'none'.

  Args:
    self_ensemble: the boolean flag.
    ensemble: the named flag, or None when not given.

  Returns:
    'none', 'flips' or 'x8'.

  Raises:
    EnsembleError: an unknown name, or ``--self_ensemble`` with ``--ensemble=none``.
  """
  if ensemble is None:
    return ensemble_name(bool(self_ensemble))
  name = ensemble_name(ensemble)
  if self_ensemble and name == 'none':
    raise EnsembleError('--self_ensemble contradicts --ensemble=none')
  return name


def average(fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
            name: str) -> np.ndarray:
  """Mean of ``fn`` over the transformed copies of ``image``, mapped back.

  Args:
    fn: maps an (H, W, C) array to an output of the same layout and size.
    image: (H, W, C).
    name: a key of :data:`TRANSFORMS`.

  Returns:
    float32 (H, W, C).
  """
  transforms = TRANSFORMS[name]
  acc = np.zeros(image.shape, np.float32)
  for k, flip in transforms:
    t = np.rot90(image, k)
    if flip:
      t = t[:, ::-1]
    y = fn(np.ascontiguousarray(t))
    if flip:
      y = y[:, ::-1]
    acc += np.rot90(y, -k)
  return acc / len(transforms)
