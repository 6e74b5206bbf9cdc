"""A convolution whose kernel gradient is one matrix product.

The forward pass and the input gradient are XLA's own convolutions. The kernel gradient
of a stride-1 NHWC convolution ``dW[i, j] = sum_{n,h,w} xp[n, h+i, w+j] * dy[n, h, w]``
is computed on the padded grid flattened to rows: there, the shift ``(i, j)`` is an
offset of ``i * Wp + j`` rows, so stacking the ``kh * kw`` row-shifted copies of the
operand with fewer channels turns all taps into a single GEMM over ``N * Hp * Wp`` rows.
The result equals XLA's kernel gradient up to float summation order.

XLA's CPU backend computes kernel gradients at a fraction of the speed of its forward
convolutions; this formulation makes the whole train step faster there (measured in
docs/performance.md). GPUs keep XLA's own (cuDNN) kernel gradient.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import contextlib
import contextvars
import functools
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp

_NHWC = ('NHWC', 'HWIO', 'NHWC')
KERNEL_GRAD_CHOICES = ('auto', 'xla', 'gemm')
# The formulation the convolutions being built use; set by the model around its call.
_KERNEL_GRAD = contextvars.ContextVar('mh2f_kernel_grad', default='xla')


def _pads(x_shape, k_shape, padding) -> tuple[tuple[int, int], tuple[int, int]]:
  if isinstance(padding, str):
    return tuple(lax.padtype_to_pads(x_shape[1:3], k_shape[:2], (1, 1), padding))
  return tuple(tuple(p) for p in padding)


def _kernel_grad(x: jax.Array, dy: jax.Array, k_shape: Sequence[int],
                 pads: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """``dW`` of a stride-1 NHWC/HWIO convolution as one GEMM over flattened rows."""
  kh, kw, ci, co = k_shape
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  _, hp, wp, _ = xp.shape
  ho, wo = dy.shape[1:3]
  # dy on the padded grid: the extra rows/columns are zero, so they add nothing.
  dyp = jnp.pad(dy, ((0, 0), (0, hp - ho), (0, wp - wo), (0, 0)))
  xf, df = xp.reshape(-1, ci), dyp.reshape(-1, co)
  rows = xf.shape[0]
  offsets = [i * wp + j for i in range(kh) for j in range(kw)]
  contract = (((0,), (0,)), ((), ()))
  if kh * kw == 1:
    g = lax.dot_general(xf, df, contract, preferred_element_type=jnp.float32)
    return g.reshape(k_shape)
  if co <= ci:
    # Shift dy forward by each offset: column block t holds dy[r - offset_t].
    shifted = jnp.concatenate(
        [jnp.pad(df, ((o, 0), (0, 0)))[:rows] for o in offsets], axis=1)
    g = lax.dot_general(xf, shifted, contract, preferred_element_type=jnp.float32)
    return g.reshape(ci, kh, kw, co).transpose(1, 2, 0, 3)
  # Shift x backward by each offset: column block t holds x[r + offset_t].
  shifted = jnp.concatenate(
      [jnp.pad(xf, ((0, o), (0, 0)))[o:] for o in offsets], axis=1)
  g = lax.dot_general(shifted, df, contract, preferred_element_type=jnp.float32)
  return g.reshape(kh, kw, ci, co)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x: jax.Array, k: jax.Array, pads) -> jax.Array:
  return lax.conv_general_dilated(x, k, (1, 1), pads, dimension_numbers=_NHWC)


def _conv_fwd(x, k, pads):
  return _conv(x, k, pads), (x, k)


def _input_grad(dy: jax.Array, k: jax.Array, pads) -> jax.Array:
  """``dx`` of a stride-1 NHWC/HWIO convolution as a forward convolution of ``dy``."""
  kh, kw = k.shape[:2]
  # The flipped kernel with in/out channels swapped, materialised: left to XLA, the swap
  # becomes the convolution's dimension labels, which its CPU backend runs at a fraction
  # of the speed of HWIO when the kernel is computed inside a loop (scanned blocks).
  kt = lax.optimization_barrier(jnp.flip(k, (0, 1)).transpose(0, 1, 3, 2))
  back = ((kh - 1 - pads[0][0], kh - 1 - pads[0][1]), (kw - 1 - pads[1][0], kw - 1 - pads[1][1]))
  return lax.conv_general_dilated(dy, kt, (1, 1), back, dimension_numbers=_NHWC)


def _conv_bwd(pads, residuals, dy):
  x, k = residuals
  dk = _kernel_grad(x, dy, k.shape, pads).astype(k.dtype)
  return _input_grad(dy, k, pads).astype(x.dtype), dk


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: Any, lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None) -> jax.Array:
  """``lax.conv_general_dilated`` with the GEMM kernel gradient where it applies.

  Applies to plain stride-1 NHWC/HWIO convolutions (what ``flax.linen.Conv`` builds for
  this model); anything else goes to ``lax.conv_general_dilated`` unchanged. Usable as
  ``nn.Conv(..., conv_general_dilated=conv.conv_general_dilated)``.
  """
  nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  plain = (tuple(window_strides) == (1, 1)
           and all(d is None or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
           and feature_group_count == 1 and batch_group_count == 1
           and precision is None and preferred_element_type is None
           and lhs.ndim == 4 and dimension_numbers is not None
           and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == nhwc)
  if not plain:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, batch_group_count=batch_group_count,
        precision=precision, preferred_element_type=preferred_element_type)
  return _conv(lhs, rhs, _pads(lhs.shape, rhs.shape, padding))


def kernel_grad_mode(choice: str) -> str:
  """Returns 'xla' or 'gemm' for a ``KERNEL_GRAD_CHOICES`` entry.

  'auto' is 'gemm' on a CPU backend with one device, whose step spans every core (its one
  large matrix product spreads over them well), and 'xla' elsewhere: on accelerators, and
  on a CPU split into several devices (``config.cpu_devices``), where XLA's convolutions
  were faster and the step needed less memory (docs/performance.md).
  """
  if choice == 'auto':
    return 'gemm' if jax.default_backend() == 'cpu' and jax.device_count() == 1 else 'xla'
  return choice


@contextlib.contextmanager
def kernel_grad(choice: str) -> Iterator[None]:
  """Makes :func:`current` return the convolution of ``choice`` inside the block."""
  token = _KERNEL_GRAD.set(kernel_grad_mode(choice))
  try:
    yield
  finally:
    _KERNEL_GRAD.reset(token)


def current():
  """The ``conv_general_dilated`` function for convolutions built now."""
  return conv_general_dilated if _KERNEL_GRAD.get() == 'gemm' else lax.conv_general_dilated
