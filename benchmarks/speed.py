r"""Speed of the real train step and of whole-image inference, as one JSON line.

The train step is the training library's jitted step (model, Adam, L1 + 0.2 (1 - SSIM)),
on a fixed random batch or, with ``--pipeline DATASET``, on batches from the real input
pipeline (cached in memory when it fits, as in training). Inference is the forward pass
the derain CLI uses for ``--backend`` (jitted JAX, or ONNX Runtime on CPU when installed),
on one ``--size`` x ``--size`` image.
The keys match the PyTorch peer's ``bench_torch.py`` (``train_s_per_step``,
``train_img_per_s``, ``first_step_s``, ``infer_s``, ``infer_s_per_mp``) plus
``compile_s`` (lowering and compiling the step), ``infer_compile_s``, the device kind and
the load average when the run ended (other work on the host slows every figure).

Usage::

  python benchmarks/speed.py [--batch 16] [--patch 64] [--size 512] [--steps 5] [--bf16]
      [--features 32] [--blocks 8] [--pipeline synthetic_rain/heavy [--data_dir DIR]]
      [--backend auto|jax|onnxruntime] [--no_train]

Run it alternately with the peer and take medians; see docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The training library's step and state: the one place to change if they move.
from mh2f_jax.training.optim import create_optimizer  # pylint: disable=g-import-not-at-top,wrong-import-position
from mh2f_jax.training.steps import (  # pylint: disable=g-import-not-at-top,wrong-import-position
    create_mesh, create_train_state, make_train_step)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from configs import default as default_config  # pylint: disable=g-import-not-at-top,wrong-import-position
from mh2f_jax.inference import backends  # pylint: disable=g-import-not-at-top,wrong-import-position
from mh2f_jax.runtime import compile_cache  # pylint: disable=g-import-not-at-top,wrong-import-position
from mh2f_jax.datasets import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from mh2f_jax.datasets import memory_cache  # pylint: disable=g-import-not-at-top,wrong-import-position
from mh2f_jax import model as model_lib  # pylint: disable=g-import-not-at-top,wrong-import-position


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--batch', type=int, default=16, help='global batch size')
  parser.add_argument('--patch', type=int, default=64)
  parser.add_argument('--size', type=int, default=512, help='inference image side')
  parser.add_argument('--steps', type=int, default=5, help='timed train steps')
  parser.add_argument('--features', type=int, default=32)
  parser.add_argument('--blocks', type=int, default=8)
  parser.add_argument('--bf16', action='store_true',
                      help='bfloat16 computation (parameters stay float32)')
  parser.add_argument('--pipeline', metavar='DATASET', default=None,
                      help='feed the steps from this dataset\'s training split')
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--cache', default='auto', choices=memory_cache.CACHE_CHOICES,
                      help='data.cache for --pipeline')
  parser.add_argument('--num_workers', type=int, default=0, help='for --pipeline')
  parser.add_argument('--conv_kernel_grad', default='auto',
                      choices=('auto', 'xla', 'gemm'), help='model.conv_kernel_grad')
  parser.add_argument('--scan_blocks', action='store_true',
                      help='model.scan_blocks=True: the blocks as one loop')
  parser.add_argument('--backend', default='auto', choices=('auto', 'jax', 'onnxruntime'),
                      help="inference backend, as the derain CLI's --backend (default auto)")
  parser.add_argument('--no_train', action='store_true',
                      help='time inference only (the parameters are the initial ones)')
  parser.add_argument('--compilation_cache', default='off',
                      help="a directory, or 'off' (default: compile from scratch)")
  return parser.parse_args(argv)


def _config(args: argparse.Namespace):
  config = default_config.get_config()
  config.batch_size = args.batch
  config.model.features = args.features
  config.model.num_blocks = args.blocks
  config.model.dtype = 'bfloat16' if args.bf16 else 'float32'
  config.model.conv_kernel_grad = args.conv_kernel_grad
  config.model.scan_blocks = args.scan_blocks
  config.optim.schedule = 'constant'  # the peer's plain Adam 1e-3
  config.data.patch_size = args.patch
  return config


def _fixed_batches(args: argparse.Namespace):
  rng = np.random.default_rng(0)
  shape = (args.batch, args.patch, args.patch, 3)
  batch = {k: rng.integers(0, 256, shape, dtype=np.uint8) for k in ('rainy', 'clean')}
  while True:
    yield batch


def _pipeline_batches(args: argparse.Namespace, config) -> tuple[object, dict]:
  from mh2f_jax import datasets  # pylint: disable=g-import-not-at-top  (TFDS imports slowly)
  t0 = time.perf_counter()
  source = datasets.get_source(args.pipeline, 'train', data_dir=args.data_dir)
  source = memory_cache.cache_source(source, args.cache, config.data.cache_max_gb)
  it = input_pipeline.create_train_iterator(
      source, global_batch_size=args.batch, patch_size=args.patch, seed=config.seed,
      num_workers=args.num_workers)
  info = {'pipeline': args.pipeline, 'pipeline_examples': len(source),
          'pipeline_cached': isinstance(source, memory_cache.MemorySource),
          'pipeline_setup_s': time.perf_counter() - t0}
  return it, info


def time_train(args: argparse.Namespace, config, model) -> tuple[dict, object]:
  """Times the train step; returns the figures and the final parameters."""
  mesh = create_mesh()
  tx, _ = create_optimizer(config.optim, 1000)
  state = create_train_state(model, tx, config.seed, mesh)
  step = make_train_step(model, tx, ssim_weight=float(config.loss.ssim_weight),
                         seed=config.seed, mesh=mesh)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  info = {}
  if args.pipeline:
    batches, info = _pipeline_batches(args, config)
  else:
    batches = _fixed_batches(args)

  def next_batch():
    local = next(batches)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(local[k]))
            for k in ('rainy', 'clean')}

  batch = next_batch()
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  first = time.perf_counter() - t0
  for _ in range(2):
    state, metrics = compiled(state, next_batch())
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = compiled(state, next_batch())
  jax.block_until_ready(metrics)
  train_s = (time.perf_counter() - t0) / args.steps
  return {'train_s_per_step': train_s, 'train_img_per_s': args.batch / train_s,
          'first_step_s': first, 'compile_s': compile_s,
          'loss': float(metrics['loss']), **info}, state.params


def time_inference(args: argparse.Namespace, model, params) -> dict:
  """Times the whole-image forward pass the derain CLI uses (best of 3, after warm-up).

  The forward function is the one ``Derainer`` builds for ``--backend`` (jitted JAX, or
  the ONNX graph in ONNX Runtime); ``infer_compile_s`` is building it plus its first call.
  """
  params = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), params)
  image = np.random.default_rng(1).random((1, args.size, args.size, 3), dtype=np.float32)
  t0 = time.perf_counter()
  backend, forward = backends.make_forward(model, params, args.backend)
  forward(image)
  compile_s = time.perf_counter() - t0
  forward(image)
  times = []
  for _ in range(3):
    t0 = time.perf_counter()
    forward(image)  # Returns a NumPy array: the computation has finished.
    times.append(time.perf_counter() - t0)
  infer_s = min(times)
  return {'infer_backend': backend, 'infer_size': args.size, 'infer_s': infer_s,
          'infer_compile_s': compile_s,
          'infer_s_per_mp': infer_s / (args.size * args.size / 1e6)}


def main(argv: Sequence[str] | None = None) -> dict:
  """Runs both measurements and prints (and returns) the JSON line."""
  args = _parse_args(argv)
  compile_cache.enable(args.compilation_cache)
  input_pipeline.mark_flags_parsed()
  config = _config(args)
  model = model_lib.from_config(config.model)
  device = jax.devices()[0]
  result = {'project': 'mh2f_jax' + ('-bf16' if args.bf16 else ''),
            'device': device.platform, 'device_kind': device.device_kind,
            'device_count': jax.device_count(), 'jax': jax.__version__,
            'batch': args.batch, 'patch': args.patch, 'features': args.features,
            'blocks': args.blocks}
  if args.no_train:
    params = jax.jit(model.init)(jax.random.key(config.seed),
                                 np.zeros((1, 64, 64, 3), np.float32))['params']
    params = jax.tree.map(jax.device_put, params)
  else:
    train, params = time_train(args, config, model)
    result.update(train)
  result.update(time_inference(args, model, params))
  result['load_avg_1min'] = os.getloadavg()[0]
  print(json.dumps(result))
  return result


if __name__ == '__main__':
  main()
