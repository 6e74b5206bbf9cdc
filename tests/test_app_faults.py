"""Faults and mistakes on the web page (``mh2f-app``): big uploads, addresses, SIGTERM."""

import glob
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image

from mh2f_jax import app
from mh2f_jax.inference import web_page
from mh2f_jax import inference

from inference_helper import fake_pair  # pylint: disable=g-bad-import-order
from inference_helper import tiny_run  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240  # The app's process imports JAX and Gradio on a busy CPU.


@pytest.fixture(name='run', scope='session')
def _run_fixture(tmp_path_factory):
  return tiny_run(tmp_path_factory)


def _png_declaring(path, width, height):
  """A tiny PNG whose header declares width x height (its data is one row)."""
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
  header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
                   + chunk(b'IDAT', zlib.compress(b'\0' * (1 + 3 * width)))
                   + chunk(b'IEND', b''))


def test_uploads_above_max_pixels_are_refused_from_the_header_by_their_own_name(
    run, tmp_path):
  uploads = tmp_path / 'server-copy'  # Where Gradio keeps its copy of each upload.
  uploads.mkdir()
  _png_declaring(uploads / 'huge.png', 11000, 10000)  # 110 MP, above the default cap.
  (uploads / 'bad.png').write_bytes(b'not a png')
  derainer = inference.Derainer.from_workdir(run.workdir, 'latest')
  results, failures = web_page.derain_uploads(
      derainer, [str(uploads / 'huge.png'), str(uploads / 'bad.png')], str(tmp_path / 'o'))
  assert not results
  assert failures[0] == ('cannot read huge.png: image of 110,000,000 pixels is above '
                         '--max_pixels=100,000,000 (pass a larger --max_pixels, or 0 for no '
                         'cap, to read it)')
  assert failures[1].startswith('cannot read bad.png: ') and str(uploads) not in failures[1]
  _, failures = web_page.derain_uploads(derainer, [str(uploads / 'huge.png')],
                                   str(tmp_path / 'o2'), max_pixels=1000)
  assert 'above --max_pixels=1,000 ' in failures[0]


def test_the_page_has_max_pixels_and_a_bounded_one_at_a_time_queue(run, tmp_path, capsys):
  pytest.importorskip('gradio', reason='the app extra is not installed (pip install gradio)')
  assert app.run(['--help']) == 0
  assert '--max_pixels' in capsys.readouterr().out
  derainer = inference.Derainer.from_workdir(run.workdir, 'latest')
  page = web_page.build_page(derainer, 'test', str(tmp_path))
  queue = page._queue  # pylint: disable=protected-access  (Gradio keeps no public view)
  assert queue.max_size == web_page.QUEUE_SIZE and queue.default_concurrency_limit == 1


@pytest.mark.parametrize('args, message', [
    (['--port=99999'], 'error: flag --port=99999: 99999 is not an integer in the range '
                       '[1, 65535] (see mh2f-app --help)'),
    (['--port=0'], 'error: flag --port=0: 0 is not an integer in the range [1, 65535] '
                   '(see mh2f-app --help)'),
    (['--host=256.1.1.1'], 'error: --host=256.1.1.1 is not an address or a known host '
                           'name ('),
    (['--host=192.0.2.1'], 'error: cannot serve on --host=192.0.2.1 (Cannot assign '
                           'requested address): give an address of this machine'),
], ids=['port-too-large', 'port-0', 'host-not-an-address', 'host-of-another-machine'])
def test_address_mistakes_are_one_line_naming_the_right_flag(run, capsys, args, message):
  assert app.run([f'--workdir={run.workdir}', *args]) == 2
  lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith(message), lines


def test_a_port_in_use_is_named(run, capsys):
  with socket.socket() as taken:
    taken.bind(('127.0.0.1', 0))
    taken.listen()
    port = taken.getsockname()[1]
    assert app.run([f'--workdir={run.workdir}', f'--port={port}']) == 2
  assert capsys.readouterr().err.strip() == (
      f'error: port {port} on 127.0.0.1 is in use: choose another --port')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _wait(condition, proc, log, what):
  deadline = time.monotonic() + TIMEOUT_S
  while not condition():
    assert proc.poll() is None, f'the app exited early:\n{open(log).read()}'
    assert time.monotonic() < deadline, f'no {what} after {TIMEOUT_S} s:\n{open(log).read()}'
    time.sleep(0.2)


def _page_up(url):
  try:
    with urllib.request.urlopen(url, timeout=5) as response:
      return response.status == 200
  except OSError:
    return False


def test_sigterm_during_a_request_exits_cleanly_removing_the_temporary_files(run, tmp_path):
  gradio_client = pytest.importorskip('gradio_client', reason='the app extra is not installed')
  temp = tmp_path / 'tmp'  # The app's temporary folder, watched by the test.
  temp.mkdir()
  photo = tmp_path / 'large.png'  # Tiled: the request lasts long enough to be caught.
  Image.fromarray(np.tile(fake_pair(64, 64, seed=3)[0], (24, 24, 1))).save(photo)
  port, log = _free_port(), str(tmp_path / 'app.log')
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO, 'TMPDIR': str(temp),
         'GRADIO_ANALYTICS_ENABLED': 'False'}
  env.pop('GRADIO_TEMP_DIR', None)
  with open(log, 'w') as out:
    proc = subprocess.Popen(
        [sys.executable, '-m', 'mh2f_jax.app', f'--workdir={run.workdir}', '--tile=256',
         f'--port={port}'], env=env, stdout=out, stderr=subprocess.STDOUT)
  try:
    url = f'http://127.0.0.1:{port}/'
    _wait(lambda: _page_up(url), proc, log, 'page')
    client = gradio_client.Client(url, verbose=False)
    client.submit([gradio_client.handle_file(str(photo))], False, api_name='/run')
    _wait(lambda: glob.glob(str(temp / 'mh2f-app-*' / 'request-*')), proc, log, 'request')
    proc.send_signal(signal.SIGTERM)
    status = proc.wait(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  text = open(log).read()
  assert status in (0, 143), text
  assert 'terminate called' not in text and 'Traceback' not in text, text
  # Neither the outputs nor Gradio's copies of the uploads are left; '.ses' is ONNX
  # Runtime's own marker, written whenever it is imported.
  assert [n for n in os.listdir(temp) if n != '.ses'] == [], os.listdir(temp)


def test_a_temporary_folder_that_cannot_be_written_is_refused_before_the_model_loads(
    run, tmp_path, capsys, monkeypatch):
  import tempfile  # pylint: disable=import-outside-toplevel
  from mh2f_jax import cli  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(cli, 'load_derainer',
                      lambda *args, **kwargs: pytest.fail('the model was loaded first'))
  (tmp_path / 'file').write_text('x')
  monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'file'))  # As TMPDIR=a file.
  assert app.run([f'--workdir={run.workdir}', f'--port={_free_port()}']) == 2
  lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert lines == [f'error: cannot write the page\'s temporary folder in {tmp_path / "file"}'
                   ': Not a directory (set TMPDIR to a folder you can write)']
