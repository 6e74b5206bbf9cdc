"""One yes/no agreed by every process of a multi-host run.

Every collective decision (stop after a signal, a lock taken by process 0, a checkpoint
all processes could read) goes through :func:`agree`: each process gives its flag, all
of them get the same answer. With one process it is the flag itself, and no
communication happens.
"""

import jax
import numpy as np

RULES = ('all', 'any', 'first')


def agree(flag: bool, rule: str) -> bool:
  """The flag every process acts on.

  Args:
    flag: this process's answer.
    rule: 'all' (true where every process said true), 'any' (true where some process
      did) or 'first' (process 0's answer).

  Returns:
    The same boolean on every process. A collective call: every process must make it.
  """
  if rule not in RULES:
    raise ValueError(f'rule must be one of {RULES}, got {rule!r}')
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top  (multi-host only)
  flags = np.asarray(multihost_utils.process_allgather(np.int32(bool(flag)))).reshape(-1)
  if rule == 'first':
    return bool(flags[0])
  return bool(flags.all() if rule == 'all' else flags.any())
