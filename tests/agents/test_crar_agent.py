import numpy as np
import pytest
import tensorflow as tf
from tf_agents.environments import tf_py_environment
from tf_agents.utils import common

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


@pytest.mark.parametrize('scheme', ['joint', 'deer'])
def test_targets_sync_when_the_updates_made_are_a_multiple_of_the_period(batches, scheme):
  # deer: `if update_counter % freeze_interval == 0: resetQHat()` before the Q update, the
  # counter holding the updates already made; in the deer scheme after the model losses.
  agent = make_agent(target_update_period=3, update_scheme=scheme)
  train = common.function(agent.train)
  online, target = agent.network('q_network'), agent.target_network('q_network')
  encoder = agent.network('encoder')
  before = weights_of(target)
  for step in range(1, 5):
    q_before, encoder_before = weights_of(online), weights_of(encoder)
    train(batches[step % 4])
    synced = step == 4  # at the start of the update after the third
    if synced:
      expected_q = q_before  # the Q update of step 4 came after the sync
      expected_encoder = (encoder_before if scheme == 'joint' else None)
      assert all(np.array_equal(a, b) for a, b in zip(target.get_weights(), expected_q))
      target_encoder = agent.target_network('encoder').get_weights()
      if expected_encoder is not None:
        assert all(np.array_equal(a, b) for a, b in zip(target_encoder, expected_encoder))
      else:  # deer: the model losses of step 4 moved the encoder before the sync
        assert not all(np.array_equal(a, b) for a, b in zip(target_encoder, encoder_before))
    else:
      assert all(np.array_equal(a, b) for a, b in zip(target.get_weights(), before))


@pytest.mark.parametrize('scheme', ['deer', 'per_loss', 'joint'])
def test_each_scheme_lowers_the_loss_on_a_fixed_batch(batches, scheme):
  agent = make_agent(update_scheme=scheme)
  train = common.function(agent.train)
  before = agent.loss(batches[0]).loss.numpy()
  encoder_before = weights_of(agent.network('encoder'))
  for _ in range(30):
    train(batches[0])
  assert agent.loss(batches[0]).loss.numpy() < before
  assert agent.train_step_counter.numpy() == 30
  assert not all(np.array_equal(a, b) for a, b in
                 zip(encoder_before, agent.network('encoder').get_weights()))
  # deer: one RMSprop state per loss (Keras 2.2 gives each compiled model its own).
  assert len(agent.optimizers) == (1 if scheme == 'joint' else 7)


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


def clipped_encoder_gradients(agent, batch, name):
  """One loss's gradients on the encoder's variables, clipped as deer's optimizer clips
  them: all of that optimizer's gradients scaled to global norm at most 1 (float64)."""
  with tf.GradientTape() as tape:
    loss = agent.loss_terms(batch, (name,))[name]
  variables = agent._variables_of(name)  # pylint: disable=protected-access
  gradients = [g.numpy().astype(np.float64) for g in tape.gradient(loss, variables)]
  scale = min(1.0, 1.0 / np.sqrt(sum(np.sum(g**2) for g in gradients)))
  return [g * scale for g in gradients[:len(agent.network('encoder').trainable_variables)]]


def test_per_loss_scheme_applies_each_gradient_at_the_same_parameters(batches):
  # Reward and Q losses only: the encoder moves by the sum of two first RMSprop steps,
  # each from its loss's gradient at the initial weights, clipped to global norm 1.
  weights = {name: 0.0 for name in crar_agent.LOSS_ORDER}
  weights.update(reward=1.0, q=1.0)
  agent = make_agent(update_scheme='per_loss', loss_weights=weights)
  encoder = agent.network('encoder').trainable_variables
  t = batches[0]
  expected = [v.numpy().astype(np.float64) for v in encoder]
  for name in ('reward', 'q'):
    for i, g in enumerate(clipped_encoder_gradients(agent, t, name)):
      expected[i] -= 1e-3 * g / (np.sqrt(0.1 * g**2) + 1e-4)
  agent.train(t)
  for variable, value in zip(encoder, expected):
    np.testing.assert_allclose(variable.numpy(), value, atol=1e-6)


@pytest.mark.parametrize('state', ['separate', 'shared'])
def test_reward_and_discount_have_their_own_rmsprop_state_unless_shared(batches, state):
  # Reward and discount losses only, per_loss: each applies one RMSprop step to the encoder
  # from its gradient at the initial weights (clipped to global norm 1), in that order. With
  # its own state each step divides by its own sqrt(v) = sqrt(0.1) |g|; with one shared
  # state the discount's sees v = 0.9 * 0.1 g_reward^2 + 0.1 g_discount^2.
  weights = {name: 0.0 for name in crar_agent.LOSS_ORDER}
  weights.update(reward=1.0, discount=1.0)
  agent = make_agent(update_scheme='per_loss', loss_weights=weights,
                     reward_discount_state=state)
  encoder = agent.network('encoder').trainable_variables
  t = batches[0]
  clipped = {name: clipped_encoder_gradients(agent, t, name) for name in ('reward', 'discount')}
  expected = {}
  for way in ('separate', 'shared'):
    expected[way] = [v.numpy().astype(np.float64) for v in encoder]
    for i in range(len(encoder)):
      g_r, g_d = clipped['reward'][i], clipped['discount'][i]
      v_d = 0.1 * g_d**2 + (0.9 * 0.1 * g_r**2 if way == 'shared' else 0.0)
      expected[way][i] -= 1e-3 * g_r / (np.sqrt(0.1 * g_r**2) + 1e-4)
      expected[way][i] -= 1e-3 * g_d / (np.sqrt(v_d) + 1e-4)
  assert max(np.max(np.abs(a - b)) for a, b in zip(*expected.values())) > 1e-5
  agent.train(t)
  for variable, value in zip(encoder, expected[state]):
    np.testing.assert_allclose(variable.numpy(), value, atol=1e-6)


def test_q_loss_over_all_actions_is_a_quarter_of_the_chosen_one(batches):
  # deer's Keras: MSE over the 4 outputs, the unchosen targets set to their predictions.
  chosen = make_agent(q_loss_reduction='chosen_action').loss_terms(batches[0])['q']
  all_actions = make_agent(q_loss_reduction='all_actions').loss_terms(batches[0])['q']
  assert all_actions.numpy() == pytest.approx(chosen.numpy() / 4, rel=1e-6)


def test_terminal_next_observation_is_zeros_as_deer_stores_it(batches):
  t = batches[0]
  t = t._replace(terminal=tf.constant([1.0, 0.0, 1.0] + [0.0] * 13))  # two terminal steps
  zeros, observed = (make_agent(terminal_next_observation=v) for v in ('zeros', 'observed'))
  ended = t.terminal.numpy() > 0
  x2 = zeros.network('encoder')(np.where(ended[:, None, None, None], 0.0,
                                         t.next_observation.numpy()))
  x = zeros.network('encoder')(t.observation)
  expected = crar_agent.dispersion(x - x2, 5.0).numpy()
  assert zeros.loss_terms(t)['consecutive_dispersion'].numpy() == pytest.approx(expected)
  assert observed.loss_terms(t)['consecutive_dispersion'].numpy() != pytest.approx(expected)
  # The losses that mask terminal transitions do not see the difference.
  for name in ('transition', 'q'):
    assert zeros.loss_terms(t)[name].numpy() == pytest.approx(
        observed.loss_terms(t)[name].numpy(), rel=1e-6)


def test_unknown_settings_are_rejected():
  with pytest.raises(ValueError, match='update_scheme'):
    make_agent(update_scheme='adam')
  with pytest.raises(ValueError, match='loss_weights'):
    make_agent(loss_weights={'tranzition': 1.0})
  with pytest.raises(ValueError, match='q_loss_reduction'):
    make_agent(q_loss_reduction='mean')
  with pytest.raises(ValueError, match='terminal_next_observation'):
    make_agent(terminal_next_observation='last')


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
  loss_info = common.function(agent.train)(batches[0])
  assert np.isfinite(loss_info.loss.numpy())
  observation = batches[0].observation
  assert agent.policy.with_depth(3).plan_q(observation).shape == (16, 4)


@pytest.mark.parametrize('scheme', ['deer', 'per_loss', 'joint'])
def test_each_loss_pull_is_logged_with_the_losses(batches, scheme, tmp_path):
  # As bin/train records: on the steps whose count is a multiple of the interval (here 2).
  agent = make_agent(update_scheme=scheme)
  writer = tf.summary.create_file_writer(str(tmp_path))
  train = common.function(agent.train)
  with writer.as_default(), tf.summary.record_if(lambda: agent.train_step_counter % 2 == 0):
    for batch in batches[:3]:
      train(batch)
  writer.flush()
  steps = {}
  for path in tmp_path.glob('events.out.tfevents.*'):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        steps.setdefault(value.tag, []).append(event.step)
  assert steps['Losses/q'] == [2]
  for name in crar_agent.LOSS_ORDER:
    assert steps[f'Gradients/encoder/{name}'] == [2], name
  assert steps['Gradients/q_network/q'] == steps['Diagnostics/q_slope_norm'] == [2]


def test_q_slope_norm_is_the_mean_norm_of_dq_dx_after_the_update(batches, tmp_path):
  agent = make_agent()
  with tf.summary.create_file_writer(str(tmp_path)).as_default(), tf.summary.record_if(True):
    common.function(agent.train)(batches[0])
  logged = {}
  for path in tmp_path.glob('events.out.tfevents.*'):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        logged[value.tag] = float(tf.make_ndarray(value.tensor))
  x = agent.network('encoder')(batches[0].observation)
  with tf.GradientTape() as tape:  # by hand: d Q(x, a) / dx, one sample per row
    tape.watch(x)
    chosen = tf.gather(agent.network('q_network')(x), batches[0].action, batch_dims=1)
  slope = tape.gradient(chosen, x).numpy().reshape(len(x), -1)
  assert logged['Diagnostics/q_slope_norm'] == pytest.approx(
      np.linalg.norm(slope, axis=-1).mean(), rel=1e-5)
