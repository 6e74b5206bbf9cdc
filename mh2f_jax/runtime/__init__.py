"""How every command runs: log filtering, JAX's compilation cache, agreement across hosts.

:mod:`.logs` (which library lines are shown), :mod:`.compile_cache` (the persistent XLA
compilation cache), :mod:`.hosts` (one yes/no agreed by all processes).
"""
