"""Evaluates a training workdir on its dataset's test split and writes a report.

Usage:
  python eval.py --workdir=runs/rain200h [--checkpoint=latest|best|STEP] [--split=test]
      [--protocol=B|A] [--save_images] [--self_ensemble] [--data_dir=DIR]

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
flags.DEFINE_bool('self_ensemble', False, 'x8 self-ensemble (flips and rotations).')
flags.DEFINE_string('data_dir', None,
                    "TFDS data dir; default: the one in the workdir's config.json.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from mh2f_jax import compile_cache, eval_lib  # After flag parsing: keeps --help fast.
  compile_cache.enable()
  try:
    result = eval_lib.evaluate(
        FLAGS.workdir, checkpoint=FLAGS.checkpoint, split=FLAGS.split,
        protocol=FLAGS.protocol, save_images=FLAGS.save_images,
        self_ensemble=FLAGS.self_ensemble, data_dir=FLAGS.data_dir)
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
