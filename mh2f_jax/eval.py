"""Evaluates a training workdir on its dataset's test split and writes a report.

Usage:
  python eval.py --workdir=runs/rain200h [--checkpoint=latest|best|STEP] [--split=test]
      [--protocol=B|A] [--save_images] [--self_ensemble | --ensemble=flips|x8]
      [--data_dir=DIR] [--params=ema|raw] [--backend=jax|onnxruntime|auto]
  python eval.py --workdir=runs/demo --photos=DIR [--checkpoint=...] [--save_images]
      [--self_ensemble | --ensemble=flips|x8] [--params=ema|raw] [--backend=...]

Writes WORKDIR/eval/<dataset>-<split>-step<STEP>/ (per_image.csv, summary.json,
results.md, figure.png, images/); see docs/evaluation.md. With --photos, derains the
photos of DIR instead, which need no clean twin, scores rainy and derained with NIQE and
BRISQUE (no-reference measures) and writes WORKDIR/eval/photos-<DIR name>-<hash>-step<STEP>/.
Runs in one process on one device, whatever device count the checkpoint was trained with.
"""

from collections.abc import Sequence

from absl import flags

from mh2f_jax import cli
from mh2f_jax import files
from mh2f_jax import metrics
from mh2f_jax.errors import UserError


def define_flags(values: flags.FlagValues, argv: Sequence[str]) -> None:
  """Defines the evaluation flags on ``values``."""
  del argv  # No config overrides.
  flags.DEFINE_string('workdir', None, 'Training workdir (config.json and checkpoints/).',
                      flag_values=values, required=True)
  flags.DEFINE_string('checkpoint', 'latest', "'latest', 'best' or a step number.",
                      flag_values=values)
  flags.DEFINE_string('split', 'test', 'Dataset split to evaluate.', flag_values=values)
  flags.DEFINE_enum('protocol', 'B', list(metrics.PROTOCOLS),
                    'Metric protocol: B (Restormer/DRSformer) or A (PReNet/RCDNet).',
                    flag_values=values)
  flags.DEFINE_bool('save_images', False, 'Also write the derained PNGs under images/.',
                    flag_values=values)
  flags.DEFINE_bool('self_ensemble', False,
                    'Self-ensemble: average the flipped copies (--ensemble=flips).',
                    flag_values=values)
  flags.DEFINE_enum('ensemble', None, ['none', 'flips', 'x8'],
                    'Self-ensemble by name: flips (4 passes: identity, left-right, up-down, '
                    'both flips) or x8 (8 passes, adds 90 degree rotations that turn rain '
                    'sideways; usually worse). Default: flips with --self_ensemble, else none.',
                    flag_values=values)
  flags.DEFINE_enum('params', 'ema', ['ema', 'raw'],
                    "'ema': the EMA parameters of a run that kept them (ema_decay), else "
                    "the raw ones; 'raw': the raw parameters.", flag_values=values)
  flags.DEFINE_string('data_dir', None,
                      "TFDS data dir; default: the one in the workdir's config.json.",
                      flag_values=values)
  flags.DEFINE_string('photos', None,
                      'A folder of photos without ground truth (real rain): derain and '
                      'score them with NIQE and BRISQUE instead of the test split.',
                      flag_values=values)
  flags.DEFINE_enum('backend', 'jax', ['auto', 'jax', 'onnxruntime'],
                    "'jax' (the reference); 'onnxruntime' (faster on CPU, needs the "
                    "[export] extra); 'auto': ONNX Runtime on CPU when installed, else JAX "
                    '(see docs/export.md).', flag_values=values)
  cli.define_max_pixels_flag(values, 'Refuse test images (with --photos: skip photos, with '
                             'a note)')


def _evaluate_photos(values: flags.FlagValues, ensemble: str) -> int:
  """The --photos report: no-reference scores of a folder of photos; returns 0."""
  for name in ('split', 'protocol', 'data_dir'):
    if values[name].present:
      raise UserError(f'--{name} applies to the test split, not to --photos')
  from mh2f_jax.evaluation import photos_report  # pylint: disable=g-import-not-at-top
  # Each photo is read under --max_pixels; one above it gets a note, the others go on.
  result = photos_report.evaluate_photos(
      values.workdir, values.photos, checkpoint=values.checkpoint,
      self_ensemble=ensemble, params=values.params, save_images=values.save_images,
      backend=values.backend, max_pixels=values.max_pixels)
  print(photos_report.format_summary(result))
  print(f'results: {result["results_md"]}')
  if result['figure']:
    print(f'figure: {result["figure"]}')
  if result['images_dir']:
    print(f'derained images: {result["images_dir"]}')
  return 0


def main(values: flags.FlagValues, positional: Sequence[str]) -> int:
  """Evaluates the workdir the flags name and prints the summary; returns 0."""
  if positional:
    raise UserError(f'unexpected arguments: {" ".join(positional)}')
  from mh2f_jax.inference import ensemble as ensemble_lib  # pylint: disable=g-import-not-at-top
  from mh2f_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top  (keeps --help fast)
  from mh2f_jax.runtime import compile_count  # pylint: disable=g-import-not-at-top
  ensemble = ensemble_lib.from_flags(values.self_ensemble, values.ensemble)
  if values.photos is not None:
    with compile_count.counting() as compiled:
      status = _evaluate_photos(values, ensemble)
    print(compiled.summary())
    return status
  with files.pixel_limit(values.max_pixels), compile_count.counting() as compiled:
    result = evaluator.evaluate(
        values.workdir, checkpoint=values.checkpoint, split=values.split,
        protocol=values.protocol, save_images=values.save_images,
        self_ensemble=ensemble, data_dir=values.data_dir, params=values.params,
        backend=values.backend)
  print(evaluator.format_summary(result))
  print(f'results: {result["results_md"]}')
  print(f'figure: {result["figure"]}')
  if result['images_dir']:
    print(f'derained images: {result["images_dir"]}')
  print(compiled.summary())
  return 0


def run(argv: Sequence[str] | None = None) -> int:
  """The ``eval`` command; ``argv`` without the program name (None: ``sys.argv``)."""
  return cli.run(main, define_flags, argv, prog='eval.py', doc=__doc__)


if __name__ == '__main__':
  cli.exit_with(run())
