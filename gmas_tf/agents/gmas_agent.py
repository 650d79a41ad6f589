"""GMAS: CRAR whose Q loss also matches the planner's slope (paper eq. 7, docs/DESIGN.md section 6).

  L_Q = (Q(e(s), a) - y)^2 + alpha * dist(dQ_plan^D(x, a)/dx, dQ(x, a)/dx)

With distance 'none' the agent is CRAR, update for update.
"""

from typing import Dict, Optional, Tuple

import gin
import tensorflow as tf

from gmas_tf import gradient_matching
from gmas_tf import planning
from gmas_tf.agents import crar_agent
from gmas_tf.transitions import Transition


@gin.configurable
class GmasAgent(crar_agent.CrarAgent):
  """CrarAgent plus the gradient-matching term in the Q loss."""

  def __init__(self, time_step_spec, action_spec, distance: str = 'cosine',
               alpha: float = 0.05, training_depth: int = 3, depth_discount: float = 1.0,
               matching_trains_encoder: bool = True, matching_delay: int = 0,
               adaptive_depth_threshold: Optional[float] = None, name: str = 'GmasAgent',
               **kwargs):
    """Creates the agent.

    Args:
      time_step_spec, action_spec: the environment's specs.
      distance: 'none' (CRAR), 'cosine' (1 - cos) or 'l2' (Euclidean distance).
      alpha: weight of the distance (0.05 for cosine, 1.0 for L2 in the paper).
      training_depth: depth D of the planner whose slope is the label (0..5).
      depth_discount: gamma' weighting depth d by gamma'^d (1: the paper's mean).
      matching_trains_encoder: True (the paper) lets the matching term's gradient reach
        the encoder through x; False stops it there, so the term trains the Q network
        alone (a deviation from the paper, to measure how the term slows the model).
      matching_delay: the matching term weighs 0 until this many updates are made, then
        alpha (0: the paper, from the first update). A deviation from the paper, to test
        whether matching the planner's slope while Q is still flat is what slows the
        model; the term is computed and logged all along.
      adaptive_depth_threshold: None (the paper: every sample's label plans to
        training_depth) or a threshold on the one-step model error: each sample's label
        plans only as deep as its summed one-step errors stay below it
        (`planning.adaptive_depth_weights`; beyond the paper, its section 3.1.2).
      name: the agent's name.
      **kwargs: CrarAgent's arguments.
    """
    if distance not in gradient_matching.DISTANCES:
      raise ValueError(f'distance must be one of {gradient_matching.DISTANCES}, '
                       f'got {distance!r}.')
    self._distance = distance
    self._alpha = alpha
    self._training_depth = training_depth
    self._depth_discount = depth_discount
    self._matching_trains_encoder = matching_trains_encoder
    self._matching_delay = matching_delay
    self._adaptive_depth_threshold = adaptive_depth_threshold
    super().__init__(time_step_spec, action_spec, name=name, **kwargs)

  def _loss_parts(self, terms: Dict[str, tf.Tensor]) -> Dict[str, Tuple[float, tf.Tensor]]:
    """The Q loss's two parts: the TD error and the matching."""
    if self._distance == 'none':
      return {}
    weight = self._loss_weights['q']
    return dict(td=(weight, terms['td']),
                gradient_matching=(weight * self._matching_weight(terms['gradient_matching']),
                                   terms['gradient_matching']))

  def _matching_weight(self, matching: tf.Tensor) -> tf.Tensor:
    """alpha, or 0 while fewer than matching_delay updates are made (in matching's dtype)."""
    started = tf.cast(self.train_step_counter >= self._matching_delay, matching.dtype)
    return self._alpha * started

  def q_terms(self, t: Transition, x: tf.Tensor, x2: tf.Tensor) -> Dict[str, tf.Tensor]:
    if self._distance == 'none':
      return super().q_terms(t, x, x2)
    q_network = self.network('q_network')
    if self._matching_trains_encoder:
      # One forward pass of Q serves the TD loss and the prediction dQ(x, a)/dx.
      q, prediction = gradient_matching.q_and_slope(x, t.action, q_network)
    else:
      q = q_network(x)
      prediction = gradient_matching.model_free_slope(tf.stop_gradient(x), t.action,
                                                      q_network)
    terms = self._td_terms(t, q, x2)
    sample_weights = None
    if self._adaptive_depth_threshold is not None:
      sample_weights = planning.adaptive_depth_weights(
          tf.stop_gradient(self.one_step_error(t, x, x2)), self._training_depth,
          self._adaptive_depth_threshold, self._depth_discount)
      terms['training_depth'] = tf.reduce_mean(planning.planned_depths(sample_weights))
    # Label: the planner with the frozen target Q and the current rho, g, tau (constant).
    label = gradient_matching.planner_slope(
        x, t.action, self.target_network('q_network'), self.world_model,
        self._training_depth, self._branching, self._depth_discount, sample_weights)
    matching = gradient_matching.distance(label, prediction, self._distance)
    terms.update(
        td=terms['q'], q=terms['q'] + self._matching_weight(matching) * matching,
        gradient_matching=matching,
        slope_cosine=tf.reduce_mean(gradient_matching.cosine_similarity(label, prediction)),
        label_norm=tf.reduce_mean(tf.norm(label, axis=-1)))
    return terms
