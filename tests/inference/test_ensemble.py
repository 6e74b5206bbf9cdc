"""Tests for mh2f_jax.inference.ensemble: names, flags, and which transforms each ensemble averages."""

import numpy as np
import pytest

from mh2f_jax.inference import ensemble
from mh2f_jax import errors


def _directional(image):
  # Not equivariant to any flip or rotation: a running sum down the rows plus a ramp.
  return np.cumsum(image, axis=0) + np.arange(image.shape[1])[None, :, None]


@pytest.mark.parametrize('value, name', [
    (True, 'flips'), (False, 'none'), (None, 'none'), ('none', 'none'), ('flips', 'flips'),
    ('x8', 'x8')])
def test_resolve(value, name):
  assert ensemble.ensemble_name(value) == name


@pytest.mark.parametrize('bad', ['X8', 'rot', 1, 0, 'true'])
def test_resolve_rejects_other_values(bad):
  with pytest.raises(ValueError, match='self_ensemble must be'):
    ensemble.ensemble_name(bad)
  with pytest.raises(errors.UserError):
    ensemble.ensemble_name(bad)


def test_flags():
  assert ensemble.from_flags(False, None) == 'none'
  assert ensemble.from_flags(True, None) == 'flips'
  assert ensemble.from_flags(False, 'x8') == 'x8'
  assert ensemble.from_flags(True, 'x8') == 'x8'
  assert ensemble.from_flags(True, 'flips') == 'flips'
  assert ensemble.from_flags(False, 'none') == 'none'
  with pytest.raises(errors.UserError, match='contradicts'):
    ensemble.from_flags(True, 'none')


def test_flips_never_turn_the_image_sideways_and_x8_does():
  image = np.random.default_rng(0).uniform(size=(3, 5, 1)).astype(np.float32)
  for name, passes in (('none', 1), ('flips', 4), ('x8', 8)):
    shapes = []

    def record(x, shapes=shapes):
      shapes.append(x.shape)
      return x
    out = ensemble.average(record, image, name)
    # Every transform is undone, so the identity function comes back unchanged.
    np.testing.assert_allclose(out, image, atol=1e-7)
    assert len(shapes) == passes
    sideways = sum(s == (5, 3, 1) for s in shapes)
    assert sideways == (4 if name == 'x8' else 0), name


def test_flips_is_the_mean_of_the_four_flips():
  image = np.random.default_rng(1).uniform(size=(4, 6, 3)).astype(np.float32)
  want = np.mean([_directional(image),
                  _directional(image[:, ::-1])[:, ::-1],
                  _directional(image[::-1])[::-1],
                  _directional(image[::-1, ::-1])[::-1, ::-1]], axis=0)
  np.testing.assert_allclose(ensemble.average(_directional, image, 'flips'), want, rtol=1e-6)
  np.testing.assert_allclose(ensemble.average(_directional, image, 'none'),
                             _directional(image), rtol=1e-6)


def test_each_ensemble_is_equivariant_to_its_transforms():
  image = np.random.default_rng(2).uniform(size=(5, 5, 2)).astype(np.float32)
  flips = ensemble.average(_directional, image, 'flips')
  x8 = ensemble.average(_directional, image, 'x8')
  for transform in (lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a[::-1, ::-1]):
    t = np.ascontiguousarray(transform(image))
    np.testing.assert_allclose(ensemble.average(_directional, t, 'flips'), transform(flips),
                               rtol=1e-5)
  transpose = lambda a: np.swapaxes(a, 0, 1)  # pylint: disable=unnecessary-lambda-assignment
  t = np.ascontiguousarray(transpose(image))
  np.testing.assert_allclose(ensemble.average(_directional, t, 'x8'), transpose(x8), rtol=1e-5)
  # The flips are not equivariant to a transpose: they keep the rain's direction.
  assert not np.allclose(ensemble.average(_directional, t, 'flips'), transpose(flips))


def test_derain_cli_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from mh2f_jax import derain  # pylint: disable=g-import-not-at-top

  def parse(extra):
    argv = ['derain', '--workdir=w', '--input=i', '--output=o', *extra]
    values = flags.FlagValues()
    derain.define_flags(values, argv)
    values(argv)
    return values

  for extra, want in (([], 'none'), (['--self_ensemble'], 'flips'),
                      (['--ensemble=x8'], 'x8'), (['--self_ensemble', '--ensemble=flips'],
                                                  'flips')):
    values = parse(extra)
    assert ensemble.from_flags(values.self_ensemble, values.ensemble) == want
  with pytest.raises(flags.IllegalFlagValueError):
    parse(['--ensemble=x4'])
