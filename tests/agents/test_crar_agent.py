import numpy as np
import pytest
import tensorflow as tf
from tf_agents.environments import tf_py_environment

from gmas_tf import data
from gmas_tf.agents import crar_agent
from gmas_tf.envs import maze


@pytest.fixture(scope='module')
def batches():
  env = maze.MazeEnvironment(seed=4)
  arrays, _ = data.collect(env, 1500, 4)
  tf.random.set_seed(0)
  iterator = iter(data.make_dataset(data.make_replay_buffer(arrays), env.sprites, 16))
  return [next(iterator) for _ in range(4)]


def make_agent(**kwargs):
  tf.keras.utils.set_random_seed(1)
  env = tf_py_environment.TFPyEnvironment(maze.MazeEnvironment(seed=0))
  agent = crar_agent.CrarAgent(env.time_step_spec(), env.action_spec(), **kwargs)
  agent.initialize()
  return agent


def test_dispersion_and_ball_by_hand():
  difference = tf.constant([[2.0, 0.0], [0.0, 20.0]])  # squared norms 4 and 400 (clipped to 10)
  expected = (np.exp(-5 * 2.0) + np.exp(-5 * np.sqrt(10.0))) / 2
  assert crar_agent.dispersion(difference, 5.0).numpy() == pytest.approx(expected)
  x = tf.constant([[[[0.5, -2.0, 1.0]], [[0.1, 0.2, 0.3]]]])  # [1, 2, 1, 3]
  assert crar_agent.ball(x).numpy() == pytest.approx((4.0 - 1.0 + 0.0) / 2)


def test_loss_terms_match_their_definitions(batches):
  agent = make_agent()
  t = batches[0]
  terms = agent.loss_terms(t)
  assert set(terms) == set(crar_agent.LOSS_ORDER) | {'q_spread'}
  one_hot = tf.one_hot(t.action, 4)
  x, x2 = agent.network('encoder')(t.observation), agent.network('encoder')(t.next_observation)
  reward = agent.network('reward')([x, one_hot]).numpy()
  assert terms['reward'].numpy() == pytest.approx(np.mean((reward - t.reward.numpy())**2),
                                                  rel=1e-5)
  discount = agent.network('discount')([x, one_hot]).numpy()
  target = 0.9 * (1 - t.terminal.numpy())
  assert terms['discount'].numpy() == pytest.approx(np.mean((discount - target)**2), rel=1e-5)
  # Double DQN target, written out with numpy.
  q2_online = agent.network('q_network')(x2).numpy()
  q2_target = agent.target_network('q_network')(
      agent.target_network('encoder')(t.next_observation)).numpy()
  best = q2_online.argmax(-1)
  y = t.reward.numpy() + (1 - t.terminal.numpy()) * 0.9 * q2_target[np.arange(16), best]
  q = agent.network('q_network')(x).numpy()[np.arange(16), t.action.numpy()]
  assert terms['q'].numpy() == pytest.approx(np.mean((q - y)**2), rel=1e-5)
  predicted = (x + agent.network('transition')([x, one_hot])).numpy()
  mask = (1 - t.terminal.numpy())[:, None, None, None]
  assert terms['transition'].numpy() == pytest.approx(
      np.mean((predicted - x2.numpy())**2 * mask), rel=1e-5)
  loss_info = agent.loss(t)
  assert loss_info.loss.numpy() == pytest.approx(
      sum(terms[n].numpy() for n in crar_agent.LOSS_ORDER), rel=1e-5)
  all_q = agent.network('q_network')(x).numpy()
  assert terms['q_spread'].numpy() == pytest.approx(
      np.mean(all_q.max(-1) - all_q.min(-1)), rel=1e-5)


def weights_of(model):
  return [w.copy() for w in model.get_weights()]


def test_targets_sync_every_period(batches):
  agent = make_agent(target_update_period=3, update_scheme='joint')
  train = tf.function(agent.train)
  for step in range(1, 4):
    train(batches[step % 4])
    online, target = agent.network('q_network'), agent.target_network('q_network')
    same = all(np.array_equal(a, b) for a, b in zip(online.get_weights(), target.get_weights()))
    assert same == (step == 3)


@pytest.mark.parametrize('scheme', ['deer', 'joint'])
def test_each_scheme_lowers_the_loss_on_a_fixed_batch(batches, scheme):
  agent = make_agent(update_scheme=scheme)
  train = tf.function(agent.train)
  before = agent.loss(batches[0]).loss.numpy()
  encoder_before = weights_of(agent.network('encoder'))
  for _ in range(30):
    train(batches[0])
  assert agent.loss(batches[0]).loss.numpy() < before
  assert agent.train_step_counter.numpy() == 30
  assert not all(np.array_equal(a, b) for a, b in
                 zip(encoder_before, agent.network('encoder').get_weights()))
  assert len(agent.optimizers) == (7 if scheme == 'deer' else 1)


def test_deer_scheme_updates_each_loss_over_its_own_networks(batches):
  # With every weight but the reward's at zero, only the encoder and rho may change.
  weights = {name: 0.0 for name in crar_agent.LOSS_ORDER}
  weights['reward'] = 1.0
  agent = make_agent(update_scheme='deer', loss_weights=weights)
  before = {n: weights_of(agent.network(n)) for n in crar_agent.NETWORK_NAMES}
  agent.train(batches[0])
  for name in crar_agent.NETWORK_NAMES:
    changed = not all(np.array_equal(a, b) for a, b in
                      zip(before[name], agent.network(name).get_weights()))
    assert changed == (name in ('encoder', 'reward')), name


def test_unknown_settings_are_rejected():
  with pytest.raises(ValueError, match='update_scheme'):
    make_agent(update_scheme='adam')
  with pytest.raises(ValueError, match='loss_weights'):
    make_agent(loss_weights={'tranzition': 1.0})


def test_policy_acts_greedily_on_the_planner(batches):
  agent = make_agent()
  observation = batches[0].observation
  from tf_agents.trajectories import time_step as ts
  for depth in (0, 1, 3):
    policy = agent.policy.with_depth(depth)
    action = policy.action(ts.restart(observation, batch_size=16)).action.numpy()
    assert np.array_equal(action, policy.plan_q(observation).numpy().argmax(-1))


def test_dense_abstract_state_option(batches):
  import gin
  with gin.unlock_config():
    gin.bind_parameter('make_encoder.dense_dim', 3)
  try:
    agent = make_agent(update_scheme='joint')
  finally:
    gin.clear_config()
  assert agent.network('encoder').output_shape == (None, 3)
  assert agent.network('transition').output_shape == (None, 3)
  loss_info = tf.function(agent.train)(batches[0])
  assert np.isfinite(loss_info.loss.numpy())
  observation = batches[0].observation
  assert agent.policy.with_depth(3).plan_q(observation).shape == (16, 4)
