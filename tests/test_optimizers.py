"""deer's RMSprop: the update of Keras 2.2 and PyTorch, epsilon outside the square root."""

import numpy as np
import pytest
import tensorflow as tf

from gmas_tf import optimizers

LR, RHO, EPS = 1e-3, 0.9, 1e-4


def reference_displacement(gradients, lr=LR, rho=RHO, eps=EPS):
  """v <- rho v + (1 - rho) g^2;  p <- p - lr g / (sqrt(v) + eps), by hand in numpy."""
  v, p = np.zeros_like(gradients[0], np.float64), np.zeros_like(gradients[0], np.float64)
  for g in gradients:
    v = rho * v + (1 - rho) * g**2
    p = p - lr * g / (np.sqrt(v) + eps)
  return p


def displacement(optimizer, gradients):
  variable = tf.Variable(tf.zeros_like(gradients[0]))
  for g in gradients:
    optimizer.apply_gradients([(tf.constant(g), variable)])
  return variable.numpy()


CONSTANT = [np.full(3, g, np.float32) for g in (1e-6, 1e-4, 1e-2)]


@pytest.mark.parametrize('scale', [1e-6, 1e-4, 1e-2])
def test_thirty_constant_gradients_move_a_weight_as_deer(scale):
  gradients = [np.full(3, scale, np.float32)] * 30
  expected = reference_displacement(gradients)
  ours = displacement(optimizers.rmsprop(LR, RHO, EPS), gradients)
  np.testing.assert_allclose(ours, expected, rtol=1e-5)
  # TF 2.15's RMSprop (epsilon inside the root) fails the same check.
  inside = displacement(tf.keras.optimizers.RMSprop(LR, RHO, epsilon=EPS), gradients)
  assert not np.allclose(inside, expected, rtol=1e-2)


def test_constant_gradient_of_1e4_moves_as_the_issue_measured():
  # 30 steps of g = 1e-4: deer's update moves a weight ~5.3e-4 per step on average late on.
  gradients = [np.full(1, 1e-4, np.float32)] * 30
  ours = displacement(optimizers.rmsprop(LR, RHO, EPS), gradients)
  last_step = reference_displacement(gradients) - reference_displacement(gradients[:-1])
  assert ours[0] == pytest.approx(reference_displacement(gradients)[0], rel=1e-5)
  assert -last_step[0] == pytest.approx(1e-3 * 1e-4 / (np.sqrt(1 - 0.9**30) * 1e-4 + 1e-4),
                                        rel=1e-6)


def test_global_norm_clipping_scales_every_gradient_together():
  # Step 1 below the norm, step 2 above: Keras 2.2's clipnorm scales both tensors by
  # 1 / global norm (5); clipping each tensor alone would give (1, 0) and (1).
  first = [np.array([0.3, 0.0], np.float32), np.array([0.4], np.float32)]
  second = [np.array([3.0, 0.0], np.float32), np.array([4.0], np.float32)]
  variables = [tf.Variable(tf.zeros_like(g)) for g in first]
  optimizer = optimizers.rmsprop(LR, RHO, EPS, clipping='global_norm', clip_norm=1.0)
  for gradients in (first, second):
    optimizer.apply_gradients(zip(map(tf.constant, gradients), variables))
  for variable, g1, g2 in zip(variables, first, second):
    expected = reference_displacement([g1, g2 / 5.0])
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5)

  variables = [tf.Variable(tf.zeros_like(g)) for g in first]
  optimizer = optimizers.rmsprop(LR, RHO, EPS, clipping='tensor_norm', clip_norm=1.0)
  for gradients in (first, second):
    optimizer.apply_gradients(zip(map(tf.constant, gradients), variables))
  expected = reference_displacement([first[1], np.array([1.0], np.float32)])
  np.testing.assert_allclose(variables[1].numpy(), expected, rtol=1e-5)


def test_unknown_clipping_is_rejected():
  with pytest.raises(ValueError, match='clipping'):
    optimizers.rmsprop(LR, RHO, EPS, clipping='sometimes')


@pytest.mark.parametrize('clipping', optimizers.CLIPPINGS)
def test_step_parts_sum_to_the_update_apply_gradients_makes(clipping):
  rng = np.random.default_rng(0)
  variables = [tf.Variable(rng.normal(size=s).astype(np.float32)) for s in ((3, 2), (2,))]
  optimizer = optimizers.rmsprop(LR, RHO, EPS, clipping=clipping, clip_norm=1.0)
  # One update first, so the accumulators are not zero; the next gradient's norm is over 1.
  optimizer.apply_gradients([(tf.ones_like(v), v) for v in variables])
  parts = {name: [tf.constant(rng.normal(scale=2.0, size=v.shape).astype(np.float32))
                  for v in variables] for name in ('td', 'gradient_matching')}
  shares = optimizers.step_parts(optimizer, parts, variables)
  before = [v.numpy() for v in variables]
  optimizer.apply_gradients(zip([a + b for a, b in zip(*parts.values())], variables))
  for share_td, share_matching, v, old in zip(*shares.values(), variables, before):
    np.testing.assert_allclose(share_td + share_matching, v.numpy() - old, rtol=1e-4,
                               atol=1e-9)
  # Each share is its part's gradient through the update's normalizer: same signs, and
  # the parts' shares differ (one normalizer, two directions).
  assert np.all(np.sign(shares['td'][1]) == -np.sign(parts['td'][1]))
  assert not np.allclose(shares['td'][0], shares['gradient_matching'][0])
