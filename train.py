"""Trains MH2F-Net; see ``mh2f_jax/train.py`` or ``python train.py --help``."""

from mh2f_jax import cli
from mh2f_jax import train

if __name__ == '__main__':
  cli.exit_with(train.run())
