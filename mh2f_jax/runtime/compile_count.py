"""How many XLA programs a command compiled (or loaded from the compilation cache).

JAX reports every program it hands to XLA as the monitoring event
``/jax/core/compile/backend_compile_duration`` (one per jit cache miss, whether XLA
compiles it or the persistent cache supplies it, with its duration). Counting them makes
a recompilation per input shape visible: eval and derain print
``compiled N programs in S s`` once at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import dataclasses

import jax

# JAX's event for one program compiled or loaded (jax._src.dispatch.BACKEND_COMPILE_EVENT).
COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'


@dataclasses.dataclass
class Compilations:
  """The programs compiled so far inside :func:`counting`.

  Attributes:
    programs: how many.
    seconds: their compile (or cache load) time, summed.
    names: the jitted functions' names, one per program, in order.
  """
  programs: int = 0
  seconds: float = 0.0
  names: list[str] = dataclasses.field(default_factory=list)

  def summary(self) -> str:
    """``'compiled N programs in S s'``."""
    unit = 'program' if self.programs == 1 else 'programs'
    return f'compiled {self.programs} {unit} in {self.seconds:.1f} s'


@contextlib.contextmanager
def counting() -> Iterator[Compilations]:
  """Counts the programs compiled inside the ``with`` block (all threads).

  Yields:
    A :class:`Compilations` that fills in as programs compile.
  """
  seen = Compilations()

  def listener(event: str, duration: float, **kwargs) -> None:
    if event == COMPILE_EVENT:
      seen.programs += 1
      seen.seconds += duration
      seen.names.append(str(kwargs.get('fun_name', '')))

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield seen
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
