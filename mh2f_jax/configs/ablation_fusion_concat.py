"""Ablation (paper 4.3, Table 3): RPFF replaced by concatenation.

The shallow, deep and distilled features are concatenated and fused by a 1x1
convolution (`model.fusion = 'concat'`).
Trained on Rain200H with the paper's protocol; only the model differs from
`rain200h.py`.
"""

import ml_collections

from mh2f_jax.configs import default
from mh2f_jax.configs import rain200h


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the configuration; ``arg='debug'`` gives a tiny model and a few steps."""
  config = rain200h.get_config()
  config.model.fusion = 'concat'
  return default.apply_variant(config, arg)
