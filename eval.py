"""Evaluates a training workdir on its dataset's test split and writes a report.

Usage:
  python eval.py --workdir=runs/rain200h [--checkpoint=latest|best|STEP] [--split=test]
      [--protocol=B|A] [--save_images] [--self_ensemble | --ensemble=flips|x8]
      [--data_dir=DIR]

Writes WORKDIR/eval/<dataset>-<split>-step<STEP>/ (per_image.csv, summary.json,
results.md, figure.png, images/); see docs/evaluation.md. Runs in one process on one
device, whatever device count the checkpoint was trained with.
"""

import sys

from absl import app
from absl import flags

from mh2f_jax import errors

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Training workdir (config.json and checkpoints/).',
                    required=True)
flags.DEFINE_string('checkpoint', 'latest', "'latest', 'best' or a step number.")
flags.DEFINE_string('split', 'test', 'Dataset split to evaluate.')
flags.DEFINE_enum('protocol', 'B', ['B', 'A'],
                  'Metric protocol: B (Restormer/DRSformer) or A (PReNet/RCDNet).')
flags.DEFINE_bool('save_images', False, 'Also write the derained PNGs under images/.')
flags.DEFINE_bool('self_ensemble', False,
                  'Self-ensemble: average the flipped copies (--ensemble=flips).')
flags.DEFINE_enum('ensemble', None, ['none', 'flips', 'x8'],
                  'Self-ensemble by name: flips (4 passes: identity, left-right, up-down, '
                  'both flips) or x8 (8 passes, adds 90 degree rotations that turn rain '
                  'sideways; usually worse). Default: flips with --self_ensemble, else none.')
flags.DEFINE_string('data_dir', None,
                    "TFDS data dir; default: the one in the workdir's config.json.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from mh2f_jax import eval_lib  # After flag parsing: keeps --help fast.
  from mh2f_jax import ensemble as ensemble_lib
  try:
    ensemble = ensemble_lib.from_flags(FLAGS.self_ensemble, FLAGS.ensemble)
    result = eval_lib.evaluate(
        FLAGS.workdir, checkpoint=FLAGS.checkpoint, split=FLAGS.split,
        protocol=FLAGS.protocol, save_images=FLAGS.save_images,
        self_ensemble=ensemble, data_dir=FLAGS.data_dir)
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(eval_lib.format_summary(result))
  print(f'results: {result["results_md"]}')
  print(f'figure: {result["figure"]}')
  if result['images_dir']:
    print(f'derained images: {result["images_dir"]}')


if __name__ == '__main__':
  app.run(main)
