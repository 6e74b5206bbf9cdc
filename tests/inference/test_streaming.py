"""Tests for mh2f_jax.inference.streaming: a sequence of images, one ahead, in order."""

import numpy as np
import pytest

from mh2f_jax import inference

from inference_helper import rainy_photo  # pylint: disable=g-bad-import-order


def test_derain_stream_equals_derain_in_order(hadb_derainer):
  d = hadb_derainer
  d.set_tiling(tile_size=16, max_untiled_pixels=30 * 30)  # the 36x40 image is tiled
  try:
    images = [rainy_photo(20, 24, seed=4), rainy_photo(36, 40, seed=5),
              rainy_photo(21, 17, seed=6).astype(np.float32) / 255.0, rainy_photo(20, 24, seed=7)]
    items = [(f'img{i}', image) for i, image in enumerate(images)]
    got = list(inference.derain_stream(d, items, image_of=lambda item: item[1]))
    assert [item for item, _ in got] == items
    for (_, image), (_, out) in zip(items, got):
      assert out.dtype == image.dtype and out.shape == image.shape
      np.testing.assert_array_equal(out, d.derain(image))
    ensembled = [out for _, out in inference.derain_stream(d, images[:1], self_ensemble='flips')]
    np.testing.assert_array_equal(ensembled[0], d.derain(images[0], self_ensemble='flips'))
  finally:
    d.set_tiling()


class _Recorder(inference.DerainerBase):
  """Records when each image's forward pass starts and when its output is waited for."""

  def __init__(self):
    super().__init__(tiling='approx')
    self.backend, self.events = 'recorder', []
    self.forward = lambda batch: batch

  def dispatch(self, batch):  # pylint: disable=method-hidden
    n = int(batch[0, 0, 0, 0] * 255 + 0.5)
    self.events.append(f'start {n}')
    return lambda: (self.events.append(f'wait {n}'), batch)[1]


def test_derain_stream_starts_the_next_image_before_waiting_for_one():
  recorder = _Recorder()
  images = [np.full((4, 4, 3), n, np.uint8) for n in range(3)]
  outs = [out for _, out in inference.derain_stream(recorder, images)]
  assert recorder.events == ['start 0', 'start 1', 'wait 0', 'start 2', 'wait 1', 'wait 2']
  for image, out in zip(images, outs):
    np.testing.assert_array_equal(out, image)


def test_derain_stream_yields_what_came_before_a_bad_image():
  recorder = _Recorder()
  items = [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)]
  stream = inference.derain_stream(recorder, items)
  first, _ = next(stream)
  assert first is items[0]
  with pytest.raises(ValueError, match='shape'):
    next(stream)

  def broken_reader():
    yield np.zeros((4, 4, 3), np.uint8)
    raise OSError('disk gone')

  stream = inference.derain_stream(recorder, broken_reader())
  assert next(stream)[1].shape == (4, 4, 3)
  with pytest.raises(OSError, match='disk gone'):
    next(stream)


def test_an_item_without_an_image_passes_through_in_its_place():
  recorder = _Recorder()
  items = [np.full((4, 4, 3), 1, np.uint8), None, np.full((4, 4, 3), 2, np.uint8)]
  got = list(inference.derain_stream(recorder, items))
  assert [item is None for item, _ in got] == [False, True, False]
  assert got[1][1] is None
  np.testing.assert_array_equal(got[2][1], items[2])
  # The placeholder holds the one-ahead place: image 2 starts once image 1 is out.
  assert recorder.events == ['start 1', 'wait 1', 'start 2', 'wait 2']
