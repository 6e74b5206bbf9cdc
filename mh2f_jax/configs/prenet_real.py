"""PReNet's recipe for real rainy photos: one model on three synthetic training sets.

PReNet's real-photo models were trained on RainTrainH, RainTrainL and Rain12600 together
(PReNet issue #4), which are the train splits of ``rain100h``, ``rain100l`` and
``rain1400`` here; all three come in PReNet's "datasets" download. PReNet cut Rain12600
into patches with three times the stride of the other two, so it gave about 1/9 of the
patches per image: the weights follow the patches each set gave (1,254 : 200 : 12,600/9,
with RainTrainH as PReNet keeps it). PReNet stopped after one epoch, because longer
training fitted the synthetic rain and did worse on real photos; one epoch here is
(1,254 + 200 + 12,600) / 16 = 879 steps.

Prepare the three sets first (``python -m mh2f_jax.datasets prepare rain100h
--manual_dir ...``, and likewise ``rain100l`` and ``rain1400``), or set
``data.manual_dir`` to the unpacked download. Validation runs on Rain100H's test split.
"""

import ml_collections

from mh2f_jax.configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the configuration; ``arg='debug'`` gives a tiny model and a few steps."""
  config = default.get_config()
  config.data.dataset = 'rain100h:1254,rain100l:200,rain1400:1400'
  config.data.eval_dataset = 'rain100h'
  config.num_epochs = 1
  config.checkpoint_every_steps = 250
  config.eval_every_steps = 250
  config.image_every_steps = 250
  config.num_eval_images = 100
  return default.apply_variant(config, arg)
