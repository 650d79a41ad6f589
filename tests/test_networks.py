"""CRAR's networks against deer's NN_CRAR_keras (docs/DESIGN.md section 3), layer by layer.

deer builds every convolution with stride 1 and padding 'same', every max-pooling with
padding 'same' and its pool size as stride, and leaves standalone Keras 2.2's default
initializers: Glorot-uniform kernels (uniform in +-sqrt(6 / (fan_in + fan_out))) and zero
biases. Each of these is pinned here, so that another Keras default or a PyTorch-style
initializer (uniform in +-1/sqrt(fan_in)) fails.
"""

import numpy as np
import pytest
import tensorflow as tf

from gmas_tf import networks

layers = tf.keras.layers
_VALUE_HEAD = [('conv', 16, 2, 'tanh'), ('conv', 32, 3, 'tanh'), ('pool', 2),
               ('conv', 16, 2, 'tanh'), ('conv', 4, 1, 'tanh'),
               ('dense', 200, 'tanh'), ('dense', 50, 'tanh'), ('dense', 20, 'tanh')]
DEER = {
    'encoder': [('conv', 8, 2, 'tanh'), ('conv', 16, 2, 'tanh'), ('pool', 2),
                ('conv', 32, 3, 'tanh'), ('pool', 3), ('conv', 3, 1, 'linear')],
    'transition': [('conv', 16, 1, 'tanh'), ('conv', 32, 2, 'tanh'), ('conv', 64, 3, 'tanh'),
                   ('conv', 32, 2, 'tanh'), ('conv', 16, 1, 'tanh'), ('conv', 3, 1, 'linear')],
    'reward': _VALUE_HEAD + [('dense', 1, 'linear')],
    'discount': _VALUE_HEAD + [('dense', 1, 'linear')],
    'q_network': _VALUE_HEAD + [('dense', 4, 'linear')],
}


def build(name):
  tf.keras.utils.set_random_seed(0)
  if name == 'encoder':
    return networks.make_encoder((48, 48, 1))
  return {'transition': networks.make_transition, 'reward': networks.make_reward,
          'discount': networks.make_discount, 'q_network': networks.make_q_network}[name]()


def describe(layer):
  """A layer as deer's code would spell it; None for layers without parameters or shape."""
  if isinstance(layer, layers.Conv2D):
    assert layer.strides == (1, 1) and layer.padding == 'same', layer.name
    assert layer.kernel_size[0] == layer.kernel_size[1], layer.name
    return ('conv', layer.filters, layer.kernel_size[0], layer.activation.__name__)
  if isinstance(layer, layers.MaxPool2D):
    assert layer.padding == 'same' and layer.strides == layer.pool_size, layer.name
    return ('pool', layer.pool_size[0])
  if isinstance(layer, layers.Dense):
    return ('dense', layer.units, layer.activation.__name__)
  return None


@pytest.mark.parametrize('name', sorted(DEER))
def test_layers_are_deer_s(name):
  model = build(name)
  assert [d for d in map(describe, model.layers) if d is not None] == DEER[name]


def test_shapes_and_the_residual_transition():
  encoder, transition = build('encoder'), build('transition')
  assert encoder.output_shape == (None, 8, 8, 3)
  x = tf.random.normal([2, 8, 8, 3])
  a = tf.one_hot([0, 3], 4)
  assert transition([x, a]).shape == (2, 8, 8, 3)  # tau(x, a): the change of x
  assert build('reward')([x, a]).shape == (2,) and build('q_network')(x).shape == (2, 4)


@pytest.mark.parametrize('name', sorted(DEER))
def test_initializers_are_keras_defaults(name):
  for layer in build(name).layers:
    if not isinstance(layer, (layers.Conv2D, layers.Dense)):
      continue
    kernel, bias = (w.numpy() for w in layer.weights)
    receptive = int(np.prod(kernel.shape[:-2]))  # 1 for a dense layer
    fan_in, fan_out = receptive * kernel.shape[-2], receptive * kernel.shape[-1]
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.all(bias == 0), layer.name
    assert np.abs(kernel).max() <= limit, layer.name
    if kernel.size >= 2000:  # enough draws to tell the spread: std of U(-l, l) is l / sqrt 3
      assert np.std(kernel) == pytest.approx(limit / np.sqrt(3), rel=0.05), layer.name
