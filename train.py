"""Trains MH2F-Net from a checkout; the command is mh2f_jax/train.py (``mh2f-train``)."""
from mh2f_jax.train import run

if __name__ == '__main__':
  run()
