"""Rain200H (1,800 training pairs, 200 test): the paper's protocol, 200 epochs.

Same protocol as Rain200L: 22,500 steps of batch 16.
"""

import ml_collections

from mh2f_jax.configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the configuration; ``arg='debug'`` gives a tiny model and a few steps."""
  config = default.get_config()
  config.data.dataset = 'rain200h'
  config.num_epochs = 200

  return default.apply_variant(config, arg)
