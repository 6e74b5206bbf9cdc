"""Tests of the training loop: learning, sharding, multi-process, resumption, failures.

The runs that need their own device count, a process group or a kill happen in
subprocesses (``tests/train_helper.py``: a tiny model on a small in-memory data set).
They run concurrently in two phases and share one persistent compilation cache, so a
program compiled in the first phase is loaded, not recompiled, in the second.
"""

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from mh2f_jax.workdir import checkpoints

from mh2f_jax.workdir import loading
from mh2f_jax.training import metric_writer
from mh2f_jax.training import trainer
from mh2f_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELPER = os.path.join(REPO, 'tests', 'train_helper.py')
sys.path.insert(0, os.path.join(REPO, 'tests'))
import train_helper  # pylint: disable=g-import-not-at-top,wrong-import-position

# A guard against a hung run, not a speed bound: the first group runs several training
# processes at once on two cores, and a loaded machine can take minutes.
TIMEOUT_S = 600
# Shared by every run: the same batch each step, so the loss must fall quickly.
BASE = {'optim.learning_rate': 5e-3, 'num_train_steps': 8, 'checkpoint_every_steps': 4}
OVERFIT_STEPS = 40
# Gradient accumulation and EMA: 10 steps of a batch of 16 on 4 devices (4 per device).
# XLA's kernel gradients: the accumulation is compared with the gradient formulation held
# fixed (the CPU's GEMM formulation sums in another order; tests/model/test_conv.py compares it).
ACCUM = {'batch_size': 16, 'num_train_steps': 10, 'ema_decay': 0.9,
         'model.conv_kernel_grad': 'xla'}


class Run:
  """A helper subprocess with its output files."""

  def __init__(self, root: str, name: str, *, devices: int, overrides: dict,
               cache_dir: str, extra: tuple[str, ...] = (), workdir: str | None = None):
    self.name = name
    self.workdir = workdir or os.path.join(root, name)
    self.log_path = os.path.join(root, f'{name}.log')
    env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
               JAX_COMPILATION_CACHE_DIR=cache_dir,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
    env.pop('XLA_FLAGS', None)
    cmd = [sys.executable, HELPER, f'--workdir={self.workdir}', f'--devices={devices}',
           f'--config_json={json.dumps({**BASE, **overrides})}', *extra]
    self._log = open(self.log_path, 'a')
    self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                 cwd=REPO)
    self.returncode = None

  def wait(self, timeout: float = TIMEOUT_S) -> 'Run':
    try:
      self.returncode = self.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
      raise AssertionError(f'{self.name} did not finish in {timeout} s:\n{self.log()}')
    finally:
      self._log.close()
    return self

  def log(self) -> str:
    with open(self.log_path) as f:
      return f.read()

  def summary(self) -> dict:
    lines = [l for l in self.log().splitlines() if l.startswith('SUMMARY ')]
    assert lines, f'{self.name} printed no summary (rc {self.returncode}):\n{self.log()[-4000:]}'
    return json.loads(lines[-1][len('SUMMARY '):])


def metric_rows(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, metric_writer.METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


def train_losses(workdir: str) -> dict[int, float]:
  return {r['step']: r['loss'] for r in metric_rows(workdir) if 'loss' in r}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def assert_trees_equal(a, b):
  import jax  # pylint: disable=g-import-not-at-top
  la, lb = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
  assert [p for p, _ in la] == [p for p, _ in lb]
  for (path, x), (_, y) in zip(la, lb):
    assert x.dtype == y.dtype and x.shape == y.shape, path
    assert np.array_equal(x, y), f'{jax.tree_util.keystr(path)} differs'


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  return str(tmp_path_factory.mktemp('train'))


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('jax_cache'))


@pytest.fixture(scope='module')
def phase1(root, cache_dir):
  """Runs that compile: 1 device (long, with validation), 4 devices, a diverging run."""
  runs = {
      'one': Run(root, 'one', devices=1, cache_dir=cache_dir, overrides={
          'num_train_steps': OVERFIT_STEPS, 'checkpoint_every_steps': 20,
          'max_to_keep': 1, 'eval_every_steps': 10, 'image_every_steps': 20,
          'num_eval_images': 2, 'data.data_dir': '~/rain_data'}),
      'four': Run(root, 'four', devices=4, cache_dir=cache_dir, overrides={}),
      'diverge': Run(root, 'diverge', devices=1, cache_dir=cache_dir, overrides={
          'optim.learning_rate': 1e30, 'checkpoint_every_steps': 1}),
      'accum1': Run(root, 'accum1', devices=4, cache_dir=cache_dir, overrides=ACCUM),
      'accum4': Run(root, 'accum4', devices=4, cache_dir=cache_dir,
                    overrides={**ACCUM, 'grad_accum_steps': 4}),
      # Fewer micro-batches than devices: each takes 2 of every device's 4 examples.
      'accum2': Run(root, 'accum2', devices=4, cache_dir=cache_dir,
                    overrides={**ACCUM, 'grad_accum_steps': 2}),
  }
  try:
    for run in runs.values():
      run.wait()
  finally:  # One run that hangs or fails to start must not leave the others running.
    for run in runs.values():
      if run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait()
  return runs


@pytest.fixture(scope='module')
def phase2(root, cache_dir, phase1):
  """Runs that reuse phase 1's programs: kill and resume, SIGTERM, 2 processes."""
  assert phase1['four'].returncode == 0, phase1['four'].log()[-4000:]
  resumed_elsewhere = os.path.join(root, 'four_on_one')
  shutil.copytree(phase1['four'].workdir, resumed_elsewhere)
  port = free_port()
  runs = {
      'killed': Run(root, 'killed', devices=4, cache_dir=cache_dir, overrides={},
                    extra=('--kill_after_checkpoint=4',)),
      'accum_killed': Run(root, 'accum_killed', devices=4, cache_dir=cache_dir,
                          overrides={**ACCUM, 'grad_accum_steps': 4},
                          extra=('--kill_after_checkpoint=4',)),
      'term': Run(root, 'term', devices=1, cache_dir=cache_dir, overrides={
          'num_train_steps': 100_000, 'checkpoint_every_steps': 10_000}),
      'four_on_one': Run(root, 'four_on_one', devices=1, cache_dir=cache_dir,
                         overrides={'num_train_steps': 10}, workdir=resumed_elsewhere),
  }
  group_dir = os.path.join(root, 'two_processes')
  for i in range(2):
    runs[f'proc{i}'] = Run(root, f'proc{i}', devices=2, cache_dir=cache_dir,
                           overrides={'num_eval_images': 2, 'eval_every_steps': 4},
                           workdir=group_dir,
                           extra=(f'--coordinator_address=127.0.0.1:{port}',
                                  '--num_processes=2', f'--process_id={i}'))

  # SIGTERM once the run is training (it logs every step).
  term, deadline = runs['term'], time.time() + TIMEOUT_S
  metrics = os.path.join(term.workdir, metric_writer.METRICS_FILE)
  while time.time() < deadline and term.proc.poll() is None:
    if os.path.exists(metrics):
      with open(metrics) as f:
        if len(f.readlines()) >= 3:
          break
    time.sleep(0.2)
  term.proc.send_signal(signal.SIGTERM)

  runs['killed'].wait()
  runs['resumed'] = Run(root, 'resumed', devices=4, cache_dir=cache_dir, overrides={},
                        workdir=runs['killed'].workdir)
  runs['accum_killed'].wait()
  runs['accum_resumed'] = Run(root, 'accum_resumed', devices=4, cache_dir=cache_dir,
                              overrides={**ACCUM, 'grad_accum_steps': 4},
                              workdir=runs['accum_killed'].workdir)
  for run in runs.values():
    run.wait()
  return runs


def test_tiny_model_overfits_one_batch_and_validates(phase1):
  run = phase1['one']
  assert run.returncode == 0, run.log()[-4000:]
  losses = train_losses(run.workdir)
  assert sorted(losses) == list(range(1, OVERFIT_STEPS + 1))
  assert np.mean([losses[s] for s in range(OVERFIT_STEPS - 4, OVERFIT_STEPS + 1)]) <= (
      0.5 * losses[1])
  # Validation ran every 10 steps; the best step's params survive max_to_keep=1.
  rows = metric_rows(run.workdir)
  val = {r['step']: r['psnr_y'] for r in rows if 'psnr_y' in r}
  assert sorted(val) == [10, 20, 30, 40]
  best = json.load(open(os.path.join(run.workdir, checkpoints.BEST_FILE)))
  assert best['psnr_y'] == max(val.values())
  assert best['step'] == max(val, key=val.get)
  assert run.summary()['best'] == best
  params, step = loading.restore_params(run.workdir, 'best')
  assert step == best['step']
  latest, latest_step = loading.restore_params(run.workdir, 'latest')
  assert latest_step == OVERFIT_STEPS
  assert checkpoints.checkpoint_steps(run.workdir) == [OVERFIT_STEPS]
  if best['step'] == OVERFIT_STEPS:
    assert_trees_equal(params, latest)
  # Outputs of process 0.
  assert os.listdir(os.path.join(run.workdir, metric_writer.TENSORBOARD_DIR))
  saved = checkpoints.load_config(run.workdir)
  assert saved.num_train_steps == OVERFIT_STEPS and saved.model.features == 8
  # '~' was resolved before config.json was written.
  assert saved.data.data_dir == os.path.join(os.path.expanduser('~'), 'rain_data')
  assert os.path.getsize(os.path.join(run.workdir, 'curves.png')) > 1000
  first = rows[0]
  for key in ('step', 'loss', 'l1', 'ssim', 'lr', 'steps_per_sec', 'images_per_sec'):
    assert key in first


def test_one_and_four_devices_follow_the_same_losses(phase1):
  one, four = phase1['one'], phase1['four']
  assert four.returncode == 0, four.log()[-4000:]
  a, b = train_losses(one.workdir), train_losses(four.workdir)
  assert sorted(b) == list(range(1, 9))
  for step in b:
    assert b[step] == pytest.approx(a[step], rel=1e-5), step


def test_log_lines_never_share_a_line_with_the_progress_bar(phase1):
  lines = phase1['one'].log().splitlines()
  bar_lines = [l for l in lines if re.search(r'\d+/40 \[', l)]
  assert bar_lines, 'the bar wrote no line of its own'
  for line in bar_lines:
    assert 'validation' not in line and 'checkpoint' not in line, line
  validation_lines = [l for l in lines if 'validation PSNR-Y' in l]
  assert len(validation_lines) == 4
  for line in validation_lines:
    assert 'step/s' not in line and '|' not in line and '\r' not in line, line


# As many micro-batches as devices, and fewer. With 2, the parameters after 10 steps
# differ from the unaccumulated run's by float rounding of up to ~6e-7 (another
# summation order).
@pytest.mark.parametrize('accum,atol', [(4, 1e-7), (2, 1e-6)])
def test_grad_accumulation_gives_the_same_losses_and_params(phase1, accum, atol):
  one, many = phase1['accum1'], phase1[f'accum{accum}']
  for run in (one, many):
    assert run.returncode == 0, run.log()[-4000:]
  assert f'in {accum} micro-batch(es)' in many.log()
  a, b = metric_rows(one.workdir), metric_rows(many.workdir)
  assert [r['step'] for r in a] == [r['step'] for r in b] == list(range(1, 11))
  for x, y in zip(a, b):
    # The gradient's norm as well: Adam's update hardly depends on the gradient's scale.
    for key in ('loss', 'grad_norm'):
      assert y[key] == pytest.approx(x[key], rel=1e-5), (x['step'], key)
  import jax  # pylint: disable=g-import-not-at-top
  for kind in ('raw', 'ema'):
    x, step_x = loading.restore_params(one.workdir, params=kind)
    y, step_y = loading.restore_params(many.workdir, params=kind)
    assert step_x == step_y == 10
    for u, v in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True):
      np.testing.assert_allclose(v, u, rtol=1e-5, atol=atol)
  raw, _ = loading.restore_params(many.workdir, params='raw')
  ema, _ = loading.restore_params(many.workdir, params='ema')
  assert not all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(raw),
                                                       jax.tree.leaves(ema)))


def test_accumulated_ema_run_resumes_bit_identically(phase1, phase2):
  killed, resumed = phase2['accum_killed'], phase2['accum_resumed']
  assert killed.returncode == -signal.SIGKILL, killed.log()[-4000:]
  assert resumed.returncode == 0, resumed.log()[-4000:]
  for kind in ('raw', 'ema'):
    params, step = loading.restore_params(resumed.workdir, params=kind)
    reference, _ = loading.restore_params(phase1['accum4'].workdir, params=kind)
    assert step == 10
    assert_trees_equal(params, reference)
  assert train_losses(resumed.workdir) == train_losses(phase1['accum4'].workdir)
  # The curves continue the killed run's rows.
  assert os.path.isfile(os.path.join(resumed.workdir, 'curves.png'))


def test_non_finite_loss_stops_naming_the_step_and_keeps_good_checkpoints(phase1):
  run = phase1['diverge']
  assert run.returncode == 2, run.log()[-4000:]
  log = run.log()
  assert 'Traceback' not in log
  line = next(l for l in log.splitlines() if l.startswith('error: non-finite loss'))
  bad_step = int(line.split(' at step ')[1].split(';')[0])
  assert bad_step >= 2
  # Checkpoints every step up to the last good one, none at or after the bad step.
  assert checkpoints.checkpoint_steps(run.workdir) == list(range(1, bad_step))[-3:]
  params, step = loading.restore_params(run.workdir)
  assert step == bad_step - 1
  import jax  # pylint: disable=g-import-not-at-top
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_sigkill_after_checkpoint_then_restart_is_bit_identical(phase1, phase2):
  killed, resumed = phase2['killed'], phase2['resumed']
  assert killed.returncode == -signal.SIGKILL, killed.log()[-4000:]
  assert resumed.returncode == 0, resumed.log()[-4000:]
  assert 'resumed from' in resumed.log()
  params, step = loading.restore_params(resumed.workdir)
  reference, ref_step = loading.restore_params(phase1['four'].workdir)
  assert step == ref_step == 8
  assert_trees_equal(params, reference)
  assert train_losses(resumed.workdir) == train_losses(phase1['four'].workdir)


def test_two_processes_train_in_step_with_one_four_device_process(phase1, phase2):
  for i in range(2):
    assert phase2[f'proc{i}'].returncode == 0, phase2[f'proc{i}'].log()[-4000:]
  group = train_losses(phase2['proc0'].workdir)
  single = train_losses(phase1['four'].workdir)
  assert sorted(group) == list(range(1, 9))
  for step in group:
    assert group[step] == pytest.approx(single[step], rel=1e-5), step
  assert checkpoints.checkpoint_steps(phase2['proc0'].workdir) == [4, 8]
  # Validation ran on both processes; they agreed on the best step and saved it together.
  val = {r['step']: r['psnr_y'] for r in metric_rows(phase2['proc0'].workdir)
         if 'psnr_y' in r}
  assert sorted(val) == [4, 8]
  _, best_step = loading.restore_params(phase2['proc0'].workdir, 'best')
  assert best_step == max(val, key=val.get)
  params, _ = loading.restore_params(phase2['proc0'].workdir)
  reference, _ = loading.restore_params(phase1['four'].workdir)
  import jax  # pylint: disable=g-import-not-at-top
  for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(reference)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_sigterm_saves_a_usable_checkpoint_and_exits_cleanly(phase2):
  run = phase2['term']
  assert run.returncode == 0, run.log()[-4000:]
  summary = run.summary()
  assert summary['interrupted']
  steps = checkpoints.checkpoint_steps(run.workdir)
  assert steps == [summary['step']] and 3 <= summary['step'] < 100_000
  params, step = loading.restore_params(run.workdir)
  assert step == summary['step']
  assert set(params) >= {'head', 'mheb_0', 'mheb_1', 'tail'}


def test_resume_on_another_device_count(phase1, phase2):
  run = phase2['four_on_one']
  assert run.returncode == 0, run.log()[-4000:]
  assert 'resumed from' in run.log()
  assert run.summary()['step'] == 10
  losses = train_losses(run.workdir)
  reference = train_losses(phase1['four'].workdir)
  assert {s: losses[s] for s in reference} == reference
  assert sorted(losses) == list(range(1, 11))
  assert all(math.isfinite(losses[s]) for s in (9, 10))


def test_batch_not_divisible_by_devices_is_refused(root, cache_dir):
  run = Run(root, 'indivisible', devices=4, cache_dir=cache_dir,
            overrides={'batch_size': 6}).wait()
  assert run.returncode == 2
  line = next(l for l in run.log().splitlines() if l.startswith('error:'))
  assert 'batch_size 6' in line and 'devices 4' in line


def test_grad_accum_not_dividing_the_per_device_batch_is_refused(tmp_path):
  config = train_helper.tiny_config({'grad_accum_steps': 3})  # Batch 8 on 1 device.
  with pytest.raises(UserError, match='grad_accum_steps 3 does not divide the per-device '
                     'batch 8'):
    trainer.train_and_evaluate(config, str(tmp_path), sources=([], None))


def test_config_mismatch_is_refused_naming_the_fields(tmp_path):
  saved = train_helper.tiny_config()
  checkpoints.save_config(str(tmp_path), saved)
  given = train_helper.tiny_config({'model.features': 16, 'model.fusion': 'add',
                                    'num_train_steps': 50, 'optim.learning_rate': 1.0})
  with pytest.raises(UserError) as e:
    trainer.train_and_evaluate(given, str(tmp_path))
  message = str(e.value)
  assert 'model.features: saved 8, given 16' in message
  assert 'model.fusion: saved "rpff", given "add"' in message
  # Fields that may change on resume are not listed.
  assert 'num_train_steps' not in message and 'learning_rate' not in message


def test_train_py_reports_user_errors_without_traceback(tmp_path):
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'train.py'), '--config=configs/synthetic.py:debug',
       f'--workdir={tmp_path}', '--config.optim.schedule=linear'],
      capture_output=True, text=True, cwd=REPO, timeout=TIMEOUT_S,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'error: config field optim.schedule' in result.stderr
  assert 'Traceback' not in result.stderr


def test_itstime():
  assert [s for s in range(1, 11) if trainer.itstime(s, 4)] == [4, 8]
  assert trainer.itstime(10, 4, last=True)
  assert not any(trainer.itstime(s, 0) for s in range(1, 11))


def test_due_actions_when_stopping_only_log_and_save():
  config = train_helper.tiny_config({'log_every_steps': 5, 'eval_every_steps': 10,
                                     'image_every_steps': 10, 'checkpoint_every_steps': 20})
  due = trainer.due_actions(config, 10, last=False, stopping=False, validate=True,
                              is_main=True)
  assert due == (True, True, True, False)
  due = trainer.due_actions(config, 10, last=False, stopping=True, validate=True,
                              is_main=True)
  assert due == (True, False, False, True)
  due = trainer.due_actions(config, 7, last=True, stopping=False, validate=True,
                              is_main=False)
  assert due == (True, True, False, True)
