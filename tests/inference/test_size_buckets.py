"""Tests for mh2f_jax.inference.size_buckets: exact outputs, one program per bucket."""

import jax
import numpy as np

from mh2f_jax import model as model_lib
from mh2f_jax.inference import size_buckets
from mh2f_jax.runtime import compile_count
from tests.model.test_network import random_params


def test_bucket_sides_are_bounded_and_cover_every_side():
  sides = [size_buckets.bucket_side(s) for s in range(4, 2049, 4)]
  assert all(b >= s for b, s in zip(sides, range(4, 2049, 4)))
  assert all(b <= max(32, 1.5 * s) for b, s in zip(sides, range(4, 2049, 4)))
  assert len(set(sides)) <= 13
  assert size_buckets.bucket_side(2052) % 512 == 0


def test_sides_over_the_ladder_round_up_to_a_multiple_of_512():
  top = max(size_buckets.SIDES)
  for side in range(top + 4, 3 * top, 4):
    bucket = size_buckets.bucket_side(side)
    assert side <= bucket < side + 512 and bucket % 512 == 0, (side, bucket)


def test_an_image_wider_than_the_ladder_runs_whole():
  # A thin strip: one bucket past the ladder's top without a large computation.
  model = model_lib.MH2FNet(features=4, num_blocks=2, dcr_layers=1)
  params = random_params(model)
  width = max(size_buckets.SIDES) + 5
  x = np.random.default_rng(1).uniform(0.0, 1.0, (1, 6, width, 3)).astype(np.float32)
  got = size_buckets.forward(model, params, x)
  want = np.asarray(jax.jit(lambda p, v: model.apply({'params': p}, v))(params, x))
  assert got.shape == want.shape == (1, 6, width, 3)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_outputs_equal_the_unpadded_network_with_one_program_per_bucket():
  # HADB with two later units (the scanned path) and odd sizes that edge-pad to 4.
  model = model_lib.MH2FNet(features=8, num_blocks=4, dcr_layers=1)
  params = random_params(model)
  whole = jax.jit(lambda p, x: model.apply({'params': p}, x))
  rng = np.random.default_rng(0)
  sizes = [(37, 45), (41, 38), (48, 48), (23, 70)]  # the first three share one bucket
  assert len({(size_buckets.bucket_side(-(-h // 4) * 4),
               size_buckets.bucket_side(-(-w // 4) * 4)) for h, w in sizes[:3]}) == 1
  with compile_count.counting() as seen:
    for h, w in sizes:
      x = rng.uniform(0.0, 1.0, (1, h, w, 3)).astype(np.float32)
      got = size_buckets.forward(model, params, x)
      want = np.asarray(whole(params, x))
      assert got.shape == want.shape == (1, h, w, 3)
      np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
  assert seen.names.count('jit(run)') == 2  # two buckets, four sizes
