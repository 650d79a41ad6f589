import numpy as np
import pytest
import tensorflow as tf
from tf_agents.environments import tf_py_environment

from gmas_tf import data
from gmas_tf import gradient_matching
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
  assert -1.0 <= terms['slope_cosine'].numpy() <= 1.0 and terms['label_norm'].numpy() > 0


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
  loss_info = tf.function(agent.train)(batch)
  assert np.isfinite(loss_info.loss.numpy())
  assert {'gradient_matching', 'slope_cosine', 'label_norm', 'td'} <= set(loss_info.extra)


def test_bad_distance_is_rejected():
  with pytest.raises(ValueError, match='distance'):
    make(gmas_agent.GmasAgent, distance='manhattan')
