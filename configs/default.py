"""Shared defaults: the paper's training protocol (MH2F-Net, CVPRW 2021, section 4.1).

Every dataset and ablation config imports this file and overrides a few fields. The
fields, their defaults and what they allow are defined once, in
``mh2f_jax/config_schema.py`` (the table in docs/training.md); ``config.json`` in a
workdir is ``config.to_dict()`` of this structure, with ``num_train_steps`` resolved.
The paper gives only the initial learning rate; the default 'multistep' schedule divides
it by 5 at 30/50/80 % of the steps (the MultiStep pattern of PReNet-era deraining code).

Variants are chosen after a colon on the command line, e.g.
``--config=configs/rain200l.py:debug``; ``debug`` gives a tiny model and a few steps for
CPU smoke runs. Any field can be overridden, e.g. ``--config.model.features=16``.
"""

import ml_collections

from mh2f_jax import config_schema

# Variants every config accepts after the colon.
VARIANTS = ('debug',)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the default configuration (dataset rain200l: override ``data.dataset``).

  Args:
    arg: ``None`` or ``'debug'``.

  Returns:
    The configuration.

  Raises:
    ValueError: for an unknown variant, naming the allowed ones.
  """
  return apply_variant(config_schema.default_config(), arg)


def apply_variant(config: ml_collections.ConfigDict,
                  arg: str | None) -> ml_collections.ConfigDict:
  """Applies the variant named after the colon (``None``: none).

  Args:
    config: a configuration built by a ``get_config``.
    arg: ``None``, ``''`` or one of ``VARIANTS``.

  Returns:
    ``config``, modified in place.

  Raises:
    ValueError: for an unknown variant, naming the allowed ones.
  """
  if not arg:
    return config
  if arg == 'debug':
    # A tiny model and a few steps: a CPU smoke run of the whole loop.
    config.model.features = 8
    config.model.num_blocks = 2
    config.num_train_steps = 20
    config.log_every_steps = 5
    config.checkpoint_every_steps = 10
    config.eval_every_steps = 10
    config.image_every_steps = 10
    config.num_eval_images = 2
    return config
  raise ValueError(f'unknown config variant {arg!r}; allowed: {", ".join(VARIANTS)} '
                   '(e.g. --config=configs/rain200l.py:debug)')
