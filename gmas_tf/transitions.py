"""The agent's training item: a batch of transitions (s, a, r, terminal, s').

It is independent of any environment: an agent is built from the environment's specs and
trains on `Transition`s, whatever data pipeline makes them (gmas_tf.data for datasets on
disk; a converter from TF-Agents' `Trajectory` pairs, as DqnAgent's, would serve as well).
"""

import collections

import tensorflow as tf

Transition = collections.namedtuple(
    'Transition', ['observation', 'action', 'reward', 'terminal', 'next_observation'])
Transition.__doc__ = """A batch of transitions: observation [B, ...] as the observation spec
(float32 for the networks), action int32 [B], reward float32 [B], terminal float32 [B] (1
where s' ends the episode), next_observation like observation."""


def transition_spec(observation_spec) -> Transition:
  """The spec of one `Transition` (without the batch dimension); observations are float32,
  whatever the environment's dtype, as the networks read them."""
  scalar = lambda name, dtype=tf.float32: tf.TensorSpec((), dtype, name)
  observation = tf.TensorSpec(observation_spec.shape, tf.float32)
  return Transition(observation=observation, action=scalar('action', tf.int32),
                    reward=scalar('reward'), terminal=scalar('terminal'),
                    next_observation=observation)
