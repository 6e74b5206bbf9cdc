"""Evaluates a training workdir; see ``mh2f_jax/eval.py`` or ``python eval.py --help``."""

from mh2f_jax import cli
from mh2f_jax import eval as eval_cli

if __name__ == '__main__':
  cli.exit_with(eval_cli.run())
