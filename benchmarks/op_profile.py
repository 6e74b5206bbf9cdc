r"""Where the train step's time goes, per op class, on the current backend.

Every convolution of the model is found in the traced forward pass (shapes of input and
kernel) and timed in isolation, three ways: the forward convolution, the input gradient
and the kernel gradient (each a jitted function of its own, medians of ``--repeats``
alternating runs). The sum per class is set against the whole jitted train step; the
rest (pooling, upsampling, concatenations, activations, attention, SSIM loss, Adam) is
what remains. The kernel gradient is timed in both formulations (XLA's and
``mh2f_jax.model.conv``'s GEMM); the step uses ``--conv_kernel_grad``. One JSON line.

Usage::

  python benchmarks/op_profile.py [--batch 16] [--patch 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.extend  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from mh2f_jax.model import conv  # pylint: disable=g-import-not-at-top,wrong-import-position
from mh2f_jax import model as model_lib  # pylint: disable=g-import-not-at-top,wrong-import-position


def conv_shapes(model, batch: int, patch: int) -> list[tuple[tuple, tuple, tuple]]:
  """Returns (input shape, kernel shape, padding) of every convolution of the forward."""
  images = jax.ShapeDtypeStruct((batch, patch, patch, 3), np.float32)
  params = jax.eval_shape(model.init, jax.random.key(0), images)
  jaxpr = jax.make_jaxpr(model.apply)(params, images)
  found = []

  def visit(eqns):
    for eqn in eqns:
      if eqn.primitive.name == 'conv_general_dilated':
        found.append((tuple(eqn.invars[0].aval.shape), tuple(eqn.invars[1].aval.shape),
                      tuple(map(tuple, eqn.params['padding']))))
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        visit(sub.eqns)

  visit(jaxpr.jaxpr.eqns)
  return found


def _conv(x, k, padding):
  return jax.lax.conv_general_dilated(x, k, (1, 1), padding,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _timed(fn, args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def profile_convs(shapes, repeats: int) -> dict[str, float]:
  """Seconds per op class, summed over all convolutions (identical shapes timed once)."""
  rng = np.random.default_rng(0)
  totals = collections.Counter()
  flops = collections.Counter()
  for (x_shape, k_shape, padding), count in collections.Counter(shapes).items():
    x = jax.device_put(rng.standard_normal(x_shape, np.float32))
    k = jax.device_put(rng.standard_normal(k_shape, np.float32))
    y_shape = jax.eval_shape(lambda x, k: _conv(x, k, padding), x, k).shape  # pylint: disable=cell-var-from-loop
    dy = jax.device_put(rng.standard_normal(y_shape, np.float32))
    fns = {
        'conv_forward': jax.jit(lambda x, k, dy: _conv(x, k, padding)),  # pylint: disable=cell-var-from-loop
        'conv_input_grad': jax.jit(lambda x, k, dy: jax.vjp(
            lambda x_: _conv(x_, k, padding), x)[1](dy)[0]),  # pylint: disable=cell-var-from-loop
        'conv_kernel_grad': jax.jit(lambda x, k, dy: jax.vjp(
            lambda k_: _conv(x, k_, padding), k)[1](dy)[0]),  # pylint: disable=cell-var-from-loop
        'conv_kernel_grad_gemm': jax.jit(lambda x, k, dy: jax.vjp(
            lambda k_: conv.conv_general_dilated(
                x, k_, (1, 1), padding, dimension_numbers=jax.lax.conv_dimension_numbers(
                    x.shape, k_.shape, ('NHWC', 'HWIO', 'NHWC'))), k)[1](dy)[0]),  # pylint: disable=cell-var-from-loop
    }
    for name, fn in fns.items():
      totals[name] += count * _timed(fn, (x, k, dy), repeats)
      flops[name] += count * 2 * np.prod(y_shape) * np.prod(k_shape[:3])
  return {**totals, **{f'{k}_gflop_per_s': flops[k] / totals[k] / 1e9 for k in flops}}


def time_step(model, batch: int, patch: int, repeats: int) -> float:
  """Seconds per step of the training library's jitted train step."""
  from mh2f_jax.training import optim  # pylint: disable=g-import-not-at-top
  from mh2f_jax.training import steps  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  mesh = steps.create_mesh()
  tx, _ = optim.create_optimizer(config.optim, 1000)
  state = steps.create_train_state(model, tx, 0, mesh)
  step = steps.make_train_step(model, tx, ssim_weight=0.2, seed=0, mesh=mesh)
  rng = np.random.default_rng(0)
  data = {k: rng.integers(0, 256, (batch, patch, patch, 3), dtype=np.uint8)
          for k in ('rainy', 'clean')}
  compiled = step.lower(state, data).compile()
  times = []
  for _ in range(repeats + 1):
    t0 = time.perf_counter()
    state, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  return float(np.median(times[1:]))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--patch', type=int, default=64)
  parser.add_argument('--features', type=int, default=32)
  parser.add_argument('--blocks', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--conv_kernel_grad', default='auto', choices=conv.KERNEL_GRAD_CHOICES,
                      help='the formulation the timed train step uses')
  args = parser.parse_args()
  model = model_lib.MH2FNet(features=args.features, num_blocks=args.blocks,
                            conv_kernel_grad=args.conv_kernel_grad)
  shapes = conv_shapes(model, args.batch, args.patch)
  step_s = time_step(model, args.batch, args.patch, args.repeats)
  kernel_grad = conv.kernel_grad_mode(args.conv_kernel_grad)
  result = {'train_step_s': step_s, 'step_kernel_grad': kernel_grad, 'num_convs': len(shapes),
            **profile_convs(shapes, args.repeats)}
  used = 'conv_kernel_grad_gemm' if kernel_grad == 'gemm' else 'conv_kernel_grad'
  conv_s = sum(result[k] for k in ('conv_forward', 'conv_input_grad', used))
  result['other_s'] = step_s - conv_s
  result['load_avg_1min'] = os.getloadavg()[0]
  print(json.dumps(result))


if __name__ == '__main__':
  main()
