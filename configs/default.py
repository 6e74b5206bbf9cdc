"""Shared defaults: the paper's training protocol (MH2F-Net, CVPRW 2021, section 4.1).

Every dataset and ablation config imports this file and overrides a few fields. The
field names are a contract shared with evaluation and the notebooks (``config.json`` in
a workdir is ``config.to_dict()`` of this structure, with ``num_train_steps`` resolved).

Variants are chosen after a colon on the command line, e.g.
``--config=configs/rain200l.py:debug``; ``debug`` gives a tiny model and a few steps for
CPU smoke runs. Any field can be overridden, e.g. ``--config.model.features=16``.
"""

import ml_collections
from ml_collections import config_dict

# Variants every config accepts after the colon.
VARIANTS = ('debug',)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the default configuration (no dataset chosen: override ``data.dataset``).

  Args:
    arg: ``None`` or ``'debug'``.

  Returns:
    The configuration.

  Raises:
    ValueError: for an unknown variant, naming the allowed ones.
  """
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Global batch over all devices and processes; must divide by the device count.
  config.batch_size = 16
  # An epoch is one random crop per training pair (paper 4.1).
  config.num_epochs = 200
  # None: ceil(num_epochs * num_train_examples / batch_size). Setting it overrides epochs.
  config.num_train_steps = config_dict.placeholder(int)

  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  # Validation PSNR/SSIM (Y) on data.eval_split; also always at the end. 0 disables the
  # periodic runs (the final one still runs unless num_eval_images == 0).
  config.eval_every_steps = 2500
  # Image grids (rainy | derained | clean) of the first eval images; 0 disables.
  config.image_every_steps = 2500
  config.max_to_keep = 3
  # First N images of the eval split at full size; None = all, 0 = no validation.
  config.num_eval_images = config_dict.placeholder(int)

  config.model = ml_collections.ConfigDict()
  config.model.features = 32
  config.model.num_blocks = 8
  config.model.dcr_layers = 3
  config.model.dcr_growth = config_dict.placeholder(int)  # None: features // 2
  config.model.attention_reduction = 4
  config.model.distill = 'hadb'  # 'hadb' | 'concat'
  config.model.fusion = 'rpff'  # 'rpff' | 'add' | 'concat'
  config.model.global_residual = False
  config.model.dtype = 'float32'  # computation dtype: 'float32' | 'bfloat16'
  config.model.remat = False
  # Kernel gradients of the convolutions: 'auto' ('gemm' on CPU, 'xla' elsewhere), 'xla'
  # or 'gemm'; the same math, gradients equal to float rounding (docs/performance.md).
  config.model.conv_kernel_grad = 'auto'

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'rain200l'
  config.data.data_dir = config_dict.placeholder(str)  # None: the TFDS default
  config.data.manual_dir = config_dict.placeholder(str)  # where the raw download lies
  config.data.train_split = 'train'
  config.data.eval_split = 'test'
  config.data.patch_size = 64
  config.data.hflip = True
  config.data.num_workers = 0
  # 'auto': hold the decoded training split in memory when it fits in cache_max_gb (GB);
  # 'memory': always; 'none': decode every crop's images from disk. Same batches either
  # way; see docs/training.md.
  config.data.cache = 'auto'
  config.data.cache_max_gb = 8.0

  config.optim = ml_collections.ConfigDict()
  config.optim.learning_rate = 1e-3
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  # The paper gives only the initial rate; 'multistep' divides it by 5 at 30/50/80 % of
  # the steps (the MultiStep pattern of PReNet-era deraining code).
  config.optim.schedule = 'multistep'  # 'multistep' | 'cosine' | 'constant'
  config.optim.decay_at = (0.3, 0.5, 0.8)
  config.optim.decay_factor = 0.2
  config.optim.warmup_steps = 0
  config.optim.grad_clip_norm = config_dict.placeholder(float)  # None: no clipping

  config.loss = ml_collections.ConfigDict()
  config.loss.ssim_weight = 0.2

  return apply_variant(config, arg)


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
