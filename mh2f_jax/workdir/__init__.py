"""The workdir, the unit of resumption: its config, checkpoints, recovery and lock.

:mod:`.checkpoints` (config.json, train state and best checkpoints: save and restore),
:mod:`.loading` (which checkpoint a tool means, and its parameters), :mod:`.recovery`
(corrupt or vanished checkpoints), :mod:`.lock` (one training run per workdir),
:mod:`.save_loops` (Orbax's save and restore event loops, made safe on write faults).
"""
