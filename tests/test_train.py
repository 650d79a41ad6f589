"""End-to-end tests of bin/train on gin/smoke.gin, each in its own process."""

import glob
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from gmas_tf import checkpoints
from gmas_tf import data
from gmas_tf import evaluation
from gmas_tf import maze_task
from gmas_tf import optimizers
from gmas_tf import run_log
from gmas_tf import scalars
from gmas_tf.envs import maze
from gmas_tf.errors import TrainingError
from train_runs import NO_EVALUATION, REPO, latest_checkpoint_step, read_csv, run_train

PROBE_MODEL = os.path.join(REPO, 'bin', 'diagnostics', 'probe_model')
SINGLE_MAZE = os.path.join(REPO, 'bin', 'diagnostics', 'single_maze')


def test_smoke_run_writes_everything_and_exports_a_standalone_savedmodel(tmp_path, data_root):
  result = run_train(tmp_path / 'run', data_root)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'epoch 2/2 step 8' in result.stdout and 'steps/s' in result.stdout
  assert 'done after 8 updates: held-out score by planning depth' in result.stdout
  (gif,) = glob.glob(str(tmp_path / 'run' / 'gifs' / 'depth_*_and_random.gif'))
  assert gif in result.stdout
  # A clean console: our lines only, no banner, gym notice or library warnings.
  for noise in ('Gym has been unmaintained', 'WARNING', 'deprecat', 'oneDNN', 'I1', 'W1'):
    assert noise not in result.stdout + result.stderr, noise
  rows = read_csv(tmp_path / 'run')
  assert all(-5.0 - 1e-4 <= float(r['held_out_epsilon_score']) <= 3.0 for r in rows)
  assert [(r['epoch'], r['depth']) for r in rows] == [('1', '0'), ('1', '1'), ('2', '0'),
                                                       ('2', '1')]
  assert all(-5.0 - 1e-4 <= float(r['held_out_score']) <= float(r['optimal_held_out_score'])
             for r in rows)
  assert all(-5.0 - 1e-4 <= float(r['train_maze_score']) <= 3.0 for r in rows)
  config = open(tmp_path / 'run' / 'operative_config.gin').read()
  assert "CrarAgent.update_scheme = 'joint'" in config
  # Bindings of functions first called after setup (the dataset, the evaluations) too.
  assert 'make_dataset.key_fraction = 0.0' in config and 'deer_score.num_steps = 20' in config
  assert glob.glob(str(tmp_path / 'run' / 'train' / 'events.out.tfevents.*'))
  # The training scalars' CSV, exported at the last checkpoint, holds what the events do.
  logged = scalars.read(str(tmp_path / 'run'))
  os.rename(tmp_path / 'run' / scalars.SCALARS_FILE, tmp_path / scalars.SCALARS_FILE)
  assert logged == scalars.read(str(tmp_path / 'run')) and 'Losses/q' in logged
  os.rename(tmp_path / scalars.SCALARS_FILE, tmp_path / 'run' / scalars.SCALARS_FILE)
  assert latest_checkpoint_step(tmp_path / 'run') == 8

  # A fresh process that never imports gmas_tf loads the policy and acts on a batch.
  script = textwrap.dedent(f"""
      import collections
      import sys
      import numpy as np
      import tensorflow as tf
      policy = tf.saved_model.load({str(tmp_path / 'run' / 'policies' / 'depth_1')!r})
      batch = 5
      observation = np.full((batch, 48, 48, 1), -1.0, np.float32)
      observation[:, :6, :] = 1.0
      TimeStep = collections.namedtuple(
          'TimeStep', ['step_type', 'reward', 'discount', 'observation'])
      time_step = TimeStep(tf.zeros([batch], tf.int32), tf.zeros([batch]), tf.ones([batch]),
                           tf.constant(observation))
      action = policy.action(time_step, ()).action.numpy()
      assert action.shape == (batch,) and set(action) <= {{0, 1, 2, 3}}, action
      assert not any(m.startswith('gmas_tf') for m in sys.modules)
      print('acted', action)
      """)
  loaded = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=300)
  assert loaded.returncode == 0, loaded.stderr[-3000:]
  assert 'acted' in loaded.stdout

  evaluate = [sys.executable, os.path.join(REPO, 'bin', 'evaluate'), '--num_episodes', '4',
              '--num_rendered', '1']
  result = subprocess.run(evaluate + ['--policy_dir', str(tmp_path / 'run' / 'policies' /
                                                         'depth_0'),
                                      '--render_dir', str(tmp_path / 'gifs')],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads(result.stdout[result.stdout.index('{'):])
  assert summary['num_episodes'] == 4 and -5.0 - 1e-4 <= summary['score'] <= summary['optimal']
  assert os.path.getsize(tmp_path / 'gifs' / 'episode_0.gif') > 0
  missing = subprocess.run(evaluate + ['--policy_dir', str(tmp_path / 'nothing')],
                           capture_output=True, text=True, timeout=300)
  assert missing.returncode == 1 and 'holds no SavedModel' in missing.stderr
  assert 'Traceback' not in missing.stderr

  probe = subprocess.run([sys.executable, PROBE_MODEL,
                          '--root_dir', str(tmp_path / 'run'), '--size', '8', '--depth', '2',
                          '--batches', '2', '--measured', '16', '--thresholds', '1e9,1e-3'],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
  assert probe.returncode == 0, probe.stderr[-3000:]
  probed = json.loads(probe.stdout[probe.stdout.index('{'):])
  assert probed['adaptive_depth_at_1e+09'] == 2 and 0 <= probed['adaptive_depth_at_0.001'] <= 2
  assert probed['one_step_error_q25'] <= probed['one_step_error_median'] <= probed[
      'one_step_error_q75']
  bad = subprocess.run([sys.executable, PROBE_MODEL, '--root_dir',
                        str(tmp_path / 'run'), '--thresholds', '1e-3,-1'],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
  assert bad.returncode == 1 and '--thresholds takes positive numbers' in bad.stderr
  assert probed['step'] == 8 and probed['q_slope_norm'] > 0 and probed['label_norm'] > 0
  assert -1.0 <= probed['slope_cosine'] <= 1.0
  # Every loss's share of the next update, and the two networks' sums of them.
  shares = [probed[f'slope_change_{n}'] for n in ('transition', 'reward', 'discount', 'ball',
                                                   'dispersion', 'consecutive_dispersion', 'td')]
  assert sum(shares) == pytest.approx(
      probed['slope_change_encoder'] + probed['slope_change_q_network'], abs=1e-6)


def test_unknown_gin_binding_is_one_clear_error(tmp_path, data_root):
  result = run_train(tmp_path / 'run', data_root, 'CrarAgent.learning_rat = 0.1')
  assert result.returncode == 1
  assert 'learning_rat' in result.stderr and 'Traceback' not in result.stderr


def tensorboard_losses(root_dir):
  values = {}
  for path in glob.glob(os.path.join(root_dir, 'train', 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == 'Losses/total':
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


def test_same_seed_and_data_give_the_same_first_30_losses(tmp_path, data_root):
  params = ('train.epochs = 1', 'train.steps_per_epoch = 30', 'train.summary_interval = 1',
            'train.log_interval = 10', NO_EVALUATION)
  losses = []
  for name in ('a', 'b'):
    result = run_train(tmp_path / name, data_root, *params)
    assert result.returncode == 0, result.stderr[-3000:]
    losses.append(tensorboard_losses(tmp_path / name))
  assert sorted(losses[0]) == list(range(1, 31))
  np.testing.assert_array_equal([losses[0][s] for s in range(1, 31)],
                                [losses[1][s] for s in range(1, 31)])


def test_single_maze_check_runs_and_reports_each_depth():
  result = subprocess.run(
      [sys.executable, SINGLE_MAZE, '--num_transitions', '300',
       '--steps', '4', '--eval_every', '2', '--gin_param', "CrarAgent.update_scheme = 'joint'"],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [line for line in result.stdout.splitlines() if line.startswith('step ')]
  assert [line.split()[1] for line in lines] == ['2', '4']
  assert all('by depth {0: (' in line and ', 3: (' in line for line in lines)
  assert 'optimal return 2.4' in result.stdout  # the first held-out maze


def test_training_maze_score_plays_the_datasets_own_mazes():
  env = maze.MazeEnvironment(seed=7)
  _, hashes = data.collect(env, 3000, seed=7)
  metadata = dict(seed=7, maze_hashes=hashes)
  act = evaluation.random_act(np.random.default_rng(0), 4)
  result = maze_task.training_maze_score(act, metadata, num_mazes=100)
  assert result['overlap_with_data'] == len(hashes) >= 3  # capped at the data's mazes
  assert -5.0 - 1e-4 <= result['score'] <= result['optimal']
  with pytest.raises(TrainingError, match='not made by this code'):
    maze_task.training_maze_score(act, dict(seed=8, maze_hashes=hashes), num_mazes=2)


def test_checkpoint_of_another_optimizer_is_refused_in_one_sentence(tmp_path):
  variable = tf.Variable([1.0, 2.0])
  old = tf.train.Checkpoint(weights=variable).save(str(tmp_path / 'old' / 'ckpt'))
  with pytest.raises(TrainingError, match='another optimizer .* retrain'):
    checkpoints.check_optimizer_format(old)
  new = tf.train.Checkpoint(weights=variable, optimizer_format=tf.Variable(
      optimizers.FORMAT)).save(str(tmp_path / 'new' / 'ckpt'))
  checkpoints.check_optimizer_format(new)  # no error


def test_checkpoint_of_other_optimizers_is_refused_in_one_sentence(tmp_path):
  variable = tf.Variable([1.0, 2.0])
  shared = {name: optimizers.rmsprop(1e-3, 0.9, 1e-4) for name in ('q', 'reward_discount')}
  for optimizer in shared.values():
    optimizer.apply_gradients([(tf.constant([0.1, 0.2]), variable)])
  path = tf.train.Checkpoint(weights=variable, optimizers=shared).save(str(tmp_path / 'ckpt'))
  checkpoints.check_optimizer_names(path, shared)  # no error
  with pytest.raises(TrainingError, match=r"\['q', 'reward_discount'\] but this config "
                     r"builds \['discount', 'q', 'reward'\].*reward_discount_state"):
    checkpoints.check_optimizer_names(path, ('q', 'reward', 'discount'))


class _Terminal:
  def __init__(self, tty):
    self.text, self._tty = '', tty

  def isatty(self):
    return self._tty

  def write(self, text):
    self.text += text

  def flush(self):
    pass


@pytest.mark.parametrize('tty', [True, False])
def test_progress_line_updates_in_place_on_a_terminal_only(monkeypatch, tty):
  out = _Terminal(tty)
  monkeypatch.setattr(sys, 'stdout', out)
  run_log.progress('step 200')  # pylint: disable=protected-access
  run_log.progress('step 400')  # pylint: disable=protected-access
  run_log.progress(None)  # pylint: disable=protected-access
  if tty:
    assert out.text == '\rstep 200\x1b[K\rstep 400\x1b[K\n'
  else:
    assert out.text == 'step 200\nstep 400\n'
