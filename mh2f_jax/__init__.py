"""MH2F-Net: Multi-Scale Hourglass Hierarchical Fusion Network for single image deraining, in JAX/Flax."""

__version__ = "0.1.0"
