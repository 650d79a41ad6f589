"""Does the learned model fit the data's rare events? A fixed probe of transitions.
And how steep is the model-free Q in the abstract state, beside the planner's slope, and
which losses make it steeper or flatter? And how deep would an adaptive training depth
plan at a given threshold?

Key pickups are about 0.6% of a random policy's transitions, so the batch-mean reward loss
stays near zero whether or not the reward model has learned them. The probe holds up to
`size` key transitions (reward +1; the last one of each episode is also terminal) and
`size` ordinary steps (reward -0.1), drawn once from the dataset, and reports the model's
predictions on each group separately.
"""

from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from gmas_tf import data
from gmas_tf import gradient_matching
from gmas_tf import optimizers
from gmas_tf import planning
from gmas_tf import render
from gmas_tf.transitions import Transition

ZERO = tf.UnconnectedGradients.ZERO
PROBE_FIELDS = ('probe_key_reward', 'probe_step_reward', 'probe_terminal_discount',
                'probe_transition_error')


def probe_transitions(arrays, sprites: Optional[np.ndarray], size: int = 256,
                      seed: int = 0) -> Dict[str, np.ndarray]:
  """Up to `size` rewarded transitions (the maze's key pickups) and `size` others of a
  dataset's row stream (see gmas_tf.data). Observations are the maze's cells rendered with
  its `sprites`, or, without them, the rows' own `observation`s as float32."""
  valid = data.transition_rows(arrays)
  rewards = arrays['reward'][valid]
  rng = np.random.default_rng([seed, 5])
  chosen = [rng.permutation(group)[:size] for group in (valid[rewards > 0], valid[rewards <= 0])]
  rows = np.sort(np.concatenate(chosen))
  if sprites is None:
    observe = lambda at: arrays['observation'][at].astype(np.float32)
  else:
    observe = lambda at: render.render_cells(arrays['cells'][at], sprites)
  return dict(observation=observe(rows), next_observation=observe(rows + 1),
              action=arrays['action'][rows].astype(np.int32),
              reward=arrays['reward'][rows],
              terminal=(arrays['discount'][rows] == 0).astype(np.float32))


def model_probe(agent, probe: Dict[str, np.ndarray]) -> Dict[str, float]:
  """The model's mean reward prediction on key and on ordinary transitions (targets +1 and
  -0.1), its mean discount on terminal ones (target 0), and its one-step error
  mean((x + tau(x, a) - x2)^2) on non-terminal ones. NaN where the probe has no such case.
  """
  x = agent.network('encoder')(probe['observation'])
  x2 = agent.network('encoder')(probe['next_observation'])
  one_hot = tf.one_hot(probe['action'], agent.world_model.num_actions)
  reward = np.reshape(agent.network('reward')([x, one_hot]), [-1])
  discount = np.reshape(agent.network('discount')([x, one_hot]), [-1])
  error = tf.square(x + agent.network('transition')([x, one_hot]) - x2)
  error = np.mean(np.reshape(error, [len(reward), -1]), axis=1)
  key, terminal = probe['reward'] > 0, probe['terminal'] > 0

  def mean(values, where):
    return float(np.mean(values[where])) if where.any() else float('nan')

  return dict(probe_key_reward=mean(reward, key), probe_step_reward=mean(reward, ~key),
              probe_terminal_discount=mean(discount, terminal),
              probe_transition_error=mean(error, ~terminal))


def slope_probe(agent, probe: Dict[str, np.ndarray], depth: int) -> Dict[str, float]:
  """On the probe's transitions: the mean norm of the model-free slope dQ(x, a)/dx, of
  the planner's slope at `depth` (GMAS's label: the target Q, the current model), and the
  mean cosine between the two, whether or not the agent was trained to match them."""
  x = agent.network('encoder')(probe['observation'])
  action = tf.constant(probe['action'])
  label = gradient_matching.planner_slope(x, action, agent.target_network('q_network'),
                                          agent.world_model, depth, agent.branching)
  prediction = gradient_matching.model_free_slope(x, action, agent.network('q_network'))
  return dict(q_slope_norm=float(tf.reduce_mean(tf.norm(prediction, axis=-1))),
              label_norm=float(tf.reduce_mean(tf.norm(label, axis=-1))),
              slope_cosine=float(tf.reduce_mean(
                  gradient_matching.cosine_similarity(label, prediction))))


def adaptive_depth_profile(agent, experience: Transition, depth: int,
                           thresholds) -> Dict[str, float]:
  """On a batch sampled as training samples it: the quartiles of the model's per-sample
  one-step error e_i (what GmasAgent's adaptive_depth_threshold is compared with; 0 after a
  terminal step) and, per threshold T, the mean depth min(depth, floor(T / e_i)) that its
  labels would plan to (planning.adaptive_depth_weights)."""
  x = agent.network('encoder')(experience.observation)
  x2 = agent.network('encoder')(experience.next_observation)
  error = agent.one_step_error(experience, x, x2)
  quartiles = np.quantile(error.numpy(), [0.25, 0.5, 0.75])
  result = {f'one_step_error_{name}': float(value)
            for name, value in zip(('q25', 'median', 'q75'), quartiles)}
  for threshold in thresholds:
    weights = planning.adaptive_depth_weights(error, depth, threshold)
    result[f'adaptive_depth_at_{threshold:g}'] = float(
        tf.reduce_mean(planning.planned_depths(weights)))
  return result


def slope_growth(agent, experience: Transition,
                 measured: Optional[Transition] = None) -> Dict[str, float]:
  """Which losses steepen Q in x in the next update, and which flatten it.

  m = mean ||dQ(x, a)/dx|| over the transitions `measured` (default: the batch itself;
  other transitions show what the update does beyond the batch it fits), x = e(s). Every
  loss (the Q loss split into 'td' and, for GMAS, 'gradient_matching') moves its variables
  by its share of the next update trained on `experience` (`agent.update_groups`,
  `optimizers.step_parts`: that batch's clipping and the accumulators as they stand);
  `slope_change_<loss>` is the first-order change of m under that share, relative to m,
  through the encoder (which moves x) and the Q network alike. `slope_change_encoder` and
  `slope_change_q_network` split their sum by where it acts. Under deer's scheme each loss
  is applied after the previous one, and a shared reward/discount RMSprop sees the reward's
  step before the discount's; these shares all start from the same parameters and state.
  """
  measured = experience if measured is None else measured
  on = [(name, v) for name in ('encoder', 'q_network')
        for v in agent.network(name).trainable_variables]  # the variables m depends on
  with tf.GradientTape() as tape:
    x = agent.network('encoder')(measured.observation)
    steepness = gradient_matching.mean_slope_norm(x, measured.action,
                                                  agent.network('q_network'))
  gradients = tape.gradient(steepness, [v for _, v in on], unconnected_gradients=ZERO)
  direction = {v.ref(): (name, g) for (name, v), g in zip(on, gradients)}
  changes, by_network = {}, dict(encoder=0.0, q_network=0.0)
  with tf.GradientTape(persistent=True) as tape:
    groups = agent.update_groups(experience)
  for optimizer, variables, losses in groups:
    shares = optimizers.step_parts(
        optimizer, {name: tape.gradient(loss, variables, unconnected_gradients=ZERO)
                    for name, loss in losses.items()}, variables)
    for name, share in shares.items():
      changes[name] = 0.0
      for variable, step in zip(variables, share):
        if variable.ref() in direction:
          network, gradient = direction[variable.ref()]
          change = float(tf.reduce_sum(gradient * step) / steepness)
          changes[name] += change
          by_network[network] += change
  del tape
  return dict(q_slope_norm=float(steepness),
              **{f'slope_change_{name}': value for name, value in changes.items()},
              **{f'slope_change_{name}': value for name, value in by_network.items()})
