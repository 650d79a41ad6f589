"""CRAR's networks (docs/DESIGN.md section 3), built for deer's maze by default and for any
image or vector observation by `make_encoder`.

On the maze the abstract state x is an 8x8x3 map. All convolutions have stride 1, 'same' padding and
tanh unless noted, max-pooling 'same' padding; Keras default initializers (Glorot-uniform
kernels, zero biases), as deer's standalone Keras 2.2 (tests/test_networks.py). The
transition is residual: the network returns tau(x, a) and the next abstract state is
x + tau(x, a).

The option `make_encoder.dense_dim = k` makes x a vector of k values instead (CRAR's
low-dimensional abstract state); every other network then reads x with dense layers.
"""

from typing import Optional, Sequence, Tuple

import gin
import tensorflow as tf

from gmas_tf.errors import SpecError

layers = tf.keras.layers


def _conv(filters, kernel, activation='tanh'):
  return layers.Conv2D(filters, kernel, padding='same', activation=activation)


def _pool(size):
  return layers.MaxPool2D(size, padding='same')  # deer's; equal to 'valid' on 48, 24 and 8


def _tile_action(x, action_one_hot):
  """Concatenates a one-hot action [B, A], tiled over the map, to x [B, h, w, c]."""
  tiled = tf.tile(action_one_hot[:, None, None, :], [1, tf.shape(x)[1], tf.shape(x)[2], 1])
  return tf.concat([x, tiled], axis=-1)


def default_pools(image_shape: Sequence[int], abstract_side: int = 8) -> Tuple[int, ...]:
  """Max-pooling sizes that take an image of [H, W] to an abstract map of at most
  `abstract_side` on a side: factors 2 and 3 in turn, each preferred where it divides both
  sides (48 -> 24 -> 8, deer's maze: (2, 3); 64 -> (2, 2, 2); 7 -> no pooling)."""
  (h, w), pools = image_shape[:2], []
  while max(h, w) > abstract_side:
    order = (3, 2) if pools and pools[-1] == 2 else (2, 3)
    size = next((f for f in order if h % f == 0 and w % f == 0), 2)
    pools.append(size)
    h, w = -(-h // size), -(-w // size)  # 'same' padding rounds up
  return tuple(pools)


@gin.configurable
def make_encoder(observation_shape=(48, 48, 1), abstract_channels: int = 3,
                 dense_dim: Optional[int] = None,
                 dense_hidden: Sequence[int] = (200, 100, 50),
                 pool_sizes: Optional[Sequence[int]] = None, abstract_side: int = 8,
                 vector_dense_dim: int = 3,
                 name: str = 'encoder') -> tf.keras.Model:
  """e: an observation -> the abstract state x.

  Images s [B, H, W, C]: deer's convolutions (8 2x2, 16 2x2, 32 3x3 after the first pool)
  with max-pools of `pool_sizes` (default: `default_pools`, (2, 3) on deer's 48x48 maze)
  -> x [B, h, w, abstract_channels], or x [B, dense_dim] through dense layers if dense_dim
  is set. Vectors s [B, n]: dense layers `dense_hidden` -> x [B, dense_dim or
  vector_dense_dim].
  """
  if len(observation_shape) not in (1, 3):
    raise SpecError(f'The encoder takes images [H, W, C] or vectors [n]; the observation '
                     f'spec has shape {tuple(observation_shape)}.')
  observation = layers.Input(observation_shape)
  if len(observation_shape) == 1:
    return tf.keras.Model(observation, _dense_stack(observation, dense_hidden,
                                                    dense_dim or vector_dense_dim), name=name)
  pools = (default_pools(observation_shape, abstract_side) if pool_sizes is None
           else tuple(pool_sizes))
  h = _conv(8, 2)(observation)
  h = _conv(16, 2)(h)
  for i, size in enumerate(pools or (None,)):
    if size is not None:
      h = _pool(size)(h)
    if i == 0:
      h = _conv(32, 3)(h)
  if dense_dim is None:
    x = _conv(abstract_channels, 1, activation=None)(h)
  else:
    h = layers.Flatten()(h)
    for units in dense_hidden:
      h = layers.Dense(units, activation='tanh')(h)
    x = layers.Dense(dense_dim)(h)
  return tf.keras.Model(observation, x, name=name)


def _is_dense(abstract_shape) -> bool:
  return len(abstract_shape) == 1


def _dense_stack(h, hidden: Sequence[int], outputs: int):
  for units in hidden:
    h = layers.Dense(units, activation='tanh')(h)
  return layers.Dense(outputs)(h)


def _with_action(x, action):
  if len(x.shape) == 2:
    return layers.Concatenate()([x, action])
  return layers.Lambda(lambda inputs: _tile_action(*inputs))([x, action])


@gin.configurable
def make_transition(abstract_shape=(8, 8, 3), num_actions: int = 4,
                    filters: Sequence[int] = (16, 32, 64, 32, 16),
                    kernels: Sequence[int] = (1, 2, 3, 2, 1),
                    name: str = 'transition') -> tf.keras.Model:
  """tau: (x [B, 8, 8, 3], one-hot a [B, 4]) -> the change of x [B, 8, 8, 3]."""
  x = layers.Input(abstract_shape)
  action = layers.Input((num_actions,))
  h = _with_action(x, action)
  if _is_dense(abstract_shape):
    return tf.keras.Model([x, action], _dense_stack(h, filters, abstract_shape[0]), name=name)
  for f, k in zip(filters, kernels):
    h = _conv(f, k)(h)
  delta = _conv(abstract_shape[-1], 1, activation=None)(h)
  return tf.keras.Model([x, action], delta, name=name)


def _value_head(h, hidden: Sequence[int], outputs: int):
  if len(h.shape) == 2:
    return _dense_stack(h, hidden, outputs)
  h = _conv(16, 2)(h)
  h = _conv(32, 3)(h)
  h = _pool(2)(h)
  h = _conv(16, 2)(h)
  h = _conv(4, 1)(h)
  return _dense_stack(layers.Flatten()(h), hidden, outputs)


def _scalar_of_state_action(abstract_shape, num_actions, hidden, name):
  x = layers.Input(abstract_shape)
  action = layers.Input((num_actions,))
  value = _value_head(_with_action(x, action), hidden, 1)
  return tf.keras.Model([x, action], layers.Reshape(())(value), name=name)


@gin.configurable
def make_reward(abstract_shape=(8, 8, 3), num_actions: int = 4,
                hidden: Sequence[int] = (200, 50, 20), name: str = 'reward') -> tf.keras.Model:
  """rho: (x [B, 8, 8, 3], one-hot a [B, 4]) -> predicted reward [B]."""
  return _scalar_of_state_action(abstract_shape, num_actions, hidden, name)


@gin.configurable
def make_discount(abstract_shape=(8, 8, 3), num_actions: int = 4,
                  hidden: Sequence[int] = (200, 50, 20),
                  name: str = 'discount') -> tf.keras.Model:
  """g: (x [B, 8, 8, 3], one-hot a [B, 4]) -> predicted discount [B] (0 at a terminal)."""
  return _scalar_of_state_action(abstract_shape, num_actions, hidden, name)


@gin.configurable
def make_q_network(abstract_shape=(8, 8, 3), num_actions: int = 4,
                   hidden: Sequence[int] = (200, 50, 20),
                   name: str = 'q_network') -> tf.keras.Model:
  """Q: x [B, 8, 8, 3] -> Q(x, .) [B, 4]."""
  x = layers.Input(abstract_shape)
  return tf.keras.Model(x, _value_head(x, hidden, num_actions), name=name)
