"""The agents on environments other than the maze: built from the specs alone."""

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from gmas_tf import gradient_matching
from gmas_tf import networks
from gmas_tf.agents import crar_agent
from gmas_tf.agents import gmas_agent
from gmas_tf.transitions import Transition


def specs(observation_shape, dtype, num_actions, minimum=0):
  observation = tensor_spec.TensorSpec(observation_shape, dtype, 'observation')
  action = tensor_spec.BoundedTensorSpec((), tf.int64, minimum, minimum + num_actions - 1)
  return ts.time_step_spec(observation), action


def random_batch(observation_shape, dtype, num_actions, size=8, seed=0):
  rng = np.random.default_rng(seed)
  high = 6 if dtype == tf.uint8 else 1.0
  observe = lambda: tf.cast(rng.uniform(0, high, (size, *observation_shape)), tf.float32)
  return Transition(observation=observe(),
                    action=tf.constant(rng.integers(num_actions, size=size), tf.int32),
                    reward=tf.constant(rng.choice([-0.1, 1.0], size), tf.float32),
                    terminal=tf.constant(rng.random(size) < 0.2, tf.float32),
                    next_observation=observe())


@pytest.mark.parametrize('agent_class', [crar_agent.CrarAgent, gmas_agent.GmasAgent])
@pytest.mark.parametrize('observation_shape, dtype, num_actions, abstract_shape', [
    ((36, 36, 3), tf.uint8, 6, (6, 6, 3)),   # an image of another size, 6 actions
    ((10,), tf.float32, 3, (3,)),            # a vector observation
])
def test_agent_trains_and_plans_on_the_specs_it_is_given(agent_class, observation_shape,
                                                         dtype, num_actions, abstract_shape):
  tf.keras.utils.set_random_seed(0)
  time_step_spec, action_spec = specs(observation_shape, dtype, num_actions)
  kwargs = dict(training_depth=2) if agent_class is gmas_agent.GmasAgent else {}
  agent = agent_class(time_step_spec, action_spec, update_scheme='per_loss', **kwargs)
  agent.initialize()
  assert tuple(agent.network('encoder').output_shape[1:]) == abstract_shape
  assert agent.network('q_network').output_shape[-1] == num_actions
  batch = random_batch(observation_shape, dtype, num_actions)
  before = [w.copy() for w in agent.network('encoder').get_weights()]
  loss = agent.train(batch)
  assert np.isfinite(float(loss.loss))
  assert any(np.abs(a - b).max() > 0 for a, b in
             zip(before, agent.network('encoder').get_weights()))
  # The policy plans over all the actions and takes the environment's dtype.
  observation = tf.cast(tf.zeros((5, *observation_shape)), dtype)
  for depth in (0, 2):
    policy = agent.policy.with_depth(depth)
    assert policy.plan_q(observation).shape == (5, num_actions)
    action = policy.action(ts.restart(observation, batch_size=5)).action
    assert action.dtype == tf.int64 and set(action.numpy()) <= set(range(num_actions))
  # The label of a depth-2 planner has the abstract state's size.
  x = agent.network('encoder')(batch.observation)
  label = gradient_matching.planner_slope(x, batch.action, agent.network('q_network'),
                                          agent.world_model, 2, agent.branching)
  assert label.shape == (8, int(np.prod(abstract_shape)))


@pytest.mark.parametrize('spec, what', [
    (tensor_spec.BoundedTensorSpec((), tf.int32, 1, 4), 'minimum 1'),
    (tensor_spec.BoundedTensorSpec((2,), tf.int32, 0, 3), 'shape (2,)'),
    (tensor_spec.BoundedTensorSpec((), tf.float32, 0.0, 1.0), 'dtype float32'),
])
def test_an_action_spec_the_agent_cannot_take_is_refused_in_one_sentence(spec, what):
  time_step_spec, _ = specs((48, 48, 1), tf.float32, 4)
  with pytest.raises(ValueError, match='scalar integer action spec with minimum 0') as error:
    crar_agent.CrarAgent(time_step_spec, spec)
  assert what in str(error.value).splitlines()[0]  # gin adds a line; the CLI shows the first


def test_an_observation_the_encoder_cannot_take_is_refused_in_one_sentence():
  with pytest.raises(ValueError, match=r'images \[H, W, C\] or vectors \[n\]; the observation '
                     r'spec has shape \(4, 4\)'):
    crar_agent.CrarAgent(*specs((4, 4), tf.float32, 4))


@pytest.mark.parametrize('shape, pools', [((48, 48), (2, 3)), ((64, 64), (2, 2, 2)),
                                          ((84, 84), (2, 3, 2)), ((7, 7), ()),
                                          ((36, 36), (2, 3)), ((9, 9), (3,)), ((10, 10), (2,))])
def test_default_pools_reach_an_abstract_map_of_at_most_8(shape, pools):
  assert networks.default_pools(shape) == pools
  encoder = networks.make_encoder((*shape, 1))
  side = -(-shape[0] // int(np.prod(pools))) if pools else shape[0]
  assert encoder.output_shape == (None, side, side, 3) and side <= 8


def test_a_given_encoder_is_the_one_the_agent_uses():
  time_step_spec, action_spec = specs((5,), tf.float32, 2)
  encoder = tf.keras.Sequential([tf.keras.layers.Input((5,)), tf.keras.layers.Dense(4)],
                                name='encoder')
  agent = crar_agent.CrarAgent(time_step_spec, action_spec, encoder=encoder)
  assert agent.network('encoder') is encoder
  assert agent.network('q_network').input_shape == (None, 4)
