"""The web page (``mh2f-app``), driven in a real headless browser.

The page is served by ``python -m mh2f_jax.app`` on 127.0.0.1 (a free port) for the tiny
trained workdir of the other tests, and for its ONNX export; Selenium drives Debian's ``chromium`` through
``chromedriver``: upload a rainy photo, derain it, download the result, and compare it
with what the ``mh2f_jax.derain`` command writes for the same file. ``.ci/run`` installs the
browser; without one the browser test is skipped, saying so.

The workdir test also takes the screenshot of the page with its result that the README
shows (docs/app.png), after checking that the page shows what the docs say (the scores
line under the result). It is written to the test's temporary folder, or to
``MH2F_APP_SCREENSHOT``; ``MH2F_APP_WORKDIR`` serves another workdir in that test. The
docs' picture is made with::

  MH2F_APP_WORKDIR=runs/demo MH2F_APP_SCREENSHOT=docs/app.png \
      python -m pytest tests/test_app.py -k 'page_derains_like_the_cli and workdir'
"""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from mh2f_jax.datasets import rain
from mh2f_jax.datasets import synthetic

from inference_helper import fake_pair  # pylint: disable=g-bad-import-order
from inference_helper import tiny_run  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROWSERS = ('chromium', 'chromium-browser', 'google-chrome')
# Generous: the page's process imports JAX and Gradio and compiles the model on a busy CPU.
TIMEOUT_S = 240
SCREENSHOT_WIDTH = 900


@pytest.fixture(name='run', scope='session')
def _run_fixture(tmp_path_factory):
  return tiny_run(tmp_path_factory)


@pytest.fixture(name='photo', scope='module')
def _photo(tmp_path_factory):
  """A held-out test photo of the demo's data (the cat) under heavy rain, 432x288: large
  enough for NIQE, so the page shows every score."""
  path = tmp_path_factory.mktemp('upload') / 'rainy cat.png'
  rainy = rain.add_rain(synthetic.test_photo('chelsea'), np.random.default_rng(7), 'heavy')
  Image.fromarray(rainy).save(path)
  return path


def _env():
  return {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO,
          'GRADIO_ANALYTICS_ENABLED': 'False'}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def _serve(model_flag: str, log_path: str):
  """Runs ``python -m mh2f_jax.app MODEL_FLAG`` until the block ends; yields its URL."""
  port = _free_port()
  with open(log_path, 'w') as log:
    proc = subprocess.Popen(
        [sys.executable, '-m', 'mh2f_jax.app', model_flag, f'--port={port}'],
        env=_env(), stdout=log, stderr=subprocess.STDOUT)
  url = f'http://127.0.0.1:{port}/'
  try:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
      assert proc.poll() is None, f'the app exited early:\n{open(log_path).read()}'
      assert time.monotonic() < deadline, f'no page after {TIMEOUT_S} s:\n{open(log_path).read()}'
      try:
        with urllib.request.urlopen(url, timeout=5) as response:
          if response.status == 200:
            break
      except OSError:
        time.sleep(1)
    yield url
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


def _browser(download_dir: str):
  """A headless Chromium that saves downloads to ``download_dir``, or a skip.

  Its window is about as wide as the README's column, so the screenshot reads there.
  """
  webdriver = pytest.importorskip('selenium.webdriver',
                                  reason='selenium is not installed (tests/requirements.txt)')
  binary = next(filter(None, map(shutil.which, BROWSERS)), None)
  driver = shutil.which('chromedriver')
  if not binary or not driver:
    pytest.skip('no headless browser: install Debian\'s chromium and chromium-driver '
                '(apt-get install chromium chromium-driver; .ci/run does)')
  options = webdriver.ChromeOptions()
  options.binary_location = binary
  for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage',
              f'--window-size={SCREENSHOT_WIDTH},900'):
    options.add_argument(arg)
  options.add_experimental_option('prefs', {'download.default_directory': download_dir,
                                            'download.prompt_for_download': False})
  service = webdriver.ChromeService(executable_path=driver)
  return webdriver.Chrome(options=options, service=service)


def _wait_for_file(path: str, timeout: float) -> str:
  """Waits for Chromium to finish a download: it renames the partial file to ``path``."""
  deadline = time.monotonic() + timeout
  while not os.path.exists(path):
    assert time.monotonic() < deadline, (
        f'{path} not downloaded in {timeout} s: {os.listdir(os.path.dirname(path))}')
    time.sleep(0.5)
  return path


def _derain_in_page(driver, url: str, photo) -> None:
  """Uploads ``photo``, presses Derain and waits for the downloadable result."""
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support import expected_conditions as ec
  from selenium.webdriver.support.ui import WebDriverWait
  wait = WebDriverWait(driver, TIMEOUT_S)
  driver.get(url)
  upload = wait.until(ec.presence_of_element_located(
      (By.CSS_SELECTOR, '#photos input[type=file]')))
  upload.send_keys(str(photo))
  # The upload is done when the file is listed in the upload box (name and size).
  wait.until(ec.text_to_be_present_in_element((By.ID, 'photos'), photo.stem))
  wait.until(ec.element_to_be_clickable((By.ID, 'derain'))).click()
  wait.until(ec.text_to_be_present_in_element((By.ID, 'status'), 'derained 1 of 1'))
  # Both sides of the slider are shown.
  wait.until(lambda d: len([i for i in d.find_elements(By.CSS_SELECTOR, '#slider img')
                            if i.get_attribute('src')]) >= 2)


def test_derain_uploads_names_outputs_as_the_cli_and_skips_bad_files(run, tmp_path):
  from mh2f_jax.inference import web_page
  from mh2f_jax.inference import photos
  from mh2f_jax import inference
  rainy = fake_pair(20, 24, seed=3)[0]
  Image.fromarray(rainy).save(tmp_path / 'a.png')
  Image.fromarray(rainy[..., 0]).save(tmp_path / 'a.tif')  # same stem, grayscale
  (tmp_path / 'bad.png').write_bytes(b'not a png')
  paths = [str(tmp_path / n) for n in ('a.png', 'bad.png', 'a.tif')]
  calls = []
  derainer = inference.Derainer.from_workdir(run.workdir, 'latest')
  results, failures = web_page.derain_uploads(derainer, paths, str(tmp_path / 'out'),
                                       progress=lambda p, desc: calls.append((p, desc)))
  assert [os.path.basename(r.output) for r in results] == ['a.png', 'a.tif.png']
  assert len(failures) == 1 and 'bad.png' in failures[0]
  assert calls[-1] == ((3, 3), 'done') and 'a.png (24x20)' in calls[0][1]
  loaded = photos.read_image(paths[0])
  expected = photos.encode_output(loaded, derainer.derain(loaded.pixels))
  assert open(results[0].output, 'rb').read() == expected
  assert Image.open(results[1].output).mode == 'L'  # the grayscale input stays grayscale
  assert Image.open(results[0].before).size == (24, 20)


def test_uploads_of_one_name_in_one_request_each_get_their_own_output(run, tmp_path):
  from mh2f_jax.inference import web_page
  from mh2f_jax.inference import photos
  from mh2f_jax import inference
  paths = []
  for i in range(3):  # Three phones' IMG.png: Gradio keeps each in its own folder.
    (tmp_path / str(i)).mkdir()
    Image.fromarray(fake_pair(20, 24, seed=10 + i)[0]).save(tmp_path / str(i) / 'IMG.png')
    paths.append(str(tmp_path / str(i) / 'IMG.png'))
  derainer = inference.Derainer.from_workdir(run.workdir, 'latest')
  results, failures = web_page.derain_uploads(derainer, paths, str(tmp_path / 'out'))
  assert not failures
  names = [os.path.basename(r.output) for r in results]
  assert names == ['IMG.png', 'IMG (2).png', 'IMG (3).png']
  for path, result, name in zip(paths, results, names):
    loaded = photos.read_image(path)
    expected = photos.encode_output(loaded, derainer.derain(loaded.pixels))
    assert open(result.output, 'rb').read() == expected
    assert result.message.startswith(f'IMG.png -> {name} (24x20')


@pytest.mark.parametrize('source', ['workdir', 'onnx'])
def test_page_derains_like_the_cli(run, photo, tmp_path, source):
  pytest.importorskip('gradio', reason='the app extra is not installed (pip install gradio)')
  from selenium.webdriver.common.by import By
  if source == 'onnx':  # An exported model, served and run without the workdir.
    pytest.importorskip('onnxruntime', reason='the export extra is not installed')
    from mh2f_jax.export import __main__ as export_cli
    model_flag = f'--model={tmp_path / "model.onnx"}'
    assert export_cli.run([f'--workdir={run.workdir}', '--format=onnx',
                       f'--output={tmp_path / "model.onnx"}']) == 0
  else:
    model_flag = f'--workdir={os.environ.get("MH2F_APP_WORKDIR", run.workdir)}'
  downloads = tmp_path / 'downloads'
  downloads.mkdir()
  driver = _browser(str(downloads))
  try:
    with _serve(model_flag, str(tmp_path / 'app.log')) as url:
      _derain_in_page(driver, url, photo)
      # The scores line under the result, as docs/app.md and the screenshot show it.
      status = driver.find_element(By.ID, 'status').text
      assert re.search(r'rainy cat\.png -> rainy cat\.png \(432x288, rgb\)\s+NIQE '
                       r'\d+\.\d\d -> \d+\.\d\d, BRISQUE -?\d+\.\d\d -> -?\d+\.\d\d '
                       r'\(lower is better\)', status), status
      if source == 'workdir':
        _screenshot(driver, os.environ.get('MH2F_APP_SCREENSHOT') or str(tmp_path / 'app.png'))
      link = driver.find_element(By.CSS_SELECTOR, '#results a[download]')
      assert link.get_attribute('download') == 'rainy cat.png'
      link.click()
      downloaded = _wait_for_file(str(downloads / 'rainy cat.png'), 60)
  finally:
    driver.quit()
  from mh2f_jax import derain  # The command, run in this process.
  assert derain.run([model_flag, f'--input={photo}', f'--output={tmp_path / "cli"}']) == 0
  expected = tmp_path / 'cli' / 'rainy cat.png'
  np.testing.assert_array_equal(np.asarray(Image.open(downloaded)),
                                np.asarray(Image.open(expected)))
  assert open(downloaded, 'rb').read() == expected.read_bytes()


def _screenshot(driver, path: str) -> None:
  """Saves the whole page (the window made as tall as the page) as a PNG at ``path``."""
  height = driver.execute_script('return document.documentElement.scrollHeight')
  # The window's height counts the browser's own bars, which the screenshot leaves out.
  bars = driver.get_window_size()['height'] - driver.execute_script('return innerHeight')
  driver.set_window_size(SCREENSHOT_WIDTH, height + bars)
  assert driver.save_screenshot(path)
  with Image.open(path) as shot:
    assert shot.size[0] == SCREENSHOT_WIDTH and shot.size[1] >= height - 1, shot.size


def test_quality_text_shows_rainy_and_derained_scores():
  from mh2f_jax.inference import web_page
  from mh2f_jax.datasets import synthetic
  from mh2f_jax.metrics import brisque
  from mh2f_jax.metrics import niqe
  from mh2f_jax.metrics import no_reference
  rng = np.random.default_rng(3)
  model = brisque.SvrModel(
      gamma=0.05, rho=-1.0, coef=rng.uniform(-5, 5, 20),
      support=rng.uniform(-1, 1, (20, 36)), lower=-1.0, upper=1.0,
      feature_min=np.full(36, -1.0), feature_max=np.full(36, 10.0))
  after = synthetic.test_photo('chelsea')[:200, :240]
  before = np.maximum(after, (np.arange(240) % 9 == 0)[None, :, None] * 230).astype(np.uint8)
  text = web_page.quality_text(before, after, no_reference.Scorer(model))
  assert text == (f'NIQE {niqe.niqe(before):.2f} -> {niqe.niqe(after):.2f}, '
                  f'BRISQUE {brisque.brisque(before, model=model):.2f} -> '
                  f'{brisque.brisque(after, model=model):.2f} (lower is better)')
  small = web_page.quality_text(before[:100], after[:100], no_reference.Scorer(None, 'gone'))
  assert small.startswith('NIQE: NIQE needs at least 192x192')
  assert 'BRISQUE: no model files' in small


def test_each_result_carries_its_scores(run, tmp_path):
  from mh2f_jax.inference import web_page
  from mh2f_jax import inference
  Image.fromarray(fake_pair(20, 24, seed=3)[0]).save(tmp_path / 'a.png')
  derainer = inference.Derainer.from_workdir(run.workdir, 'latest')
  results, _ = web_page.derain_uploads(derainer, [str(tmp_path / 'a.png')], str(tmp_path / 'out'))
  first, scores = results[0].message.split('  \n  ')
  assert first.startswith('a.png -> a.png') and scores.startswith('NIQE: ')
  assert scores.endswith('(lower is better)')
