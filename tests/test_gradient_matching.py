import numpy as np
import pytest
import tensorflow as tf

from gmas_tf import gradient_matching as gm
from gmas_tf import planning

SHAPE = (2, 2, 2)  # a small abstract state: n = 8
N = 8
A = 4


class TinyNets(tf.Module):
  """Random smooth networks on x [B, 2, 2, 2]: Q, and rho, g, tau of (x, one-hot a)."""

  def __init__(self, dtype, seed=0):
    rng = np.random.default_rng(seed)
    w = lambda *shape, s=0.7: tf.Variable(rng.normal(0, s, shape), dtype=dtype)
    self.q_in, self.q_out = w(N, 6), w(6, A)
    self.tau_in, self.tau_out = w(N + A, 6), w(6, N, s=0.3)
    self.rho_in, self.rho_out = w(N + A, 5), w(5)
    self.g_in, self.g_out = w(N + A, 5), w(5)
    self.model = planning.WorldModel(self.transition, self.reward, self.discount, A)
    self.model_variables = [self.tau_in, self.tau_out, self.rho_in, self.rho_out, self.g_in,
                            self.g_out]

  def q(self, x):
    return tf.tanh(tf.reshape(x, [-1, N]) @ self.q_in) @ self.q_out

  def _inputs(self, x, a):
    return tf.concat([tf.reshape(x, [-1, N]), a], -1)

  def transition(self, x, a):
    return tf.reshape(tf.tanh(self._inputs(x, a) @ self.tau_in) @ self.tau_out, [-1, *SHAPE])

  def reward(self, x, a):
    return tf.linalg.matvec(tf.tanh(self._inputs(x, a) @ self.rho_in), self.rho_out)

  def discount(self, x, a):
    return tf.sigmoid(tf.linalg.matvec(tf.tanh(self._inputs(x, a) @ self.g_in), self.g_out))


def states(dtype, batch=5, seed=1):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.normal(0, 0.8, (batch, *SHAPE)), dtype), tf.constant(
      rng.integers(A, size=batch), tf.int32)


@pytest.mark.parametrize('depth', [0, 1, 2, 3, 4, 5])
def test_batched_planner_slope_equals_eq5_recursion(depth):
  nets = TinyNets(tf.float32)
  x, a = states(tf.float32)
  best_path = gm.planner_slope(x, a, nets.q, nets.model, depth)
  tree = gm.tree_slope(x, a, nets.q, nets.model, depth)
  reference = gm.reference_slope(x, a, nets.q, nets.model, depth)
  np.testing.assert_allclose(best_path.numpy(), reference.numpy(), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(tree.numpy(), reference.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('depth', [0, 1, 3, 5])
def test_slopes_equal_central_finite_differences_in_float64(depth):
  nets = TinyNets(tf.float64)
  x, a = states(tf.float64, batch=3)

  def plan_value(x):
    plan = planning.plan_q(x, nets.q, nets.model, depth)
    return tf.gather(plan, a, batch_dims=1).numpy()

  h = 1e-6
  numeric = np.zeros((3, N))
  flat = x.numpy().reshape(3, N)
  for i in range(N):
    step = np.zeros_like(flat)
    step[:, i] = h
    up = plan_value(tf.constant((flat + step).reshape(x.shape)))
    down = plan_value(tf.constant((flat - step).reshape(x.shape)))
    numeric[:, i] = (up - down) / (2 * h)
  for slope in (gm.planner_slope, gm.tree_slope, gm.reference_slope):
    np.testing.assert_allclose(slope(x, a, nets.q, nets.model, depth).numpy(), numeric,
                               rtol=1e-6, atol=1e-8)


def test_depth_zero_label_is_the_q_slope():
  nets = TinyNets(tf.float32)
  x, a = states(tf.float32)
  np.testing.assert_allclose(gm.planner_slope(x, a, nets.q, nets.model, 0).numpy(),
                             gm.model_free_slope(x, a, nets.q).numpy(), rtol=1e-6)


def test_distances_by_hand():
  label = tf.constant([[3.0, 4.0], [1.0, 0.0]])
  prediction = tf.constant([[4.0, 3.0], [0.0, 2.0]])
  # cos = 24 / 25 and 0: mean(1 - cos) = (1/25 + 1) / 2.
  assert gm.distance(label, prediction, 'cosine').numpy() == pytest.approx((0.04 + 1) / 2)
  # ||(-1, 1)|| = sqrt 2, ||(1, -2)|| = sqrt 5.
  assert gm.distance(label, prediction, 'l2').numpy() == pytest.approx(
      (np.sqrt(2) + np.sqrt(5)) / 2, rel=1e-6)
  with pytest.raises(ValueError):
    gm.distance(label, prediction, 'l1')


@pytest.mark.parametrize('kind', ['cosine', 'l2'])
def test_matching_loss_gradient_is_finite_differences_for_q_and_zero_for_the_model(kind):
  nets = TinyNets(tf.float64)
  x, a = states(tf.float64, batch=3)
  label = gm.planner_slope(x, a, nets.q, nets.model, 3)

  def loss():
    return gm.distance(label, gm.model_free_slope(x, a, nets.q), kind)

  variables = [nets.q_in, nets.q_out] + nets.model_variables
  with tf.GradientTape() as tape:
    value = loss()
  gradients = tape.gradient(value, variables, unconnected_gradients='zero')
  for g in gradients[2:]:
    assert np.all(g.numpy() == 0.0)  # the label is a constant: rho, g, tau get nothing
  h = 1e-6
  for variable, gradient in zip(variables[:2], gradients[:2]):
    original = variable.numpy()
    for index in [(0, 0), (1, 2), (3, 1)]:
      bumped = original.copy()
      bumped[index] += h
      variable.assign(bumped)
      up = loss().numpy()
      bumped[index] -= 2 * h
      variable.assign(bumped)
      down = loss().numpy()
      variable.assign(original)
      assert gradient.numpy()[index] == pytest.approx((up - down) / (2 * h), rel=1e-5,
                                                      abs=1e-9)
