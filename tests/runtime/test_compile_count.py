"""Tests for mh2f_jax.runtime.compile_count: programs counted per jit cache miss."""

import jax
import jax.numpy as jnp
import numpy as np

from mh2f_jax.runtime import compile_count


def test_counts_one_program_per_new_shape_and_stops_at_exit():
  def scaled_sum(x):
    return jnp.sum(x * 3.0)

  fn = jax.jit(scaled_sum)
  with compile_count.counting() as seen:
    for shape in ((3, 4), (5, 2), (3, 4), (5, 2)):
      fn(np.ones(shape, np.float32)).block_until_ready()
  assert seen.names.count('jit(scaled_sum)') == 2  # two shapes, each compiled once
  assert seen.seconds > 0
  assert seen.summary() == f'compiled {seen.programs} programs in {seen.seconds:.1f} s'
  before = seen.programs
  fn(np.ones((7, 1), np.float32)).block_until_ready()  # outside the block: not counted
  assert seen.programs == before


def test_summary_of_one_program():
  assert compile_count.Compilations(1, 2.04, ['f']).summary() == 'compiled 1 program in 2.0 s'


def test_seconds_are_the_sum_over_every_program():
  # The durations JAX reports, seen by a listener beside the counter's: the summary's
  # time is all of them, not the last program's.
  durations = []

  def beside(event, duration, **kwargs):
    del kwargs
    if event == compile_count.COMPILE_EVENT:
      durations.append(duration)

  jax.monitoring.register_event_duration_secs_listener(beside)
  try:
    with compile_count.counting() as seen:
      for shape in ((2, 3), (4, 1)):
        jax.jit(lambda x: x * 2.0)(np.ones(shape, np.float32)).block_until_ready()
      jax.monitoring.record_event_duration_secs(compile_count.COMPILE_EVENT, 1.5,
                                                fun_name='f')
  finally:
    jax.monitoring.unregister_event_duration_listener(beside)
  assert seen.programs == len(durations) >= 3
  assert seen.seconds == sum(durations) >= 1.5 + min(durations)
