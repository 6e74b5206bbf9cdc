"""Tests for tools/gpu_wheels.py: what it keeps out, its reading of an image's package
list, and its refusals before any download (nothing here reaches a package index)."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tools'))
import gpu_wheels  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_manylinux_tag_becomes_every_older_glibc_and_the_aliases():
  tags = gpu_wheels.platform_tags('manylinux_2_28_x86_64')
  assert tags[0] == 'manylinux_2_28_x86_64' and tags[-1] == 'manylinux1_x86_64'
  assert 'manylinux_2_17_x86_64' in tags and 'manylinux2014_x86_64' in tags
  assert 'manylinux_2_29_x86_64' not in tags and len(tags) == len(set(tags)) == 24 + 3
  assert 'manylinux2014_aarch64' in gpu_wheels.platform_tags('manylinux_2_17_aarch64')
  assert 'manylinux2010_aarch64' not in gpu_wheels.platform_tags('manylinux_2_11_aarch64')
  assert gpu_wheels.platform_tags('macosx_11_0_arm64') == ['macosx_11_0_arm64']


def test_image_package_list_gives_names_and_pins():
  names, pins = gpu_wheels.read_have([
      '# pip list --format=freeze\n', 'jax==0.11.2\n', 'Flax == 0.12.9\n',
      'ml_collections\n', 'torch @ file:///wheels/torch.whl\n', '-e /src/thing\n', '\n'])
  assert names == {'jax', 'flax', 'ml-collections', 'torch'}
  assert pins == ['jax==0.11.2', 'Flax==0.12.9']
  with pytest.raises(gpu_wheels.Failure, match="'numpy>=2'"):
    gpu_wheels.read_have(['numpy>=2\n'])


def test_brings_what_the_image_lacks_never_jax():
  wheels = ['jax-0.11.2-py3-none-any.whl',
            'jaxlib-0.11.2-cp312-cp312-manylinux_2_27_x86_64.whl',
            'tensorboardx-2.6.5-py3-none-any.whl', 'ml_collections-1.1.0-py3-none-any.whl',
            'grain-0.2.18-cp312-cp312-manylinux_2_28_x86_64.whl',
            'numpy-2.5.5-cp312-cp312-manylinux_2_28_x86_64.whl']
  assert gpu_wheels.to_bring(wheels, set()) == sorted(wheels[2:])
  have = {'numpy', 'tensorboardx'}  # canonical names, as read_have gives them
  assert gpu_wheels.to_bring(wheels, have) == [
      'grain-0.2.18-cp312-cp312-manylinux_2_28_x86_64.whl',
      'ml_collections-1.1.0-py3-none-any.whl']


def test_install_command_uses_no_index():
  assert gpu_wheels.install_command('gpu-wheels') == (
      'python3 -m pip install --no-index --find-links gpu-wheels mh2f-jax')


def test_refuses_a_folder_with_files_before_any_download(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(gpu_wheels, '_pip', lambda *a: pytest.fail('pip ran'))
  out = tmp_path / 'wheels'
  out.mkdir()
  (out / 'mine.txt').write_text('kept')
  assert gpu_wheels.main([f'--output={out}']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f'error: --output {out} exists and is not an empty folder: name a new one']
  assert os.listdir(out) == ['mine.txt'] and (out / 'mine.txt').read_text() == 'kept'
  assert gpu_wheels.main([f'--output={tmp_path / "new"}',
                          f'--have={tmp_path / "absent.txt"}']) == 2
  assert capsys.readouterr().err.startswith(f'error: --have {tmp_path / "absent.txt"}: ')
  assert not (tmp_path / 'new').exists()
