"""Ablation (paper 4.3, Table 3): 4 MHEBs instead of 8.

Trained on Rain200H with the paper's protocol; only the model differs from
`rain200h.py`.
"""

import ml_collections

from mh2f_jax.configs import default
from mh2f_jax.configs import rain200h


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the configuration; ``arg='debug'`` gives a tiny model and a few steps."""
  config = rain200h.get_config()
  config.model.num_blocks = 4
  return default.apply_variant(config, arg)
