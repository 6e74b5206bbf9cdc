"""Ablation (paper 4.3, Table 3): RPFF replaced by addition.

The shallow, deep and distilled features are added (`model.fusion = 'add'`).
Trained on Rain200H with the paper's protocol; only the model differs from
`rain200h.py`.
"""

import ml_collections

from mh2f_jax.configs import default
from mh2f_jax.configs import rain200h


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the configuration; ``arg='debug'`` gives a tiny model and a few steps."""
  config = rain200h.get_config()
  config.model.fusion = 'add'
  return default.apply_variant(config, arg)
