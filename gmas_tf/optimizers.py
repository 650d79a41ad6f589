"""RMSprop with the reference's update (docs/DESIGN.md section 4).

deer's CRAR (standalone Keras 2.2, and its PyTorch port alike) updates each parameter p with
gradient g as

  v <- rho v + (1 - rho) g^2
  p <- p - lr g / (sqrt(v) + eps)           epsilon OUTSIDE the square root

TF 2.15's `tf.keras.optimizers.RMSprop` computes lr g / sqrt(v + eps) instead: with eps 1e-4
the denominator never falls below 1e-2, which made this project's steps 30-80x smaller than
deer's. `tf.keras.optimizers.legacy.RMSprop` with momentum 0, not centered, is the reference
formula (tests/test_optimizers.py pins it against the formula above, by hand in numpy).

Gradient clipping: Keras 2.2's `clipnorm` (deer's) scales all the gradients of one update by
min(1, clip_norm / global norm), the norm taken over every gradient of that optimizer's call;
tf.keras' `clipnorm` clips each tensor alone, and its `global_clipnorm` is Keras 2.2's.
"""

import tensorflow as tf

# Bumped whenever the optimizer's checkpointed state changes meaning; a checkpoint without
# it (or with another value) cannot be resumed by this code.
FORMAT = 2
CLIPPINGS = ('global_norm', 'tensor_norm', 'none')


def rmsprop(learning_rate: float, rho: float, epsilon: float, clipping: str = 'global_norm',
            clip_norm: float = 1.0) -> tf.keras.optimizers.legacy.RMSprop:
  """deer's RMSprop (the update in the module docstring).

  Args:
    learning_rate, rho, epsilon: lr, rho and eps of the update.
    clipping: 'global_norm' (Keras 2.2, deer), 'tensor_norm' (each tensor's norm clipped
      alone, tf.keras' clipnorm) or 'none'.
    clip_norm: the norm the gradients are clipped to.
  """
  if clipping not in CLIPPINGS:
    raise ValueError(f'clipping must be one of {CLIPPINGS}, got {clipping!r}.')
  clip = {'global_norm': dict(global_clipnorm=clip_norm),
          'tensor_norm': dict(clipnorm=clip_norm), 'none': {}}[clipping]
  return tf.keras.optimizers.legacy.RMSprop(
      learning_rate=learning_rate, rho=rho, momentum=0.0, epsilon=epsilon, centered=False,
      **clip)


def step_parts(optimizer: tf.keras.optimizers.legacy.RMSprop, gradient_parts, variables):
  """The update `optimizer.apply_gradients` would make with the sum of `gradient_parts`,
  split into each part's share: {name: [step per variable]}, summing to that update.

  The shares are linear in the parts because the update is, once the sum fixes what is
  not: the clipping factor c (of the summed gradient) and the accumulator
  v' = rho v + (1 - rho) (c g)^2. Part i's share is -lr c g_i / (sqrt(v') + eps). Nothing
  is applied; the optimizer's accumulators are created (as zeros, or restored from a
  checkpoint) where they do not exist yet.

  Args:
    optimizer: one of `rmsprop`'s optimizers.
    gradient_parts: {name: [gradient per variable]}, in the order of `variables` (zeros,
      not None, where a part does not depend on a variable).
    variables: the variables the optimizer updates.
  """
  config = optimizer.get_config()
  total = [tf.add_n(list(g)) for g in zip(*gradient_parts.values())]
  if config.get('global_clipnorm'):
    factor = tf.minimum(1.0, config['global_clipnorm'] / tf.linalg.global_norm(total))
    factors = [factor] * len(total)
  elif config.get('clipnorm'):
    factors = [tf.minimum(1.0, config['clipnorm'] / tf.norm(g)) for g in total]
  else:
    factors = [1.0] * len(total)
  scales = []
  for variable, gradient, factor in zip(variables, total, factors):
    v = config['rho'] * optimizer.add_slot(variable, 'rms') + (
        1.0 - config['rho']) * tf.square(factor * gradient)
    scales.append(-config['learning_rate'] * factor / (tf.sqrt(v) + config['epsilon']))
  return {name: [scale * g for scale, g in zip(scales, gradients)]
          for name, gradients in gradient_parts.items()}
