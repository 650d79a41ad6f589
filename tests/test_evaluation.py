import os

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from gmas_tf import evaluation
from gmas_tf.envs import maze

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

UP = 2


def always_up(observations):
  return np.full(len(observations), UP)  # into the border wall from the start cell


def test_deer_score_of_a_policy_that_never_moves():
  result = evaluation.deer_score(always_up, seed=0, num_steps=200, epsilon=0.0)
  assert result == dict(score=pytest.approx(-5.0), episodes=4)


def test_held_out_score_floor_and_random_policy():
  stuck = evaluation.held_out_score(always_up, num_mazes=20)
  assert stuck['score'] == pytest.approx(-5.0)
  assert stuck['normalized'] == pytest.approx(0.0)
  rng = np.random.default_rng(0)
  random = evaluation.held_out_score(evaluation.random_act(rng, 4), num_mazes=100)
  assert -5.0 < random['score'] < random['optimal']
  assert 0.0 < random['normalized'] < 1.0
  # The set of test mazes is fixed by its seed.
  assert evaluation.held_out_score(always_up, num_mazes=20)['optimal'] == stuck['optimal']


def test_held_out_behaviour_statistics():
  stuck = evaluation.held_out_score(always_up, num_mazes=10)
  assert (stuck['keys_collected'], stuck['wall_bump_fraction'], stuck['cells_visited']) == (
      0.0, 1.0, 1.0)

  def down_then_up(observations):  # (1, 1) -> (2, 1) -> (1, 1) -> ...
    down_then_up.calls += 1
    return np.full(len(observations), 0 if down_then_up.calls % 2 else UP)

  down_then_up.calls = 0
  moving = evaluation.held_out_score(down_then_up, num_mazes=10)
  # Expected from the mazes themselves: a wall at (2, 1) makes all 50 moves bumps in one
  # cell; otherwise none bumps, two cells are visited, and a key there is collected once.
  generator = maze.MazeEnvironment(seed=1_000_003)
  mazes = [generator.draw_maze() for _ in range(10)]
  walled = np.array([walls[2, 1] for walls, _ in mazes])
  keyed = np.array([(2, 1) in {tuple(k) for k in keys} for _, keys in mazes])
  assert 0 < walled.sum() < 10  # both cases occur
  assert moving['wall_bump_fraction'] == pytest.approx(walled.mean())
  assert moving['cells_visited'] == pytest.approx(np.mean(np.where(walled, 1, 2)))
  assert moving['keys_collected'] == pytest.approx(keyed.mean())


def test_the_shipped_agent_beats_the_random_policy_on_held_out_mazes():
  """docs/agent's SavedModel (README, "A trained agent") loads with TensorFlow alone and
  still solves held-out mazes: on the first 20 it scored +1.32 when shipped, the random
  policy about -3.9."""
  policy = tf.saved_model.load(os.path.join(REPO, 'docs', 'agent', 'gmas_cosine_d3_seed1_depth5'))

  def act(observations):
    time_step = ts.restart(tf.constant(observations, tf.float32), len(observations))
    return policy.action(time_step, ()).action.numpy()

  shipped = evaluation.held_out_score(act, num_mazes=20)
  rng = np.random.default_rng(0)
  random = evaluation.held_out_score(evaluation.random_act(rng, 4), num_mazes=20)
  assert shipped['score'] > 0.0 > random['score'] + 3.0
