"""The training scalars' CSV: exact float32 values, resumed runs, and atomic rewrites."""

import os

import numpy as np
import tensorflow as tf

from gmas_tf import scalars


def log(run_dir, points):
  with tf.summary.create_file_writer(os.path.join(run_dir, 'train')).as_default():
    for step, tag, value in points:
      tf.summary.scalar(tag, value, step=step)


def test_export_keeps_every_float32_bit_and_reads_back_what_the_events_hold(tmp_path):
  values = [0.1, 1 / 3, 1e-7 * np.pi, 123456.789, -2.5e-30]
  log(tmp_path, [(100 * (i + 1), 'Losses/q', v) for i, v in enumerate(values)]
      + [(200, 'charts/steps_per_second', 7.25)])
  from_events = scalars.read(str(tmp_path))  # no CSV yet: the event files
  scalars.export(str(tmp_path))
  from_csv = scalars.read(str(tmp_path))
  assert from_csv == from_events
  assert from_csv['Losses/q'][0] == (100, 200, 300, 400, 500)
  assert [np.float32(v) for v in from_csv['Losses/q'][1]] == [np.float32(v) for v in values]
  # One row per step, one column per tag; a tag not logged at a step leaves its cell empty.
  lines = (tmp_path / scalars.SCALARS_FILE).read_text().splitlines()
  assert lines[0] == 'step,Losses/q,charts/steps_per_second'
  assert lines[1] == '100,0.1,' and lines[2] == '200,0.33333334,7.25'
  assert not (tmp_path / (scalars.SCALARS_FILE + '.partial')).exists()


def test_a_resumed_run_keeps_the_rows_of_its_first_part_and_relogs_the_rest(tmp_path):
  # The first part logged to step 300 but was checkpointed at 200; its event files are
  # gone (another machine), its CSV was kept.
  log(tmp_path, [(100, 'Losses/q', 1.0), (200, 'Losses/q', 2.0), (300, 'Losses/q', 3.0)])
  scalars.export(str(tmp_path))
  for name in os.listdir(tmp_path / 'train'):
    os.remove(tmp_path / 'train' / name)
  scalars.truncate(str(tmp_path), 200)  # bin/train on resuming from step 200
  assert scalars.read(str(tmp_path))['Losses/q'] == ((100, 200), (1.0, 2.0))
  log(tmp_path, [(300, 'Losses/q', 30.0), (400, 'Losses/q', 40.0), (500, 'Losses/q', 50.0)])
  scalars.export(str(tmp_path), last_step=400)  # the checkpoint at 400; 500 comes again
  assert scalars.read(str(tmp_path))['Losses/q'] == ((100, 200, 300, 400),
                                                      (1.0, 2.0, 30.0, 40.0))
