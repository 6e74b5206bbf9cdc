"""Image-quality measures: the two PSNR/SSIM protocols of published tables, SSIM.

``from mh2f_jax import metrics`` gives the NumPy protocols (:mod:`.protocols`) and the
JAX validation metric (:mod:`.psnr_ssim_jax`) by name; the modules hold the details.
"""

from mh2f_jax.metrics.protocols import (  # The public API, by name.
    METRIC_KEYS, PROTOCOLS, SSIM_WINDOW, downsample_factor, evaluate_pair, mean_metrics,
    psnr, rgb_to_y, ssim, to_uint8, wang_downsample)
from mh2f_jax.metrics.psnr_ssim_jax import psnr_ssim_y
