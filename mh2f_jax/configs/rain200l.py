"""Rain200L (1,800 training pairs, 200 test): the paper's protocol, 200 epochs.

Patch 64 with horizontal flips, global batch 16, Adam 1e-3 (0.9, 0.999) divided by 5 at
30/50/80 % of the steps: 200 * 1800 / 16 = 22,500 steps.
"""

import ml_collections

from mh2f_jax.configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the configuration; ``arg='debug'`` gives a tiny model and a few steps."""
  config = default.get_config()
  config.data.dataset = 'rain200l'
  config.num_epochs = 200

  return default.apply_variant(config, arg)
