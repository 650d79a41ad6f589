import numpy as np
import pytest
import tensorflow as tf
from tf_agents.environments import tf_py_environment
from tf_agents.utils import common

from gmas_tf import data
from gmas_tf import gradient_matching
from gmas_tf import planning
from gmas_tf.agents import crar_agent
from gmas_tf.agents import gmas_agent
from gmas_tf.envs import maze


@pytest.fixture(scope='module')
def batch():
  env = maze.MazeEnvironment(seed=4)
  arrays, _ = data.collect(env, 800, 4)
  tf.random.set_seed(0)
  return next(iter(data.make_dataset(data.make_replay_buffer(arrays), env.sprites, 16)))


def make(agent_class, **kwargs):
  tf.keras.utils.set_random_seed(3)
  env = tf_py_environment.TFPyEnvironment(maze.MazeEnvironment(seed=0))
  agent = agent_class(env.time_step_spec(), env.action_spec(), **kwargs)
  agent.initialize()
  return agent


@pytest.mark.parametrize('scheme', ['deer', 'per_loss', 'joint'])
def test_distance_none_is_crar_bit_for_bit(batch, scheme):
  crar = make(crar_agent.CrarAgent, update_scheme=scheme)
  gmas = make(gmas_agent.GmasAgent, distance='none', update_scheme=scheme)
  for agent in (crar, gmas):
    for _ in range(2):
      agent.train(batch)
  for name in crar_agent.NETWORK_NAMES:
    for a, b in zip(crar.network(name).get_weights(), gmas.network(name).get_weights()):
      np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('scheme', ['deer', 'per_loss', 'joint'])
def test_delayed_matching_is_crar_until_the_delay_then_not(batch, scheme):
  crar = make(crar_agent.CrarAgent, update_scheme=scheme)
  gmas = make(gmas_agent.GmasAgent, distance='cosine', alpha=1.0, training_depth=1,
              matching_delay=2, update_scheme=scheme)
  weights = lambda agent: [w for n in crar_agent.NETWORK_NAMES
                           for w in agent.network(n).get_weights()]
  for step in range(3):
    for agent in (crar, gmas):
      agent.train(batch)
    gap = max(float(np.abs(a - b).max()) for a, b in zip(weights(crar), weights(gmas)))
    # The third update (2 made before it) matches slopes: a step of lr 1e-3 moves apart.
    # Before it, bit for bit in the per-loss schemes; the joint sum adds the term's zero
    # gradient in another order (measured: 3e-8 after two updates).
    assert (gap < 1e-7 if step < 2 else gap > 1e-4), (step, gap)
    if step < 2 and scheme != 'joint':
      assert gap == 0.0


def test_delayed_matching_logs_no_pull_while_it_weighs_0(batch, tmp_path):
  agent = make(gmas_agent.GmasAgent, distance='cosine', alpha=1.0, training_depth=1,
               matching_delay=1, update_scheme='per_loss')
  with tf.summary.create_file_writer(str(tmp_path)).as_default(), tf.summary.record_if(True):
    common.function(agent.train)(batch)  # the first update: no update made before it
  logged = logged_scalars(tmp_path)
  assert logged['Gradients/q_network/td'][1] > 0 and logged['Losses/gradient_matching'][1] > 0
  assert logged['Gradients/q_network/gradient_matching'] == (1, 0.0)
  assert logged['Gradients/encoder/gradient_matching'] == (1, 0.0)


@pytest.mark.parametrize('distance,alpha', [('cosine', 0.05), ('l2', 1.0)])
def test_q_loss_is_td_plus_alpha_distance(batch, distance, alpha):
  agent = make(gmas_agent.GmasAgent, distance=distance, alpha=alpha, training_depth=1)
  terms = agent.loss_terms(batch, ('q',))
  x = agent.network('encoder')(batch.observation)
  label = gradient_matching.planner_slope(x, batch.action, agent.target_network('q_network'),
                                          agent.world_model, 1)
  prediction = gradient_matching.model_free_slope(x, batch.action, agent.network('q_network'))
  expected = gradient_matching.distance(label, prediction, distance).numpy()
  assert terms['gradient_matching'].numpy() == pytest.approx(expected, rel=1e-5)
  assert terms['q'].numpy() == pytest.approx(terms['td'].numpy() + alpha * expected, rel=1e-5)
  assert -1.0 <= terms['slope_cosine'].numpy() <= 1.0
  assert terms['label_norm'].numpy() == pytest.approx(
      np.mean(np.linalg.norm(label.numpy(), axis=-1)), rel=1e-5)


@pytest.mark.parametrize('trains_encoder', [True, False])
def test_matching_trains_q_and_encoder_not_the_model(batch, trains_encoder):
  agent = make(gmas_agent.GmasAgent, distance='cosine', alpha=1.0, training_depth=3,
               matching_trains_encoder=trains_encoder)
  variables = {n: agent.network(n).trainable_variables for n in crar_agent.NETWORK_NAMES}
  with tf.GradientTape() as tape:
    terms = agent.loss_terms(batch, ('q',))
  gradients = tape.gradient(terms['gradient_matching'], variables)
  norm = lambda gs: sum(float(tf.norm(g)) for g in gs if g is not None)
  assert norm(gradients['q_network']) > 0
  assert (norm(gradients['encoder']) > 0) == trains_encoder
  for name in ('transition', 'reward', 'discount'):
    assert norm(gradients[name]) == 0.0
  # The TD loss still trains the encoder either way.
  with tf.GradientTape() as tape:
    td = agent.loss_terms(batch, ('q',))['td']
  assert norm(tape.gradient(td, variables['encoder'])) > 0


def test_gmas_train_step_runs_in_tf_function(batch):
  agent = make(gmas_agent.GmasAgent, distance='l2', alpha=1.0, training_depth=5,
               update_scheme='joint')
  loss_info = common.function(agent.train)(batch)
  assert np.isfinite(loss_info.loss.numpy())
  assert {'gradient_matching', 'slope_cosine', 'label_norm', 'td'} <= set(loss_info.extra)


def test_bad_distance_is_rejected():
  with pytest.raises(ValueError, match='distance'):
    make(gmas_agent.GmasAgent, distance='manhattan')


def test_adaptive_depth_plans_each_sample_as_deep_as_its_model_error_allows(batch):
  batch = batch._replace(terminal=tf.zeros_like(batch.terminal))  # every error counts
  make_gmas = lambda **kw: make(gmas_agent.GmasAgent, distance='cosine', **kw)
  # A threshold below every one-step error: every label is the depth-0 label.
  tight = make_gmas(training_depth=3, adaptive_depth_threshold=1e-12).loss_terms(batch, ('q',))
  depth0 = make_gmas(training_depth=0).loss_terms(batch, ('q',))
  assert tight['training_depth'].numpy() == 0.0
  assert tight['gradient_matching'].numpy() == pytest.approx(
      depth0['gradient_matching'].numpy(), rel=1e-5)
  # A threshold above D times every error: the paper's fixed depth 3.
  loose = make_gmas(training_depth=3, adaptive_depth_threshold=1e6).loss_terms(batch, ('q',))
  depth3 = make_gmas(training_depth=3).loss_terms(batch, ('q',))
  assert loose['training_depth'].numpy() == 3.0
  assert loose['gradient_matching'].numpy() == pytest.approx(
      depth3['gradient_matching'].numpy(), rel=1e-5)
  # In between, each sample gets its own depth: the label row by row is the fixed-depth
  # label of the depth its error allows.
  agent = make_gmas(training_depth=3, adaptive_depth_threshold=1.0)
  x = agent.network('encoder')(batch.observation)
  x2 = agent.network('encoder')(batch.next_observation)
  error = agent.one_step_error(batch, x, x2).numpy()
  threshold = float(np.median(error)) * 1.5
  weights = planning.adaptive_depth_weights(tf.constant(error), 3, threshold)
  label = gradient_matching.planner_slope(x, batch.action, agent.target_network('q_network'),
                                          agent.world_model, 3, sample_weights=weights).numpy()
  cut = np.minimum(np.floor(threshold / error), 3).astype(int)
  assert len(set(cut)) > 1
  for depth in set(cut):
    fixed = gradient_matching.planner_slope(x, batch.action, agent.target_network('q_network'),
                                            agent.world_model, int(depth)).numpy()
    np.testing.assert_allclose(label[cut == depth], fixed[cut == depth], rtol=1e-4, atol=1e-6)


def logged_scalars(directory):
  """{tag: (step, value)} of the scalars written under directory."""
  logged = {}
  for path in directory.glob('events.out.tfevents.*'):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        logged[value.tag] = (event.step, float(tf.make_ndarray(value.tensor)))
  return logged


# Each scheme once, and each trains_encoder both where Q's pull is the applied gradient's
# (deer, per_loss) and where it is taken on the tape (joint).
@pytest.mark.parametrize('scheme,trains_encoder', [('deer', True), ('per_loss', False),
                                                    ('joint', True), ('joint', False)])
def test_td_and_matching_pulls_are_logged_apart(batch, scheme, trains_encoder, tmp_path):
  agent = make(gmas_agent.GmasAgent, distance='cosine', alpha=1.0, training_depth=1,
               update_scheme=scheme, matching_trains_encoder=trains_encoder)
  with tf.summary.create_file_writer(str(tmp_path)).as_default(), tf.summary.record_if(True):
    common.function(agent.train)(batch)
  logged = logged_scalars(tmp_path)
  for network in ('encoder', 'q_network'):
    (step, q), (_, td), (_, matching) = (logged[f'Gradients/{network}/{name}']
                                         for name in ('q', 'td', 'gradient_matching'))
    assert step == logged['Losses/q'][0] == 1
    # q's gradient is the sum of its parts' (triangle inequality on their norms).
    assert td > 0 and q <= td + matching + 1e-6
    if trains_encoder or network == 'q_network':
      assert matching > 0 and q >= abs(td - matching) - 1e-6
    else:  # the matching term stops at x: all of q's pull on the encoder is the TD error's
      assert matching == 0 and q == pytest.approx(td, rel=1e-5)
