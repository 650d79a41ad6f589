"""bin/sweep on gin/smoke.gin runs: skips finished runs, resumes killed ones."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from gmas_tf import cli
from gmas_tf import runner
from gmas_tf import sweep
from gmas_tf import train
from gmas_tf.errors import TrainingError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_sweep(path, data_root, epochs):
  path.write_text(f"""
import gmas_tf.sweep
experiment.configs = {{'crar': '{REPO}/gin/smoke.gin'}}
experiment.seeds = [0, 1]
experiment.bindings = ["dataset_directory.data_root = '{data_root}'", 'train.epochs = {epochs}',
                       'train.eval_depths = ()']  # evaluations are bin/train's tests' part
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


def test_config_major_runs_every_seed_of_a_config_first():
  runs = sweep.experiment('/r', configs={'a': 'a.gin', 'b': 'b.gin'}, seeds=[3, 4],
                          config_major=True)
  assert [(r.name, r.seed, r.gin_file) for r in runs] == [
      ('a', 3, 'a.gin'), ('a', 4, 'a.gin'), ('b', 3, 'b.gin'), ('b', 4, 'b.gin')]


def test_threads_reach_the_train_command_only_when_set():
  (run,) = sweep.experiment('/r', configs={'a': 'a.gin'}, seeds=[0])
  assert '--threads' not in run.command('bin/train')
  command = run.command('bin/train', threads=1)
  assert command[-4:] == ['--threads', '1', '--root_dir', '/r/a/seed_0']


def test_negative_threads_is_a_clear_error():
  with pytest.raises(cli.UserError, match='--threads must be 0'):
    cli.set_threads(-1)


def test_a_second_trainer_in_the_same_run_is_refused(tmp_path):
  with runner.exclusive(str(tmp_path)):
    with pytest.raises(TrainingError, match='Another process is training'):
      train.train(str(tmp_path))


def test_killed_sweep_resumes_and_skips_finished_runs(tmp_path):
  root = tmp_path / 'sweep'
  gin_file = write_sweep(tmp_path / 'sweep.gin', tmp_path / 'data', epochs=40)
  process = subprocess.Popen(sweep_command(gin_file, root), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, cwd=REPO)
  checkpoints = [root / 'crar' / f'seed_{s}' / 'checkpoints' / 'checkpoint' for s in (0, 1)]
  try:
    deadline = time.time() + 600  # generous: the suite's other worker shares the cores
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
        with runner.exclusive(str(root / 'crar' / f'seed_{seed}')):
          break
      except TrainingError:
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


FAKE_TRAIN = """
import os, sys
root = sys.argv[sys.argv.index('--root_dir') + 1]
open(os.path.join(root, 'evaluations.csv'), 'w').write('step,depth\\n10,0\\n')
open(os.path.join(root, 'operative_config.gin'), 'w').write(' '.join(sys.argv[1:]))
open(os.path.join(root, 'scalars.csv.gz'), 'w').write('step,Losses/q\\n10,0.5\\n')
os.makedirs(os.path.join(root, 'train'), exist_ok=True)
open(os.path.join(root, 'train', 'events.out.tfevents.1'), 'w').write('scalars')
"""


def test_results_dir_keeps_summaries_and_a_new_session_skips_those_runs(tmp_path):
  fake = tmp_path / 'fake_train.py'
  fake.write_text(FAKE_TRAIN)
  results = tmp_path / 'kept'
  first = sweep.experiment(str(tmp_path / 'session1'), configs={'a': 'a.gin'}, seeds=[0, 1],
                           results_dir=str(results))
  assert sweep.run_all(first[:1], str(fake), poll_seconds=0.01) == []
  kept = results / 'a' / 'seed_0'
  # The run's CSVs and config, not its event files.
  assert sorted(os.listdir(kept)) == sorted(sweep.SUMMARY_FILES)  # no `finished` marker
  assert (kept / 'scalars.csv.gz').read_text() == 'step,Losses/q\n10,0.5\n'
  assert (kept / 'evaluations.csv').read_text() == 'step,depth\n10,0\n'
  assert 'train.seed = 0' in (kept / 'operative_config.gin').read_text()
  # A later session: a fresh root_dir, the same kept folder.
  second = sweep.experiment(str(tmp_path / 'session2'), configs={'a': 'a.gin'}, seeds=[0, 1],
                            results_dir=str(results))
  assert [r.finished for r in second] == [True, False]
  assert sweep.run_all(second, str(fake), poll_seconds=0.01) == []
  assert not (tmp_path / 'session2' / 'a' / 'seed_0').exists()  # skipped, not retrained
  assert (results / 'a' / 'seed_1' / 'evaluations.csv').exists()


def test_a_run_finished_elsewhere_while_waiting_is_skipped(tmp_path):
  # The first run's trainer finishes the second run meanwhile, as a copy of another
  # sweep's summaries into results_dir would: when its turn comes, it is not trained.
  results = tmp_path / 'kept'
  fake = tmp_path / 'fake_train.py'
  fake.write_text(FAKE_TRAIN + f"""
other = {str(results / 'a' / 'seed_1')!r}
os.makedirs(other)
open(os.path.join(other, 'evaluations.csv'), 'w').write('step,depth\\n10,0\\n')
""")
  runs = sweep.experiment(str(tmp_path / 'root'), configs={'a': 'a.gin'}, seeds=[0, 1],
                          results_dir=str(results))
  assert [r.finished for r in runs] == [False, False]
  assert sweep.run_all(runs, str(fake), poll_seconds=0.01) == []
  assert (tmp_path / 'root' / 'a' / 'seed_0' / 'evaluations.csv').exists()
  assert not (tmp_path / 'root' / 'a' / 'seed_1').exists()


def test_a_failed_run_leaves_nothing_in_results_dir(tmp_path):
  fake = tmp_path / 'failing_train.py'
  fake.write_text('raise SystemExit(3)')
  runs = sweep.experiment(str(tmp_path / 'root'), configs={'a': 'a.gin'}, seeds=[0],
                          results_dir=str(tmp_path / 'kept'))
  assert sweep.run_all(runs, str(fake), poll_seconds=0.01) == runs
  assert not (tmp_path / 'kept').exists()
  assert not runs[0].finished


def test_parallel_below_one_is_a_clear_error(tmp_path):
  gin_file = write_sweep(tmp_path / 'sweep.gin', tmp_path / 'data', epochs=1)
  command = sweep_command(gin_file, tmp_path / 'sweep')
  command[command.index('--parallel') + 1] = '0'
  result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode == 1
  assert '--parallel must be at least 1, got 0' in result.stderr
  assert not (tmp_path / 'sweep').exists()


def write_checkpoint(directory, step):
  """What a CheckpointManager leaves: the index file naming the latest, and its files."""
  os.makedirs(directory, exist_ok=True)
  for suffix in ('.index', '.data-00000-of-00001'):
    (directory / f'ckpt-{step}{suffix}').write_text(f'{step}{suffix}')
  (directory / 'checkpoint').write_text(f'model_checkpoint_path: "ckpt-{step}"\n'
                                        f'all_model_checkpoint_paths: "ckpt-{step}"\n')


def test_unfinished_run_keeps_only_its_latest_checkpoint_and_a_new_session_resumes_it(tmp_path):
  results = tmp_path / 'kept'
  (run,) = sweep.experiment(str(tmp_path / 'session1'), configs={'a': 'a.gin'}, seeds=[0],
                            results_dir=str(results))
  root = tmp_path / 'session1' / 'a' / 'seed_0'
  assert not run.keep_progress()  # nothing to keep yet
  write_checkpoint(root / 'checkpoints', 5)
  (root / 'evaluations.csv').write_text('step,depth\n5,0\n')
  assert run.keep_progress() and not run.keep_progress()  # the second call: nothing new
  write_checkpoint(root / 'checkpoints', 10)
  (root / 'train').mkdir()
  (root / 'train' / 'events.out.tfevents.1').write_text('scalars to 10')
  (root / 'scalars.csv.gz').write_text('step,Losses/q\n10,0.5\n')
  assert run.keep_progress()
  kept = results / 'a' / 'seed_0' / 'unfinished'
  assert sorted(os.listdir(kept / 'checkpoints')) == [
      'checkpoint', 'ckpt-10.data-00000-of-00001', 'ckpt-10.index']
  assert sorted(os.listdir(kept)) == ['checkpoints', 'evaluations.csv', 'scalars.csv.gz']
  assert not run.finished
  # A later session starts from the kept checkpoint, not from scratch.
  (later,) = sweep.experiment(str(tmp_path / 'session2'), configs={'a': 'a.gin'}, seeds=[0],
                              results_dir=str(results))
  assert later.restore_progress()
  new_root = tmp_path / 'session2' / 'a' / 'seed_0'
  assert (new_root / 'checkpoints' / 'ckpt-10.index').read_text() == '10.index'
  assert (new_root / 'evaluations.csv').read_text() == 'step,depth\n5,0\n'
  assert not later.restore_progress()  # root_dir has its own checkpoint now
  assert (new_root / 'scalars.csv.gz').read_text() == 'step,Losses/q\n10,0.5\n'
  # Once the run finishes, the kept checkpoint goes; the scalars of both sessions stay (bin/
  # train exports them into the CSV it was resumed with: tests/test_scalars.py).
  (new_root / 'operative_config.gin').write_text('')
  (new_root / 'scalars.csv.gz').write_text('step,Losses/q\n10,0.5\n20,0.25\n')
  later.mark_finished()
  assert not kept.exists() and later.finished
  assert sorted(os.listdir(results / 'a' / 'seed_0')) == sorted(sweep.SUMMARY_FILES)
  assert (results / 'a' / 'seed_0' / 'scalars.csv.gz').read_text().endswith('20,0.25\n')


EVALUATIONS = ('step,depth,held_out_epsilon_score\n5000,0,-4.5\n5000,3,-4.25\n'
               '10000,0,-3.0\n10000,3,0.5\n')


def test_status_says_where_each_run_stands(tmp_path):
  runs = sweep.experiment(str(tmp_path / 'root'), configs={'a': 'a.gin'}, seeds=[0, 1, 2, 3],
                          results_dir=str(tmp_path / 'kept'))
  os.makedirs(runs[0].results_dir)
  (tmp_path / 'kept' / 'a' / 'seed_0' / 'evaluations.csv').write_text(EVALUATIONS)
  # Run 1's kept copy is older than what its root_dir has trained since.
  write_checkpoint(tmp_path / 'kept' / 'a' / 'seed_1' / 'unfinished' / 'checkpoints', 5000)
  (tmp_path / 'kept' / 'a' / 'seed_1' / 'unfinished' / 'evaluations.csv').write_text(
      EVALUATIONS.split('10000')[0])
  write_checkpoint(tmp_path / 'root' / 'a' / 'seed_1' / 'checkpoints', 12078)
  (tmp_path / 'root' / 'a' / 'seed_1' / 'evaluations.csv').write_text(EVALUATIONS)
  write_checkpoint(tmp_path / 'kept' / 'a' / 'seed_2' / 'unfinished' / 'checkpoints', 27301)
  assert [r.status() for r in runs] == [
      'a seed 0: finished; last evaluation at step 10000: d0 -3.00, d3 +0.50',
      'a seed 1: checkpoint at step 12078; last evaluation at step 10000: d0 -3.00, d3 +0.50',
      'a seed 2: kept checkpoint at step 27301',
      'a seed 3: not started']
  assert not (tmp_path / 'root' / 'a' / 'seed_2').exists()  # reading restores nothing


def test_bin_sweep_status_trains_nothing(tmp_path):
  gin_file = write_sweep(tmp_path / 'sweep.gin', tmp_path / 'data', epochs=1)
  result = subprocess.run(sweep_command(gin_file, tmp_path / 'sweep') + ['--status'],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == ['crar seed 0: not started', 'crar seed 1: not started']
  assert not (tmp_path / 'sweep').exists() and not (tmp_path / 'data').exists()


# A fake trainer's checkpoint at `step`, as a CheckpointManager leaves it (fake_train.py code).
FAKE_CHECKPOINT = """
def save_checkpoint():
  checkpoints = os.path.join(root, 'checkpoints')
  os.makedirs(checkpoints, exist_ok=True)
  for name in ('ckpt-{step}.index', 'ckpt-{step}.data-00000-of-00001'):
    open(os.path.join(checkpoints, name), 'w').write(name)
  open(os.path.join(checkpoints, 'checkpoint'), 'w').write('model_checkpoint_path: "ckpt-{step}"')
"""


def test_sweep_keeps_the_checkpoint_of_a_training_run(tmp_path):
  fake = tmp_path / 'fake_train.py'
  fake.write_text(f"""
import os, sys, time
root = sys.argv[sys.argv.index('--root_dir') + 1]
{FAKE_CHECKPOINT.format(step=3)}
save_checkpoint()
time.sleep(1.0)
sys.exit(1)  # killed before the end: unfinished
""")
  runs = sweep.experiment(str(tmp_path / 'root'), configs={'a': 'a.gin'}, seeds=[0],
                          results_dir=str(tmp_path / 'kept'))
  assert sweep.run_all(runs, str(fake), poll_seconds=0.05) == runs
  assert (tmp_path / 'kept' / 'a' / 'seed_0' / 'unfinished' / 'checkpoints' /
          'ckpt-3.index').exists()


def test_interrupted_sweep_keeps_the_checkpoint_its_trainer_saves_on_sigterm(tmp_path):
  # Like bin/train: on SIGTERM it saves its last update, then exits with 143.
  fake = tmp_path / 'fake_train.py'
  fake.write_text(f"""
import os, signal, sys, time
root = sys.argv[sys.argv.index('--root_dir') + 1]
{FAKE_CHECKPOINT.format(step=7)}
def stop(*_):
  save_checkpoint()
  sys.exit(143)
signal.signal(signal.SIGTERM, stop)
open(os.path.join(root, 'ready'), 'w').close()
time.sleep(120)
""")
  runs = sweep.experiment(str(tmp_path / 'root'), configs={'a': 'a.gin'}, seeds=[0],
                          results_dir=str(tmp_path / 'kept'))
  ready = tmp_path / 'root' / 'a' / 'seed_0' / 'ready'

  def interrupt():  # Ctrl-C once the trainer runs (bin/sweep turns SIGTERM into the same)
    deadline = time.time() + 60
    while not ready.exists() and time.time() < deadline:
      time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGINT)

  # A shell without job control starts background commands with SIGINT ignored, and
  # Python then leaves it so: the test sets Ctrl-C's usual handler itself.
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  threading.Thread(target=interrupt, daemon=True).start()
  try:
    with pytest.raises(KeyboardInterrupt):
      sweep.run_all(runs, str(fake), poll_seconds=0.05)
  finally:
    signal.signal(signal.SIGINT, previous)
  kept = tmp_path / 'kept' / 'a' / 'seed_0' / 'unfinished' / 'checkpoints'
  assert sorted(os.listdir(kept)) == ['checkpoint', 'ckpt-7.data-00000-of-00001',
                                      'ckpt-7.index']


def test_ray_backend_runs_a_two_run_sweep_and_a_rerun_skips_it(tmp_path):
  import ray  # pylint: disable=import-outside-toplevel  (the test extra installs it)
  fake = tmp_path / 'fake_train.py'
  fake.write_text(FAKE_TRAIN)
  runs = sweep.experiment(str(tmp_path / 'root'), configs={'a': 'a.gin'}, seeds=[0, 1],
                          results_dir=str(tmp_path / 'kept'))
  sweep.start_ray(None, parallel=2)
  try:
    assert sweep.run_all(runs, str(fake), parallel=2, poll_seconds=0.05,
                         backend='ray') == []
    assert all(r.finished for r in runs)
    for seed in (0, 1):
      assert f'train.seed = {seed}' in (tmp_path / 'kept' / 'a' / f'seed_{seed}' /
                                        'operative_config.gin').read_text()
    again = sweep.experiment(str(tmp_path / 'root2'), configs={'a': 'a.gin'}, seeds=[0, 1],
                             results_dir=str(tmp_path / 'kept'))
    assert sweep.run_all(again, str(fake), parallel=2, backend='ray') == []
    assert not (tmp_path / 'root2').exists()  # both skipped
  finally:
    ray.shutdown()


def test_a_kept_dir_holds_the_unfinished_checkpoint_apart_from_the_results(tmp_path):
  (run,) = sweep.experiment(str(tmp_path / 'root'), configs={'a': 'a.gin'}, seeds=[0],
                            results_dir=str(tmp_path / 'results'),
                            kept_dir=str(tmp_path / 'kept'))
  assert run.kept_dir == str(tmp_path / 'kept' / 'a' / 'seed_0')
  root = tmp_path / 'root' / 'a' / 'seed_0'
  write_checkpoint(root / 'checkpoints', 5)
  (root / 'evaluations.csv').write_text('step,depth\n5,0\n')
  assert run.keep_progress()
  assert (tmp_path / 'kept' / 'a' / 'seed_0' / 'checkpoints' / 'ckpt-5.index').exists()
  assert not (tmp_path / 'results').exists()  # the results hold finished runs only
  assert run.status() == 'a seed 0: checkpoint at step 5'
  (root / 'operative_config.gin').write_text('')
  (root / 'scalars.csv.gz').write_text('step\n')
  run.mark_finished()
  assert not (tmp_path / 'kept' / 'a' / 'seed_0').exists() and run.finished
  assert sorted(os.listdir(tmp_path / 'results' / 'a' / 'seed_0')) == sorted(
      sweep.SUMMARY_FILES)


def test_a_sweep_starts_a_run_from_its_kept_checkpoint_and_names_where_it_was_kept(
    tmp_path, capsys):
  fake = tmp_path / 'fake_train.py'
  fake.write_text(FAKE_TRAIN)
  (run,) = sweep.experiment(str(tmp_path / 'root'), configs={'a': 'a.gin'}, seeds=[0],
                            results_dir=str(tmp_path / 'results'),
                            kept_dir=str(tmp_path / 'kept'))
  write_checkpoint(tmp_path / 'kept' / 'a' / 'seed_0' / 'checkpoints', 5)
  assert sweep.run_all([run], str(fake), poll_seconds=0.01) == []
  assert (tmp_path / 'root' / 'a' / 'seed_0' / 'checkpoints' / 'ckpt-5.index').exists()
  kept = tmp_path / 'kept' / 'a' / 'seed_0'
  assert f'a seed 0: starting from the checkpoint kept in {kept}\n' in capsys.readouterr().out
  assert run.finished and not kept.exists()
