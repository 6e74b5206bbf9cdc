"""Tests for the dataset builders: layouts, pairing by rule, errors, CLI.

Every fake tree holds tiny images whose clean image is distinct per clean file and whose
rainy image is ``clean + k`` for a per-pair ``k``. After a build, each example read back
through ``tfds.data_source`` is compared with the files the test itself says belong
together, so a wrong pairing cannot pass.
"""

import io
import json
import os
import subprocess
import sys
import warnings

import numpy as np
from PIL import Image
import pytest

from mh2f_jax import datasets
from mh2f_jax.datasets import catalog
from mh2f_jax.datasets import images
from mh2f_jax.datasets import layouts
from mh2f_jax.datasets import pairing
from mh2f_jax.datasets.layouts import DatasetWarning
from mh2f_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Tiny trees never have the published counts: those warnings are tested on their own.
pytestmark = pytest.mark.filterwarnings('ignore::mh2f_jax.datasets.layouts.DatasetWarning')


def clean_image(c: int) -> np.ndarray:
  y, x, ch = np.meshgrid(np.arange(8), np.arange(10), np.arange(3), indexing='ij')
  return ((c * 23 + y * 3 + x * 2 + ch * 5) % 150).astype(np.uint8)


def flat_image(value: int) -> np.ndarray:
  # Constant images survive JPEG almost exactly.
  return np.full((8, 10, 3), value, np.uint8)


def write(path, array, fmt=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = Image.fromarray(array)
  if (fmt or '').upper() == 'JPEG' or path.lower().endswith('.jpg'):
    image.save(path, format='JPEG', quality=100, subsampling=0)
  else:
    image.save(path, format='PNG')


class Tree:
  """A fake download: writes pairs and remembers which files belong together."""

  def __init__(self, root, jpeg=False):
    self.root = str(root)
    self.jpeg = jpeg
    self.expected = {}   # split -> {rainy relpath: (clean relpath, k)}
    self._clean_ids = {}

  def pair(self, split, rainy, clean, k=None):
    c = self._clean_ids.setdefault(clean, len(self._clean_ids) + 1)
    k = len(self.expected.get(split, {})) + 1 if k is None else k
    if self.jpeg:
      base, rainy_img = flat_image(10 * c), flat_image(10 * c + 3 + k)
    else:
      base = clean_image(c)
      rainy_img = base + np.uint8(k)
    clean_path = os.path.join(self.root, clean)
    if not os.path.exists(clean_path):
      write(clean_path, base)
    write(os.path.join(self.root, rainy), rainy_img)
    self.expected.setdefault(split, {})[rainy] = (clean, k)
    return self

  def file(self, rel, array=None):
    write(os.path.join(self.root, rel), clean_image(99) if array is None else array)
    return self


def decode(path):
  with Image.open(path) as im:
    return np.asarray(im.convert('RGB'))


def check_split(tree, source, split):
  expected = tree.expected[split]
  assert len(source) == len(expected)
  seen = set()
  for i in range(len(source)):
    ex = source[i]
    name = ex['name'].decode() if isinstance(ex['name'], bytes) else ex['name']
    assert name in expected, name
    seen.add(name)
    clean_rel, k = expected[name]
    assert ex['rainy'].dtype == np.uint8 and ex['rainy'].shape == (8, 10, 3)
    assert ex['clean'].shape == (8, 10, 3)
    np.testing.assert_array_equal(ex['clean'], decode(os.path.join(tree.root, clean_rel)))
    np.testing.assert_array_equal(ex['rainy'], decode(os.path.join(tree.root, name)))
    diff = ex['rainy'].astype(int) - ex['clean'].astype(int)
    if tree.jpeg:
      assert abs(diff.mean() - (3 + k)) < 1.0
    else:
      assert (diff == k).all()
  assert seen == set(expected)


def build_and_check(name, tree, tmp_path, splits=None):
  counts = datasets.prepare(name, data_dir=str(tmp_path / 'tfds'), manual_dir=tree.root)
  assert counts == {s: len(v) for s, v in tree.expected.items()}
  for split in splits or tree.expected:
    check_split(tree, datasets.get_source(name, split, data_dir=str(tmp_path / 'tfds')), split)
  return counts


# ---------------------------------------------------------------------------------
# Fake trees, one per layout.


def rain200_a(root):
  t = Tree(root)
  for n in (1, 2, 10):
    t.pair('train', f'rain_data_train_Heavy/rain/norain-{n}x2.png',
           f'rain_data_train_Heavy/norain/norain-{n}.png')
  for n in (1, 2):  # the rain/X2 variant
    t.pair('test', f'rain_heavy_test/rain/X2/norain-{n}x2.png',
           f'rain_heavy_test/norain/norain-{n}.png')
  return t


def rain200_b(root):
  t = Tree(root)
  for n in (3, 1, 12):
    t.pair('train', f'rain200H/train/small/rain/norain-{n}.png',
           f'rain200H/train/small/norain/norain-{n}.png')
  for n in (1, 2):
    t.pair('test', f'rain200H/test/data/norain-{n}.png', f'rain200H/test/label/norain-{n}.png')
  return t


def rain200_c(root):
  t = Tree(root)
  for k in (1, 2, 11):
    t.pair('train', f'train/Rain200H/input/{k}.png', f'train/Rain200H/target/{k}.png')
    # The light set next to it must not be picked up.
    t.file(f'train/Rain200L/input/{k}.png').file(f'train/Rain200L/target/{k}.png')
  for k in (1, 2):
    t.pair('test', f'test/Rain200H/input/{k}.png', f'test/Rain200H/target/{k}.png')
  return t


def rain200_d(root):
  t = Tree(root)
  for n in (1, 2, 3):
    t.pair('train', f'Training/input/rain-{n}.png', f'Training/groundtruth/norain-{n}.png')
  for n in (7, 8):
    t.pair('test', f'Testing/input/rain-{n}.png', f'Testing/groundtruth/norain-{n}.png')
  return t


def rain100h_prenet(root):
  t = Tree(root)
  for n in (1, 2, 10):
    t.pair('train', f'RainTrainH/rain-{n}.png', f'RainTrainH/norain-{n}.png')
  # A background PReNet leaves out (allowed); it sorts between paired names, so pairing
  # by listing order would go wrong.
  t.file('RainTrainH/norain-15.png')
  for n in ('001', '002'):
    t.pair('test', f'Rain100H/rainy/rain-{n}.png', f'Rain100H/norain-{n}.png')
  return t


def rain100l_prenet_readme(root):
  t = Tree(root)  # as PReNet's datasets/readme.txt places the folders
  for n in (1, 2):
    t.pair('train', f'train/RainTrainL/rain-{n}.png', f'train/RainTrainL/norain-{n}.png')
  for n in ('001', '002', '010'):
    t.pair('test', f'test/Rain100L/rainy/rain-{n}.png', f'test/Rain100L/norain-{n}.png')
  return t


def rain100l_rcdnet(root):
  t = Tree(root)
  for n in (1, 2):
    t.pair('train', f'rain100L/train/small/rain/norain-{n}.png',
           f'rain100L/train/small/norain/norain-{n}.png')
  for n in (1, 2):
    t.pair('test', f'rain100L/test/small/rain/norain-{n}.png',
           f'rain100L/test/small/norain/norain-{n}.png')
  return t


def rain12_prenet(root):
  t = Tree(root)
  for n in (1, 2, 12):
    t.pair('test', f'test12/rainy/{n}.png', f'test12/groundtruth/{n}.png')
  return t


def rain12_li(root):
  t = Tree(root)
  for n in ('001', '002', '012'):
    t.pair('test', f'{n}_in.png', f'{n}_GT.png')
  return t


def rain1400_fu(root):
  t = Tree(root, jpeg=True)
  for i in (1, 2):
    for j in (1, 2, 14):
      t.pair('train', f'Rain12600/rainy_image/{i}_{j}.jpg', f'Rain12600/ground_truth/{i}.jpg')
  for j in (1, 2):
    t.pair('test', f'Rain1400/rainy_image/901_{j}.jpg', 'Rain1400/ground_truth/901.jpg')
  return t


def rain1400_other(root):
  t = Tree(root)
  for i, j in ((1, 1), (1, 2), (2, 1)):
    t.pair('train', f'training/input/{i}_{j}.png', f'training/gt/{i}.png')
  for i, j in ((901, 1), (901, 3)):
    t.pair('test', f'testing/rain/{i}_{j}.png', f'testing/norain/{i}.png')
  return t


def spa_list(root):
  t = Tree(root)
  lines = []
  for v, f, xy, prefix in (('001', 1, '1_1', ''), ('001', 2, '1_1', '/'), ('002', 1, '3_4', './')):
    rainy = f'real_world/{v}/{v}-{f}/{v}-{f}_{xy}.png'
    clean = f'real_world_gt/{v}/{v}_{xy}.png'
    t.pair('train', rainy, clean)
    lines.append(f'{prefix}{rainy} {prefix}{clean}\n')
  with open(os.path.join(t.root, 'real_world.txt'), 'w') as f:
    f.writelines(lines)
  for n in ('000', '001'):
    t.pair('test', f'real_test_1000/rain/{n}.png', f'real_test_1000/gt/{n}gt.png')
  return t


def spa_folders(root):
  t = Tree(root)
  for v, f, xy in (('001', 1, '1_1'), ('001', 2, '1_1'), ('003', 10, '2_5')):
    t.pair('train', f'SPA-Data/real_world/{v}/{v}-{f}/{v}-{f}_{xy}.png',
           f'SPA-Data/real_world_gt/{v}/{v}_{xy}.png')
  t.pair('test', 'SPA-Data/real_test_1000/rain/000.png', 'SPA-Data/real_test_1000/gt/000gt.png')
  return t


def spa_renamed(root):
  t = Tree(root)
  for k in (1, 2):
    t.pair('train', f'train/input/{k}.png', f'train/groundtruth/{k}.png')
  for k in (1, 2):
    t.pair('test', f'test/SPA/input/{k}.png', f'test/SPA/target/{k}.png')
  return t


def rain13k(root):
  t = Tree(root)
  for split, folder, ids in (('train', 'train/Rain13K', (1, 2)),
                             ('test100', 'test/Test100', (1, 2, 3)),
                             ('rain100h', 'test/Rain100H', (1, 2))):
    for k in ids:
      t.pair(split, f'Datasets/{folder}/input/{k}.png', f'Datasets/{folder}/target/{k}.png')
  return t


def paired_auto(root):
  t = Tree(root)
  for s in ('a', 'b', 'c10'):
    t.pair('train', f'train/rainy/{s}.png', f'train/clean/{s}.png')
  for s in ('x', 'y'):
    t.pair('test', f'val/input/{s}.png', f'val/target/{s}.png')
  return t


def paired_pattern(root):
  t = Tree(root)
  for s in ('a', 'b'):
    t.pair('train', f'shots/{s}/rain_{s}_1.png', f'shots/{s}/gt_{s}.png')
    t.pair('train', f'shots/{s}/rain_{s}_2.png', f'shots/{s}/gt_{s}.png')
  t.pair('holdout', 'eval/q_wet.png', 'eval/q.png')
  with open(os.path.join(t.root, 'paired_folder.json'), 'w') as f:
    json.dump({'train': {'rainy': 'shots/{id}/rain_{id}_*.png',
                         'clean': 'shots/{id}/gt_{id}.png'},
               'holdout': {'rainy': 'eval/{id}_wet.png', 'clean': 'eval/{id}.png'}}, f)
  return t


LAYOUT_CASES = [
    ('rain200h', rain200_a), ('rain200h', rain200_b), ('rain200h', rain200_c),
    ('rain200l', rain200_d), ('rain100h', rain100h_prenet), ('rain100l', rain100l_prenet_readme),
    ('rain100l', rain100l_rcdnet), ('rain12', rain12_prenet), ('rain12', rain12_li),
    ('rain1400', rain1400_fu), ('rain1400', rain1400_other), ('spa_data', spa_list),
    ('spa_data', spa_folders), ('spa_data', spa_renamed), ('rain13k', rain13k),
    ('paired_folder', paired_auto), ('paired_folder', paired_pattern),
]


@pytest.mark.parametrize('name,make', LAYOUT_CASES, ids=[m.__name__ for _, m in LAYOUT_CASES])
def test_layout_builds_and_pairs_by_content(name, make, tmp_path):
  tree = make(tmp_path / 'manual')
  build_and_check(name, tree, tmp_path)


def test_large_split_spills_to_disk_without_tensorflow(tmp_path, monkeypatch):
  # Real benchmarks pass TFDS's 1 GB in-memory limit; force the on-disk path here.
  from tensorflow_datasets.core import shuffle  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(shuffle, 'MAX_MEM_BUFFER_SIZE', 100)
  tree = rain1400_other(tmp_path / 'manual')
  build_and_check('rain1400', tree, tmp_path)


def test_rain200_official_and_drsformer_are_told_apart(tmp_path):
  # Same folder names (rain/, norain/) for layouts A and B: the rule decides.
  tree = rain200_a(tmp_path / 'm')
  plans = layouts.detect(tree.root, catalog.RAIN200H)
  assert plans['train'].layout.startswith('A') and plans['test'].layout.startswith('A')
  assert 'X2' in plans['test'].location
  plans = layouts.detect(rain200_b(tmp_path / 'b').root, catalog.RAIN200H)
  assert plans['train'].layout.startswith('B')


def test_rain13k_test_alias_reads_all_test_sets(tmp_path):
  tree = rain13k(tmp_path / 'manual')
  data_dir = str(tmp_path / 'tfds')
  with pytest.warns(DatasetWarning, match='no rain100l, test1200, test2800 data'):
    counts = datasets.prepare('rain13k', data_dir=data_dir, manual_dir=tree.root)
  assert set(counts) == {'train', 'test100', 'rain100h'}
  assert datasets.num_examples('rain13k', 'test', data_dir=data_dir) == 5
  names = {ex['name'] for ex in datasets.get_source('rain13k', 'test', data_dir=data_dir)}
  assert {n.decode() if isinstance(n, bytes) else n for n in names} == (
      set(tree.expected['test100']) | set(tree.expected['rain100h']))
  with pytest.raises(UserError, match="no split 'test1200'"):
    datasets.get_source('rain13k', 'test1200', data_dir=data_dir)


# ---------------------------------------------------------------------------------
# Rules, pairing errors and layout detection, without TFDS.


def test_rules():
  assert pairing.strip_x2('norain-12x2') == 'norain-12'
  assert pairing.strip_x2('norain-12') is None
  assert pairing.rain_to_norain('rain-007') == 'norain-007'
  assert pairing.rain_to_norain('norain-7') is None
  assert pairing.before_first_underscore('901_14') == '901'
  assert pairing.before_first_underscore('a_b_c') == 'a'
  assert pairing.before_first_underscore('901') is None
  assert pairing.append_gt('017') == '017gt'
  assert pairing.in_to_gt('003_in') == '003_GT'
  assert pairing.in_to_gt('003_GT') is None
  assert pairing.same_stem('x') == 'x'
  assert (pairing.spa_clean_path('real_world/012/012-33/012-33_4_5.png')
          == 'real_world_gt/012/012_4_5.png')
  assert pairing.spa_clean_path('real_world/012/013-33/013-33_4_5.png') is None
  rule = pairing.PatternRule('a/{v}/{v}-{f}_{xy}.png', 'b/{v}_{xy}.png')
  assert rule.clean_for('a/7/7-3_1_2.png') == 'b/7_1_2.png'
  assert rule.clean_for('a/7/8-3_1_2.png') is None
  assert sorted(['rain-10', 'rain-2', 'rain-1'], key=pairing.natural_key) == [
      'rain-1', 'rain-2', 'rain-10']


def test_pattern_rule_rejects_bad_patterns():
  with pytest.raises(UserError, match='does not define'):
    pairing.PatternRule('r/{id}.png', 'c/{other}.png')
  with pytest.raises(UserError, match='needs a placeholder'):
    pairing.PatternRule('r/{id}.png', 'c/fixed.png')


def test_missing_clean_partner_names_the_file(tmp_path):
  tree = rain200_d(tmp_path)
  os.remove(os.path.join(tree.root, 'Training/groundtruth/norain-2.png'))
  with pytest.raises(UserError, match=r'rain-2\.png has no clean partner.*norain-2'):
    layouts.detect(tree.root, catalog.RAIN200H)


def test_missing_rainy_partner_names_the_file(tmp_path):
  tree = rain1400_other(tmp_path)
  tree.file('training/gt/3.png')
  with pytest.raises(UserError, match=r'clean image .*gt.3\.png has no rainy partner'):
    layouts.detect(tree.root, catalog.RAIN1400)


def test_rainy_name_outside_rule_and_duplicate_stems(tmp_path):
  tree = rain200_a(tmp_path / 'a')
  tree.file('rain_data_train_Heavy/rain/extra.png')
  with pytest.raises(UserError, match=r'extra\.png does not follow the naming rule'):
    layouts.detect(tree.root, catalog.RAIN200H)
  tree = paired_auto(tmp_path / 'b')
  tree.file('train/clean/a.jpg')
  with pytest.raises(UserError, match="two images share the name 'a'"):
    layouts.detect(tree.root, catalog.PAIRED_FOLDER)


def test_no_layout_matched_lists_layouts_paths_and_contents(tmp_path):
  root = tmp_path / 'weird'
  Tree(root).pair('train', 'train/foggy/1.png', 'train/sharp/1.png')
  (root / 'notes.txt').write_text('x')
  with pytest.raises(UserError) as err:
    layouts.detect(str(root), catalog.RAIN200H)
  msg = str(err.value)
  assert f'no rain200h data found in {root}' in msg
  for key in ('A  official PKU archive', 'B  EDSR-style', 'C  DRSformer', 'D  IDT'):
    assert key in msg
  assert '<split>/norain/norain-{N}.png' in msg and 'rain_heavy_test' in msg
  assert f'Looked in: {root}' in msg
  assert 'Split folders found: train (train)' in msg
  assert 'foggy/' in msg and 'notes.txt' in msg


def test_count_warning_gives_both_numbers(tmp_path):
  tree = rain200_a(tmp_path)
  with pytest.warns(DatasetWarning) as record:
    layouts.detect(tree.root, catalog.RAIN200H)
  messages = [str(w.message) for w in record]
  assert any('train: found 3 pairs' in m and 'published count is 1800' in m for m in messages)
  assert any('test: found 2 pairs' in m and '200' in m for m in messages)
  # Both published Rain100H train sizes are accepted silently.
  with warnings.catch_warnings():
    warnings.simplefilter('error', DatasetWarning)
    layouts.check_count('rain100h', 'train', 1254, catalog.RAIN100H.published)
    layouts.check_count('rain100h', 'train', 1800, catalog.RAIN100H.published)


def test_rain13k_counts_users_download_are_accepted():
  # The download has 13,711 training pairs and a Test100 of 98 (MPRNet issues #74, #23);
  # the papers state 13,712 and 100. All four pass without a warning; others still warn.
  with warnings.catch_warnings():
    warnings.simplefilter('error', DatasetWarning)
    for split, count in (('train', 13711), ('train', 13712), ('test100', 98),
                         ('test100', 100)):
      layouts.check_count('rain13k', split, count, catalog.RAIN13K.published)
  with pytest.warns(DatasetWarning, match='13712 or 13711'):
    layouts.check_count('rain13k', 'train', 13710, catalog.RAIN13K.published)


def test_spa_list_missing_clean_is_reported_at_build(tmp_path):
  tree = spa_list(tmp_path / 'manual')
  os.remove(os.path.join(tree.root, 'real_world_gt/002/002_3_4.png'))
  with pytest.raises(UserError, match=r'has no clean partner: .*002_3_4\.png'):
    datasets.prepare('spa_data', data_dir=str(tmp_path / 'tfds'), manual_dir=tree.root)


def test_corrupt_image_fails_the_build_naming_it(tmp_path):
  tree = rain12_prenet(tmp_path / 'manual')
  path = os.path.join(tree.root, 'test12/rainy/2.png')
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
      buf, format='PNG')
  with open(path, 'wb') as f:
    f.write(buf.getvalue()[:len(buf.getvalue()) // 2])  # truncated PNG
  data_dir = str(tmp_path / 'tfds')
  with pytest.raises(UserError, match=r'test12/rainy/2\.png is corrupt'):
    datasets.prepare('rain12', data_dir=data_dir, manual_dir=tree.root)
  # Nothing half-built is left behind: fixing the file and preparing again works.
  write(path, clean_image(2) + np.uint8(2))
  assert datasets.prepare('rain12', data_dir=data_dir, manual_dir=tree.root) == {'test': 3}


def test_size_mismatch_is_an_error(tmp_path):
  tree = rain12_li(tmp_path / 'manual')
  write(os.path.join(tree.root, '002_GT.png'), np.zeros((9, 10, 3), np.uint8))
  with pytest.raises(UserError, match=r'002_in\.png is 10x8 but its clean partner .*10x9'):
    datasets.prepare('rain12', data_dir=str(tmp_path / 'tfds'), manual_dir=tree.root)


def test_load_checked_converts_other_modes_to_rgb(tmp_path):
  grey = tmp_path / 'g.png'
  Image.fromarray(np.arange(80, dtype=np.uint8).reshape(8, 10)).save(grey)
  rgba = tmp_path / 'a.png'
  Image.fromarray(np.full((8, 10, 4), 7, np.uint8)).save(rgba)
  rgb = tmp_path / 'c.png'
  write(str(rgb), clean_image(1))
  for path in (grey, rgba):
    data, size = images.load_checked(str(path))
    assert size == (10, 8)
    assert np.asarray(Image.open(io.BytesIO(data))).shape == (8, 10, 3)
  data, _ = images.load_checked(str(rgb))
  assert data == rgb.read_bytes()  # 8-bit RGB PNG passes through untouched
  with pytest.raises(UserError, match='does not exist'):
    images.load_checked(str(tmp_path / 'nope.png'))


# ---------------------------------------------------------------------------------
# prepare / get_source / num_examples and the command line.


def test_missing_manual_dir_says_where_to_put_data(tmp_path):
  data_dir = str(tmp_path / 'tfds')
  with pytest.raises(UserError) as err:
    datasets.get_source('rain200l', 'train', data_dir=data_dir)
  assert os.path.join(data_dir, 'downloads', 'manual', 'rain200l') in str(err.value)
  assert 'icst.pku.edu.cn' in str(err.value)
  with pytest.raises(UserError, match='does not exist'):
    datasets.prepare('rain12', data_dir=data_dir, manual_dir=str(tmp_path / 'nope'))
  with pytest.raises(UserError, match="unknown dataset 'rain300'"):
    datasets.prepare('rain300', data_dir=data_dir)


def test_get_source_prepares_on_first_use_and_default_manual_dir(tmp_path):
  data_dir = tmp_path / 'tfds'
  tree = rain12_li(data_dir / 'downloads' / 'manual' / 'rain12')
  assert datasets.num_examples('rain12', 'test', data_dir=str(data_dir)) == 3
  check_split(tree, datasets.get_source('rain12', 'test', data_dir=str(data_dir)), 'test')
  with pytest.raises(UserError, match="no split 'train'"):
    datasets.get_source('rain12', 'train', data_dir=str(data_dir))


def test_an_empty_or_unreadable_slice_is_one_error_line(tmp_path):
  data_dir = tmp_path / 'tfds'
  rain12_li(data_dir / 'downloads' / 'manual' / 'rain12')
  for split in ('test[:0]', 'test[1:1]', 'test[:-3]'):
    with pytest.raises(UserError, match=r"^rain12 split .* has no examples \(prepared: test 3\)$"):
      datasets.get_source('rain12', split, data_dir=str(data_dir))
    with pytest.raises(UserError, match='has no examples'):
      datasets.num_examples('rain12', split, data_dir=str(data_dir))
  for split, match in (('test[5:]', 'incompatible with 3 examples'),
                       ('test[abc]', 'Unrecognized split format')):
    with pytest.raises(UserError, match=match) as raised:
      datasets.get_source('rain12', split, data_dir=str(data_dir))
    assert '\n' not in str(raised.value)
  assert datasets.num_examples('rain12', 'test[:0]+test[-1:]', data_dir=str(data_dir)) == 1


def test_paired_folder_refuses_a_second_folder_in_one_data_dir(tmp_path):
  data_dir = str(tmp_path / 'tfds')
  first = paired_auto(tmp_path / 'one')
  datasets.prepare('paired_folder', data_dir=data_dir, manual_dir=first.root)
  second = paired_auto(tmp_path / 'two')
  with pytest.raises(UserError, match='was prepared from .*one'):
    datasets.get_source('paired_folder', 'train', data_dir=data_dir, manual_dir=second.root)
  # The same folder again is fine.
  assert datasets.prepare('paired_folder', data_dir=data_dir, manual_dir=first.root)['train'] == 3


def test_cli_prepare_and_list(tmp_path, capsys):
  from mh2f_jax.datasets import __main__ as cli  # pylint: disable=g-import-not-at-top
  tree = rain12_prenet(tmp_path / 'manual')
  assert cli.run(['prepare', 'rain12', '--manual_dir', tree.root,
                   '--data_dir', str(tmp_path / 'tfds')]) == 0
  assert 'test: 3' in capsys.readouterr().out.splitlines()
  assert cli.run(['list']) == 0
  out = capsys.readouterr().out
  for name in datasets.NAMES:
    assert f'\n{name}: ' in '\n' + out
  assert 'rain/X2' in out and 'real_world.txt' in out and 'paired_folder.json' in out


def test_cli_user_error_exits_2_without_traceback(tmp_path):
  empty = tmp_path / 'empty'
  (empty / 'stuff').mkdir(parents=True)
  proc = subprocess.run(
      [sys.executable, '-m', 'mh2f_jax.datasets', 'prepare', 'rain200h', '--manual_dir',
       str(empty), '--data_dir', str(tmp_path / 'tfds')],
      cwd=REPO, capture_output=True, text=True, timeout=120,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode == 2, proc.stderr
  assert 'error: no rain200h data found in' in proc.stderr
  assert 'Traceback' not in proc.stderr
