"""What a run trained on and where its weights came from: ``WORKDIR/run.json``.

Training writes it when it starts: ``trained_on`` (one row per dataset: name, split,
pair count, share of the batches, data folder) and ``weights`` (``init_from``'s origin:
the workdir and step or the parameters file, and the parameters kept fresh; or the seed
of a random start). A resumed run rewrites ``trained_on`` and keeps ``weights``, which
only the run's first start decides. The evaluation report cites both
(:func:`markdown_lines`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from mh2f_jax import files

RECORD_FILE = 'run.json'


def load(workdir: str) -> dict[str, Any] | None:
  """The workdir's record, or None (a workdir written before records, or unreadable)."""
  try:
    with open(os.path.join(workdir, RECORD_FILE)) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return None
  return record if isinstance(record, dict) else None


def save(workdir: str, trained_on: list[dict[str, Any]],
         weights: dict[str, Any] | None) -> None:
  """Writes the record atomically.

  Args:
    workdir: the run's directory.
    trained_on: rows of ``mixture.describe``.
    weights: where the step-0 weights came from (``init_from.initial_state``), or None
      on a resume, which keeps the recorded one.
  """
  previous = load(workdir) or {}
  if weights is None:
    weights = previous.get('weights')
  files.write_json_atomic(os.path.join(workdir, RECORD_FILE),
                          {'trained_on': trained_on, 'weights': weights})


def weights_text(weights: dict[str, Any] | None) -> str:
  """One line on where the weights of step 0 came from."""
  if not weights:
    return 'not recorded (a workdir written before run.json)'
  if not weights.get('init_from'):
    return f'random initialisation (seed {weights.get("seed")})'
  text = f'{weights["init_from"]}'
  if 'step' in weights:
    text += f', step {weights["step"]} ({weights.get("params", "raw")} parameters)'
  if weights.get('skipped'):
    text += '; kept at their fresh initialisation: ' + ', '.join(weights['skipped'])
  return text


def markdown_lines(record: dict[str, Any] | None) -> list[str]:
  """The report's lines on the training data and the starting weights."""
  if record is None:
    return ['- Trained on: not recorded (a workdir written before run.json).']
  rows = record.get('trained_on') or []
  data = '; '.join(f'{r["dataset"]} {r["split"]} ({r["count"]} pairs, '
                   f'{100 * r["weight"]:.3g}% of the batches)' for r in rows)
  return [f'- Trained on: {data or "not recorded"}.',
          f'- Started from: {weights_text(record.get("weights"))}.']
