"""SPA-Data (638,492 training pairs, 1,000 real test pairs): the paper's protocol, 25 epochs.

25 * 638492 / 16 = 997,644 steps. Validation during training uses the first 200 test
images; `eval.py` reports all 1,000. Several data workers keep the GPU fed.
"""

import ml_collections

from mh2f_jax.configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the configuration; ``arg='debug'`` gives a tiny model and a few steps."""
  config = default.get_config()
  config.data.dataset = 'spa_data'
  config.num_epochs = 25
  config.log_every_steps = 500
  config.checkpoint_every_steps = 5000
  config.eval_every_steps = 25000
  config.image_every_steps = 25000
  config.num_eval_images = 200
  config.data.num_workers = 4
  return default.apply_variant(config, arg)
