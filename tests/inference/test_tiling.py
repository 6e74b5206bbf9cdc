"""Tests for mh2f_jax.inference.tiling: exact staged tiling, its margins, blended tiling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mh2f_jax.inference import backends
from mh2f_jax import inference
from mh2f_jax.inference import forward
from mh2f_jax import model as model_lib
from mh2f_jax.inference import blended_tiling
from mh2f_jax.inference import tiling
from mh2f_jax.model import receptive_field

from inference_helper import random_params  # pylint: disable=g-bad-import-order

TILE = 16  # Output tiles of 16 pixels: many tiles, windows of every kind, small compiles.
_CACHE = {}


def _setup(**kwargs):
  """A tiny model (features 8, 2 MHEBs, gamma 0.5), its parameters, a whole-image pass."""
  key = tuple(sorted(kwargs.items()))
  if key not in _CACHE:
    model = model_lib.MH2FNet(features=8, num_blocks=2, **kwargs)
    params = jax.device_put(random_params(model))
    _CACHE[key] = model, params, forward.forward_fn(model)
  return _CACHE[key]


def _image(height, width, seed=0):
  return np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)


def _max_error(model, params, forward, image, **kwargs):
  whole = np.asarray(forward(params, jnp.asarray(image[None])))[0]
  return np.abs(tiling.run_exact(model, params, image, TILE, **kwargs) - whole).max()


# ------------------------------------------------------------------------ exactness


@pytest.mark.parametrize('size', [(45, 58), (48, 60)])  # not / a multiple of 4
def test_exact_tiling_equals_the_whole_image_for_hadb(size):
  model, params, forward = _setup()
  assert float(np.min(np.abs(params['mheb_0']['gamma']))) > 0  # hourglasses take part
  assert _max_error(model, params, forward, _image(*size)) <= 1e-4


@pytest.mark.parametrize('variant', [{'fusion': 'add'}, {'fusion': 'concat'},
                                     {'distill': 'concat'}])
def test_exact_tiling_equals_the_whole_image_for_ablations(variant):
  model, params, forward = _setup(**variant)
  assert _max_error(model, params, forward, _image(37, 50, seed=1)) <= 1e-4


def test_derainer_tiles_exactly_by_default():
  model, params, _ = _setup()
  image = _image(45, 58, seed=2)
  whole = inference.Derainer(model, params, tile_size=0)
  tiled = inference.Derainer(model, params, tile_size=TILE, max_untiled_pixels=1000)
  assert tiled.tiling == 'exact' and tiled.will_tile(45, 58) and not whole.will_tile(45, 58)
  np.testing.assert_allclose(tiled.derain_raw(image[None]), whole.derain_raw(image[None]),
                             rtol=0, atol=1e-4)


needs_ort = pytest.mark.skipif(not backends.onnxruntime_available(),
                               reason='onnx and onnxruntime are not installed (the [export] extra)')


@needs_ort
@pytest.mark.parametrize('variant', [{}, {'fusion': 'concat', 'global_residual': True},
                                     {'distill': 'concat'}])
def test_exact_tiling_on_onnxruntime_equals_the_whole_image(variant):
  from mh2f_jax.inference import onnx_tiling
  model, params, forward = _setup(**variant)
  stages = onnx_tiling.stages(model, params)
  for size in ((45, 58), (48, 60)) if not variant else ((37, 50),):
    assert _max_error(model, params, forward, _image(*size, seed=5), stages=stages) <= 1e-4


@needs_ort
def test_derainer_on_onnxruntime_tiles_exactly_with_its_sessions():
  model, params, _ = _setup()
  image = _image(45, 58, seed=6)
  whole = inference.Derainer(model, params, tile_size=0)
  tiled = inference.Derainer(model, params, tile_size=TILE, max_untiled_pixels=1000,
                             backend='onnxruntime')
  np.testing.assert_allclose(tiled.derain_raw(image[None]), whole.derain_raw(image[None]),
                             rtol=0, atol=1e-4)
  assert tiled._onnx_stages is not None  # pylint: disable=protected-access


def test_onnx_windows_run_on_the_pixels_the_interceptor_keeps():
  from mh2f_jax.inference import onnx_tiling
  valid = np.array([8, 40, -4, 20], np.int32)
  rows, cols = onnx_tiling.image_part(valid, (36, 28))
  kept = np.asarray(tiling.zero_outside_image(
      jnp.ones((1, 36, 28, 1), jnp.float32), valid, (36, 28)))[0, ..., 0]
  expected = np.zeros((36, 28))
  expected[rows, cols] = 1
  np.testing.assert_array_equal(kept, expected)
  assert rows.start % 4 == 0 and cols.start % 4 == 0  # on the pooling grid


def test_one_compilation_per_stage_whatever_the_image_size():
  # Device memory is bounded by the tile: every stage sees one fixed window shape, so
  # two image sizes (and both MHEBs) reuse the same executables.
  model, params, _ = _setup()
  fns = tiling.stage_fns(model)
  sizes = []
  for size in ((45, 58), (60, 77)):
    tiling.run_exact(model, params, _image(*size), TILE)
    sizes.append({k: f._cache_size() for k, f in fns.items()})  # pylint: disable=protected-access
  assert sizes[0] == sizes[1]


# -------------------------------------------------------------------------- margins


def _support_reach(fn, x):
  """Farthest input row reached by 4 central output rows (the 4 pooling phases)."""
  out = jax.eval_shape(fn, x)
  grad = jax.jit(jax.grad(lambda x, mask: (fn(x) * mask).sum()))
  reach, first = 0, x.shape[1] // 2 // 4 * 4
  for row in range(first, first + 4):
    mask = np.zeros(out.shape, np.float32)
    mask[:, row] = 1.0
    rows = np.nonzero(np.abs(np.asarray(grad(x, mask))[0]).max(axis=(1, 2)))[0]
    reach = max(reach, row - rows.min(), rows.max() - row)
  return reach


def _radii(model):
  """:func:`receptive_field.stage_margins` before the rounding up to the pooling grid."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(receptive_field, 'align_up', lambda n, multiple=receptive_field.ALIGN: n)
    return receptive_field.stage_margins(model)


@pytest.mark.parametrize('layers', [3, 2])
def test_mheb_margin_covers_its_measured_receptive_field(layers):
  model = model_lib.MH2FNet(features=8, num_blocks=2, dcr_layers=layers)
  params = random_params(model)['mheb_0']
  mheb = model_lib.MHEB(8, 4, layers)
  x = jnp.asarray(np.random.default_rng(3).standard_normal((1, 68, 8, 8)), jnp.float32)
  measured = _support_reach(lambda x: mheb.apply({'params': params}, x), x)
  margin = tiling.stage_margins(model)['mheb']
  # The derived radius is the measured one (not just an upper bound), and the margin is
  # the smallest multiple of 4 covering it.
  assert measured == receptive_field._reach(  # pylint: disable=protected-access
      lambda lo, hi: receptive_field._mheb_interval(lo, hi, layers))  # pylint: disable=protected-access
  assert _radii(model)['mheb'] == measured
  assert margin % 4 == 0 and margin - 4 < measured <= margin


@pytest.mark.parametrize('variant', [{}, {'fusion': 'add', 'dcr_layers': 2}])
def test_whole_network_margin_covers_its_measured_receptive_field(variant):
  model, params, _ = _setup(distill='concat', **variant)
  x = jnp.asarray(_image(196, 8, seed=4)[None])
  measured = _support_reach(lambda x: model.apply({'params': params}, x), x)
  margin = tiling.stage_margins(model)['model']
  # As for an MHEB: the radius is the measured one; the margin rounds it up.
  assert _radii(model)['model'] == measured
  assert margin % 4 == 0 and margin - 4 < measured <= margin


@pytest.mark.parametrize('stage', ['head', 'mheb', 'unit', 'final'])
def test_too_small_a_margin_is_not_exact(stage):
  model, params, forward = _setup()
  margins = tiling.stage_margins(model)
  # One multiple of 4 less breaks head, unit and final. For an MHEB the pixels at the
  # edge of its receptive field weigh ~1e-11 (the test above shows they are reached),
  # so it is cut to 8 to show the margin is used at all.
  margins[stage] = 8 if stage == 'mheb' else margins[stage] - 4
  assert _max_error(model, params, forward, _image(45, 58), margins=margins) > 1e-4


# ---------------------------------------------------------------------- blended tiles


@pytest.mark.parametrize('length', [4, 8, 160, 164, 200, 320, 324, 1000])
def test_blended_tile_plan_covers_with_aligned_tiles(length):
  tile, overlap, margin = 160, 128, 40
  size = min(tile, length)
  starts = blended_tiling.tile_starts(length, tile, overlap)
  assert starts[0] == 0 and starts[-1] + size == length
  assert all(s % 4 == 0 for s in starts)
  assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
  total = np.zeros(length)
  for s in starts:
    w = blended_tiling.blend_profile(size, s, length, margin, overlap - 2 * margin)
    # Pixels within the margin of an edge shared with another tile get no weight.
    if s > 0:
      assert not w[:margin].any()
    if s + size < length:
      assert not w[-margin:].any()
    total[s:s + size] += w
  assert (total > 0).all()


def test_blended_tiling_is_approximate_for_hadb_and_exact_for_a_local_model():
  # Darker to the left: tiles have channel means unlike the whole image's.
  image = _image(150, 203, seed=5) * np.linspace(0.1, 1, 203, dtype=np.float32)[:, None]
  errors = {}
  # (tile, overlap, margin): 64 covers the local model's receptive field (measured above).
  for distill, plan in (('concat', (160, 144, 64)), ('hadb', (64, 32, 8))):
    model, params, forward = _setup(distill=distill)
    whole = np.asarray(forward(params, jnp.asarray(image[None])))[0]
    run = lambda x, params=params, forward=forward: np.asarray(forward(params, x))
    errors[distill] = np.abs(blended_tiling.run_blended(run, image, *plan) - whole).max()
  assert errors['concat'] <= 1e-4
  # Each tile sees only its own channel means (and a finite margin).
  assert errors['hadb'] > 1e-4, errors
