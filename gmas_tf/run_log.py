"""What a run writes besides checkpoints: the evaluations' CSV, the operative config, the
console's progress line."""

import csv
import os
import sys
from typing import Optional, Sequence

import gin


class CsvLog:
  """Appends rows to evaluations.csv. On resume it keeps the rows up to the restored step,
  drops a truncated last line and, if the restored step's evaluation is incomplete (the
  run stopped between that checkpoint and the end of its evaluation), that step's rows,
  and says so in `evaluation_missing`."""

  def __init__(self, path: str, fields: Sequence[str], resume_step: int,
               expects_evaluation: bool, depths: Sequence[int]):
    self._path, self._fields = path, fields
    rows = []
    if os.path.exists(path):
      with open(path) as stream:
        rows = [r for r in csv.DictReader(stream)
                if None not in r.values() and int(r['step']) <= resume_step]
    done = {int(r['depth']) for r in rows if int(r['step']) == resume_step}
    self.evaluation_missing = expects_evaluation and not set(depths) <= done
    if self.evaluation_missing:
      rows = [r for r in rows if int(r['step']) < resume_step]
    with open(path, 'w', newline='') as stream:
      writer = csv.DictWriter(stream, fields)
      writer.writeheader()
      writer.writerows(rows)

  def append(self, row):
    with open(self._path, 'a', newline='') as stream:
      csv.DictWriter(stream, self._fields).writerow(row)


def write_operative_config(root_dir: str) -> None:
  with open(os.path.join(root_dir, 'operative_config.gin'), 'w') as stream:
    stream.write(gin.operative_config_str())


def progress(line: Optional[str]) -> None:
  """The progress line: rewritten in place on a terminal, one line per call in a file or
  pipe. None ends it (on a terminal) before other output."""
  if not sys.stdout.isatty():
    if line is not None:
      print(line, flush=True)
  elif line is None:
    print(flush=True)
  else:
    print(f'\r{line}\x1b[K', end='', flush=True)
