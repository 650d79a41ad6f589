"""The training scalars' CSV: exact float32 values, resumed runs, atomic and reproducible
rewrites, and the plain CSV of earlier versions."""

import gzip
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from gmas_tf import scalars

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
  lines = gzip.decompress((tmp_path / scalars.SCALARS_FILE).read_bytes()).decode().splitlines()
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


def test_the_same_scalars_give_the_same_bytes(tmp_path):
  for run in ('a', 'b'):
    log(tmp_path / run, [(100, 'Losses/q', 0.5), (200, 'Losses/q', 0.25)])
    scalars.export(str(tmp_path / run))
  first, second = ((tmp_path / run / scalars.SCALARS_FILE).read_bytes() for run in 'ab')
  assert first == second
  assert first[4:8] == bytes(4)  # the gzip header's time is 0, and no file name is stored
  assert first[3] == 0


def test_an_earlier_versions_plain_csv_is_read_then_replaced_by_the_gzipped_one(tmp_path):
  (tmp_path / scalars.PLAIN_SCALARS_FILE).write_text('step,Losses/q\n100,0.1\n200,2.5\n')
  assert scalars.read(str(tmp_path)) == {'Losses/q': ((100, 200), (float(np.float32(0.1)),
                                                                   2.5))}
  scalars.export(str(tmp_path))
  assert not (tmp_path / scalars.PLAIN_SCALARS_FILE).exists()
  assert gzip.decompress((tmp_path / scalars.SCALARS_FILE).read_bytes()) == (
      b'step,Losses/q\r\n100,0.1\r\n200,2.5\r\n')


def test_export_scalars_converts_event_files_and_plain_csvs_under_a_root(tmp_path):
  log(tmp_path / 'events_run', [(100, 'Losses/q', 0.5)])
  (tmp_path / 'old_run').mkdir()
  (tmp_path / 'old_run' / scalars.PLAIN_SCALARS_FILE).write_text('step,Losses/q\n100,0.75\n')
  subprocess.run([sys.executable, os.path.join(REPO, 'bin', 'export_scalars'), '--root_dir',
                  str(tmp_path), '--remove_events'], check=True, capture_output=True)
  assert sorted(os.listdir(tmp_path / 'events_run')) == [scalars.SCALARS_FILE]
  assert sorted(os.listdir(tmp_path / 'old_run')) == [scalars.SCALARS_FILE]
  assert scalars.read(str(tmp_path / 'events_run')) == {'Losses/q': ((100,), (0.5,))}
  assert scalars.read(str(tmp_path / 'old_run')) == {'Losses/q': ((100,), (0.75,))}
