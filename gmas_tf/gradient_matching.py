"""GMAS: matching the model-free slope dQ/dx to the planner's slope (paper eq. 5-7, Alg. 1).

All slopes are derivatives w.r.t. the abstract state x, per sample, flattened: [B, n].
The label d Q_plan^D(x, a) / dx uses the frozen target Q (at the leaves and to choose B),
the current rho, g, tau; it is a constant for the update. The prediction dQ(x, a) / dx is
taken inside the caller's tape, so the update differentiates it again w.r.t. the Q
network and, through x = e(s), the encoder.
"""

from typing import Optional

import tensorflow as tf

from gmas_tf import planning

DISTANCES = ('none', 'cosine', 'l2')


def _flatten(t: tf.Tensor) -> tf.Tensor:
  return tf.reshape(t, [tf.shape(t)[0], -1])


def planner_slope(x: tf.Tensor, action: tf.Tensor, q_network, model: planning.WorldModel,
                  depth: int, branching: int = 2, depth_discount: float = 1.0,
                  sample_weights: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Label: d Q_plan^D(x, a) / dx [B, n] (eq. 5), by autodiff along the best paths.

  The tree under (x, a) is grown without a tape only to find the path each Q^d follows;
  the tape then sees those D chains alone, which is all Algorithm 1 differentiates.
  sample_weights [B, D + 1], if given, replace the depth weights sample by sample (an
  adaptive training depth, `planning.adaptive_depth_weights`).
  """
  x = tf.stop_gradient(x)
  paths = planning.best_paths(x, action, q_network, model, depth, branching)
  weights = (planning.depth_weights(depth, depth_discount, x.dtype)[None, :]
             if sample_weights is None else tf.stop_gradient(sample_weights))
  with tf.GradientTape() as tape:
    tape.watch(x)
    values = planning.path_values(x, action, paths, q_network, model)
    value = tf.reduce_sum(values * weights, axis=-1)
  return tf.stop_gradient(_flatten(tape.gradient(value, x)))


def tree_slope(x: tf.Tensor, action: tf.Tensor, q_network, model: planning.WorldModel,
               depth: int, branching: int = 2, depth_discount: float = 1.0) -> tf.Tensor:
  """The same label by autodiff of the whole batched planner (slower; for the tests)."""
  with tf.GradientTape() as tape:
    tape.watch(x)
    plan = planning.plan_q(x, q_network, model, depth, branching, depth_discount)
    value = tf.gather(plan, action, batch_dims=1)
  return _flatten(tape.gradient(value, x))


def q_and_slope(x: tf.Tensor, action: tf.Tensor, q_network):
  """Q(x, .) [B, A] and the prediction dQ(x, a) / dx [B, n], from one forward pass of Q;
  both differentiable w.r.t. the Q weights and x."""
  with tf.GradientTape() as tape:
    tape.watch(x)
    q = q_network(x)
    value = tf.gather(q, action, batch_dims=1)
  return q, _flatten(tape.gradient(value, x))


def model_free_slope(x: tf.Tensor, action: tf.Tensor, q_network) -> tf.Tensor:
  """Prediction: dQ(x, a) / dx [B, n]; differentiable w.r.t. the Q weights and x."""
  return q_and_slope(x, action, q_network)[1]


def mean_slope_norm(x: tf.Tensor, action: tf.Tensor, q_network) -> tf.Tensor:
  """How steep the model-free Q is in x: the batch's mean ||dQ(x, a) / dx|| (a scalar)."""
  return tf.reduce_mean(tf.norm(model_free_slope(x, action, q_network), axis=-1))


def cosine_similarity(label: tf.Tensor, prediction: tf.Tensor,
                      epsilon: float = 1e-8) -> tf.Tensor:
  """Per sample cos(label, prediction) [B]; 0 where either slope is zero."""
  dot = tf.reduce_sum(label * prediction, -1)
  norms = tf.norm(label, axis=-1) * tf.norm(prediction, axis=-1)
  return dot / tf.maximum(norms, epsilon)


def distance(label: tf.Tensor, prediction: tf.Tensor, kind: str) -> tf.Tensor:
  """Mean over the batch of 1 - cos ('cosine') or of ||label - prediction||_2 ('l2')."""
  if kind == 'cosine':
    return tf.reduce_mean(1.0 - cosine_similarity(label, prediction))
  if kind == 'l2':
    # sqrt has an infinite slope at 0; the small constant keeps the gradient finite.
    return tf.reduce_mean(tf.sqrt(tf.reduce_sum(tf.square(label - prediction), -1) + 1e-12))
  raise ValueError(f'distance must be one of {DISTANCES[1:]}, got {kind!r}.')


def reference_slope(x: tf.Tensor, action: tf.Tensor, q_network, model: planning.WorldModel,
                    depth: int, branching: int = 2,
                    depth_discount: float = 1.0) -> tf.Tensor:
  """Algorithm 1 / eq. 5 written out with explicit Jacobians, as the tests' reference.

  gradAtDepth(x, a, 0) = dQ(x, a)/dx
  gradAtDepth(x, a, d) = drho/dx + dg/dx * max Q^(d-1)(x', .)
                         + g * gradAtDepth(x', a'', d-1) . (I + dtau/dx)
  where a'' is the best action of x' in the planner's backup. Returns [B, n].
  """
  def grad_at_depth(state, act, d):
    if d == 0:
      return model_free_slope(state, act, q_network)
    one_hot = tf.one_hot(act, model.num_actions, dtype=state.dtype)
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(state)
      next_state = state + model.transition(state, one_hot)
      reward = model.reward(state, one_hot)
      discount = model.discount(state, one_hot)
    jacobian = tape.batch_jacobian(next_state, state)  # [B, *shape, *shape]
    n = tf.reduce_prod(tf.shape(state)[1:])
    jacobian = tf.reshape(jacobian, [-1, n, n])
    reward_slope = _flatten(tape.gradient(reward, state))
    discount_slope = _flatten(tape.gradient(discount, state))
    # The planner's backup at x': Q^(d-1) of the top-b actions, and the best of them.
    next_q = planning.q_by_depth(next_state, q_network, model, d - 1, branching)[..., d - 1]
    candidates = tf.math.top_k(q_network(next_state), k=branching).indices
    candidate_values = tf.gather(next_q, candidates, batch_dims=1)
    best = tf.gather(candidates, tf.argmax(candidate_values, -1), batch_dims=1)
    best_value = tf.reduce_max(candidate_values, -1)
    deeper = grad_at_depth(next_state, best, d - 1)
    chained = tf.einsum('bi,bij->bj', deeper, jacobian)
    return reward_slope + discount_slope * best_value[:, None] + discount[:, None] * chained

  weights = planning.depth_weights(depth, depth_discount, x.dtype)
  slopes = [weights[d] * grad_at_depth(x, action, d)
            for d in range(depth + 1)]
  return tf.add_n(slopes)
