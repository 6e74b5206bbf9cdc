"""The training config's schema: every field, its default, what it allows and means.

This table is the single source of the config's structure. ``configs/default.py`` builds
its config from it (:func:`default_config`), :func:`validate` checks a config against
it, :data:`FROZEN_FIELDS` (what a resumed run must share with the workdir) is read off
it, and the field tables in README.md and docs/training.md are :func:`markdown_table`
(a test keeps them equal).

The model block's values are checked by the model itself (``model.from_config``), which
owns their meaning; the schema holds their defaults and descriptions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import json
import math
import os
from typing import Any

import ml_collections
from ml_collections import config_dict
import numpy as np

from mh2f_jax import model as model_lib
from mh2f_jax.errors import UserError

SCHEDULES = ('multistep', 'cosine', 'constant')


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
      value, bool)


def _int_at_least(minimum: int) -> Callable[[Any], bool]:
  return lambda v: _is_int(v) and v >= minimum


def _or_none(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
  return lambda v: v is None or check(v)


def _any(_: Any) -> bool:
  return True


def _fractions(value: Any) -> bool:
  return isinstance(value, (tuple, list)) and all(
      _is_number(f) and 0 < f < 1 for f in value)


def _dataset_spec(value: Any) -> bool:
  if isinstance(value, str):
    return bool(value.strip(' ,'))
  return isinstance(value, (tuple, list)) and bool(value) and all(
      isinstance(v, (str, Mapping)) for v in value)


def _patterns(value: Any) -> bool:
  return isinstance(value, str) or (isinstance(value, (tuple, list)) and all(
      isinstance(v, str) and v for v in value))


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field.

  Attributes:
    name: dotted path, e.g. 'optim.learning_rate'.
    default: the value of ``configs/default.py``.
    doc: what it means (the tables' "Meaning" column).
    allowed: what values are allowed, as error messages say it ('' for model fields,
      which the model checks).
    check: returns True for an allowed value.
    placeholder: the type of a field whose default is None (ml_collections keeps the
      type so that a command-line override parses).
    frozen: a resumed run must have the same value as the run that wrote the workdir.
    path: a file-system path; ``~`` and relative paths are made absolute once, before
      ``config.json`` is written (:func:`resolve_paths`).
  """
  name: str
  default: Any
  doc: str
  allowed: str = ''
  check: Callable[[Any], bool] = _any
  placeholder: type | None = None
  frozen: bool = False
  path: bool = False


FIELDS: tuple[Field, ...] = (
    Field('seed', 0, 'initial parameters, data order and crops, per-step key',
          'an integer', _is_int, frozen=True),
    Field('batch_size', 16, 'global batch over all devices and hosts; must divide by '
          'the device count', 'a positive integer (the global batch)', _int_at_least(1),
          frozen=True),
    Field('cpu_devices', 0, 'on a CPU host, the JAX devices its cores are split into, '
          'each training on a share of the batch (0: one per core, as '
          'many as divide the batch; 1: one device spanning every core); set before JAX '
          'starts, see docs/performance.md',
          'an integer >= 0', _int_at_least(0)),
    Field('grad_accum_steps', 1, 'micro-batches per optimizer step, run one after '
          'another (activation memory follows `batch_size / grad_accum_steps`); must '
          'divide the per-device batch', 'an integer >= 1', _int_at_least(1)),
    Field('num_epochs', 200, 'one random crop per training pair per epoch; used when '
          '`num_train_steps` is None', '> 0 when num_train_steps is None', _any),
    Field('num_train_steps', None, 'None: `ceil(num_epochs × pairs / batch_size)`; a '
          'number overrides epochs', 'a positive integer or None',
          _or_none(_int_at_least(1)), placeholder=int),
    Field('log_every_steps', 100, 'train rows in `metrics.jsonl` and TensorBoard (means '
          'over the interval)', 'an integer >= 1', _int_at_least(1)),
    Field('checkpoint_every_steps', 1000, 'a checkpoint every N steps, and always at '
          'the end', 'an integer >= 1', _int_at_least(1)),
    Field('eval_every_steps', 2500, 'validation (PSNR/SSIM-Y) every N steps; 0: only '
          'at the end', 'an integer >= 0 (0 disables)', _int_at_least(0)),
    Field('image_every_steps', 2500, 'rainy / derained / clean grids in TensorBoard; '
          '0: never', 'an integer >= 0 (0 disables)', _int_at_least(0)),
    Field('max_to_keep', 3, 'training checkpoints kept (None: all); the best one is '
          'kept apart', 'an integer >= 1 or None (keep all)',
          _or_none(_int_at_least(1)), placeholder=int),
    Field('num_eval_images', None, 'validate on the first N images of '
          '`data.eval_split`; None: all; 0: no validation',
          'an integer >= 0 or None (all)', _or_none(_int_at_least(0)), placeholder=int),
    Field('ema_decay', None, 'keep `ema = d · ema + (1 − d) · params` after each step; '
          'validation, the best checkpoint, eval and derain use it (None: off)',
          'a number in (0, 1) or None (off)',
          _or_none(lambda v: _is_number(v) and 0 < v < 1), placeholder=float, frozen=True),
    Field('model.features', 32, 'width `C` of the network', frozen=True),
    Field('model.num_blocks', 8, 'number of MHEBs `N`', frozen=True),
    Field('model.dcr_layers', 3, 'dense 3x3 layers per DCR unit', frozen=True),
    Field('model.dcr_growth', None, 'channels each dense layer adds (None: '
          '`features // 2`)', placeholder=int, frozen=True),
    Field('model.attention_reduction', 4, 'HADB channel-attention reduction ratio',
          frozen=True),
    Field('model.distill', 'hadb', "`'hadb'`, or `'concat'` (ablation: a 1x1 conv)",
          frozen=True),
    Field('model.fusion', 'rpff', "`'rpff'`, or the ablations `'add'` and `'concat'`",
          frozen=True),
    Field('model.global_residual', False, 'add the input image to the output',
          frozen=True),
    Field('model.dtype', 'float32', "computation dtype, `'float32'` or `'bfloat16'` "
          '(parameters stay float32)', frozen=True),
    Field('model.remat', False, 'recompute each MHEB in the backward pass: less memory, '
          'more compute', frozen=True),
    # How the same network's gradients are computed: may change on resume, and is absent
    # from workdirs written before it existed.
    Field('model.conv_kernel_grad', 'auto', "convolution kernel gradients: `'auto'` "
          "(`'gemm'` on a CPU of one device, `'xla'` elsewhere), `'xla'` or `'gemm'`; same math "
          '(docs/performance.md)'),
    # Also how, not what: the parameters (still `mheb_{i}`) and the outputs are the same
    # either way, so a resumed run may switch, and older workdirs without it get the default.
    Field('model.scan_blocks', False, 'trace and compile the MHEBs (and the HADB units '
          'after the first) once, as one loop over their parameters: faster startup, but '
          'a train step about 4x slower on CPU; False runs them one by one (same '
          'parameters and outputs; docs/performance.md)'),
    Field('data.dataset', 'rain200l', 'a builder name of docs/data.md (e.g. '
          '`synthetic_rain/heavy`, `paired_folder`), or a mixture drawn in proportion to '
          "its weights, `'NAME[@SPLIT][:WEIGHT],...'` or a list (docs/training.md, "
          'Training on a mixture)',
          'a dataset name (e.g. rain200l), a mixture string or a list of members',
          _dataset_spec, frozen=True),
    Field('data.eval_dataset', None, 'what validation runs on, `NAME[@SPLIT]` (split '
          'default: `data.eval_split`); None: the first dataset of `data.dataset`',
          'a dataset name or None', _or_none(lambda v: isinstance(v, str) and bool(v)),
          placeholder=str),
    Field('data.data_dir', None, 'TFDS data folder (None: the TFDS default)',
          'a folder or None', _or_none(lambda v: isinstance(v, str)), placeholder=str,
          path=True),
    Field('data.manual_dir', None, 'folder of the downloaded files',
          'a folder or None', _or_none(lambda v: isinstance(v, str)), placeholder=str,
          path=True),
    Field('data.train_split', 'train', 'training split (TFDS split syntax allowed)',
          'a split name', lambda v: isinstance(v, str) and bool(v), frozen=True),
    Field('data.eval_split', 'test', 'validation split', 'a split name',
          lambda v: isinstance(v, str) and bool(v)),
    Field('data.patch_size', 64, 'side of the random paired training crops',
          'a positive integer', _int_at_least(1)),
    Field('data.hflip', True, 'random horizontal flips of the crops', 'True or False',
          lambda v: isinstance(v, (bool, np.bool_))),
    Field('data.num_workers', 0, 'Grain worker processes (0: threads in the training '
          'process)', 'an integer >= 0', _int_at_least(0), frozen=True),
    Field('data.cache', 'auto', "`'memory'`: decode the training split once and crop from "
          "memory; `'none'`: decode both images of every crop from disk; `'auto'`: memory "
          'when the decoded split is estimated (from 8 decoded pairs) to fit '
          '`data.cache_max_gb`. The batches are identical in all three modes',
          "one of 'auto', 'memory', 'none'",
          lambda v: v in ('auto', 'memory', 'none')),
    Field('data.cache_max_gb', 8.0, 'the `auto` limit, in GB of decoded uint8 images per '
          'process (Rain200H: 1.7 GB; SPA-Data: about 250 GB, so it streams)',
          'a number of GB >= 0', lambda v: _is_number(v) and v >= 0),
    Field('optim.learning_rate', 1e-3, 'Adam learning rate', '> 0',
          lambda v: _is_number(v) and v > 0),
    Field('optim.b1', 0.9, 'Adam beta 1', 'in [0, 1)', lambda v: _is_number(v) and 0 <= v < 1),
    Field('optim.b2', 0.999, 'Adam beta 2', 'in [0, 1)',
          lambda v: _is_number(v) and 0 <= v < 1),
    Field('optim.eps', 1e-8, 'Adam epsilon', '>= 0', lambda v: _is_number(v) and v >= 0),
    Field('optim.schedule', 'multistep', '`multistep`, `cosine` (to 0 after the warmup) '
          'or `constant`', f'one of {", ".join(SCHEDULES)}', lambda v: v in SCHEDULES),
    Field('optim.decay_at', (0.3, 0.5, 0.8), 'multistep: fractions of all steps after '
          'which the rate is multiplied by `decay_factor`',
          'a sequence of fractions of the steps in (0, 1)', _fractions),
    Field('optim.decay_factor', 0.2, 'multistep: the factor applied at each fraction',
          '> 0', lambda v: _is_number(v) and v > 0),
    Field('optim.warmup_steps', 0, 'linear warmup from 0', 'an integer >= 0',
          _int_at_least(0)),
    Field('optim.grad_clip_norm', None, 'clip the global gradient norm (None: off)',
          '> 0 or None', _or_none(lambda v: _is_number(v) and v > 0), placeholder=float),
    # Not frozen: they choose the weights of step 0 only; a resumed run continues from
    # its own checkpoint whatever they say.
    Field('init_from', None, 'start from trained weights: a workdir (its best '
          'checkpoint, else the latest), `DIR:STEP`, or a parameters file '
          '(`mh2f-export --format=params`); step 0, fresh optimizer and schedule',
          'a workdir, DIR:STEP, a parameters file, or None',
          _or_none(lambda v: isinstance(v, str) and bool(v)), placeholder=str, path=True),
    Field('init_from_skip', (), 'parameter name patterns (fnmatch on the `/`-joined path, '
          "e.g. `'rpff/*'`) kept at their fresh initialisation instead of `init_from`'s; "
          'a tuple, or one comma-separated string',
          'a sequence of patterns or a comma-separated string', _patterns),
    Field('loss.ssim_weight', 0.2, 'loss = L1 + w · (1 − SSIM)', '>= 0',
          lambda v: _is_number(v) and v >= 0),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
# What a resumed run must share with the run that wrote the workdir: the network in the
# checkpoint and the data stream the saved iterator state indexes into. Everything else
# may change on resume (see docs/training.md).
FROZEN_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.frozen)
MODEL_FIELDS: tuple[str, ...] = tuple(
    f.name.split('.', 1)[1] for f in FIELDS if f.name.startswith('model.'))


def default_config() -> ml_collections.ConfigDict:
  """Returns a fresh ConfigDict holding every field at its default."""
  config = ml_collections.ConfigDict()
  for f in FIELDS:
    *blocks, leaf = f.name.split('.')
    node = config
    for block in blocks:
      if block not in node:
        node[block] = ml_collections.ConfigDict()
      node = node[block]
    node[leaf] = (config_dict.placeholder(f.placeholder) if f.default is None
                  else f.default)
  return config


def get_field(config: Any, dotted: str) -> Any:
  """Returns ``config[a][b]`` for ``dotted='a.b'``.

  Raises:
    KeyError: a part of the path is missing.
  """
  value = config
  for part in dotted.split('.'):
    if not isinstance(value, (Mapping, ml_collections.ConfigDict)) or part not in value:
      raise KeyError(dotted)
    value = value[part]
  return value


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every field of ``config`` before anything expensive happens.

  Args:
    config: a training config.

  Raises:
    UserError: a missing field or a bad value; the message names the field and what is
      allowed.
  """
  for f in FIELDS:
    try:
      value = get_field(config, f.name)
    except KeyError:
      raise UserError(f'config has no field {f.name} (see configs/default.py)') from None
    if not f.check(value):
      raise UserError(f'config field {f.name}: must be {f.allowed}, got {value!r}')
  if config.num_train_steps is None and not (
      _is_number(config.num_epochs) and config.num_epochs > 0):
    raise UserError(f'config field num_epochs: must be > 0 when num_train_steps is None, '
                    f'got {config.num_epochs!r}')
  # The model owns its fields' meaning and allowed values.
  model_lib.from_config(config.model)


def resolve_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Returns a copy of ``config`` whose path fields are absolute, ``~`` expanded.

  Done once, before ``config.json`` is written, so that the workdir records the folders
  actually used: evaluating later from another directory or under another ``HOME``
  reads the same data.
  """
  config = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
  for f in FIELDS:
    value = get_field(config, f.name) if f.path else None
    if isinstance(value, str) and value:
      *blocks, leaf = f.name.split('.')
      node = config
      for block in blocks:
        node = node[block]
      node[leaf] = os.path.abspath(os.path.expanduser(value))
  return config


def resolve_num_train_steps(config: ml_collections.ConfigDict, num_train_examples: int) -> int:
  """Returns ``num_train_steps``, or ``ceil(num_epochs * examples / batch_size)`` if None."""
  if config.num_train_steps is not None:
    return int(config.num_train_steps)
  return max(1, math.ceil(config.num_epochs * num_train_examples / config.batch_size))


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
  if isinstance(value, Mapping):
    for k, v in value.items():
      _flatten(f'{prefix}.{k}', v, out)
  else:
    # JSON turns tuples into lists.
    out[prefix] = list(value) if isinstance(value, tuple) else value


def _comparable(key: str, value: Any) -> Any:
  """``value`` in a form that equivalent spellings share: a mixture as its members."""
  if key != 'data.dataset':
    return value
  # Lazy: the datasets package imports TFDS, which validating a config does not need.
  from mh2f_jax.datasets import mixture  # pylint: disable=g-import-not-at-top
  try:
    return mixture.parse(value)  # 'a:1, b:3' is 'a:1,b:3', and 'a' is ['a:1'].
  except UserError:
    return value


def config_differences(saved: Mapping[str, Any], given: Mapping[str, Any],
                       fields: Sequence[str] = FROZEN_FIELDS) -> list[str]:
  """Lists the fields that differ, as ``'model.features: saved 8, given 16'``.

  Args:
    saved: the workdir's ``config.json`` as a dict.
    given: the new config as a dict.
    fields: dotted field names; a field naming a block compares every entry in it.

  Returns:
    One line per differing leaf field, sorted. Two spellings of one mixture (``'a:1,b:3'``
    and ``'a:1, b:3'``) are the same ``data.dataset``.
  """
  missing = object()

  def lookup(tree, dotted):
    try:
      return get_field(tree, dotted)
    except KeyError:
      return missing

  def show(v):
    return '(absent)' if v is missing else json.dumps(v)

  lines = set()
  for field in fields:
    a, b = {}, {}
    _flatten(field, lookup(saved, field), a)
    _flatten(field, lookup(given, field), b)
    for key in set(a) | set(b):
      va, vb = a.get(key, missing), b.get(key, missing)
      if _comparable(key, va) != _comparable(key, vb):
        lines.add(f'{key}: saved {show(va)}, given {show(vb)}')
  return sorted(lines)


def _format_default(value: Any) -> str:
  if isinstance(value, str):
    return f"`'{value}'`"
  if isinstance(value, float):
    return f'{value:g}'
  return str(value)


def markdown_table() -> str:
  """The fields as a Markdown table (Field | Default | Meaning), one row per field."""
  rows = ['| Field | Default | Meaning |', '|---|---|---|']
  rows += [f'| `{f.name}` | {_format_default(f.default)} | {f.doc} |' for f in FIELDS]
  return '\n'.join(rows)
