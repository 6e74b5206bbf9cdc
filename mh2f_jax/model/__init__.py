"""MH2F-Net, the network: its Flax modules, convolution helpers and ONNX graph.

``from mh2f_jax import model`` gives the network's public API by name; the modules:
:mod:`.network` (``MH2FNet`` and its configuration), :mod:`.blocks` (DCR, MHEB, HADB,
the fusions), :mod:`.conv` (the convolution and its kernel gradient), :mod:`.onnx_graph`
(the same network as an ONNX graph), :mod:`.params` (parameter trees).
"""

from mh2f_jax.model.blocks import (  # The public API, by name.
    DCR, HADB, MHEB, RPFF, AddFusion, ConcatFusion, DistillUnit)
from mh2f_jax.model.network import (
    ARCHITECTURE_FIELDS, CONFIG_FIELDS, DISTILL_CHOICES, DTYPE_CHOICES, FUSION_CHOICES, PAD_MULTIPLE, MH2FNet,
    ModelConfigError, from_config)
from mh2f_jax.model.params import abstract_params, count_params
