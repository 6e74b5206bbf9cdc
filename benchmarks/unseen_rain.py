"""How a trained model does on rain it never saw: three styles drawn by this script.

Usage:
  python benchmarks/unseen_rain.py --workdir=runs/demo [--checkpoint=latest] [--draws=3]
      [--photos=test|all] [--figure=docs/synthetic_rain_unseen.png] [--json=unseen.json]
      [--x8]

The rain here is drawn by this file alone, with ``skimage.draw.line`` segments and
``scipy.ndimage`` filters; it imports nothing of ``mh2f_jax.datasets.rain``, so a model trained on
that renderer meets a different one, as a user's own rain would be. Five styles:

* ``lines``: thin, straight, one-pixel bright lines (not anti-aliased), all at one
  angle 15 to 30 degrees off vertical;
* ``wide``: wide soft streaks, 4 to 6 pixels across and blurred, long and faint;
* ``drizzle``: dense, short (3 to 8 pixels), faint near-vertical dashes;
* ``steep``: unblurred one-pixel lines (not anti-aliased) 36 to 45 degrees off
  vertical, beyond the 35 degrees of ``synthetic_rain`` 2.0.0 (3.0.0 reaches 45);
* ``strong``: wide streaks as ``wide`` but blended with opacity 0.7 to 0.9, brighter
  than any wide streak of ``synthetic_rain`` 2.0.0.

They are drawn over the held-out test photos of ``synthetic_rain`` (photos the demo never
trains on), ``--draws`` renderings of each style per photo. ``--photos=all`` adds the
train photos, other photos bundled with scikit-image and matplotlib, and scenes drawn here
that look like streaks but are not rain (railings, stripes, striped fabric, a flag,
tree trunks), prints a table per group, and derains each clean photo too (a derainer
should leave it as it is). Every image is derained by the
single pass and by each self-ensemble, and scored with PSNR-Y (protocol B). The rows of
the demo's own test split (its dataset's ``test`` split) are added for comparison.

Prints a Markdown table per set (rainy input, single pass, flips ensemble, with ``--x8``
the x8 ensemble; mean gain and smallest gain on one image, of the flips ensemble) and
the checks of the demo's promise: each unseen style gains at least ``--min_gain`` dB on
average, no image gets worse, and the flips ensemble scores at least the single pass on
every set. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=wrong-import-position
from scipy import ndimage  # pylint: disable=wrong-import-position
from skimage import draw  # pylint: disable=wrong-import-position

STYLES = ('lines', 'wide', 'drizzle', 'steep', 'strong')
ENSEMBLES = ('none', 'flips')
OWN_SET = 'own test split'


def _segment_mask(shape: tuple[int, int], rng: np.random.Generator, count: int,
                  length: tuple[float, float], angle: float,
                  strength: tuple[float, float]) -> np.ndarray:
  """Float mask of ``count`` one-pixel segments; each pixel keeps its strongest segment."""
  height, width = shape
  mask = np.zeros(shape, np.float32)
  theta = math.radians(angle)
  for _ in range(count):
    half = rng.uniform(*length) / 2
    r, c = rng.uniform(-half, height + half), rng.uniform(-half, width + half)
    dr, dc = half * math.cos(theta), half * math.sin(theta)
    rr, cc = draw.line(int(r + dr), int(c - dc), int(r - dr), int(c + dc))
    keep = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
    rr, cc = rr[keep], cc[keep]
    mask[rr, cc] = np.maximum(mask[rr, cc], rng.uniform(*strength))
  return mask


def _tilt(rng: np.random.Generator, lo: float, hi: float) -> float:
  return float(rng.choice([-1.0, 1.0]) * rng.uniform(lo, hi))


def rain_mask(shape: tuple[int, int], style: str, rng: np.random.Generator) -> np.ndarray:
  """The (H, W) float32 rain opacity of one style, in [0, 1].

  Args:
    shape: (height, width).
    style: one of :data:`STYLES`.
    rng: random generator (consumed).

  Returns:
    The opacity with which white is blended over each pixel.
  """
  area = shape[0] * shape[1]
  if style == 'lines':
    return _segment_mask(shape, rng, area // 250, (20, 50), _tilt(rng, 15, 30), (0.5, 0.9))
  if style in ('wide', 'strong'):
    mask = _segment_mask(shape, rng, area // 2000, (40, 100), _tilt(rng, 0, 20), (1, 1))
    radius = int(rng.integers(2, 4))  # Disk of diameter 5 or 7: 4 to 6 px after blurring.
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    mask = ndimage.grey_dilation(mask, footprint=yy ** 2 + xx ** 2 <= radius ** 2)
    opacity = (0.3, 0.5) if style == 'wide' else (0.7, 0.9)
    return ndimage.gaussian_filter(mask, 1.5) * np.float32(rng.uniform(*opacity))
  if style == 'drizzle':
    mask = _segment_mask(shape, rng, area // 40, (3, 8), _tilt(rng, 0, 15), (0.3, 0.6))
    return ndimage.gaussian_filter(mask, 0.5)
  if style == 'steep':
    return _segment_mask(shape, rng, area // 250, (20, 50), _tilt(rng, 36, 45), (0.5, 0.9))
  raise ValueError(f'unknown style {style!r}; allowed: {", ".join(STYLES)}')


def render(clean: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray:
  """Draws one style of rain over a uint8 (H, W, 3) photo; returns uint8.

  Args:
    clean: the photo.
    style: one of :data:`STYLES`.
    rng: random generator (consumed).

  Returns:
    The rainy photo: white blended over it with the style's opacity.
  """
  alpha = np.clip(rain_mask(clean.shape[:2], style, rng), 0.0, 1.0)[..., None]
  rainy = clean.astype(np.float32) * (1 - alpha) + 255.0 * alpha
  return np.clip(np.rint(rainy), 0, 255).astype(np.uint8)


def unseen_sets(photos: dict[str, np.ndarray], draws: int,
                seed: int = 0) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
  """``{style: [(name, rainy, clean), ...]}`` over every photo, ``draws`` renderings each."""
  sets = {}
  for s, style in enumerate(STYLES):
    sets[style] = [(f'{name}_{style}{d}', render(clean, style,
                                                 np.random.default_rng([seed, s, p, d])),
                    clean)
                   for p, (name, clean) in enumerate(sorted(photos.items()))
                   for d in range(draws)]
  return sets


def score(derainer, sets: dict[str, list], ensembles=ENSEMBLES) -> list[dict]:
  """Derains every image of every set; one row per image with PSNR-Y of each output.

  Args:
    derainer: an ``inference.Derainer``.
    sets: ``{set name: [(name, rainy, clean), ...]}``.
    ensembles: self-ensemble modes to run.

  Returns:
    Rows ``{'set', 'name', 'input', <mode>: PSNR-Y, ...}``.
  """
  from mh2f_jax import metrics
  rows = []
  for set_name, pairs in sets.items():
    for name, rainy, clean in pairs:
      row = {'set': set_name, 'name': name,
             'input': metrics.evaluate_pair(rainy, clean)['psnr_y']}
      for mode in ensembles:
        derained = derainer.derain(rainy, self_ensemble=mode)
        row[mode] = metrics.evaluate_pair(derained, clean)['psnr_y']
      rows.append(row)
  return rows


def summarise(rows: list[dict], ensembles=ENSEMBLES) -> dict[str, dict]:
  """Per set: mean input and output PSNR-Y, mean gain and smallest per-image gain.

  Gains are those of the default ensemble ('flips') over the rainy input.
  """
  table = {}
  for set_name in dict.fromkeys(r['set'] for r in rows):
    part = [r for r in rows if r['set'] == set_name]
    gains = [r['flips'] - r['input'] for r in part]
    table[set_name] = {'images': len(part), 'input': float(np.mean([r['input'] for r in part])),
                       **{m: float(np.mean([r[m] for r in part])) for m in ensembles},
                       'gain': float(np.mean(gains)), 'min_gain': float(np.min(gains))}
  return table


def check(table: dict[str, dict], min_gain: float = 2.0) -> list[str]:
  """The failed promises of a :func:`summarise` table (empty when all hold).

  Every unseen style gains ``min_gain`` dB on average and no image loses; on every set
  (own split included) the flips ensemble scores at least the single pass.
  """
  failures = []
  for set_name, t in table.items():
    if set_name in STYLES and t['gain'] < min_gain:
      failures.append(f'{set_name}: mean gain {t["gain"]:.2f} dB < {min_gain} dB')
    if set_name in STYLES and t['min_gain'] <= 0:
      failures.append(f'{set_name}: an image got worse ({t["min_gain"]:+.2f} dB)')
    if t['flips'] < t['none']:
      failures.append(f'{set_name}: flips ensemble {t["flips"]:.2f} dB below the single '
                      f'pass {t["none"]:.2f} dB')
  return failures


def markdown(table: dict[str, dict]) -> str:
  """The table as Markdown (PSNR-Y in dB); an x8 column when the rows have one."""
  x8 = all('x8' in t for t in table.values())
  lines = ['| rain | images | rainy input | single pass | flips ensemble | '
           + ('x8 ensemble | ' if x8 else '') + 'gain (flips) | smallest gain on one image |',
           '|---|---|---|---|---|' + ('---|' if x8 else '') + '---|---|']
  for set_name, t in table.items():
    lines.append(f'| {set_name} | {t["images"]} | {t["input"]:.2f} | {t["none"]:.2f} | '
                 f'{t["flips"]:.2f} | ' + (f'{t["x8"]:.2f} | ' if x8 else '')
                 + f'{t["gain"]:+.2f} | {t["min_gain"]:+.2f} |')
  return '\n'.join(lines)


def figure_png(derainer, sets: dict[str, list], max_bytes: int = 300_000) -> bytes:
  """rainy | derained (flips ensemble) | clean for the first image of each set, as PNG.

  The figure is reduced to a 256-colour palette so it stays under ``max_bytes``.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  from PIL import Image
  from mh2f_jax import metrics
  # Five styles at the three-style resolution would pass max_bytes: fewer dots per row.
  fig = Figure(figsize=(9, 2.2 * len(sets)), dpi=80 if len(sets) <= 3 else 64)
  FigureCanvasAgg(fig)
  for i, (set_name, pairs) in enumerate(sets.items()):
    name, rainy, clean = pairs[0]
    derained = derainer.derain(rainy, self_ensemble='flips')
    for j, (label, image) in enumerate((('rainy', rainy), ('derained', derained),
                                        ('clean', clean))):
      ax = fig.add_subplot(len(sets), 3, 3 * i + j + 1)
      ax.imshow(image)
      ax.set_axis_off()
      text = f'{set_name}: {label}' if j == 0 else label
      if j < 2:
        text += f' ({metrics.evaluate_pair(image, clean)["psnr_y"]:.2f} dB)'
      ax.set_title(text, fontsize=9)
  fig.tight_layout()
  fig.canvas.draw()
  rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
  buffer = io.BytesIO()
  Image.fromarray(rgb).quantize(256).save(buffer, format='PNG', optimize=True)
  data = buffer.getvalue()
  if len(data) > max_bytes:
    raise ValueError(f'figure is {len(data)} bytes, over {max_bytes}')
  return data


def held_out_photos() -> dict[str, np.ndarray]:
  """The clean test photos of ``synthetic_rain`` (never in its train split)."""
  from mh2f_jax.datasets import synthetic
  return {name: synthetic.test_photo(name) for name in synthetic.TEST_PHOTOS}


# Bundled photos in neither split of synthetic_rain (motorcycle_right is the train
# split's scene, so it is left out).
OTHER_PHOTOS = ('text', 'coins', 'moon', 'cell', 'clock', 'present')
# Scenes drawn here that look like streaks and are not rain.
DRAWN_SCENES = ('railing', 'stripes', 'fabric', 'flag', 'trunks')


def _bundled(name: str) -> np.ndarray:
  from PIL import Image
  if name == 'present':
    from matplotlib import cbook
    path = cbook.get_sample_data('Minduka_Present_Blue_Pack.png', asfileobj=False)
    with Image.open(path) as img:
      return np.asarray(img.convert('RGB'))
  from skimage import data
  from mh2f_jax.datasets import synthetic
  return synthetic.rgb(getattr(data, name)())[..., :3]


def drawn_scene(name: str, shape: tuple[int, int] = (256, 384)) -> np.ndarray:
  """A clean uint8 scene with streak-like content, drawn by this file alone.

  ``railing``: dark vertical bars and a rail against a pale sky; ``stripes``: white and
  dark vertical stripes 5 px wide; ``fabric``: fine sine stripes in two colours, 7 px
  apart; ``flag``: wide vertical white and red bands; ``trunks``: dark trunks before a
  bright green ground.
  """
  h, w = shape
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  if name == 'railing':
    image = np.stack([200 - yy * 0.2, 215 - yy * 0.1, 240 + 0 * yy], -1)
    image[((xx % 24) < 3) & (yy > 60)] = (40, 40, 45)
    image[(yy > 60) & (yy < 66)] = (40, 40, 45)
  elif name == 'stripes':
    image = np.stack([np.where((xx // 5) % 2 == 0, 228, 28)] * 3, -1)
  elif name == 'fabric':
    wave = 2 * np.pi * xx / 7
    image = np.stack([180 + 60 * np.sin(wave), 160 + 40 * np.sin(wave + 1), 120 + 0 * xx], -1)
  elif name == 'flag':
    image = np.where(((xx // 32) % 2 == 0)[..., None], np.float32([230, 230, 230]),
                     np.float32([200, 30, 40]))
  elif name == 'trunks':
    image = np.stack([150 + 40 * (yy / h), 190 + 0 * yy, 120 + 0 * yy], -1)
    for left in (40, 110, 200, 300):
      image[:, left:left + 14] = (70, 50, 35)
  else:
    raise ValueError(f'unknown scene {name!r}; allowed: {", ".join(DRAWN_SCENES)}')
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def more_photos() -> dict[str, dict[str, np.ndarray]]:
  """``{group: {name: photo}}`` for ``--photos=all``: beyond the held-out test photos.

  Groups: ``train photos`` (synthetic_rain's train photos, not its drawn patterns, as
  the train split scales them), ``other photos`` (:data:`OTHER_PHOTOS`, scaled the same
  way), ``streak-like scenes`` (:data:`DRAWN_SCENES`).
  """
  from mh2f_jax.datasets import synthetic
  return {'train photos': {n: synthetic.load_photo(n) for n in synthetic.TRAIN_PHOTOS
                           if not n.startswith('pattern')},
          'other photos': {n: synthetic.scaled(_bundled(n)) for n in OTHER_PHOTOS},
          'streak-like scenes': {n: drawn_scene(n) for n in DRAWN_SCENES}}


def own_test_split(workdir: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
  """The (name, rainy, clean) pairs of the test split of the workdir's eval dataset.

  That is the dataset validation and ``eval.py`` use: ``data.eval_dataset``, else the
  first member of a mixture.
  """
  from mh2f_jax.workdir import checkpoints
  from mh2f_jax import datasets
  _, source = datasets.eval_source(checkpoints.load_config(workdir).data, 'test')
  pairs = []
  for i in range(len(source)):
    example = source[i]
    name = example['name']
    pairs.append((name.decode() if isinstance(name, bytes) else str(name),
                  np.asarray(example['rainy']), np.asarray(example['clean'])))
  return pairs


def group_table(rows: list[dict], groups: dict[str, list[str]],
                clean: dict[str, float]) -> str:
  """Markdown: per photo group, the clean photos kept and each style's gains.

  Args:
    rows: :func:`score` rows of the style sets.
    groups: ``{group: [photo name, ...]}``.
    clean: ``{photo name: PSNR-Y of the derained clean photo against itself}``.

  Returns:
    One row per group: images, the clean photos' mean and lowest PSNR-Y after deraining,
    and per style the mean and smallest gain (flips ensemble) over its images.
  """
  styles = [s for s in STYLES if any(r['set'] == s for r in rows)]
  lines = ['| photos | clean photo derained: mean, lowest (dB) | '
           + ' | '.join(f'{s}: mean, smallest gain' for s in styles) + ' |',
           '|---|---|' + '---|' * len(styles)]
  for group, names in groups.items():
    kept = [clean[n] for n in names]
    cells = []
    for style in styles:
      gains = [r['flips'] - r['input'] for r in rows if r['set'] == style
               and r['name'].rsplit('_', 1)[0] in names]
      cells.append(f'{np.mean(gains):+.2f}, {np.min(gains):+.2f}')
    lines.append(f'| {group} ({len(names)}) | {np.mean(kept):.2f}, {np.min(kept):.2f} | '
                 + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True, help='a trained workdir (runs/demo)')
  parser.add_argument('--checkpoint', default='latest')
  parser.add_argument('--draws', type=int, default=3, help='renderings per photo and style')
  parser.add_argument('--min_gain', type=float, default=2.0)
  parser.add_argument('--figure', help='write the figure PNG here')
  parser.add_argument('--json', help='write the per-image rows and the table here')
  parser.add_argument('--photos', default='test', choices=('test', 'all'),
                      help="'test': the held-out test photos; 'all': also the train photos, "
                      'other bundled photos and streak-like scenes drawn here, with a table '
                      'per group and the clean photos derained')
  parser.add_argument('--x8', action='store_true',
                      help='also score the x8 ensemble (8 more passes per image)')
  args = parser.parse_args(argv)

  from mh2f_jax import files
  from mh2f_jax import inference
  derainer = inference.Derainer.from_workdir(args.workdir, args.checkpoint)
  groups = {'test photos': held_out_photos()}
  if args.photos == 'all':
    groups.update(more_photos())
  photos = {name: photo for group in groups.values() for name, photo in group.items()}
  sets = {OWN_SET: own_test_split(args.workdir), **unseen_sets(photos, args.draws)}
  ensembles = ENSEMBLES + ('x8',) if args.x8 else ENSEMBLES
  rows = score(derainer, sets, ensembles)
  table = summarise(rows, ensembles)
  print(f'{args.workdir}, step {derainer.step}; PSNR-Y (dB, protocol B)')
  print(markdown(table))
  if args.photos == 'all':
    from mh2f_jax import metrics
    clean = {name: metrics.evaluate_pair(derainer.derain(photo, self_ensemble='flips'),
                                         photo)['psnr_y'] for name, photo in photos.items()}
    print(group_table([r for r in rows if r['set'] != OWN_SET],
                      {g: list(p) for g, p in groups.items()}, clean))
    rows.append({'set': 'clean', **clean})
  if args.figure:
    files.write_atomic(args.figure, figure_png(
        derainer, {k: v for k, v in sets.items() if k in STYLES}))
  if args.json:
    files.write_atomic(args.json, json.dumps(
        {'step': derainer.step, 'rows': rows, 'table': table}, indent=1).encode())
  failures = check(table, args.min_gain)
  for failure in failures:
    print(f'FAILED: {failure}')
  if not failures:
    print('all checks hold')
  return 1 if failures else 0


if __name__ == '__main__':
  sys.exit(main())
