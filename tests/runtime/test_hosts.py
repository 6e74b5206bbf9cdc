"""mh2f_jax.runtime.hosts: one answer for every process (one process here: its own flag)."""

import jax
import numpy as np
import pytest

from mh2f_jax.runtime import hosts


@pytest.mark.parametrize('rule', hosts.RULES)
@pytest.mark.parametrize('flag', [True, False])
def test_one_process_keeps_its_own_flag(rule, flag):
  assert jax.process_count() == 1
  assert hosts.agree(flag, rule) is flag


def test_an_unknown_rule_is_refused():
  with pytest.raises(ValueError, match="'all', 'any', 'first'"):
    hosts.agree(True, 'most')


@pytest.mark.parametrize('rule, flags, expected', [
    ('all', [1, 1, 0], False), ('all', [1, 1, 1], True),
    ('any', [0, 0, 1], True), ('any', [0, 0, 0], False),
    ('first', [0, 1, 1], False), ('first', [1, 0, 0], True)])
def test_the_rules_over_several_processes(monkeypatch, rule, flags, expected):
  # The gathered flags of three processes, as multihost_utils returns them.
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(jax, 'process_count', lambda: len(flags))
  monkeypatch.setattr(multihost_utils, 'process_allgather', lambda x: np.asarray(flags))
  assert hosts.agree(True, rule) is expected
