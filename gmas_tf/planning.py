"""CRAR's planner in the abstract space (DESIGN section 5; GMAS paper eq. 4).

  Q^0(x, a) = Q(x, a)
  Q^d(x, a) = rho(x, a) + g(x, a) * max_{a' in B(x')} Q^(d-1)(x', a'),  x' = x + tau(x, a)
  Q_plan^D(x, a) = sum_d w_d Q^d(x, a),  w_d proportional to depth_discount^d

B(x') holds the top-`branching` actions of Q(x', .); the root expands every action. The
tree is built level by level with one batched call of each network per level, then
backed up from the leaves. Everything is differentiable w.r.t. x: the max picks the best
branch, so d Q^d / dx follows the best path as Algorithm 1 does.
"""

from typing import Callable, NamedTuple

import tensorflow as tf

# (x [N, 8, 8, 3], one-hot actions [N, A]) -> [N] or [N, 8, 8, 3]
StateActionFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


class WorldModel(NamedTuple):
  """The model-based part of CRAR as plain callables on abstract states."""
  transition: StateActionFn  # tau; the next state is x + tau(x, a)
  reward: StateActionFn  # rho
  discount: StateActionFn  # g


def keras_world_model(transition, reward, discount) -> WorldModel:
  """Wraps Keras networks that take [x, one_hot] into a WorldModel."""
  return WorldModel(transition=lambda x, a: transition([x, a]),
                    reward=lambda x, a: reward([x, a]),
                    discount=lambda x, a: discount([x, a]))


def expand(model: WorldModel, x: tf.Tensor, actions: tf.Tensor, num_actions: int):
  """Applies each of k actions to each state.

  Args:
    x: [N, 8, 8, 3] abstract states.
    actions: int [N, k] the actions to apply to each state.
  Returns:
    next_x [N * k, 8, 8, 3] (state-major), reward [N, k], discount [N, k].
  """
  k = tf.shape(actions)[1]
  repeated = tf.repeat(x, k, axis=0)
  one_hot = tf.one_hot(tf.reshape(actions, [-1]), num_actions, dtype=x.dtype)
  next_x = repeated + model.transition(repeated, one_hot)
  reward = tf.reshape(model.reward(repeated, one_hot), [-1, k])
  discount = tf.reshape(model.discount(repeated, one_hot), [-1, k])
  return next_x, reward, discount


def q_by_depth(x: tf.Tensor, q_network: Callable[[tf.Tensor], tf.Tensor],
               model: WorldModel, depth: int, branching: int = 2) -> tf.Tensor:
  """Q^d(x, a) for d = 0..depth and every action (eq. 4).

  Args:
    x: [B, 8, 8, 3] abstract states at the root.
    q_network: x [N, 8, 8, 3] -> Q(x, .) [N, A]; chooses B(x') and values the leaves.
    model: the transition, reward and discount functions.
    depth: planning depth D >= 0 (a Python int: the tree's shape is static).
    branching: b, the actions expanded below the root.
  Returns:
    [B, A, depth + 1]; entry [..., d] is Q^d.
  """
  q_root = q_network(x)
  num_actions = q_root.shape[-1]
  if depth == 0:
    return q_root[..., None]
  # Top-down: the states, rewards and discounts of every level.
  root_actions = tf.tile(tf.range(num_actions)[None], [tf.shape(x)[0], 1])
  next_x, reward, discount = expand(model, x, root_actions, num_actions)
  rewards, discounts, q_levels = [reward], [discount], []
  for level in range(1, depth + 1):
    q_level = q_network(next_x)
    top = tf.math.top_k(q_level, k=branching)
    q_levels.append(top.values)  # Q^0 of each node's best actions [N_level, b]
    if level < depth:
      next_x, reward, discount = expand(model, next_x, top.indices, num_actions)
      rewards.append(reward)
      discounts.append(discount)
  # Bottom-up: values[n, k] = max_{a' in B(node n)} Q^k(node n, a').
  values = tf.reduce_max(q_levels[-1], axis=1)[:, None]
  for level in range(depth - 1, 0, -1):
    children = tf.reshape(values, [-1, branching, depth - level])
    deeper = rewards[level][..., None] + discounts[level][..., None] * children
    per_action = tf.concat([q_levels[level - 1][..., None], deeper], axis=-1)
    values = tf.reduce_max(per_action, axis=1)
  children = tf.reshape(values, [-1, num_actions, depth])
  deeper = rewards[0][..., None] + discounts[0][..., None] * children
  return tf.concat([q_root[..., None], deeper], axis=-1)


def depth_weights(depth: int, depth_discount: float = 1.0, dtype=tf.float32) -> tf.Tensor:
  """w_d proportional to depth_discount^d, d = 0..depth, summing to 1 (1: the paper's mean)."""
  weights = tf.pow(tf.constant(depth_discount, dtype), tf.range(depth + 1, dtype=dtype))
  return weights / tf.reduce_sum(weights)


def plan_q(x: tf.Tensor, q_network, model: WorldModel, depth: int, branching: int = 2,
           depth_discount: float = 1.0) -> tf.Tensor:
  """Q_plan^D(x, .) [B, A]: the weighted mean of Q^0..Q^D."""
  by_depth = q_by_depth(x, q_network, model, depth, branching)
  weights = depth_weights(depth, depth_discount, by_depth.dtype)
  return tf.tensordot(by_depth, weights, axes=[[-1], [0]])
