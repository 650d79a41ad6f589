"""bin/train stopped by a signal or a NaN loss: what it keeps, and how it goes on."""

import signal
import subprocess

from train_runs import (NO_EVALUATION, REPO, latest_checkpoint_step, read_csv, run_train,
                        train_command)


def test_sigterm_saves_the_last_update_and_a_cut_off_evaluation_runs_again(tmp_path,
                                                                           data_root):
  root = tmp_path / 'run'
  params = ('train.epochs = 1', 'train.steps_per_epoch = 100', 'train.eval_depths = (0,)')
  process = subprocess.Popen(train_command(root, data_root, *params), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=REPO)
  try:
    for line in process.stdout:  # progress lines every 2 updates
      if line.startswith('step ') and int(line.split()[1].split('/')[0]) >= 10:
        break
  finally:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
  assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  assert 'stopped: SIGTERM at step' in stderr and 'Traceback' not in stderr
  stopped_at = latest_checkpoint_step(root)
  assert 10 <= stopped_at < 100  # mid-epoch: the updates since the last epoch are kept
  assert read_csv(root) == []  # no evaluation yet

  result = run_train(root, data_root, *params)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'resuming from step {stopped_at}' in result.stdout
  assert latest_checkpoint_step(root) == 100
  (evaluated,) = read_csv(root)
  assert (evaluated['epoch'], evaluated['step'], evaluated['depth']) == ('1', '100', '0')

  # What a kill (SIGKILL, or SIGTERM outside the updates) during that evaluation would have
  # left: the epoch's checkpoint, saved before the evaluation, and a truncated row. The
  # rerun drops the row and evaluates that checkpoint again.
  path = root / 'evaluations.csv'
  header, row = path.read_text().splitlines()
  path.write_text(f'{header}\n{row[:len(row) // 2]}')
  result = run_train(root, data_root, *params)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'epoch 1/1 step 100' in result.stdout
  (again,) = read_csv(root)
  assert again['steps_per_second'] == 'nan'  # the epoch's updates ran in an earlier process
  del evaluated['steps_per_second'], again['steps_per_second']
  assert again == evaluated  # the same checkpoint, the same evaluation


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data_root):
  root = tmp_path / 'run'
  assert run_train(root, data_root, 'train.epochs = 1', NO_EVALUATION).returncode == 0
  # The ball loss is 0 at first; an infinite weight makes the total loss 0 * inf = NaN.
  result = run_train(root, data_root, "CrarAgent.loss_weights = {'ball': 1e400}",
                     NO_EVALUATION)
  assert result.returncode == 1
  assert 'error: The loss became nan' in result.stderr
  assert 'Traceback' not in result.stderr
  assert latest_checkpoint_step(root) == 4
  # The kept checkpoint still loads.
  assert run_train(root, data_root, 'train.epochs = 1', NO_EVALUATION).returncode == 0
