"""Training: the loop, its jitted steps, the optimizer and loss, validation, run records.

:mod:`.trainer` (``train_and_evaluate``, the loop ``train.py`` runs), :mod:`.steps`
(train state, mesh, train and eval steps), :mod:`.optim`, :mod:`.losses`,
:mod:`.validation` (validation and the best checkpoint), :mod:`.metric_writer`
(metrics.jsonl and TensorBoard), :mod:`.curves` (curves.png), :mod:`.progress` (the
progress bar), :mod:`.preemption` (SIGTERM: save and stop).
"""
