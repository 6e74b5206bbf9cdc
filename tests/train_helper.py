"""Runs a tiny training in its own process, for tests of the sharded and resumable paths.

A separate process is needed to choose the number of (fake CPU) devices, to join a
``jax.distributed`` group, or to be killed. The data is a small in-memory set of
rainy/clean pairs, so no dataset has to be built.

Usage:
  python tests/train_helper.py --workdir=DIR --devices=4 [--config_json='{"num_train_steps": 8}']
      [--kill_after_checkpoint=STEP] [--coordinator_address=127.0.0.1:PORT
      --num_processes=2 --process_id=0]

``--kill_after_checkpoint=N`` kills the process with SIGKILL once the checkpoint of step N
is complete on disk, as a crash would.

``--cli`` runs the ``train.py`` command itself (its error line, exit status and log
policy) on the same in-memory data, with the tiny config of ``--config_json``.

Prints one JSON line ``SUMMARY {...}`` at the end; a UserError prints ``error: ...`` on
stderr and exits with status 2.
"""

import argparse
import json
import os
import signal
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def fake_pairs(count: int, height: int, width: int, seed: int) -> list[dict]:
  """Smooth random 'clean' images and 'rainy' ones with bright diagonal streaks."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width]
  pairs = []
  for i in range(count):
    freq = rng.uniform(0.05, 0.3, size=(3, 2))
    phase = rng.uniform(0, 6.28, size=3)
    clean = np.stack([0.5 + 0.4 * np.sin(freq[c, 0] * yy + freq[c, 1] * xx + phase[c])
                      for c in range(3)], -1)
    streaks = ((xx + 2 * yy + rng.integers(0, 7)) % 7 == 0) * rng.uniform(0.3, 0.6)
    rainy = np.clip(clean + streaks[..., None], 0, 1)
    pairs.append({'rainy': np.round(rainy * 255).astype(np.uint8),
                  'clean': np.round(clean * 255).astype(np.uint8),
                  'name': f'fake_{i:03d}.png'})
  return pairs


def tiny_config(overrides: dict | None = None):
  """The default config shrunk to a model and data that train in milliseconds a step."""
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.data.dataset = 'fake'
  config.model.features = 8
  config.model.num_blocks = 2
  config.batch_size = 8
  # Images of exactly the patch size, unflipped, as many as the batch: every step sees
  # the same batch (in a new order), so a short run shows the model fitting it.
  config.data.patch_size = 16
  config.data.hflip = False
  config.num_train_steps = 8
  config.log_every_steps = 1
  config.checkpoint_every_steps = 4
  config.eval_every_steps = 0
  config.image_every_steps = 0
  config.num_eval_images = 0
  config.optim.learning_rate = 2e-3
  config.optim.schedule = 'constant'
  for key, value in (overrides or {}).items():
    target = config
    *parents, leaf = key.split('.')
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


def main() -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--devices', type=int, default=1)
  parser.add_argument('--config_json', default='{}')
  parser.add_argument('--kill_after_checkpoint', type=int, default=None)
  parser.add_argument('--coordinator_address', default=None)
  parser.add_argument('--num_processes', type=int, default=1)
  parser.add_argument('--process_id', type=int, default=0)
  parser.add_argument('--cli', action='store_true')
  args = parser.parse_args()
  if args.cli:
    return run_cli(args)

  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_platforms', 'cpu')
  jax.config.update('jax_num_cpu_devices', args.devices)
  if args.coordinator_address:
    jax.distributed.initialize(coordinator_address=args.coordinator_address,
                               num_processes=args.num_processes,
                               process_id=args.process_id)
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  flags.FLAGS.mark_as_parsed()
  logging.set_verbosity(logging.INFO)
  from mh2f_jax.workdir import checkpoints  # pylint: disable=g-import-not-at-top
  from mh2f_jax.training import trainer  # pylint: disable=g-import-not-at-top
  from mh2f_jax.errors import UserError  # pylint: disable=g-import-not-at-top

  config = tiny_config(json.loads(args.config_json))
  train = fake_pairs(config.batch_size, config.data.patch_size, config.data.patch_size,
                     seed=1)
  evaluation = fake_pairs(2, 20, 28, seed=2)
  sources = (train, evaluation if config.num_eval_images != 0 else None)

  callbacks = []
  if args.kill_after_checkpoint is not None:
    def kill_when_saved(step: int) -> None:
      # The checkpoint of step N is started after the callbacks of step N: wait for it
      # from step N + 1 on.
      if step <= args.kill_after_checkpoint:
        return
      # Wait until the asynchronous save of that step is complete, then die hard.
      deadline = time.time() + 60
      while args.kill_after_checkpoint not in checkpoints.checkpoint_steps(
          args.workdir) and time.time() < deadline:
        time.sleep(0.05)
      os.kill(os.getpid(), signal.SIGKILL)
    callbacks.append(kill_when_saved)

  try:
    summary = trainer.train_and_evaluate(config, args.workdir, sources=sources,
                                           step_callbacks=callbacks)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print('SUMMARY ' + json.dumps(summary, default=str), flush=True)
  return 0


def run_cli(args) -> int:
  """``train.py --config=<tiny config> --workdir=...`` with the sources in memory."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_platforms', 'cpu')
  from mh2f_jax import cli  # pylint: disable=g-import-not-at-top
  from mh2f_jax.datasets import input_pipeline  # pylint: disable=g-import-not-at-top
  from mh2f_jax import train  # pylint: disable=g-import-not-at-top

  def sources(config):
    train_pairs = fake_pairs(config.batch_size, config.data.patch_size,
                             config.data.patch_size, seed=1)
    return train_pairs, (fake_pairs(2, 20, 28, seed=2) if config.num_eval_images else None)

  input_pipeline.get_sources = sources
  import tempfile  # pylint: disable=g-import-not-at-top
  config_file = os.path.join(tempfile.mkdtemp(), 'tiny.py')
  with open(config_file, 'w') as f:
    f.write(f'import json, sys\nsys.path.insert(0, {os.path.dirname(__file__)!r})\n'
            'import train_helper\n\n\ndef get_config():\n'
            f'  return train_helper.tiny_config(json.loads({args.config_json!r}))\n')
  # Ends as the tool's entry point does (cli.exit_with).
  cli.exit_with(train.run([f'--config={config_file}', f'--workdir={args.workdir}']))


if __name__ == '__main__':
  sys.exit(main())
