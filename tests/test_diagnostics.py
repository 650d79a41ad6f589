"""The model probe: which transitions it holds, and what it reports on hand-set networks;
the slope probe against its definition."""

import types

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from gmas_tf import data
from gmas_tf import diagnostics
from gmas_tf import optimizers
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


def test_without_sprites_the_probe_pairs_the_rows_own_observations():
  # Two episodes of rows 0-3 and 4-6 (a Minari stream); row r's observation holds r.
  # Rewards on rows 1 and 5; row 3 ends the first episode, so it starts no transition.
  first, mid, last = int(ts.StepType.FIRST), int(ts.StepType.MID), int(ts.StepType.LAST)
  arrays = dict(observation=np.arange(7, dtype=np.uint8)[:, None, None, None],
                action=np.array([0, 1, 2, 0, 3, 4, 0], np.int32),
                reward=np.array([0, 0.5, 0, 0, 0, 0.9, 0], np.float32),
                discount=np.array([1, 1, 0, 1, 1, 0, 1], np.float32),
                step_type=np.array([first, mid, mid, last, first, mid, last], np.uint8),
                next_step_type=np.array([mid, mid, last, first, mid, last, first], np.uint8))
  probe = diagnostics.probe_transitions(arrays, None, size=3)
  assert probe['observation'].dtype == np.float32
  np.testing.assert_array_equal(probe['observation'].ravel(), [0, 1, 2, 4, 5])
  np.testing.assert_array_equal(probe['next_observation'].ravel(), [1, 2, 3, 5, 6])
  np.testing.assert_array_equal(probe['reward'], np.float32([0, 0.5, 0, 0, 0.9]))
  np.testing.assert_array_equal(probe['terminal'], [0, 0, 1, 0, 1])
  np.testing.assert_array_equal(probe['action'], [0, 1, 2, 3, 4])


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


def test_slope_probe_at_depth_0_compares_q_with_its_target(arrays):
  from tf_agents.environments import tf_py_environment  # pylint: disable=g-import-not-at-top
  from gmas_tf.agents import crar_agent  # pylint: disable=g-import-not-at-top
  env = maze.MazeEnvironment(seed=0)
  probe = diagnostics.probe_transitions(arrays, env.sprites, size=6)
  tf_env = tf_py_environment.TFPyEnvironment(env)
  agent = crar_agent.CrarAgent(tf_env.time_step_spec(), tf_env.action_spec())
  agent.initialize()  # the targets are synced: the depth-0 planner is Q itself
  x = agent.network('encoder')(probe['observation'])
  with tf.GradientTape() as tape:
    tape.watch(x)
    chosen = tf.gather(agent.network('q_network')(x), probe['action'], batch_dims=1)
  norm = np.linalg.norm(tape.gradient(chosen, x).numpy().reshape(len(x), -1), axis=-1).mean()
  result = diagnostics.slope_probe(agent, probe, depth=0)
  assert result == pytest.approx(dict(q_slope_norm=norm, label_norm=norm, slope_cosine=1.0),
                                 rel=1e-5)
  deeper = diagnostics.slope_probe(agent, probe, depth=2)
  assert deeper['q_slope_norm'] == pytest.approx(norm, rel=1e-5) and deeper['slope_cosine'] < 1


def test_slope_growth_is_the_first_order_change_of_the_slope_under_each_share(arrays):
  from tf_agents.environments import tf_py_environment  # pylint: disable=g-import-not-at-top
  from gmas_tf.agents import gmas_agent  # pylint: disable=g-import-not-at-top
  env = maze.MazeEnvironment(seed=0)
  tf.keras.utils.set_random_seed(1)
  buffer = data.make_replay_buffer(arrays)
  batches = iter(data.make_dataset(buffer, env.sprites, 8))
  tf_env = tf_py_environment.TFPyEnvironment(env)
  agent = gmas_agent.GmasAgent(tf_env.time_step_spec(), tf_env.action_spec(),
                               training_depth=1, update_scheme='per_loss')
  agent.initialize()
  agent.train(next(batches))  # the RMSprops hold accumulators
  batch = next(batches)
  measured = next(iter(data.make_dataset(buffer, env.sprites, 64)))  # others, to measure on
  result = diagnostics.slope_growth(agent, batch, measured)
  parts = ('transition', 'reward', 'discount', 'ball', 'dispersion', 'consecutive_dispersion',
           'td', 'gradient_matching')
  assert set(result) == {'q_slope_norm', 'slope_change_encoder', 'slope_change_q_network',
                         *(f'slope_change_{p}' for p in parts)}
  assert sum(result[f'slope_change_{p}'] for p in parts) == pytest.approx(
      result['slope_change_encoder'] + result['slope_change_q_network'], abs=1e-7)
  # Recompute each share and move its variables by 1e-4 of it both ways: the central
  # difference of the slope's norm is the reported first-order change. (A whole share of
  # this fresh agent's update moves the slope by up to a third, and a thousandth already
  # switches some of the max-pooling choices in the encoder and the Q network.)
  q_network = agent.network('q_network')

  def steepness(variables, share, scale):
    for variable, step in zip(variables, share):
      variable.assign_add(scale * step)
    x = agent.network('encoder')(measured.observation)
    slope = diagnostics.gradient_matching.model_free_slope(x, measured.action, q_network)
    value = float(tf.reduce_mean(tf.norm(slope, axis=-1)))
    for variable, step in zip(variables, share):
      variable.assign_sub(scale * step)
    return value

  with tf.GradientTape(persistent=True) as tape:
    groups = agent.update_groups(batch)
  assert [set(losses) for _, _, losses in groups] == [
      {p} for p in parts[:6]] + [{'td', 'gradient_matching'}]
  for optimizer, variables, losses in groups:
    shares = optimizers.step_parts(optimizer, {
        n: tape.gradient(loss, variables, unconnected_gradients=diagnostics.ZERO)
        for n, loss in losses.items()}, variables)
    for name, share in shares.items():
      central = (steepness(variables, share, 1e-4) - steepness(variables, share, -1e-4)) / 2e-4
      assert central / result['q_slope_norm'] == pytest.approx(
          result[f'slope_change_{name}'], rel=0.05, abs=2e-3), name  # float32 noise


def test_adaptive_depth_profile_against_its_definition(arrays):
  from tf_agents.environments import tf_py_environment  # pylint: disable=g-import-not-at-top
  from gmas_tf.agents import crar_agent  # pylint: disable=g-import-not-at-top
  env = maze.MazeEnvironment(seed=0)
  tf.keras.utils.set_random_seed(2)
  tf_env = tf_py_environment.TFPyEnvironment(env)
  agent = crar_agent.CrarAgent(tf_env.time_step_spec(), tf_env.action_spec())
  batch = next(iter(data.make_dataset(data.make_replay_buffer(arrays), env.sprites, 64)))
  encoder = agent.network('encoder')
  error = agent.one_step_error(batch, encoder(batch.observation),
                               encoder(batch.next_observation)).numpy()
  median = float(np.median(error))
  result = diagnostics.adaptive_depth_profile(agent, batch, 3, [1e9, 2 * median, 1e-30])
  assert result['one_step_error_median'] == pytest.approx(median)
  assert result['one_step_error_q25'] == pytest.approx(np.quantile(error, 0.25))
  assert result['adaptive_depth_at_1e+09'] == 3  # every label plans to the full depth
  assert result['adaptive_depth_at_1e-30'] == 0  # none plans past its own step
  # T twice the median error: a mix of depths, each min(3, floor(T / e_i)).
  depths = np.minimum(3, np.floor(2 * median / error))
  assert 0 < depths.mean() < 3
  assert result[f'adaptive_depth_at_{2 * median:g}'] == pytest.approx(depths.mean())
