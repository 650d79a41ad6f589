"""A run's logged training scalars as one compact CSV, what a finished run keeps.

TensorBoard's event files are the working format while a run trains; `scalars.csv`, one
row per logged step and one column per tag, is what a committed run keeps instead (about
a fifth of their size). Values are float32 as logged, written in their shortest exact form
and read back as float32, so two runs' CSVs are equal exactly when their logged scalars
are bit for bit.

bin/train rewrites root_dir/scalars.csv at every checkpoint; `export` also converts a run
copied with its event files. Only `export` and reading events import TensorFlow.
"""

import csv
import glob
import os
from typing import Dict, Optional, Tuple

import numpy as np

SCALARS_FILE = 'scalars.csv'
EVENT_DIR = 'train'  # bin/train's training summaries (losses, pulls, diagnostics)

Series = Dict[str, Tuple[Tuple[int, ...], Tuple[float, ...]]]  # tag -> (steps, values)


def _read_csv(path: str) -> Dict[Tuple[int, str], float]:
  with open(path, newline='') as stream:
    rows = list(csv.DictReader(stream))
  return {(int(row['step']), tag): float(np.float32(text))
          for row in rows for tag, text in row.items() if tag != 'step' and text != ''}


def _read_events(run_dir: str) -> Dict[Tuple[int, str], float]:
  """(step, tag) -> value of the event files under run_dir/train; a later file (by name:
  by creation time) overrides an earlier one, as a resumed run relogs the same steps."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only this needs it)
  points = {}
  for path in sorted(glob.glob(os.path.join(run_dir, EVENT_DIR, 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        points[(event.step, value.tag)] = float(tf.make_ndarray(value.tensor))
  return points


def _series(points: Dict[Tuple[int, str], float]) -> Series:
  by_tag: Dict[str, dict] = {}
  for (step, tag), value in points.items():
    by_tag.setdefault(tag, {})[step] = value
  return {tag: tuple(zip(*sorted(values.items()))) for tag, values in by_tag.items()}


def read(run_dir: str) -> Series:
  """{tag: (steps, values)} of a run: its scalars.csv, or its event files if it has none
  (a run still training before its first checkpoint, or one copied from elsewhere)."""
  path = os.path.join(run_dir, SCALARS_FILE)
  return _series(_read_csv(path) if os.path.exists(path) else _read_events(run_dir))


def truncate(run_dir: str, last_step: int) -> None:
  """Drops the rows after `last_step` (a resumed run relogs them from its checkpoint)."""
  path = os.path.join(run_dir, SCALARS_FILE)
  if os.path.exists(path):
    _write(path, {key: v for key, v in _read_csv(path).items() if key[0] <= last_step})


def export(run_dir: str, last_step: Optional[int] = None) -> str:
  """Writes run_dir/scalars.csv: its rows so far, updated with the event files' scalars
  (up to `last_step` if given). Returns the path."""
  path = os.path.join(run_dir, SCALARS_FILE)
  points = _read_csv(path) if os.path.exists(path) else {}
  points.update(_read_events(run_dir))
  if last_step is not None:
    points = {key: v for key, v in points.items() if key[0] <= last_step}
  _write(path, points)
  return path


def _write(path: str, points: Dict[Tuple[int, str], float]) -> None:
  """Written beside `path`, then renamed over it: a kill midway keeps the old file whole."""
  tags = sorted({tag for _, tag in points})
  steps = sorted({step for step, _ in points})
  partial = path + '.partial'
  with open(partial, 'w', newline='') as stream:
    writer = csv.writer(stream)
    writer.writerow(['step', *tags])
    for step in steps:
      writer.writerow([step] + [str(np.float32(points[(step, tag)]))
                               if (step, tag) in points else '' for tag in tags])
  os.replace(partial, path)
