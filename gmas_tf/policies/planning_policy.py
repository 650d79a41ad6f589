"""The greedy policy on the planner's Q_plan^D (docs/DESIGN.md section 5)."""

from typing import Dict

import gin
import tensorflow as tf
from tf_agents.policies import tf_policy
from tf_agents.trajectories import policy_step

from gmas_tf import planning


@gin.configurable
class PlanningPolicy(tf_policy.TFPolicy):
  """Acts greedily on Q_plan^D(e(s), .), planning in the abstract space."""

  def __init__(self, time_step_spec, action_spec, networks: Dict[str, tf.keras.Model],
               depth: int = 3, branching: int = 2, depth_discount: float = 1.0,
               name: str = None):
    """Creates the policy.

    Args:
      time_step_spec, action_spec: the environment's specs.
      networks: the Keras 'encoder', 'transition', 'reward', 'discount', 'q_network'.
      depth: planning depth D (0 acts on the model-free Q alone).
      branching: b, the actions expanded below the root.
      depth_discount: gamma' weighting Q^d (1: the paper's mean).
      name: the policy's name.
    """
    self._networks = networks
    self._world_model = planning.keras_world_model(
        networks['transition'], networks['reward'], networks['discount'])
    self._depth = depth
    self._branching = branching
    self._depth_discount = depth_discount
    super().__init__(time_step_spec, action_spec, name=name or f'planning_depth_{depth}')

  def with_depth(self, depth: int) -> 'PlanningPolicy':
    """The same networks planning at another depth."""
    return PlanningPolicy(self.time_step_spec, self.action_spec, self._networks, depth,
                          self._branching, self._depth_discount)

  def plan_q(self, observation: tf.Tensor) -> tf.Tensor:
    """Q_plan^D [B, A] for observations [B, ...] (read as float32)."""
    x = self._networks['encoder'](tf.cast(observation, tf.float32))
    return planning.plan_q(x, self._networks['q_network'], self._world_model, self._depth,
                           self._branching, self._depth_discount)

  def _variables(self):
    return [v for name in sorted(self._networks) for v in self._networks[name].variables]

  def _action(self, time_step, policy_state, seed):
    del seed
    action = tf.argmax(self.plan_q(time_step.observation), axis=-1,
                       output_type=self.action_spec.dtype)
    return policy_step.PolicyStep(action, policy_state, ())

  def _distribution(self, time_step, policy_state):
    # Greedy planning has no distribution worth exporting; without one the SavedModel
    # loads with TensorFlow alone (no TensorFlow Probability type specs).
    raise NotImplementedError('PlanningPolicy is deterministic; use action().')
