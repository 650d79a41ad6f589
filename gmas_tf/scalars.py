"""A run's logged training scalars as one compact gzipped CSV, what a finished run keeps.

TensorBoard's event files are the working format while a run trains; `scalars.csv.gz`,
one row per logged step and one column per tag, is what a committed run keeps instead
(DoorKey's CRAR seed 0: 1.49 MB of event files, 229 KB as plain CSV, 91 KB gzipped).
Values are float32 as logged, written in their shortest exact form and read back as
float32, so two runs' CSVs are equal exactly when their logged scalars are bit for bit.
The gzip header carries no name or time, so the same scalars give the same bytes;
`zcat scalars.csv.gz` or pandas.read_csv reads it.

bin/train rewrites root_dir/scalars.csv.gz at every checkpoint; `export` also converts a
run copied with its event files, or one that kept the uncompressed scalars.csv of earlier
versions (then removed). Only `export` and reading events import TensorFlow.
"""

import csv
import glob
import gzip
import io
import os
from typing import Dict, Optional, Tuple

import numpy as np

SCALARS_FILE = 'scalars.csv.gz'
PLAIN_SCALARS_FILE = 'scalars.csv'  # what runs of earlier versions kept; read, then replaced
EVENT_DIR = 'train'  # bin/train's training summaries (losses, pulls, diagnostics)

Series = Dict[str, Tuple[Tuple[int, ...], Tuple[float, ...]]]  # tag -> (steps, values)


def csv_path(run_dir: str) -> Optional[str]:
  """The run's scalars CSV, gzipped or (an earlier version's) plain, if it has one."""
  for name in (SCALARS_FILE, PLAIN_SCALARS_FILE):
    if os.path.exists(os.path.join(run_dir, name)):
      return os.path.join(run_dir, name)
  return None


def _read_csv(path: Optional[str]) -> Dict[Tuple[int, str], float]:
  if path is None:
    return {}
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rt', newline='') as stream:
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
  """{tag: (steps, values)} of a run: its scalars CSV, or its event files if it has none
  (a run still training before its first checkpoint, or one copied from elsewhere)."""
  path = csv_path(run_dir)
  return _series(_read_csv(path) if path else _read_events(run_dir))


def truncate(run_dir: str, last_step: int) -> None:
  """Drops the rows after `last_step` (a resumed run relogs them from its checkpoint)."""
  path = csv_path(run_dir)
  if path:
    _write(run_dir, {key: v for key, v in _read_csv(path).items() if key[0] <= last_step})


def export(run_dir: str, last_step: Optional[int] = None) -> str:
  """Writes run_dir/scalars.csv.gz: its rows so far, updated with the event files' scalars
  (up to `last_step` if given). Returns the path."""
  points = _read_csv(csv_path(run_dir))
  points.update(_read_events(run_dir))
  if last_step is not None:
    points = {key: v for key, v in points.items() if key[0] <= last_step}
  return _write(run_dir, points)


def _write(run_dir: str, points: Dict[Tuple[int, str], float]) -> str:
  """Writes run_dir/scalars.csv.gz beside itself, then renames it over the old one (a kill
  midway keeps the old file whole), then removes an earlier version's plain scalars.csv.
  Returns the path."""
  tags = sorted({tag for _, tag in points})
  steps = sorted({step for step, _ in points})
  text = io.StringIO(newline='')
  writer = csv.writer(text)
  writer.writerow(['step', *tags])
  for step in steps:
    writer.writerow([step] + [str(np.float32(points[(step, tag)]))
                             if (step, tag) in points else '' for tag in tags])
  path = os.path.join(run_dir, SCALARS_FILE)
  with open(path + '.partial', 'wb') as raw:
    with gzip.GzipFile(filename='', mode='wb', fileobj=raw, mtime=0) as stream:
      stream.write(text.getvalue().encode())
  os.replace(path + '.partial', path)
  if os.path.exists(os.path.join(run_dir, PLAIN_SCALARS_FILE)):
    os.remove(os.path.join(run_dir, PLAIN_SCALARS_FILE))
  return path
