"""bin/sweep on gin/smoke.gin runs: skips finished runs, resumes killed ones."""

import os
import signal
import subprocess
import sys
import time

import pytest

from gmas_tf import sweep
from gmas_tf import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_sweep(path, data_root, epochs):
  path.write_text(f"""
import gmas_tf.sweep
experiment.configs = {{'crar': '{REPO}/gin/smoke.gin'}}
experiment.seeds = [0, 1]
experiment.bindings = ["dataset_directory.data_root = '{data_root}'", 'train.epochs = {epochs}']
""")
  return str(path)


def sweep_command(gin_file, root):
  return [sys.executable, os.path.join(REPO, 'bin', 'sweep'), '--gin_file', gin_file,
          '--root_dir', str(root), '--parallel', '2']


def test_runs_are_seed_major_and_pass_the_seed():
  runs = sweep.experiment('/r', configs={'a': 'a.gin', 'b': 'b.gin'}, seeds=[3, 4],
                          bindings=['train.epochs = 2'])
  assert [(r.name, r.seed) for r in runs] == [('a', 3), ('b', 3), ('a', 4), ('b', 4)]
  command = runs[1].command('bin/train')
  assert command[-2:] == ['--root_dir', '/r/b/seed_3']
  first = command.index('--gin_param')
  assert command[first:-2:2] == ['--gin_param'] * 3
  assert command[first + 1:-2:2] == ['train.seed = 3', 'ensure_dataset.seed = 3',
                                     'train.epochs = 2']


def test_a_second_trainer_in_the_same_run_is_refused(tmp_path):
  with train._exclusive(str(tmp_path)):  # pylint: disable=protected-access
    with pytest.raises(train.TrainingError, match='Another process is training'):
      train.train(str(tmp_path))


def test_killed_sweep_resumes_and_skips_finished_runs(tmp_path):
  root = tmp_path / 'sweep'
  gin_file = write_sweep(tmp_path / 'sweep.gin', tmp_path / 'data', epochs=40)
  process = subprocess.Popen(sweep_command(gin_file, root), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, cwd=REPO)
  checkpoints = [root / 'crar' / f'seed_{s}' / 'checkpoints' / 'checkpoint' for s in (0, 1)]
  try:
    deadline = time.time() + 300
    while not all(c.exists() for c in checkpoints) and time.time() < deadline:
      time.sleep(0.5)
  finally:
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0]
  assert all(c.exists() for c in checkpoints), output[-3000:]
  # The trainers die with the sweep: their locks free up.
  deadline = time.time() + 60
  for seed in (0, 1):
    while True:
      try:
        with train._exclusive(str(root / 'crar' / f'seed_{seed}')):  # pylint: disable=protected-access
          break
      except train.TrainingError:
        assert time.time() < deadline, 'a trainer outlived its sweep'
        time.sleep(0.5)
  assert not any((root / 'crar' / f'seed_{s}' / 'finished').exists() for s in (0, 1))

  gin_file = write_sweep(tmp_path / 'sweep.gin', tmp_path / 'data', epochs=3)
  finished = subprocess.run(sweep_command(gin_file, root), capture_output=True, text=True,
                            cwd=REPO, timeout=600)
  assert finished.returncode == 0, finished.stderr[-3000:]
  for seed in (0, 1):
    run_dir = root / 'crar' / f'seed_{seed}'
    assert (run_dir / 'finished').exists()
    assert 'resuming from step' in (run_dir / 'train.log').read_text()
  again = subprocess.run(sweep_command(gin_file, root), capture_output=True, text=True,
                         cwd=REPO, timeout=600)
  assert again.returncode == 0 and '2 of 2 runs already finished' in again.stdout
  assert 'started' not in again.stdout
