"""The model probe: which transitions it holds, and what it reports on hand-set networks."""

import types

import numpy as np
import pytest
import tensorflow as tf

from gmas_tf import data
from gmas_tf import diagnostics
from gmas_tf.envs import maze


@pytest.fixture(scope='module')
def arrays():
  return data.collect(maze.MazeEnvironment(seed=3), 4000, seed=3)[0]


def test_probe_holds_key_and_ordinary_transitions_that_follow_the_dynamics(arrays):
  env = maze.MazeEnvironment()
  probe = diagnostics.probe_transitions(arrays, env.sprites, size=5)
  keys = probe['reward'] > 0
  assert keys.sum() == 5 and (~keys).sum() == 5
  assert np.all(probe['reward'][~keys] == np.float32(-0.1))
  assert probe['terminal'][~keys].sum() == 0
  agent_pixel = env.sprites[maze.AGENT][0, 2]  # deer's agent: its only 0.6 pixel
  for before, after, action in zip(probe['observation'], probe['next_observation'],
                                   probe['action']):
    cell = lambda image: np.argwhere(image[::6, 2::6, 0] == agent_pixel)[0]
    step = cell(after) - cell(before)
    assert tuple(step) in {tuple(maze.MOVES[action]), (0, 0)}  # moved, or hit a wall


def test_model_probe_on_hand_set_networks(arrays):
  probe = diagnostics.probe_transitions(arrays, maze.MazeEnvironment().sprites, size=6)
  assert probe['terminal'].any()  # the probe covers a terminal transition
  batch = lambda inputs: tf.ones([tf.shape(inputs[0])[0], 1])
  networks = dict(
      encoder=lambda o: tf.reshape(o[:, :8, :8, :], [-1, 8, 8, 1]) * 0.0 + 1.0,  # x = 1
      reward=lambda inputs: 0.5 * batch(inputs),
      discount=lambda inputs: 0.3 * batch(inputs),
      transition=lambda inputs: tf.fill(tf.shape(inputs[0]), -0.5))  # x + tau - x2 = -0.5
  agent = types.SimpleNamespace(network=networks.get,
                                world_model=types.SimpleNamespace(num_actions=4))
  result = diagnostics.model_probe(agent, probe)
  assert result == pytest.approx(dict(probe_key_reward=0.5, probe_step_reward=0.5,
                                      probe_terminal_discount=0.3,
                                      probe_transition_error=0.25))
  assert set(result) == set(diagnostics.PROBE_FIELDS)
