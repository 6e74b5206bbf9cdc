"""The offline CPU demo: MH2F-Net learns to remove heavy synthetic rain in minutes.

Data: ``synthetic_rain/heavy``, rain rendered over photos bundled with scikit-image, so
nothing needs downloading; the dataset is built on first use (seconds).

Sizing (to be tuned against the demo's time budget of about 10 minutes on a 2-core CPU
for training plus evaluation): a narrow, shallow model (16 features, 2 MHEBs) trains
several times faster per step than the paper's (32 features, 8 MHEBs) and still learns
the rain layer well; a higher learning rate with a cosine decay converges within the few
hundred steps the budget allows.
"""

import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the configuration; ``arg='debug'`` gives a tiny model and a few steps."""
  config = default.get_config()
  config.data.dataset = 'synthetic_rain/heavy'
  config.data.patch_size = 64
  config.batch_size = 16
  config.num_train_steps = 600

  config.model.features = 16
  config.model.num_blocks = 2

  config.optim.learning_rate = 2e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 20

  config.log_every_steps = 20
  config.checkpoint_every_steps = 200
  config.eval_every_steps = 200
  config.image_every_steps = 200
  return default.apply_variant(config, arg)
