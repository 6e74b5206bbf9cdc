"""Deraining a sequence of images one ahead, so that the host works while the device runs.

:func:`derain_stream` starts each image (``DerainerBase.start``) before it waits for the
previous image's output. On JAX, dispatch is asynchronous: while one image runs, the host
reads the next, and traces and compiles its size bucket's program when the bucket is
new, which is where a mix of sizes spends its extra time (docs/performance.md). Eval and
the derain command run their images through it.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

_END = object()  # The end of the items.


def derain_stream(derainer: Any, items: Iterable[Any], *,
                  image_of: Callable[[Any], Any] | None = None,
                  self_ensemble: bool | str | None = None
                  ) -> Iterator[tuple[Any, np.ndarray]]:
  """Derains a sequence of images as ``derainer.derain`` does, one ahead.

  Args:
    derainer: an ``inference.DerainerBase`` (a ``Derainer`` or an exported model's).
    items: anything; ``image_of(item)`` is the image to derain (the item itself when
      ``image_of`` is None). Read lazily, one ahead. An item whose image is None (one
      that could not be read, say) passes through in its place, with None.
    image_of: see ``items``.
    self_ensemble: as for ``derain``.

  Yields:
    ``(item, derained)`` in the order of ``items``; ``derained`` is None where the image
    was.

  Raises:
    Whatever reading ``items`` or deraining raises, once the outputs of the items before
    have been yielded.
  """
  get = image_of or (lambda item: item)
  items, pending = iter(items), None
  while True:
    try:
      item = next(items, _END)
      started = None if item is _END else (item, _start(derainer, get(item), self_ensemble))
    except Exception:  # pylint: disable=broad-except  # re-raised below
      if pending is not None:
        yield pending[0], pending[1]()
      raise
    if pending is not None:
      yield pending[0], pending[1]()
    if started is None:
      return
    pending = started


def _start(derainer: Any, image: Any, self_ensemble: bool | str | None
           ) -> Callable[[], np.ndarray | None]:
  if image is None:
    return lambda: None
  return derainer.start(image, self_ensemble=self_ensemble)
