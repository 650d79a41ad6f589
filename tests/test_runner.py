"""The runner on a task of its factories' choosing: nothing in its loop is the maze's."""

import csv
import os

import numpy as np
import tensorflow as tf
from tf_agents.environments import py_environment
from tf_agents.environments import utils as env_utils
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from gmas_tf import runner
from gmas_tf import scalars
from gmas_tf.agents import gmas_agent
from gmas_tf.transitions import Transition

CELLS = 5


class Corridor(py_environment.PyEnvironment):
  """A corridor of 5 cells seen as a one-hot vector; actions 0 left, 1 right, 2 stay; -0.1
  per step and +1 (terminal) on reaching the right end."""

  def __init__(self):
    super().__init__()
    self._cell = 0

  def observation_spec(self):
    return array_spec.ArraySpec((CELLS,), np.float32, 'observation')

  def action_spec(self):
    return array_spec.BoundedArraySpec((), np.int64, 0, 2, 'action')

  def _observation(self):
    return np.eye(CELLS, dtype=np.float32)[self._cell]

  def _reset(self):
    self._cell = 0
    return ts.restart(self._observation())

  def _step(self, action):
    if self.current_time_step().is_last():
      return self.reset()
    self._cell = int(np.clip(self._cell + {0: -1, 1: 1, 2: 0}[int(action)], 0, CELLS - 1))
    if self._cell == CELLS - 1:
      return ts.termination(self._observation(), np.float32(1.0))
    return ts.transition(self._observation(), np.float32(-0.1), np.float32(1.0))


class RandomWalks:
  """400 transitions of a random policy in the corridor, sampled in batches of 8."""

  def __init__(self, environment):
    rng = np.random.default_rng(0)
    rows = []
    step = environment.reset()
    while len(rows) < 400:
      action = rng.integers(3)
      after = environment.step(action)
      rows.append((step.observation, action, after.reward, float(after.is_last()),
                   after.observation))
      step = environment.reset() if after.is_last() else after
    self.metadata = dict(transitions=len(rows))
    self._columns = [np.array(column) for column in zip(*rows)]

  def transitions(self):
    observation, action, reward, terminal, next_observation = self._columns
    return tf.data.Dataset.from_tensor_slices(Transition(
        observation, action.astype(np.int32), reward.astype(np.float32),
        terminal.astype(np.float32), next_observation)).repeat().shuffle(400).batch(8)


class ReturnEvaluator:
  """The return of one greedy episode (at most 10 steps) per planning depth."""

  fields = ('epoch', 'step', 'depth', 'return', 'steps_per_second')

  def __init__(self, environment, offline_data, seed, train_mazes, held_out_epsilon):
    del offline_data, seed, train_mazes, held_out_epsilon
    self._environment = environment
    self.latest = {}

  def scores(self, column):
    del column
    return dict(self.latest)

  def evaluate(self, agent, acts, epoch, step, speed):
    del agent
    rows = []
    for depth, act in acts.items():
      total, time_step = 0.0, self._environment.reset()
      for _ in range(10):
        time_step = self._environment.step(act(time_step.observation[None])[0])
        total += float(time_step.reward)
        if time_step.is_last():
          break
      self.latest[depth] = round(total, 2)
      rows.append(dict(epoch=epoch + 1, step=step, depth=depth, steps_per_second=speed,
                       **{'return': total}))
    return rows, {f'eval/return_depth_{d}': r for d, r in self.latest.items()}, (
        f'return by depth {self.latest}')

  def closing(self, acts, root_dir):
    del acts, root_dir
    return f'return by depth {self.latest}'


def test_the_environment_is_valid_for_tf_agents():
  env_utils.validate_py_environment(Corridor(), episodes=3)


def test_the_runner_trains_evaluates_exports_and_resumes_on_another_task(tmp_path, capsys):
  factories = dict(environment_fn=Corridor, data_fn=RandomWalks,
                   evaluator_fn=ReturnEvaluator, agent_class=gmas_agent.GmasAgent,
                   epochs=2, steps_per_epoch=3, eval_depths=(0, 2), log_interval=3,
                   summary_interval=1)
  root = str(tmp_path / 'run')
  os.makedirs(root)
  assert runner.Runner(root, **factories).run_experiment() == root
  with open(os.path.join(root, 'evaluations.csv')) as stream:
    rows = list(csv.DictReader(stream))
  assert [(r['epoch'], r['step'], r['depth']) for r in rows] == [
      ('1', '3', '0'), ('1', '3', '2'), ('2', '6', '0'), ('2', '6', '2')]
  assert all(-1.0 - 1e-6 <= float(r['return']) <= 1.0 for r in rows)
  for depth in (0, 2):
    policy = tf.saved_model.load(os.path.join(root, 'policies', f'depth_{depth}'))
    observation = tf.constant(np.eye(CELLS, dtype=np.float32)[:2])
    action = policy.action(ts.restart(observation, batch_size=2), ()).action.numpy()
    assert set(action) <= {0, 1, 2}
  assert 'Losses/gradient_matching' in scalars.read(root)
  assert 'done after 6 updates: return by depth' in capsys.readouterr().out
  # Rerun: the run is complete, so it resumes at 6 and trains nothing more.
  again = runner.Runner(root, **dict(factories, epochs=2))
  assert again.start_step == 6
  again.run_experiment()
  assert 'resuming from step 6' in capsys.readouterr().out
