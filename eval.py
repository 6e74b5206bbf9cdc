"""Evaluates a workdir from a checkout; the command is mh2f_jax/eval.py (``mh2f-eval``)."""
from mh2f_jax.eval import run

if __name__ == '__main__':
  run()
