"""Checks and measures the installation: ``mh2f-bench --output=DIR`` (or ``python -m mh2f_jax.bench``).

On whatever JAX sees (the CPU, one or several GPUs), one run prints a table as it goes
and writes ``bench.json`` and ``bench.md`` to ``--output``:

* versions (jax, jaxlib, flax, the CUDA plugin where present), the devices and their
  memory;
* the model's parameters and GFLOPs per 256x256 image (XLA's cost analysis);
* correctness: the model's output on the device against the same computation on the
  CPU, at the highest matmul precision (passes at a max abs error <= 1e-4) and at JAX's
  default precision (TF32 on recent GPUs: reported);
* the train step in float32 and bfloat16 at batch 16 of 64x64 and at the largest
  power-of-two batch up to 256 that fits: images/s, step ms, memory;
* the input pipeline's crops/s from memory, and a short training run through the
  training library on synthetic rain (300 steps on a GPU): steps/s and the share of wall
  time spent waiting for input;
* deraining: a 512x512 image and a 2000x1500 photo, whole and with the exact tiling,
  in seconds per megapixel;
* the PyTorch peer (``bench_torch.py``) on the same device when torch is importable by
  ``--peer_python``, with project/peer speed ratios.

About 8 minutes on one H100 with compilation; ``--quick`` shrinks every size (a few
minutes on a 2-core CPU). Existing results in ``--output`` are never replaced unless
``--overwrite`` is given, and a place that cannot be written is refused before anything
runs; Ctrl-C stops the whole benchmark and saves nothing. See docs/gpu.md.
"""

from collections.abc import Sequence

from absl import flags

from mh2f_jax import cli
from mh2f_jax.errors import UserError


def define_flags(values: flags.FlagValues, argv: Sequence[str]) -> None:
  """Defines the benchmark flags on ``values``."""
  del argv  # No config overrides.
  flags.DEFINE_string('output', None, 'Folder for bench.json and bench.md (created if '
                      'missing).', flag_values=values, required=True)
  flags.DEFINE_bool('overwrite', False, 'Replace bench.json and bench.md there.',
                    flag_values=values)
  flags.DEFINE_bool('quick', False, 'Small sizes everywhere and a small model (features 8, '
                    '2 blocks, unless --features/--blocks): a few minutes on a CPU.',
                    flag_values=values)
  flags.DEFINE_integer('features', None, "model.features (default: the default model's "
                       '32; 8 with --quick).', flag_values=values, lower_bound=1)
  flags.DEFINE_integer('blocks', None, "model.num_blocks (default: the default model's "
                       '8; 2 with --quick).', flag_values=values, lower_bound=1)
  flags.DEFINE_integer('max_batch', None, 'The first batch the largest-batch search tries, '
                       'a power of two (default 256; 32 with --quick).', flag_values=values,
                       lower_bound=32)
  flags.DEFINE_integer('run_steps', None, 'Steps of the training run (default 300 on an '
                       'accelerator, 20 on the CPU, 4 with --quick).', flag_values=values,
                       lower_bound=2)
  flags.DEFINE_string('peer', None, 'The PyTorch peer\'s bench_torch.py (default: '
                      'shared/peer/ in or beside the checkout; skipped when absent).',
                      flag_values=values)
  flags.DEFINE_string('peer_python', None, 'The Python that runs the peer, with torch '
                      'installed (default: this one).', flag_values=values)


def main(values: flags.FlagValues, positional: Sequence[str]) -> int:
  """Runs the benchmark the flags describe and prints where it wrote; returns 0."""
  if positional:
    raise UserError(f'unexpected arguments: {" ".join(positional)}')
  max_batch = values.max_batch
  if max_batch is not None and max_batch & (max_batch - 1):
    raise UserError(f'--max_batch must be a power of two, got {max_batch}')
  from mh2f_jax.benchmark import runner  # pylint: disable=g-import-not-at-top  (fast --help)
  result = runner.run(runner.Options(
      output=values.output, overwrite=values.overwrite, quick=values.quick,
      features=values.features, num_blocks=values.blocks, max_batch=max_batch,
      run_steps=values.run_steps, peer=values.peer, peer_python=values.peer_python))
  failed = [r for r in result['sections']['correctness']['rows'] if r['passed'] is False]
  print(f'\ncorrectness: {"FAILED" if failed else "passed"}; wall time '
        f'{result["wall_s"]:.0f} s')
  for path in result['outputs']:
    print(f'wrote {path}')
  return 1 if failed else 0


def run(argv: Sequence[str] | None = None) -> int:
  """The ``bench`` command; returns 0, 1 when the correctness check failed, 2 for a usage error."""
  return cli.run(main, define_flags, argv, prog='mh2f-bench', doc=__doc__)


if __name__ == '__main__':
  cli.exit_with(run())
