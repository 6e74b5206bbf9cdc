"""Tests for mh2f_jax.model.conv: the GEMM kernel gradient equals XLA's."""

import jax
from jax import lax
import numpy as np
import pytest

from mh2f_jax.model import conv

_DN = ('NHWC', 'HWIO', 'NHWC')


@pytest.mark.parametrize('x_shape,k_shape,padding', [
    ((2, 10, 12, 6), (3, 3, 6, 4), 'SAME'),     # fewer output channels: dy is shifted
    ((2, 10, 12, 3), (3, 3, 3, 8), 'SAME'),     # fewer input channels: x is shifted
    ((2, 9, 7, 5), (1, 1, 5, 4), 'SAME'),       # 1x1: a plain matrix product
    ((1, 12, 12, 2), (7, 7, 2, 1), ((3, 3), (3, 3))),  # the spatial attention's conv
    ((2, 8, 8, 4), (3, 3, 4, 4), 'VALID'),
    ((1, 9, 11, 3), (3, 5, 3, 5), ((0, 2), (3, 1))),  # uneven padding, a wide kernel
])
def test_gradients_equal_the_plain_convolution(x_shape, k_shape, padding):
  rng = np.random.default_rng(0)
  x = rng.standard_normal(x_shape, np.float32)
  k = rng.standard_normal(k_shape, np.float32)
  plain = lambda x, k: lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=_DN)
  dn = lax.conv_dimension_numbers(x.shape, k.shape, _DN)
  custom = lambda x, k: conv.conv_general_dilated(x, k, (1, 1), padding,
                                                  dimension_numbers=dn)
  np.testing.assert_array_equal(custom(x, k), plain(x, k))
  dy = rng.standard_normal(plain(x, k).shape, np.float32)
  want = jax.vjp(plain, x, k)[1](dy)
  got = jax.vjp(custom, x, k)[1](dy)
  for w, g in zip(want, got):
    np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 * np.abs(w).max())


def test_other_convolutions_go_to_lax_unchanged():
  x = np.ones((1, 8, 8, 2), np.float32)
  k = np.ones((3, 3, 2, 2), np.float32)
  dn = lax.conv_dimension_numbers(x.shape, k.shape, _DN)
  strided = conv.conv_general_dilated(x, k, (2, 2), 'SAME', dimension_numbers=dn)
  np.testing.assert_array_equal(
      strided, lax.conv_general_dilated(x, k, (2, 2), 'SAME', dimension_numbers=dn))


def test_model_gradients_equal_with_either_kernel_gradient():
  from mh2f_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  images = rng.random((2, 12, 12, 3), np.float32)
  target = rng.random((2, 12, 12, 3), np.float32)
  grads = {}
  for choice in ('xla', 'gemm'):
    net = model_lib.MH2FNet(features=8, num_blocks=2, conv_kernel_grad=choice)
    params = net.init(jax.random.key(0), images)['params']
    # The zero-initialised gammas would zero most gradients: move off them.
    params = jax.tree.map(lambda p: p + 0.05, params)
    loss = lambda p, net=net: jax.numpy.mean(jax.numpy.abs(net.apply({'params': p}, images)
                                                          - target))
    grads[choice] = jax.grad(loss)(params)
  flat_x, flat_g = jax.tree.leaves(grads['xla']), jax.tree.leaves(grads['gemm'])
  assert len(flat_x) == len(flat_g)
  for w, g in zip(flat_x, flat_g):
    np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 * np.abs(w).max())


def test_auto_uses_gemm_on_a_cpu_of_one_device_only():
  one_cpu = jax.default_backend() == 'cpu' and jax.device_count() == 1
  assert conv.kernel_grad_mode('auto') == ('gemm' if one_cpu else 'xla')
  with conv.kernel_grad('gemm'):
    assert conv.current() is conv.conv_general_dilated
  assert conv.current() is lax.conv_general_dilated
