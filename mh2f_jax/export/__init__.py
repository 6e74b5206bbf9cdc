"""Exporting a trained model: ONNX, ``jax.export`` artifacts and bare parameters files.

:mod:`.exporter` (export a workdir, checked against JAX first), :mod:`.jax_artifact`
(the ``jax.export`` form), :mod:`.params_file` (a Flax msgpack of the parameters). The
ONNX graph itself is :mod:`mh2f_jax.model.onnx_graph`, beside the Flax network it restates.
``python -m mh2f_jax.export`` is the command.
"""
