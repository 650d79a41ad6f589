"""CRAR's planner in the abstract space (docs/DESIGN.md section 5; GMAS paper eq. 4).

  Q^0(x, a) = Q(x, a)
  Q^d(x, a) = rho(x, a) + g(x, a) * max_{a' in B(x')} Q^(d-1)(x', a'),  x' = x + tau(x, a)
  Q_plan^D(x, a) = sum_d w_d Q^d(x, a),  w_d proportional to depth_discount^d

B(x') holds the top-`branching` actions of Q(x', .); the root expands every action. The
tree is built level by level with one batched call of each network per level, then
backed up from the leaves. Everything is differentiable w.r.t. x: the max picks the best
branch, so d Q^d / dx follows the best path as Algorithm 1 does.

For GMAS's label, `best_paths` grows the tree under one root action to find the path
each Q^d follows, and `path_values` recomputes Q^d along those paths only: the same
values, with a tape that need not see the tree.
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
  num_actions: int


def keras_world_model(transition, reward, discount) -> WorldModel:
  """Wraps Keras networks that take [x, one_hot] into a WorldModel."""
  return WorldModel(transition=lambda x, a: transition([x, a]),
                    reward=lambda x, a: reward([x, a]),
                    discount=lambda x, a: discount([x, a]),
                    num_actions=transition.input_shape[1][-1])


def expand(model: WorldModel, x: tf.Tensor, actions: tf.Tensor):
  """Applies each of k actions to each state.

  Args:
    x: [N, 8, 8, 3] abstract states.
    actions: int [N, k] the actions to apply to each state.
  Returns:
    next_x [N * k, 8, 8, 3] (state-major), reward [N, k], discount [N, k].
  """
  k = tf.shape(actions)[1]
  repeated = tf.repeat(x, k, axis=0)
  one_hot = tf.one_hot(tf.reshape(actions, [-1]), model.num_actions, dtype=x.dtype)
  next_x = repeated + model.transition(repeated, one_hot)
  reward = tf.reshape(model.reward(repeated, one_hot), [-1, k])
  discount = tf.reshape(model.discount(repeated, one_hot), [-1, k])
  return next_x, reward, discount


def _grow(x, root_actions, q_network, model: WorldModel, depth: int, branching: int):
  """Top-down: expands the roots with `root_actions`, then every node with its top-b.

  Returns rewards and discounts of each level's expansions ([N, k], level 0 = the
  root's) and, for levels 1..depth, the top-b Q values and actions of every node [N, b].
  """
  next_x, reward, discount = expand(model, x, root_actions)
  rewards, discounts, top_values, top_actions = [reward], [discount], [], []
  for level in range(1, depth + 1):
    top = tf.math.top_k(q_network(next_x), k=branching)
    top_values.append(top.values)
    top_actions.append(top.indices)
    if level < depth:
      next_x, reward, discount = expand(model, next_x, top.indices)
      rewards.append(reward)
      discounts.append(discount)
  return rewards, discounts, top_values, top_actions


def _backup(rewards, discounts, top_values, depth: int, branching: int):
  """Bottom-up: for every node of levels 1..depth and every j = 0..depth - level,
  max over its candidates a' of Q^j(node, a'), and which candidate attains it.

  Returns (the maxima of level 1 [N_1, depth], the argmax of each level [N_k, depth-k+1]).
  """
  per_candidate = top_values[-1][..., None]  # [N_depth, b, 1]: Q^0
  choices = []
  for level in range(depth, 0, -1):
    choices.insert(0, tf.argmax(per_candidate, axis=1, output_type=tf.int32))
    values = tf.reduce_max(per_candidate, axis=1)
    if level > 1:
      children = tf.reshape(values, [-1, branching, depth - level + 1])
      deeper = rewards[level - 1][..., None] + discounts[level - 1][..., None] * children
      per_candidate = tf.concat([top_values[level - 2][..., None], deeper], axis=-1)
  return values, choices


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
  if depth == 0:
    return q_root[..., None]
  num_actions = model.num_actions
  root_actions = tf.tile(tf.range(num_actions)[None], [tf.shape(x)[0], 1])
  rewards, discounts, top_values, _ = _grow(x, root_actions, q_network, model, depth,
                                            branching)
  values, _ = _backup(rewards, discounts, top_values, depth, branching)
  children = tf.reshape(values, [-1, num_actions, depth])
  deeper = rewards[0][..., None] + discounts[0][..., None] * children
  return tf.concat([q_root[..., None], deeper], axis=-1)


def best_paths(x: tf.Tensor, action: tf.Tensor, q_network, model: WorldModel, depth: int,
               branching: int = 2):
  """The actions the planner's backup follows below (x, action), for each depth.

  Grows the tree under the given root action only. Returns a list whose entry d - 1
  (d = 1..depth) is int [B, d]: the actions a_1..a_d that attain Q^d(x, action), i.e.
  x_k = x_(k-1) + tau(x_(k-1), a_(k-1)) with a_0 = action and the leaf value Q(x_d, a_d).
  """
  if depth == 0:
    return []
  rewards, discounts, top_values, top_actions = _grow(x, action[:, None], q_network, model,
                                                      depth, branching)
  _, choices = _backup(rewards, discounts, top_values, depth, branching)
  paths = []
  for d in range(1, depth + 1):
    node, actions = tf.range(tf.shape(x)[0]), []
    for level in range(1, d + 1):
      candidate = tf.gather(choices[level - 1][:, d - level], node)
      actions.append(tf.gather(tf.gather(top_actions[level - 1], node), candidate,
                               batch_dims=1))
      node = node * branching + candidate
    paths.append(tf.stack(actions, axis=1))
  return paths


def path_values(x: tf.Tensor, action: tf.Tensor, paths, q_network,
                model: WorldModel) -> tf.Tensor:
  """Q^d(x, action) for d = 0..len(paths), each along its path from `best_paths`: [B, D+1].

  Along its best path Q^d is a chain, r_0 + g_0 (r_1 + g_1 (... + g_(d-1) Q(x_d, a_d))),
  whose slope w.r.t. x is the planner's (the max is locally a fixed choice), at a cost of
  1 + D(D-1)/2 model calls instead of a tree. The chains of all depths advance together:
  one batched model call per step, one Q call for every leaf.
  """
  depth = len(paths)
  batch = tf.shape(x)[0]

  def step(states, actions):
    return expand(model, states, actions[:, None])

  leaves, leaf_actions, links = [x], [action], []
  if depth:
    x1, reward, discount = step(x, action)
    root_link = (reward[:, 0], discount[:, 0])
    leaves.append(x1)
    leaf_actions.append(paths[0][:, 0])
    states = tf.tile(x1, [depth - 1] + [1] * (len(x.shape) - 1))  # chains d = 2..depth
    for k in range(1, depth):
      actions = tf.concat([paths[d - 1][:, k - 1] for d in range(k + 1, depth + 1)], axis=0)
      states, reward, discount = step(states, actions)
      # links[k - 1][d - k - 1] = (r_k, g_k) of the chain of depth d.
      links.append(list(zip(tf.split(reward[:, 0], depth - k), tf.split(discount[:, 0],
                                                                         depth - k))))
      leaves.append(states[:batch])  # chain d = k + 1 ends here
      leaf_actions.append(paths[k][:, k])
      states = states[batch:]
  leaf_q = tf.gather(q_network(tf.concat(leaves, axis=0)), tf.concat(leaf_actions, axis=0),
                     batch_dims=1)
  leaf_q = tf.split(leaf_q, depth + 1)
  values = [leaf_q[0]]
  for d in range(1, depth + 1):
    value = leaf_q[d]
    for k in range(d - 1, 0, -1):
      reward, discount = links[k - 1][d - k - 1]
      value = reward + discount * value
    values.append(root_link[0] + root_link[1] * value)
  return tf.stack(values, axis=-1)


def depth_weights(depth: int, depth_discount: float = 1.0, dtype=tf.float32) -> tf.Tensor:
  """w_d proportional to depth_discount^d, d = 0..depth, summing to 1 (1: the paper's mean)."""
  weights = tf.pow(tf.constant(depth_discount, dtype), tf.range(depth + 1, dtype=dtype))
  return weights / tf.reduce_sum(weights)


def adaptive_depth_weights(one_step_error: tf.Tensor, depth: int, threshold: float,
                           depth_discount: float = 1.0) -> tf.Tensor:
  """Per-sample depth weights [B, depth + 1] for an adaptive training depth.

  Sample i plans to d_i = min(depth, floor(threshold / e_i)), e_i its model's one-step
  error: the deepest rollout whose one-step errors, added up, stay below the threshold
  (d_i = 0 where the model already misses the sample's own next state by the threshold).
  Depths 0..d_i are weighted as depth_weights(d_i, depth_discount); deeper ones get 0.
  """
  dtype = one_step_error.dtype
  cut = tf.math.floor(threshold / tf.maximum(one_step_error, 1e-12))[:, None]  # [B, 1]
  kept = tf.range(depth + 1, dtype=dtype)[None, :] <= cut
  weights = tf.where(kept, depth_weights(depth, depth_discount, dtype)[None, :], 0.0)
  return weights / tf.reduce_sum(weights, axis=-1, keepdims=True)


def planned_depths(weights: tf.Tensor) -> tf.Tensor:
  """d_i [B] of adaptive_depth_weights' rows: depths 0..d_i carry weight."""
  return tf.reduce_sum(tf.cast(weights > 0, weights.dtype), -1) - 1.0


def plan_q(x: tf.Tensor, q_network, model: WorldModel, depth: int, branching: int = 2,
           depth_discount: float = 1.0) -> tf.Tensor:
  """Q_plan^D(x, .) [B, A]: the weighted mean of Q^0..Q^D."""
  by_depth = q_by_depth(x, q_network, model, depth, branching)
  weights = depth_weights(depth, depth_discount, by_depth.dtype)
  return tf.tensordot(by_depth, weights, axes=[[-1], [0]])
