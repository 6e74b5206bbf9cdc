"""Writes reference.json: the LIVE releases' NIQE and BRISQUE of parity_images(), in GNU Octave.

The parity tests (test_niqe.py, test_brisque.py) compare with these numbers, so they run
without Octave. To make them again (README.md here says what the two folders hold):

  python tests/metrics/octave/make_reference.py \\
      --niqe_release=NIQE_DIR --brisque_release=BRISQUE_DIR

It needs ``octave-cli`` with the image package, and libsvm's ``svm-scale`` and
``svm-predict`` on PATH (``brisquescore.m`` runs them).
"""

import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import scipy.io

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from parity_images import parity_images  # pylint: disable=g-import-not-at-top,wrong-import-position

OUT = HERE / 'reference.json'
NIQE_FILES = ('computequality.m', 'computefeature.m', 'estimateaggdparam.m',
              'modelparameters.mat')
BRISQUE_FILES = ('brisquescore.m', 'brisque_feature.m', 'estimateggdparam.m',
                 'estimateaggdparam.m', 'allmodel', 'allrange')


def _octave(code: str) -> str:
  run = subprocess.run(['octave-cli', '--norc', '--quiet', '--eval', code], cwd=HERE,
                       capture_output=True, text=True, check=True)
  return run.stdout


def _sha256(folder: pathlib.Path, names) -> dict:
  return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


def _setup() -> dict:
  """What ran: Octave, its image package and BLAS, the release files' digests."""
  lines = _octave("disp(version()); p = pkg('list', 'image'); disp(p{1}.version); "
                  "disp(version('-blas'))").strip().split('\n')
  return {'octave': lines[0], 'octave_image': lines[1], 'blas': lines[2]}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--niqe_release', required=True, type=pathlib.Path)
  parser.add_argument('--brisque_release', required=True, type=pathlib.Path)
  args = parser.parse_args()
  images = parity_images()
  names = sorted(images)
  with tempfile.TemporaryDirectory() as tmp:
    mat, names_file = os.path.join(tmp, 'images.mat'), os.path.join(tmp, 'names.txt')
    scipy.io.savemat(mat, {f'img{i}': images[n] for i, n in enumerate(names)})
    pathlib.Path(names_file).write_text('\n'.join(names) + '\n')
    niqe_out, brisque_out = os.path.join(tmp, 'niqe.txt'), os.path.join(tmp, 'brisque.txt')
    _octave(f"niqe_reference('{args.niqe_release.resolve()}', '{mat}', '{names_file}', "
            f"'{niqe_out}')")
    _octave(f"brisque_reference('{args.brisque_release.resolve()}', '{mat}', "
            f"'{names_file}', '{brisque_out}')")
    niqe = {n: [float(g), float(y)] for n, g, y in
            (line.split() for line in open(niqe_out, encoding='ascii'))}
    brisque, features = {}, {}
    for line in open(brisque_out, encoding='ascii'):
      name, score, *feat = line.split()
      brisque[name], features[name] = float(score), [float(v) for v in feat]
  reference = {
      'about': 'Scores of the LIVE releases run in GNU Octave on tests/metrics/'
               'parity_images.py, written by tests/metrics/octave/make_reference.py '
               '(see README.md there). niqe: [gray, y]; brisque_features: the 36 of '
               'brisque_feature.m on the grey image brisquescore.m makes.',
      'setup': _setup(),
      'niqe_release_sha256': _sha256(args.niqe_release, NIQE_FILES),
      'brisque_release_sha256': _sha256(args.brisque_release, BRISQUE_FILES),
      'niqe': niqe, 'brisque': brisque, 'brisque_features': features,
  }
  OUT.write_text(json.dumps(reference, indent=1) + '\n')
  print(f'wrote {OUT}')


if __name__ == '__main__':
  main()
