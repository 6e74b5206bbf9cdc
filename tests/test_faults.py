"""Faults and mistakes: nothing hangs, nothing a run or a user had is lost or overwritten.

One tiny run (tests/train_helper.py's model and in-memory data) is trained once; each
test damages a copy of its workdir. A full disk is a 4 MB tmpfs where the tests run as
root (skipped otherwise); elsewhere write failures are injected where they happen.
"""

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
from PIL import Image
import pytest

from mh2f_jax.workdir import checkpoints

from mh2f_jax.workdir import loading
from mh2f_jax import files
from mh2f_jax.training import metric_writer
from mh2f_jax.errors import UserError

import faults_helper  # pylint: disable=g-bad-import-order
import train_helper  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Generous: the CI machine may be shared; a hang is what these tests are there to catch.
TIMEOUT_S = 300
STEPS, EVERY = 12, 4
LOCK_FILE = 'train.lock'  # Spelled out (and modules imported in the tests) so that each
CORRUPT_DIR = 'checkpoints_corrupt'  # test fails on its own where a fix is missing.


def _train(workdir, **overrides):
  from mh2f_jax.training import trainer  # pylint: disable=g-import-not-at-top
  config = train_helper.tiny_config({
      'num_train_steps': STEPS, 'checkpoint_every_steps': EVERY, 'max_to_keep': None,
      'num_eval_images': 2, 'eval_every_steps': EVERY, **overrides})
  sources = (train_helper.fake_pairs(8, 16, 16, seed=1), train_helper.fake_pairs(2, 20, 28, 2))
  return trainer.train_and_evaluate(config, str(workdir), sources=sources)


@pytest.fixture(name='trained', scope='module')
def _trained(tmp_path_factory):
  """A finished tiny run (checkpoints 4, 8, 12 and a best), trained under umask 022."""
  workdir = tmp_path_factory.mktemp('trained') / 'run'
  previous = os.umask(0o022)
  try:
    _train(workdir)
  finally:
    os.umask(previous)
  return str(workdir)


@pytest.fixture(name='copy')
def _copy(trained, tmp_path):
  target = str(tmp_path / 'run')
  shutil.copytree(trained, target)
  return target


def _digest(path):
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def _error_lines(text):
  return [line for line in text.splitlines() if line.startswith('error:')]


@contextlib.contextmanager
def _tmpfs(path, size, *, read_only=False):
  """A tmpfs mounted at ``path`` (root only), unmounted afterwards; None if impossible."""
  os.makedirs(path, exist_ok=True)
  if os.geteuid() != 0 or shutil.which('mount') is None:
    yield None
    return
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', path],
                    capture_output=True, check=False).returncode != 0:
    yield None
    return
  try:
    yield path
  finally:
    subprocess.run(['umount', '-l', path], capture_output=True, check=False)


# 1. A full disk ----------------------------------------------------------------------


def test_a_failed_tensorboard_write_raises_instead_of_hanging(tmp_path, monkeypatch):
  from tensorboardX import record_writer  # pylint: disable=g-import-not-at-top

  def no_space(self, data):
    raise OSError(errno.ENOSPC, 'No space left on device')

  writer = metric_writer.MetricWriter(str(tmp_path), 0, enabled=True)
  monkeypatch.setattr(record_writer.RecordWriter, 'write', no_space)
  outcome = []

  def log_rows():
    try:
      for step in range(1, 40):  # More rows than tensorboardX's queue holds.
        writer.row({'step': step, 'loss': 0.5}, 'train')
      outcome.append('no error')
    except OSError as e:
      outcome.append(e)
    try:
      writer.close()
    except OSError:
      pass
    outcome.append('closed')

  thread = threading.Thread(target=log_rows, daemon=True)
  thread.start()
  thread.join(60)
  assert not thread.is_alive(), 'writing TensorBoard events on a full disk hangs'
  assert isinstance(outcome[0], OSError) and outcome[0].errno == errno.ENOSPC
  assert outcome[-1] == 'closed'


def test_tensorboard_events_written_in_the_calling_thread_read_back(tmp_path):
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  writer = metric_writer.MetricWriter(str(tmp_path), 0, enabled=True)
  writer.row({'step': 3, 'loss': 0.25}, 'train')
  writer.images(4, [np.zeros((6, 9, 3), np.uint8)])
  writer.close()
  (name,) = os.listdir(tmp_path / metric_writer.TENSORBOARD_DIR)
  data = (tmp_path / metric_writer.TENSORBOARD_DIR / name).read_bytes()
  found, i = [], 0
  while i < len(data):  # TFRecord: length, its CRC, the event, its CRC.
    (length,) = struct.unpack('<Q', data[i:i + 8])
    event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
    found += [(v.tag, event.step, v.simple_value if v.HasField('simple_value') else
               (v.image.height, v.image.width)) for v in event.summary.value]
    i += 16 + length
  assert found == [('train/loss', 3, 0.25), ('val/rainy_derained_clean_0', 4, (6, 9))]


def test_full_disk_ends_train_with_one_error_line_keeping_the_last_checkpoint(tmp_path):
  with _tmpfs(str(tmp_path / 'disk'), '4m') as disk:
    if disk is None:
      pytest.skip('needs root to mount a small tmpfs')
    workdir = os.path.join(disk, 'run')
    overrides = {'num_train_steps': 60, 'max_to_keep': None, 'log_every_steps': 4,
                 'num_eval_images': 2, 'eval_every_steps': 4, 'image_every_steps': 4}
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, 'tests', 'train_helper.py'), '--cli',
         f'--workdir={workdir}', f'--config_json={json.dumps(overrides)}'],
        capture_output=True, text=True, timeout=TIMEOUT_S, cwd=REPO,
        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
    assert result.returncode == 2, result.stderr[-3000:]
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and 'No space left on device' in errors[0], result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    done = checkpoints.checkpoint_steps(workdir)
    assert done and f'the last complete checkpoint is step {done[-1]}' in errors[0]
    params, step = loading.restore_params(workdir, done[-1])
    assert step == done[-1] and params


def test_a_failed_save_stage_leaves_no_write_to_call_its_closed_event_loop(monkeypatch):
  # What a full disk does inside Orbax: one write fails while TensorStore still has
  # another under way, which ends a moment later and calls back into the stage's loop.
  import asyncio  # pylint: disable=g-import-not-at-top
  from orbax.checkpoint._src import asyncio_utils  # pylint: disable=g-import-not-at-top
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
  from mh2f_jax.workdir import save_loops  # pylint: disable=g-import-not-at-top
  promise, write = ts.Promise.new()
  other_write_ends = threading.Timer(0.3, promise.set_result, (None,))

  async def full_disk():
    raise OSError(errno.ENOSPC, 'No space left on device')

  async def stage():
    other_write_ends.start()
    await asyncio.gather(full_disk(), write)

  unraisable = []
  monkeypatch.setattr(sys, 'unraisablehook', unraisable.append)
  runner = asyncio_utils._run_sync_via_new_loop  # pylint: disable=protected-access
  with save_loops.wait_for_writes_left_by_a_failure():
    with pytest.raises(OSError, match='No space left'):
      asyncio_utils.run_sync(stage())
  other_write_ends.join()
  assert asyncio_utils._run_sync_via_new_loop is runner  # pylint: disable=protected-access
  assert not unraisable, [str(u.exc_value) for u in unraisable]

# 2. The workdir lock -------------------------------------------------------------------


def _write_lock(workdir, **holder):
  with open(os.path.join(workdir, LOCK_FILE), 'w') as f:
    json.dump({'host': socket.gethostname(), 'started': 1e9, **holder}, f)


def _dead_pid():
  proc = subprocess.Popen([sys.executable, '-c', 'pass'])
  proc.wait()
  return proc.pid


def test_a_second_run_is_refused_at_once_naming_the_holder(copy):
  from mh2f_jax.workdir import lock  # pylint: disable=g-import-not-at-top
  holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
  try:
    _write_lock(copy, pid=holder.pid)
    metrics = _digest(os.path.join(copy, metric_writer.METRICS_FILE))
    with pytest.raises(lock.WorkdirLockedError,
                       match=rf'in use by .*host {socket.gethostname()}, pid {holder.pid}, '
                       r'started 2001-09-09'):
      _train(copy)
    assert _digest(os.path.join(copy, metric_writer.METRICS_FILE)) == metrics
    assert os.path.exists(os.path.join(copy, LOCK_FILE))
  finally:
    holder.kill()
    holder.wait()


def test_a_stale_lock_of_a_killed_run_is_taken_over(copy, caplog):
  _write_lock(copy, pid=_dead_pid())
  with caplog.at_level(logging.WARNING, logger='mh2f_jax'):
    summary = _train(copy)  # Already trained: nothing to compile.
  assert summary['step'] == STEPS
  assert 'took over the lock of a run that is no longer running' in caplog.text
  assert not os.path.exists(os.path.join(copy, LOCK_FILE))


def test_a_reused_pid_does_not_keep_a_stale_lock(tmp_path):
  from mh2f_jax.workdir import lock  # pylint: disable=g-import-not-at-top
  # This process is alive, but started at another time than the lock says.
  _write_lock(str(tmp_path), pid=os.getpid(), start_ticks=1)
  mine = lock.acquire(str(tmp_path))
  assert mine['pid'] == os.getpid()
  lock.release(str(tmp_path), mine)
  assert not os.listdir(tmp_path)


def test_a_lock_held_on_another_host_is_never_judged_by_pid(tmp_path):
  from mh2f_jax.workdir import lock  # pylint: disable=g-import-not-at-top
  _write_lock(str(tmp_path), host='another-host.example', pid=_dead_pid())
  with pytest.raises(lock.WorkdirLockedError,
                     match='host another-host.example.*on another host; if that run is '
                     'over, delete the lock file'):
    lock.acquire(str(tmp_path))


_HELD_IN_GROUP = """
import sys
import jax
sys.path.insert(0, {repo!r})
jax.config.update('jax_platforms', 'cpu')
jax.distributed.initialize(coordinator_address={address!r}, num_processes=2, process_id=int(sys.argv[1]))
from mh2f_jax.workdir import lock
try:
  lock.held(lambda config, workdir: print('the run started'))(None, {workdir!r})
except lock.WorkdirLockedError as e:
  print('error:', e)
"""


def test_in_a_multi_process_run_process_0_decides_for_all(tmp_path):
  holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
  try:
    _write_lock(str(tmp_path), pid=holder.pid)
    with socket.socket() as s:
      s.bind(('127.0.0.1', 0))
      address = f'127.0.0.1:{s.getsockname()[1]}'
    script = _HELD_IN_GROUP.format(repo=REPO, address=address, workdir=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, '-c', script, str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=TIMEOUT_S)[0] for p in procs]
  finally:
    holder.kill()
    holder.wait()
  assert f'in use by another training run (host {socket.gethostname()}, pid {holder.pid}' in (
      outputs[0])
  assert 'in use by another training run (see process 0)' in outputs[1]
  assert 'the run started' not in ''.join(outputs)


# 3. Derain never overwrites ------------------------------------------------------------


def test_derain_refuses_to_overwrite_any_existing_file(trained, tmp_path, capsys):
  from mh2f_jax import derain  # pylint: disable=g-import-not-at-top
  folder = tmp_path / 'd'
  folder.mkdir()
  Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(folder / 'good.jpg')
  (folder / 'good.jpg.png').write_bytes(b'the user\'s own file')  # good.jpg's output name
  argv = [f'--workdir={trained}', f'--input={folder / "good.jpg"}', f'--output={folder}']
  assert derain.run(argv) == 2
  err = capsys.readouterr().err
  assert _error_lines(err) == [
      f'error: 1 output(s) exist: {folder / "good.jpg.png"}; pass --overwrite to replace '
      'them, --skip_existing to derain only the others, or choose another --output folder']
  assert (folder / 'good.jpg.png').read_bytes() == b'the user\'s own file'
  assert derain.run(argv + ['--overwrite']) == 0
  with Image.open(folder / 'good.jpg.png') as img:
    assert img.size == (16, 16)


def test_write_new_never_replaces_a_file(tmp_path):
  path = tmp_path / 'x.png'
  files.write_new(path, b'first')
  with pytest.raises(FileExistsError):
    files.write_new(path, b'second')
  assert path.read_bytes() == b'first' and os.listdir(tmp_path) == ['x.png']


# 4. Corrupt and vanished checkpoints ---------------------------------------------------


def _largest_file(folder):
  paths = [os.path.join(r, n) for r, _, names in os.walk(folder) for n in names]
  return max(paths, key=os.path.getsize)


def _truncate(path):
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


CORRUPTIONS = {
    'truncated data file': lambda step_dir: _truncate(_largest_file(step_dir)),
    'deleted data file': lambda step_dir: os.remove(_largest_file(step_dir)),
    'deleted tree metadata': lambda step_dir: os.remove(
        os.path.join(step_dir, checkpoints.STATE_ITEM, '_METADATA')),
    'garbage manifest': lambda step_dir: open(  # pylint: disable=consider-using-with
        os.path.join(step_dir, checkpoints.STATE_ITEM, 'manifest.ocdbt'), 'wb').write(b'x'),
}


def test_training_resumes_from_the_newest_intact_checkpoint(copy, caplog):
  CORRUPTIONS['truncated data file'](os.path.join(copy, 'checkpoints', str(STEPS)))
  with caplog.at_level(logging.WARNING, logger='mh2f_jax'):
    summary = _train(copy)
  assert summary['step'] == STEPS
  notes = [r.getMessage() for r in caplog.records if 'corrupt' in r.getMessage()]
  assert len(notes) == 1 and '\n' not in notes[0]
  assert notes[0].startswith(f'checkpoint {STEPS} is corrupt (')
  aside = os.listdir(os.path.join(copy, CORRUPT_DIR))
  assert len(aside) == 1 and aside[0].startswith(f'{STEPS}-')
  assert checkpoints.checkpoint_steps(copy) == [4, 8, STEPS]  # Step 12 trained again.
  rows = [json.loads(line) for line in open(os.path.join(copy, 'metrics.jsonl'))]
  assert max(r['step'] for r in rows) == STEPS


@pytest.mark.parametrize('corruption', list(CORRUPTIONS))
def test_loading_params_skips_a_corrupt_latest_and_refuses_a_corrupt_step(
    copy, corruption, caplog):
  CORRUPTIONS[corruption](os.path.join(copy, 'checkpoints', str(STEPS)))
  with caplog.at_level(logging.WARNING, logger='mh2f_jax'):
    _, step = loading.restore_params(copy, 'latest')
  assert step == 8
  assert f'checkpoint {STEPS} in {copy} is corrupt (' in caplog.text
  with pytest.raises(UserError, match=f'checkpoint {STEPS} in .* is corrupt .*choose another'):
    loading.restore_params(copy, STEPS)


def test_a_workdir_whose_checkpoints_vanished_is_refused(copy):
  shutil.rmtree(os.path.join(copy, 'checkpoints'))
  metrics = _digest(os.path.join(copy, metric_writer.METRICS_FILE))
  with pytest.raises(UserError, match=f'reaches step {STEPS}: its checkpoints were deleted'):
    _train(copy)
  assert _digest(os.path.join(copy, metric_writer.METRICS_FILE)) == metrics


def test_a_run_killed_before_its_first_checkpoint_may_start_again(tmp_path):
  from mh2f_jax.workdir import recovery  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path)
  checkpoints.save_config(workdir, {'checkpoint_every_steps': EVERY})
  with open(os.path.join(workdir, metric_writer.METRICS_FILE), 'w') as f:
    for step in range(1, 2 * EVERY + 1):
      f.write(json.dumps({'step': step, 'loss': 1.0}) + '\n')
  recovery.refuse_lost_checkpoints(
      workdir, metric_writer.METRICS_FILE, 'best', 'checkpoints', checkpoints.CONFIG_FILE)
  with open(os.path.join(workdir, metric_writer.METRICS_FILE), 'a') as f:
    f.write(json.dumps({'step': 2 * EVERY + 1, 'loss': 1.0}) + '\n')
  with pytest.raises(UserError, match='deleted or moved'):
    recovery.refuse_lost_checkpoints(
        workdir, metric_writer.METRICS_FILE, 'best', 'checkpoints', checkpoints.CONFIG_FILE)


# 5. config.json only after the state restores -----------------------------------------


def test_a_refused_resume_leaves_config_json_alone(copy):
  os.remove(os.path.join(copy, checkpoints.CONFIG_FILE))
  with pytest.raises(UserError, match=r"checkpoint 12 .* does not fit the config's model "
                     r'\(\[.*saved \(.*8,?\), config gives \(.*16,?\)'):
    _train(copy, **{'model.features': 16})
  assert not os.path.exists(os.path.join(copy, checkpoints.CONFIG_FILE))
  assert checkpoints.checkpoint_steps(copy) == [4, 8, STEPS]
  assert not os.path.exists(os.path.join(copy, CORRUPT_DIR))


# 6. --max_pixels -------------------------------------------------------------------------


def _png_declaring(path, width, height):
  """A tiny PNG whose header declares width x height (its data is one row)."""
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
  header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  data = zlib.compress(b'\0' + b'\0' * 3 * width)
  with open(path, 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', data)
            + chunk(b'IEND', b''))


def test_derain_skips_an_image_declaring_more_than_max_pixels(trained, tmp_path, capsys):
  from mh2f_jax import derain  # pylint: disable=g-import-not-at-top
  huge = tmp_path / 'huge.png'
  _png_declaring(huge, 13000, 13000)
  status = derain.run([f'--workdir={trained}', f'--input={huge}',
                       f'--output={tmp_path / "out"}'])
  assert status == 1
  assert _error_lines(capsys.readouterr().err)[0] == (
      f'error: cannot read {huge}: image of 169,000,000 pixels is above '
      '--max_pixels=100,000,000 (pass a larger --max_pixels, or 0 for no cap, to read it)')


def test_prepare_and_eval_decoding_refuse_images_above_max_pixels(tmp_path):
  from mh2f_jax.datasets import images  # pylint: disable=g-import-not-at-top
  huge = str(tmp_path / 'huge.png')
  _png_declaring(huge, 2000, 1000)
  with files.pixel_limit(1_000_000):
    with pytest.raises(files.ImageTooLargeError,
                       match=f'image file {huge}: image of 2,000,000 pixels is above '
                       '--max_pixels=1,000,000'):
      images.load_checked(huge)
  # Evaluation decodes the prepared examples as TFDS does, with Image.open.
  with pytest.raises(files.ImageTooLargeError, match='above --max_pixels=1,000,000'):
    with files.pixel_limit(1_000_000):
      with open(huge, 'rb') as f, Image.open(f) as img:
        np.asarray(img)
  assert Image.MAX_IMAGE_PIXELS == 89478485  # Put back.


def test_prepare_cli_stops_at_the_first_image_above_max_pixels(tmp_path, capsys):
  from mh2f_jax.datasets import __main__ as datasets_cli  # pylint: disable=g-import-not-at-top
  for side in ('rainy', 'clean'):
    os.makedirs(tmp_path / 'data' / 'train' / side)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / 'data' / 'train' / side / 'a.png')
  status = datasets_cli.run(['prepare', 'paired_folder', f'--manual_dir={tmp_path / "data"}',
                             f'--data_dir={tmp_path / "tfds"}', '--max_pixels=399'])
  assert status == 2
  (line,) = _error_lines(capsys.readouterr().err)
  assert 'a.png: image of 400 pixels is above --max_pixels=399' in line


# 7. Mistakes: one line, exit status 2 -----------------------------------------------------


def _config_file(tmp_path):
  path = tmp_path / 'tiny.py'
  path.write_text(f'import sys\nsys.path.insert(0, {os.path.join(REPO, "tests")!r})\n'
                  'import train_helper\n\n\ndef get_config(variant=None):\n'
                  '  if variant not in (None, "debug"):\n'
                  '    raise ValueError(f"unknown config variant {variant!r}; allowed: debug")\n'
                  '  return train_helper.tiny_config()\n')
  return str(path)


def _one_error_line(capsys, status, *fragments):
  out = capsys.readouterr()
  errors = _error_lines(out.err)
  assert status == 2 and len(errors) == 1, out.err
  assert 'Traceback' not in out.err
  for fragment in fragments:
    assert fragment in errors[0]


@pytest.mark.parametrize('args,fragment', [
    (['--config.model.featurs=8'], 'unknown config field'),
    (['--config.batch_size=abc'], "--config.batch_size=abc: invalid literal for int()"),
])
def test_train_flag_mistakes(tmp_path, capsys, args, fragment):
  from mh2f_jax import train  # pylint: disable=g-import-not-at-top
  status = train.run([f'--config={_config_file(tmp_path)}', f'--workdir={tmp_path / "w"}',
                      *args])
  _one_error_line(capsys, status, fragment)


def test_train_config_file_mistakes(tmp_path, capsys):
  from mh2f_jax import train  # pylint: disable=g-import-not-at-top
  workdir = f'--workdir={tmp_path / "w"}'
  _one_error_line(capsys, train.run([f'--config={tmp_path / "none.py"}', workdir]),
                  'is not a file, nor a shipped config', 'none.py')
  _one_error_line(capsys, train.run([f'--config={_config_file(tmp_path)}:fast', workdir]),
                  "unknown config variant 'fast'")


def test_a_workdir_that_is_a_file(tmp_path, capsys):
  from mh2f_jax import eval as eval_tool  # pylint: disable=g-import-not-at-top
  from mh2f_jax import train  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'file'
  path.write_text('x')
  _one_error_line(capsys, train.run([f'--config={_config_file(tmp_path)}', f'--workdir={path}']),
                  f'workdir {path} exists and is not a folder')
  _one_error_line(capsys, eval_tool.run([f'--workdir={path}']), f'workdir {path} is not a folder')


def test_a_read_only_workdir_in_train_and_eval(copy, tmp_path, capsys, monkeypatch):
  from mh2f_jax import eval as eval_tool  # pylint: disable=g-import-not-at-top
  from mh2f_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  from mh2f_jax import train  # pylint: disable=g-import-not-at-top
  with faults_helper.read_only_folder(str(tmp_path / 'ro')) as folder:
    workdir = os.path.join(folder, 'run')
    _one_error_line(capsys, train.run([f'--config={_config_file(tmp_path)}',
                                       f'--workdir={workdir}']), f'workdir {workdir}')
    # Evaluation writes its report into the workdir.
    monkeypatch.setattr(evaluator, 'evaluate', lambda workdir, **_: files.write_atomic(
        os.path.join(folder, 'eval', 'summary.json'), b'{}'))
    _one_error_line(capsys, eval_tool.run([f'--workdir={copy}']),
                    f'cannot write {os.path.join(folder, "eval")}')


def test_eval_protocol_mistake(copy, capsys):
  from mh2f_jax import eval as eval_tool  # pylint: disable=g-import-not-at-top
  _one_error_line(capsys, eval_tool.run([f'--workdir={copy}', '--protocol=C']),
                  '--protocol=C: value should be one of <B|A>')


FULL_DISK_ERRORS = [
    OSError(errno.ENOSPC, 'No space left on device', '/data/out/summary.json'),
    # What TensorStore (Orbax's writer) raises instead.
    ValueError('RESOURCE_EXHAUSTED: Error writing local file "/data/out/summary.json": '
               "Failed to write 9 bytes: No space left on device [os_error_code='28']"),
]


@pytest.mark.parametrize('error', FULL_DISK_ERRORS, ids=['OSError', 'TensorStore'])
def test_a_full_disk_in_eval_and_prepare(copy, capsys, monkeypatch, error):
  from mh2f_jax import datasets  # pylint: disable=g-import-not-at-top
  from mh2f_jax import eval as eval_tool  # pylint: disable=g-import-not-at-top
  from mh2f_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  from mh2f_jax.datasets import __main__ as datasets_cli  # pylint: disable=g-import-not-at-top

  def fail(*args, **kwargs):
    raise error

  monkeypatch.setattr(evaluator, 'evaluate', fail)
  monkeypatch.setattr(datasets, 'prepare', fail)
  message = 'cannot write /data/out/summary.json: No space left on device'
  _one_error_line(capsys, eval_tool.run([f'--workdir={copy}']), message)
  _one_error_line(capsys, datasets_cli.run(['prepare', 'rain12']), message)


# 8. Duplicate names ------------------------------------------------------------------------


def test_duplicate_rainy_names_are_rejected(tmp_path):
  from mh2f_jax.datasets import pairing  # pylint: disable=g-import-not-at-top
  for name in ('rainy/000.png', 'rainy/000.jpg', 'clean/000.png'):
    os.makedirs(tmp_path / os.path.dirname(name), exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / name)
  with pytest.raises(UserError, match="two images share the name '000' in .*rainy"):
    pairing.pair_folders(str(tmp_path / 'rainy'), str(tmp_path / 'clean'), pairing.same_stem)
  rule = pairing.PatternRule('rainy/{id}.*', 'clean/{id}.png')
  with pytest.raises(UserError, match="two images share the name 'rainy/000'"):
    rule.pair(str(tmp_path))


# 9. Builds killed half-way --------------------------------------------------------------


def _paired_folder(root):
  for side in ('rainy', 'clean'):
    for name in ('a', 'b'):
      os.makedirs(os.path.join(root, 'train', side), exist_ok=True)
      Image.fromarray(np.full((8, 8, 3), 50, np.uint8)).save(
          os.path.join(root, 'train', side, f'{name}.png'))
  return root


def test_prepare_removes_builds_that_were_killed_but_not_live_ones(tmp_path, caplog):
  import fcntl  # pylint: disable=g-import-not-at-top
  from mh2f_jax import datasets  # pylint: disable=g-import-not-at-top
  from mh2f_jax.datasets import build_lock  # pylint: disable=g-import-not-at-top
  data_dir, manual = str(tmp_path / 'tfds'), _paired_folder(str(tmp_path / 'data'))
  folder = os.path.join(data_dir, 'paired_folder')
  dead = os.path.join(folder, 'incomplete.K1LLED_1.0.0')
  os.makedirs(dead)
  with open(os.path.join(dead, 'shard'), 'wb') as f:
    f.write(b'x' * 1000)
  # A live build holds the lock: its folder stays, and this build is refused.
  with open(os.path.join(folder, build_lock.LOCK_FILE), 'a') as held:
    fcntl.flock(held, fcntl.LOCK_EX)
    with pytest.raises(UserError, match='paired_folder is being prepared by another process'):
      datasets.prepare('paired_folder', data_dir=data_dir, manual_dir=manual)
    assert os.path.isdir(dead)
  with caplog.at_level(logging.WARNING, logger='mh2f_jax'):
    assert datasets.prepare('paired_folder', data_dir=data_dir, manual_dir=manual) == {
        'train': 2}
  assert not os.path.exists(dead)
  assert f'removed {dead}, left by a dataset build that did not finish' in caplog.text
  assert not [n for n in os.listdir(folder) if n.startswith('incomplete.')]


# 10. Permissions -------------------------------------------------------------------------


def test_files_keep_the_umask_permissions(trained):
  """Trained under umask 022: every file is readable by others, none is executable."""
  for name in (checkpoints.CONFIG_FILE, checkpoints.BEST_FILE, 'metrics.jsonl'):
    assert stat.S_IMODE(os.stat(os.path.join(trained, name)).st_mode) == 0o644, name
  for root, _, names in os.walk(trained):
    for name in names:
      mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
      assert mode & 0o044 == 0o044, (os.path.join(root, name), oct(mode))
