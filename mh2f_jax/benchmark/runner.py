"""The benchmark run: every section in order, printed as it goes, then saved.

Sizes are those of a GPU run (about 8 minutes on one H100 with compilation); ``quick``
shrinks each one so that the whole run takes a few minutes on a 2-core CPU. See
docs/gpu.md for what each section measures and how to read it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import ml_collections

from mh2f_jax import model as model_lib
from mh2f_jax.benchmark import correctness
from mh2f_jax.benchmark import inference_speed
from mh2f_jax.benchmark import input_speed
from mh2f_jax.benchmark import model_cost
from mh2f_jax.benchmark import peer as peer_lib
from mh2f_jax.benchmark import system
from mh2f_jax.benchmark import table as table_lib
from mh2f_jax.benchmark import train_speed
from mh2f_jax.configs import default as default_config


@dataclasses.dataclass(frozen=True)
class Options:
  """What to run; the defaults are the full run."""
  output: str
  overwrite: bool = False
  quick: bool = False
  features: int | None = None  # None: the default model's.
  num_blocks: int | None = None
  max_batch: int | None = None  # None: 256, or 32 with quick.
  run_steps: int | None = None  # None: 300 on an accelerator, 20 on the CPU, 4 quick.
  peer: str | None = None  # bench_torch.py; None: look beside the checkout.
  peer_python: str | None = None


@dataclasses.dataclass(frozen=True)
class Sizes:
  """The sizes of every section."""
  correctness_image: int
  max_batch: int
  step_seconds: float
  pipeline_pairs: int
  pipeline_batches: int
  run_steps: int
  run_pairs: int
  infer_square: int
  photo: tuple[int, int]  # height, width
  tile: int
  repeats: int
  peer_steps: int
  peer_timeout_s: float


# (features, num_blocks) of --quick unless --features / --blocks say otherwise.
QUICK_MODEL = (8, 2)


def sizes(options: Options, platform: str) -> Sizes:
  """The full sizes, or the ``quick`` ones."""
  if options.quick:
    return Sizes(32, options.max_batch or 32, 0.3, 8, 20, options.run_steps or 4, 16,
                 128, (152, 200), 64, 1, 2, 300)
  run_steps = options.run_steps or (20 if platform == 'cpu' else 300)
  return Sizes(128, options.max_batch or 256, 2.0, 50, 200, run_steps, 512,
               512, (1500, 2000), 512, 2, 10, 600)


def base_config(options: Options) -> ml_collections.ConfigDict:
  """The default config with the model the options name and the paper's batch."""
  config = default_config.get_config()
  if options.quick:
    # The quick run checks an installation in minutes on a CPU: a small model unless
    # one is named (the default model's quick run took far longer than that).
    config.model.features, config.model.num_blocks = QUICK_MODEL
  if options.features:
    config.model.features = options.features
  if options.num_blocks:
    config.model.num_blocks = options.num_blocks
  config.batch_size, config.data.patch_size = 16, 64
  config.optim.schedule = 'constant'  # Plain Adam, as the peer's.
  if options.quick:
    # XLA's own kernel gradient compiles faster on the CPU than the 'gemm' one 'auto'
    # picks there (docs/performance.md); quick runs are mostly compilation.
    config.model.conv_kernel_grad = 'xla'
  return config


def _system(table: table_lib.Table) -> None:
  table.section('versions', ['package', 'version'])
  for name, version in system.versions().items():
    table.row('versions', package=name, version=version or 'not installed')
  table.section('devices', ['device', 'platform', 'kind', 'memory_gib'])
  for row in system.describe_devices():
    table.row('devices', **row)


def _model(table: table_lib.Table, config: ml_collections.ConfigDict, size: int) -> None:
  model = model_lib.from_config(config.model)
  params, _ = correctness.fixed_inputs(model, config.seed, 16)
  table.section('model', ['features', 'blocks', 'parameters', 'image', 'gflops'])
  table.row('model', features=config.model.features, blocks=config.model.num_blocks,
            **model_cost.model_cost(model, params))
  table.section('correctness', ['precision', 'device', 'image', 'max_abs_error',
                                'mean_abs_error', 'output_range', 'passed'],
                note=f'device against CPU, same weights and input; pass at max abs error '
                     f'<= {correctness.TOLERANCE:g} at highest precision')
  for row in correctness.check(model, config.seed, size):
    table.row('correctness', **row)


def _train(table: table_lib.Table, config: ml_collections.ConfigDict, s: Sizes) -> None:
  # Rows in the order of growing memory, so that the first device's peak since the run
  # started (JAX cannot reset it) is each row's own.
  table.section('train step', ['dtype', 'batch', 'patch', 'images_per_s', 'step_ms',
                               'compile_s', 'steps', 'xla_memory_gib', 'peak_memory_gib',
                               'faults_per_step', 'system_share', 'loss_finite'],
                note='peak_memory_gib: the first device, since the run started; '
                     'faults_per_step, system_share: the host process (page faults, and '
                     'the kernel\'s share of its CPU time)')
  dtypes = ('bfloat16', 'float32')
  for dtype in dtypes:
    config.model.dtype = dtype
    table.row('train step', **train_speed.measure(config, 16, seconds=s.step_seconds))
  for dtype in dtypes if s.max_batch > 16 else ():
    config.model.dtype = dtype
    row, refused = train_speed.largest_batch(config, max_batch=s.max_batch, min_batch=32,
                                             seconds=s.step_seconds)
    if refused:
      table.note('train step', f'{dtype}: out of memory at batch '
                 f'{", ".join(map(str, refused))}')
    if row:
      table.row('train step', **row)
  config.model.dtype = 'float32'


def _input(table: table_lib.Table, config: ml_collections.ConfigDict, s: Sizes) -> None:
  table.section('input pipeline', ['source', 'batch', 'patch', 'crops_per_s',
                                   'batches_per_s', 'crops_per_cpu_s'])
  source = input_speed.random_pairs(s.pipeline_pairs, 321, 481, config.seed)
  table.row('input pipeline', **input_speed.pipeline_rate(
      source, batch=16, patch=64, batches=s.pipeline_batches, seed=config.seed))
  table.section('training run', ['steps', 'batch', 'steps_per_s', 'images_per_s',
                                 'input_wait_share', 'wall_s', 'loss'],
                note='train_and_evaluate on synthetic_rain/heavy tiles held in memory')
  run = ml_collections.ConfigDict(config.to_dict())
  run.num_train_steps = s.run_steps
  run.log_every_steps = max(1, min(50, s.run_steps // 2))
  run.checkpoint_every_steps = s.run_steps
  table.row('training run', **input_speed.training_run(
      run, input_speed.synthetic_source(s.run_pairs)))


def _inference(table: table_lib.Table, config: ml_collections.ConfigDict,
               s: Sizes) -> list[dict[str, Any]]:
  model = model_lib.from_config(config.model)
  params, _ = correctness.fixed_inputs(model, config.seed, 16)
  table.section('inference', ['case', 'image', 'tiling', 's_per_mp', 'seconds', 'first_s'],
                note='inference.Derainer, JAX backend, float32; first_s includes compiling')
  (h, w), square = s.photo, s.infer_square
  cases = [('square', square, square, 0), ('photo', h, w, 0), ('photo', h, w, s.tile)]
  rows = inference_speed.measure(model, params, cases, s.repeats, config.seed)
  for row in rows:
    table.row('inference', **row)
  return rows


def _peer(table: table_lib.Table, options: Options, config: ml_collections.ConfigDict,
          s: Sizes, project: dict[str, float]) -> dict[str, Any]:
  """Runs the peer's variants and adds the project/peer ratios (speed over speed)."""
  table.section('peer', ['variant', 'peer_images_per_s', 'project_images_per_s',
                         'ratio_train', 'peer_s_per_mp', 'project_s_per_mp', 'ratio_infer'],
                note='ratio: project speed / peer speed (above 1: the project is faster)')
  script = peer_lib.find_script(options.peer)
  python = options.peer_python or peer_lib.default_python()
  if script is None:
    table.note('peer', 'skipped: no bench_torch.py (give --peer)')
    return {'skipped': 'no bench_torch.py'}
  platform = jax.devices()[0].platform
  args = peer_lib.peer_args(platform, 16, 64, s.infer_square, s.peer_steps, config.model)
  results = {}
  for variant, extra, env in peer_lib.VARIANTS:
    if variant == peer_lib.SAME_ALLOCATOR and platform != 'cpu':
      continue  # The host allocator is the CPU step's concern.
    got = results[variant] = peer_lib.run_peer(python, script, [*args, *extra],
                                               s.peer_timeout_s, env)
    if got.get('no_torch'):  # The other variants would fail the same way.
      table.note('peer', f'skipped: {python} cannot run the peer ({got["error"]}); give '
                 '--peer_python, a Python with torch')
      return {'skipped': got['error']}
    if 'error' in got:
      table.note('peer', f'{variant}: {got["error"]}')
      continue
    mine = project['bfloat16' if '--bf16' in extra else 'float32']
    table.row('peer', variant=variant, peer_images_per_s=got['train_img_per_s'],
              project_images_per_s=mine, ratio_train=mine / got['train_img_per_s'],
              peer_s_per_mp=got['infer_s_per_mp'], project_s_per_mp=project['s_per_mp'],
              ratio_infer=got['infer_s_per_mp'] / project['s_per_mp'])
  return results


def run(options: Options) -> dict[str, Any]:
  """Runs every section, prints the table as it goes and writes bench.json and bench.md.

  Returns:
    What ``bench.json`` holds: ``sections`` (the table), ``host``, ``quick``,
    ``settings``, ``peer`` (its raw results), ``wall_s`` and ``outputs`` (the paths).

  Raises:
    errors.UserError: the output folder holds results and ``overwrite`` is False.
  """
  table_lib.check_output(options.output, options.overwrite)
  start = time.perf_counter()
  platform = jax.devices()[0].platform
  s = sizes(options, platform)
  config = base_config(options)
  table = table_lib.Table()
  _system(table)
  _model(table, config, s.correctness_image)
  _train(table, config, s)
  _input(table, config, s)
  inference_rows = _inference(table, config, s)
  train_rows = table.sections['train step']['rows']
  project = {r['dtype']: r['images_per_s'] for r in train_rows[::-1] if r['batch'] == 16}
  project['s_per_mp'] = inference_rows[0]['s_per_mp']
  peer_results = _peer(table, options, config, s, project)
  result = {'sections': table.to_json(), 'host': system.host(), 'quick': options.quick,
            'settings': dataclasses.asdict(s), 'peer': peer_results,
            'wall_s': time.perf_counter() - start}
  title = f'mh2f-bench{" --quick" if options.quick else ""} on {jax.devices()[0].device_kind}'
  markdown = table.markdown(title) + (f'\nWall time {result["wall_s"]:.0f} s, load average '
                                      f'{result["host"]["load_avg_1min"]:.1f}.\n')
  result['outputs'] = table_lib.save(options.output, result, markdown, options.overwrite)
  return result
