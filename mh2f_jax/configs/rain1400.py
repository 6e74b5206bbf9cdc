"""Rain1400 (DDN: 12,600 training pairs, 1,400 test): the paper's protocol, 100 epochs.

100 * 12600 / 16 = 78,750 steps. Validation during training uses the first 200 test
images; `eval.py` reports all 1,400.
"""

import ml_collections

from mh2f_jax.configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the configuration; ``arg='debug'`` gives a tiny model and a few steps."""
  config = default.get_config()
  config.data.dataset = 'rain1400'
  config.num_epochs = 100
  config.checkpoint_every_steps = 2500
  config.eval_every_steps = 5000
  config.image_every_steps = 5000
  config.num_eval_images = 200
  return default.apply_variant(config, arg)
