"""Training on several datasets at once: the mixture syntax, its source and index stream.

``data.dataset`` names one dataset or a mixture. As a string, members are separated by
commas, each ``NAME[@SPLIT][:WEIGHT]``::

  rain200h                                   one dataset (weight 1)
  rain100h:1,rain100l:1,rain1400:1           three, in equal proportion
  synthetic_rain/light:1,synthetic_rain/heavy:3
  rain13k@train[:1000]:1,paired_folder:2     a member's own split (TFDS split syntax)

As a list (in a config file), each entry is such a string or a dict with the keys
``name`` and optionally ``weight``, ``split``, ``data_dir``, ``manual_dir``; what a
member leaves out comes from ``data.train_split``, ``data.data_dir`` and
``data.manual_dir``. Two ``paired_folder`` members need their own ``data_dir``.

Batches draw from the members in proportion to the weights. Each member's indices are
shuffled (reshuffled every epoch of that member) with a seed derived from ``config.seed``
and the member's position, and ``grain.MapDataset.mix`` interleaves the members'
streams in the weights' proportions. The stream is a Grain ``MapDataset``, so the
iterator state is still the number of batches consumed and a resume is exact. A single
dataset keeps the single-dataset stream unchanged.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
import dataclasses
import os
import re
from typing import Any

import grain
import numpy as np

from mh2f_jax.errors import UserError

_MEMBER = re.compile(r'^(?P<name>[^@:\[\]]+?)(?:@(?P<split>[^:\[]+(?:\[[^\]]*\])?))?'
                     r'(?::(?P<weight>[^:]+))?$')
_KEYS = ('name', 'weight', 'split', 'data_dir', 'manual_dir')


@dataclasses.dataclass(frozen=True)
class Member:
  """One dataset of a mixture; None fields fall back to the config's ``data`` block."""
  name: str
  weight: float = 1.0
  split: str | None = None
  data_dir: str | None = None
  manual_dir: str | None = None


def _from_text(text: str) -> Member:
  match = _MEMBER.match(text.strip())
  if not match:
    raise UserError(f'data.dataset: cannot read {text.strip()!r}; write NAME[@SPLIT][:WEIGHT], '
                    "e.g. 'rain100h:1,rain1400@train:2'")
  weight = match['weight']
  try:
    weight = 1.0 if weight is None else float(weight)
  except ValueError:
    raise UserError(f'data.dataset: the weight of {match["name"]!r} must be a number, '
                    f'got {weight!r}') from None
  return Member(match['name'].strip(), weight, match['split'])


def _eval_spec(spec: Any) -> Member:
  """``data.eval_dataset``, ``NAME[@SPLIT]``: one dataset, no weight."""
  match = _MEMBER.match(spec.strip()) if isinstance(spec, str) and ',' not in spec else None
  if not match or match['weight'] is not None:
    raise UserError(f'data.eval_dataset: cannot read {spec!r}; write NAME[@SPLIT] (one '
                    "dataset, no weight), e.g. 'rain1400' or 'rain13k@test100'")
  return Member(match['name'].strip(), split=match['split'])


def _from_dict(entry: Mapping[str, Any]) -> Member:
  unknown = sorted(set(entry) - set(_KEYS))
  if unknown or not isinstance(entry.get('name'), str) or not entry['name']:
    raise UserError(f'data.dataset: a member must have a name and only the keys '
                    f'{", ".join(_KEYS)}; got {dict(entry)!r}')
  weight = entry.get('weight', 1.0)
  if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)):
    raise UserError(f'data.dataset: the weight of {entry["name"]!r} must be a number, '
                    f'got {weight!r}')
  return Member(entry['name'], float(weight), entry.get('split'), entry.get('data_dir'),
                entry.get('manual_dir'))


def parse(spec: Any) -> list[Member]:
  """Reads ``data.dataset``: a name, a comma-separated mixture, or a list.

  Args:
    spec: a string (see the module docstring) or a sequence of strings and dicts.

  Returns:
    The members in order (one for a single dataset).

  Raises:
    UserError: an empty spec, an unreadable member, or a weight that is not > 0.
  """
  if isinstance(spec, str):
    entries: Sequence[Any] = [t for t in spec.split(',') if t.strip()]
  elif isinstance(spec, Sequence):
    entries = spec
  else:
    raise UserError(f'data.dataset must be a name, a mixture string or a list, got {spec!r}')
  members = [_from_text(e) if isinstance(e, str) else
             _from_dict(e) if isinstance(e, Mapping) else
             _from_text(f'{e!r}') for e in entries]
  if not members:
    raise UserError('data.dataset names no dataset')
  for m in members:
    if not (np.isfinite(m.weight) and m.weight > 0):
      raise UserError(f'data.dataset: the weight of {m.name!r} must be > 0, got {m.weight}')
  return members


def _folder(own: str | None, shared: str | None) -> str | None:
  # A member's own folder is as the config gives it (config.json records it so): write
  # it absolute to evaluate from another directory.
  return os.path.abspath(os.path.expanduser(own)) if own is not None else shared


def resolved(members: Sequence[Member], data: Any) -> list[Member]:
  """The members with their split and folders filled in from the ``data`` block."""
  return [dataclasses.replace(
      m, split=m.split or data.train_split,
      data_dir=_folder(m.data_dir, data.get('data_dir')),
      manual_dir=_folder(m.manual_dir, data.get('manual_dir'))) for m in members]


def eval_member(data: Any) -> Member:
  """The dataset validation runs on: ``data.eval_dataset``, else the first member.

  ``data.eval_dataset`` is ``NAME[@SPLIT]``, or a member's name (which then brings its
  folders); the split defaults to ``data.eval_split``.
  """
  members = resolved(parse(data.dataset), data)
  spec = data.get('eval_dataset')
  if not spec:
    return dataclasses.replace(members[0], split=data.eval_split)
  wanted = _eval_spec(spec)
  same = [m for m in members if m.name == wanted.name]
  base = same[0] if same else Member(wanted.name, data_dir=data.get('data_dir'),
                                     manual_dir=data.get('manual_dir'))
  return dataclasses.replace(base, split=wanted.split or data.eval_split)


class MixedSource(Sequence):
  """The members' sources one after another, with their weights.

  Index ``i`` reads member ``k``'s example ``i - offsets[k]``; the weights decide how
  often each member is drawn (:func:`index_stream`), not the order here.
  """

  def __init__(self, members: Sequence[Member], sources: Sequence[Sequence[Any]]):
    if len(members) != len(sources):
      raise ValueError('one source per member')
    self.members, self.sources = list(members), list(sources)
    self.offsets = list(np.cumsum([0] + [len(s) for s in sources[:-1]]).tolist())
    self._length = int(sum(len(s) for s in sources))

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> Any:
    if not 0 <= index < self._length:
      raise IndexError(index)
    k = bisect.bisect_right(self.offsets, index) - 1
    return self.sources[k][index - self.offsets[k]]

  def with_sources(self, sources: Sequence[Sequence[Any]]) -> MixedSource:
    """The same members over other sources (e.g. the same splits held in memory)."""
    return MixedSource(self.members, sources)


def _member_seed(seed: int, k: int) -> int:
  """An independent shuffle seed per member, fixed by the config seed."""
  return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def index_stream(source: Sequence[Any], seed: int) -> grain.MapDataset:
  """The endless, seeded stream of record indices training draws from.

  Args:
    source: a plain source (shuffled, reshuffled every epoch) or a :class:`MixedSource`
      (each member shuffled on its own, interleaved in the weights' proportions).
    seed: ``config.seed``.

  Returns:
    A ``grain.MapDataset`` of indices into ``source``, seeded for the random maps that
    follow.
  """
  if not isinstance(source, MixedSource):
    # Shuffle before repeat: Grain then reshuffles with a new seed every epoch.
    return grain.MapDataset.range(len(source)).seed(seed).shuffle().repeat(None)
  for member, part in zip(source.members, source.sources):
    if len(part) == 0:  # pylint: disable=g-explicit-length-test  (sources may lack __bool__)
      raise UserError(f'{member.name} split {member.split!r} has no examples')
  streams = [grain.MapDataset.range(len(part)).shuffle(seed=_member_seed(seed, k))
             .repeat(None).map(_Offset(offset))
             for k, (part, offset) in enumerate(zip(source.sources, source.offsets))]
  weights = [m.weight for m in source.members]
  return grain.MapDataset.mix(streams, weights).seed(seed)


@dataclasses.dataclass(frozen=True)
class _Offset(grain.transforms.Map):
  """Maps a member's index to the mixed source's."""
  offset: int

  def map(self, element: int) -> int:
    return int(element) + self.offset


def describe(source: Sequence[Any], data: Any) -> list[dict[str, Any]]:
  """What a run trains on: one row per dataset (name, split, count, share, data_dir).

  Args:
    source: the training source (a :class:`MixedSource` or any other source).
    data: the config's ``data`` block (names a plain source).
  """
  if isinstance(source, MixedSource):
    total = sum(m.weight for m in source.members)
    return [{'dataset': m.name, 'split': m.split, 'count': len(s),
             'weight': m.weight / total, 'data_dir': m.data_dir}
            for m, s in zip(source.members, source.sources)]
  return [{'dataset': str(data.dataset), 'split': data.train_split, 'count': len(source),
           'weight': 1.0, 'data_dir': data.get('data_dir')}]
