import numpy as np
import pytest
import tensorflow as tf

from gmas_tf import planning

# A tiny world on scalar states x [N, 1]: actions shift x, rewards and Q are simple in x.
SHIFT = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
Q_SLOPE = np.array([1.0, -1.0, 0.5, 0.0], np.float32)
Q_BIAS = np.array([0.0, 1.0, 0.2, 0.3], np.float32)


def transition(x, one_hot):
  return tf.linalg.matvec(one_hot, SHIFT)[:, None] + 0.0 * x


def reward(x, one_hot):
  return 0.1 * x[:, 0] + tf.linalg.matvec(one_hot, tf.range(4, dtype=tf.float32))


def discount(x, one_hot):
  del one_hot
  return 0.5 + 0.0 * x[:, 0]


def q_network(x):
  return x * Q_SLOPE + Q_BIAS


MODEL = planning.WorldModel(transition, reward, discount, num_actions=4)


def q_np(x):
  return x * Q_SLOPE + Q_BIAS


def reference_q(x, a, d, b=2):
  """eq. 4 as written, one node at a time."""
  if d == 0:
    return q_np(x)[a]
  nxt = x + SHIFT[a]
  best = np.argsort(-q_np(nxt), kind='stable')[:b]
  return 0.1 * x + a + 0.5 * max(reference_q(nxt, a2, d - 1, b) for a2 in best)


def test_depth_one_by_hand():
  # x = 1, a = 0: x' = 2, Q(2) = [2, -1, 1.2, 0.3], best two {0, 2}, max Q^0 = 2.
  # Q^1(1, 0) = 0.1 * 1 + 0 + 0.5 * 2 = 1.1; Q^0(1, 0) = Q(1)[0] = 1.
  values = planning.q_by_depth(tf.constant([[1.0]]), q_network, MODEL, depth=1).numpy()
  assert values[0, 0] == pytest.approx([1.0, 1.1])
  # Q_plan^1 is their mean.
  plan = planning.plan_q(tf.constant([[1.0]]), q_network, MODEL, depth=1).numpy()
  assert plan[0, 0] == pytest.approx(1.05)


@pytest.mark.parametrize('depth', [0, 1, 2, 3, 5])
@pytest.mark.parametrize('branching', [1, 2, 3])
def test_batched_planner_equals_recursion(depth, branching):
  xs = np.array([-1.5, 0.0, 0.7, 2.0], np.float32)
  values = planning.q_by_depth(tf.constant(xs[:, None]), q_network, MODEL, depth,
                               branching).numpy()
  assert values.shape == (4, 4, depth + 1)
  for i, x in enumerate(xs):
    for a in range(4):
      for d in range(depth + 1):
        assert values[i, a, d] == pytest.approx(reference_q(x, a, d, branching), rel=1e-5,
                                                abs=1e-5)


def test_one_network_call_per_level():
  calls = {'q': 0, 'reward': 0}

  def counting_q(x):
    calls['q'] += 1
    return q_network(x)

  def counting_reward(x, a):
    calls['reward'] += 1
    return reward(x, a)

  model = planning.WorldModel(transition, counting_reward, discount, num_actions=4)
  planning.q_by_depth(tf.zeros([8, 1]), counting_q, model, depth=5)
  assert calls == {'q': 6, 'reward': 5}


def test_depth_weights():
  assert planning.depth_weights(3).numpy() == pytest.approx([0.25] * 4)
  weights = planning.depth_weights(2, 0.5).numpy()
  assert weights == pytest.approx(np.array([1, 0.5, 0.25]) / 1.75)


@pytest.mark.parametrize('depth', [0, 1, 2, 3, 5])
@pytest.mark.parametrize('branching', [1, 2, 3])
def test_best_paths_reproduce_the_tree_values(depth, branching):
  xs = tf.constant(np.array([-1.5, 0.0, 0.7, 2.0, 0.3], np.float32)[:, None])
  action = tf.constant([0, 1, 2, 3, 1])
  tree = planning.q_by_depth(xs, q_network, MODEL, depth, branching).numpy()
  paths = planning.best_paths(xs, action, q_network, MODEL, depth, branching)
  assert [p.shape for p in paths] == [(5, d) for d in range(1, depth + 1)]
  along = planning.path_values(xs, action, paths, q_network, MODEL).numpy()
  np.testing.assert_allclose(along, tree[np.arange(5), action.numpy()], rtol=1e-5, atol=1e-5)


def test_best_path_by_hand():
  # x = 1, a = 0: x1 = 2 with Q(2) = [2, -1, 1.2, 0.3]: B = {0, 2}. Q^1 of x1's candidates:
  # a' = 0 -> x2 = 3: 0.1 * 2 + 0 + 0.5 * max_B Q(3) = 0.2 + 0.5 * 3 = 1.7;
  # a' = 2 -> x2 = 2.5: 0.2 + 2 + 0.5 * max_B Q(2.5) = 2.2 + 0.5 * 2.5 = 3.45.
  # So Q^2 follows 2, then x2's best action 0; Q^1 follows 0 (Q^0 of x1 is largest at 0).
  paths = planning.best_paths(tf.constant([[1.0]]), tf.constant([0]), q_network, MODEL, 2)
  assert paths[0].numpy().tolist() == [[0]]
  assert paths[1].numpy().tolist() == [[2, 0]]


def test_adaptive_depth_weights_by_hand():
  # threshold 0.1, depth 3: e = 0.001 plans to 3 (100 steps fit), e = 0.04 to 2, e = 1 to 0.
  weights = planning.adaptive_depth_weights(tf.constant([0.001, 0.04, 1.0]), 3, 0.1).numpy()
  np.testing.assert_allclose(weights, [[0.25] * 4, [1 / 3] * 3 + [0.0], [1.0, 0, 0, 0]],
                             rtol=1e-6)
  assert planning.planned_depths(tf.constant(weights)).numpy().tolist() == [3, 2, 0]
  discounted = planning.adaptive_depth_weights(tf.constant([0.04]), 3, 0.1, 0.5).numpy()
  np.testing.assert_allclose(discounted, [[4 / 7, 2 / 7, 1 / 7, 0.0]], rtol=1e-6)
