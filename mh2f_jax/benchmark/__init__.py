"""``mh2f-bench``: one run that checks an installation and measures its speed.

The modules, one job each: :mod:`.runner` (the sections in order, the budget of
``--quick``), :mod:`.table` (the table printed as it goes, ``bench.json`` and
``bench.md``), :mod:`.system` (versions, devices, memory), :mod:`.correctness` (the
accelerator against the CPU), :mod:`.train_speed` (the train step, the batch search),
:mod:`.input_speed` (the input pipeline and a short real training run),
:mod:`.inference_speed` (deraining whole and tiled images), :mod:`.model_cost`
(parameters and FLOPs) and :mod:`.peer` (the PyTorch peer, run as a subprocess).
See docs/gpu.md.
"""
