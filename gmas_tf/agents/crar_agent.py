"""CRAR (François-Lavet et al. 2019) as a TF-Agents agent trained offline.

Its losses (docs/DESIGN.md section 4), per batch of transitions (s, a, r, terminal, s'),
with x = e(s), x2 = e(s'):
  transition   mean((x + tau(x, a) - x2)^2 * (1 - terminal))
  reward       mean((rho(x, a) - r)^2)
  discount     mean((g(x, a) - (1 - terminal) * gamma)^2)
  ball         mean(clip(max_channels x^2 - 1, 0, 100))
  dispersion   mean(exp(-C_d * sqrt(clip(||x - roll(x, 1)||^2, 1e-6, 10))))
  consecutive_dispersion   the same on x - x2
  q            (Q(x, a) - y)^2, double DQN:
               y = r + (1 - terminal) * gamma * Q_target(e_target(s'), argmax_a Q(x2, a))

Three update schemes: 'deer' applies one RMSprop per loss, in the order above, each over
the networks that loss involves (deer's CRAR_keras), every loss seeing the encoder the
previous one moved; 'per_loss' takes every loss's gradient at the same parameters, from one
forward pass, and applies each through its own RMSprop (deer's optimizers and normalizers,
not its sequence); 'joint' applies one RMSprop to the weighted sum. The optimizer is deer's
(`gmas_tf.optimizers`). The target copies of every network are synced when the count of
updates already made is a multiple of `target_update_period`: in the deer scheme between
the model losses and the Q loss, as deer does; in the joint scheme before the update.
Where this differs from deer, it is a binding: docs/DEVIATIONS.md lists each.
"""

from typing import Dict, Optional, Sequence, Tuple

import gin
import tensorflow as tf
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tf_agents.agents import tf_agent
from tf_agents.utils import common

from gmas_tf import gradient_matching
from gmas_tf import networks
from gmas_tf import optimizers
from gmas_tf import planning
from gmas_tf import transitions
from gmas_tf.policies import planning_policy
from gmas_tf.errors import SpecError
from gmas_tf.transitions import Transition

LOSS_ORDER = ('transition', 'reward', 'discount', 'ball', 'dispersion',
              'consecutive_dispersion', 'q')
NETWORK_NAMES = ('encoder', 'transition', 'reward', 'discount', 'q_network')
# The networks, besides the encoder, that each loss trains.
LOSS_NETWORKS = dict(transition=('transition',), reward=('reward',), discount=('discount',),
                     dispersion=(), consecutive_dispersion=(), ball=(), q=('q_network',))
# deer's Keras compiles the reward and the discount models with one RMSprop object
# (optimizer3), but Keras 2.2's RMSprop creates a model's accumulators when that model is
# compiled, so the two losses share its learning rate, not its state; deer's PyTorch port gives
# each its own optimizer. 'shared' (one state for both) was this project's reading until
# 2026-11-28.
REWARD_DISCOUNT_STATES = ('separate', 'shared')
UPDATE_SCHEMES = ('deer', 'per_loss', 'joint')
Q_LOSS_REDUCTIONS = ('chosen_action', 'all_actions')
TERMINAL_OBSERVATIONS = ('zeros', 'observed')
# What tf.summary.scalar attaches, for scalars written with tf.summary.write.
_SCALAR_METADATA = scalar_metadata.create_summary_metadata(display_name=None, description=None)


def dispersion(difference: tf.Tensor, scale: float) -> tf.Tensor:
  """mean(exp(-C_d * ||difference||)), the squared norm clipped to [1e-6, 10] (eq. 2)."""
  squared = tf.reduce_sum(tf.square(tf.reshape(difference, [tf.shape(difference)[0], -1])), -1)
  return tf.reduce_mean(tf.exp(-scale * tf.sqrt(tf.clip_by_value(squared, 1e-6, 10.0))))


def num_replicas() -> int:
  """Replicas sharing the global batch (1 outside `tf.distribute` or in cross-replica code)."""
  context = tf.distribute.get_replica_context()
  return 1 if context is None else context.num_replicas_in_sync


def whole_batch(x: tf.Tensor) -> tf.Tensor:
  """x of the global batch: the replicas' shards, gathered in order (differentiable)."""
  if num_replicas() == 1:
    return x
  return tf.distribute.get_replica_context().all_gather(x, axis=0)


def ball(x: tf.Tensor) -> tf.Tensor:
  """Keeps x in the L-infinity ball of radius 1 (eq. 3): mean(clip(max_c x^2 - 1, 0, 100))."""
  return tf.reduce_mean(tf.clip_by_value(tf.reduce_max(tf.square(x), -1) - 1.0, 0.0, 100.0))


def num_actions(action_spec) -> int:
  """A, the number of actions of a scalar integer spec of actions 0..A-1; any other spec
  is refused in one sentence (the networks one-hot the action as it comes)."""
  dtype = tf.as_dtype(action_spec.dtype)
  if tuple(action_spec.shape) != () or not dtype.is_integer or int(action_spec.minimum) != 0:
    raise SpecError(
        f'The agent takes a scalar integer action spec with minimum 0 (actions 0..A-1); got '
        f'shape {tuple(action_spec.shape)}, dtype {dtype.name}, minimum '
        f'{action_spec.minimum}: shift or flatten the actions in an environment wrapper.')
  return int(action_spec.maximum) + 1


@gin.configurable
class CrarAgent(tf_agent.TFAgent):
  """Encoder, transition, reward, discount and Q networks with their target copies."""

  def __init__(self,
               time_step_spec,
               action_spec,
               gamma: float = 0.9,
               dispersion_scale: float = 5.0,
               loss_weights: Optional[Dict[str, float]] = None,
               update_scheme: str = 'deer',
               learning_rate: float = 1e-3,
               rmsprop_rho: float = 0.9,
               rmsprop_epsilon: float = 1e-4,
               clipnorm: float = 1.0,
               clipping: str = 'global_norm',
               q_loss_reduction: str = 'chosen_action',
               terminal_next_observation: str = 'zeros',
               reward_discount_state: str = 'separate',
               target_update_period: int = 1000,
               planning_depth: int = 3,
               branching: int = 2,
               encoder: Optional[tf.keras.Model] = None,
               train_step_counter: Optional[tf.Variable] = None,
               name: str = 'CrarAgent'):
    """Creates the agent.

    Args:
      time_step_spec: the environment's `TimeStep` spec: observations are images [H, W, C]
        or vectors [n] of any dtype (the networks read them as float32).
      action_spec: the environment's action spec: a scalar integer spec of actions 0..A-1.
      gamma: discount of the Q learner and of the discount network's target.
      dispersion_scale: C_d of the dispersion losses.
      loss_weights: weight of each loss in LOSS_ORDER (default 1 each).
      update_scheme: 'deer' (one RMSprop per loss, in order), 'per_loss' (one RMSprop
        per loss, all gradients from one forward pass) or 'joint' (one RMSprop on the
        weighted sum).
      learning_rate, rmsprop_rho, rmsprop_epsilon: deer's RMSprop (eps outside the root).
      clipnorm: the norm gradients are clipped to.
      clipping: 'global_norm' (deer: all gradients of one optimizer call scaled together),
        'tensor_norm' (each tensor alone) or 'none'.
      q_loss_reduction: 'chosen_action', (Q(x, a) - y)^2 (eq. 6, deer's PyTorch), or
        'all_actions', Keras' MSE over all outputs with the others' targets set to their
        own predictions, (1/A)(Q(x, a) - y)^2 (deer's Keras).
      terminal_next_observation: 'zeros' (deer stores s' = 0 after a terminal step; only
        the consecutive dispersion sees it) or 'observed' (the environment's last frame).
      reward_discount_state: in the per-loss schemes, 'separate' (deer: the reward and the
        discount loss each with its own RMSprop state) or 'shared' (one state for both).
      target_update_period: train steps between syncs of the target networks.
      planning_depth: depth D of the agent's greedy policy (`agent.policy`).
      branching: b, the actions expanded below the root when planning.
      encoder: a Keras model from observations [B, ...] to abstract states; None builds
        `networks.make_encoder` from the observation spec.
      train_step_counter: the step variable; created if None.
      name: the agent's name.
    """
    tf.Module.__init__(self, name=name)
    for value, allowed, what in ((update_scheme, UPDATE_SCHEMES, 'update_scheme'),
                                 (q_loss_reduction, Q_LOSS_REDUCTIONS, 'q_loss_reduction'),
                                 (terminal_next_observation, TERMINAL_OBSERVATIONS,
                                  'terminal_next_observation'),
                                 (reward_discount_state, REWARD_DISCOUNT_STATES,
                                  'reward_discount_state')):
      if value not in allowed:
        raise ValueError(f'{what} must be one of {allowed}, got {value!r}.')
    unknown = set(loss_weights or {}) - set(LOSS_ORDER)
    if unknown:
      raise ValueError(f'Unknown losses in loss_weights: {sorted(unknown)}; '
                       f'the losses are {LOSS_ORDER}.')
    self._gamma = gamma
    self._dispersion_scale = dispersion_scale
    self._loss_weights = {name: 1.0 for name in LOSS_ORDER}
    self._loss_weights.update(loss_weights or {})
    self._update_scheme = update_scheme
    self._q_loss_reduction = q_loss_reduction
    self._terminal_next_observation = terminal_next_observation
    self._reward_discount_state = reward_discount_state
    self._target_update_period = target_update_period
    self._branching = branching
    self._num_actions = num_actions(action_spec)
    self._build_networks(tuple(time_step_spec.observation.shape), encoder)
    self._build_optimizers(learning_rate, rmsprop_rho, rmsprop_epsilon, clipping, clipnorm)
    policy = planning_policy.PlanningPolicy(
        time_step_spec, action_spec, self._networks,
        depth=planning_depth, branching=branching)
    super().__init__(
        time_step_spec, action_spec, policy=policy, collect_policy=policy,
        train_sequence_length=None,
        training_data_spec=transitions.transition_spec(time_step_spec.observation),
        # Not the global step: every agent counts its own updates.
        train_step_counter=train_step_counter if train_step_counter is not None else
        tf.Variable(0, dtype=tf.int64, trainable=False, name='train_step'))

  # -- construction -------------------------------------------------------------------

  def _build_networks(self, observation_shape: Sequence[int],
                      encoder: Optional[tf.keras.Model]):
    self._encoder = encoder or networks.make_encoder(observation_shape)
    abstract_shape = tuple(self._encoder.output_shape[1:])
    self._transition = networks.make_transition(abstract_shape, self._num_actions)
    self._reward = networks.make_reward(abstract_shape, self._num_actions)
    self._discount = networks.make_discount(abstract_shape, self._num_actions)
    self._q_network = networks.make_q_network(abstract_shape, self._num_actions)
    self._networks = dict(encoder=self._encoder, transition=self._transition,
                          reward=self._reward, discount=self._discount,
                          q_network=self._q_network)
    self._targets = {}
    for name in NETWORK_NAMES:
      online = self.network(name)
      target = tf.keras.models.clone_model(online)
      target._name = f'target_{online.name}'  # pylint: disable=protected-access
      target.set_weights(online.get_weights())
      self._targets[name] = target

  def _build_optimizers(self, learning_rate, rho, epsilon, clipping, clip_norm):
    names = (('joint',) if self._update_scheme == 'joint'
             else sorted({self._optimizer_name(n) for n in LOSS_ORDER}))
    self._optimizers = {name: optimizers.rmsprop(learning_rate, rho, epsilon, clipping,
                                                 clip_norm) for name in names}

  def _optimizer_name(self, loss_name: str) -> str:
    """The RMSprop a loss is applied with in the per-loss schemes."""
    if self._reward_discount_state == 'shared' and loss_name in ('reward', 'discount'):
      return 'reward_discount'
    return loss_name

  def network(self, name: str) -> tf.keras.Model:
    return self._networks[name]

  def target_network(self, name: str) -> tf.keras.Model:
    return self._targets[name]

  @property
  def world_model(self) -> planning.WorldModel:
    return planning.keras_world_model(self._transition, self._reward, self._discount)

  @property
  def branching(self) -> int:
    """b: the actions the planner expands below the root."""
    return self._branching

  @property
  def optimizers(self):
    return self._optimizers

  def _variables_of(self, loss_name: str):
    names = ('encoder',) + LOSS_NETWORKS[loss_name]
    return [v for name in names for v in self.network(name).trainable_variables]

  def sync_targets(self):
    for name in NETWORK_NAMES:
      common.soft_variables_update(self.network(name).variables,
                                   self._targets[name].variables, tau=1.0)

  # -- losses -------------------------------------------------------------------------

  def _initialize(self):
    self.sync_targets()

  def loss_terms(self, experience: Transition, names=LOSS_ORDER) -> Dict[str, tf.Tensor]:
    """The unweighted losses named in `names`, from one forward pass of the encoder."""
    t = self._deer_terminal(experience)
    one_hot = tf.one_hot(t.action, self._num_actions)
    x = self._encoder(t.observation)
    needs_next = {'transition', 'consecutive_dispersion', 'q'} & set(names)
    x2 = self._encoder(t.next_observation) if needs_next else None
    terms = {}
    if 'transition' in names:
      terms['transition'] = tf.reduce_mean(self.one_step_error(t, x, x2))
    if 'reward' in names:
      terms['reward'] = tf.reduce_mean(tf.square(self._reward([x, one_hot]) - t.reward))
    if 'discount' in names:
      target = (1.0 - t.terminal) * self._gamma
      terms['discount'] = tf.reduce_mean(tf.square(self._discount([x, one_hot]) - target))
    if 'dispersion' in names:
      # Random pairs span the global batch, so a split batch gives the same loss.
      everyone = whole_batch(x)
      terms['dispersion'] = dispersion(everyone - tf.roll(everyone, 1, axis=0),
                                       self._dispersion_scale)
    if 'consecutive_dispersion' in names:
      terms['consecutive_dispersion'] = dispersion(x - x2, self._dispersion_scale)
    if 'ball' in names:
      terms['ball'] = ball(x)
    if 'q' in names:
      terms.update(self.q_terms(t, x, x2))
    return terms

  def one_step_error(self, t: Transition, x: tf.Tensor, x2: tf.Tensor) -> tf.Tensor:
    """Per sample, mean((x + tau(x, a) - x2)^2) over the abstract state [B]; 0 after a
    terminal step, whose s' says nothing about the model."""
    predicted = x + self._transition([x, tf.one_hot(t.action, self._num_actions)])
    error = tf.reshape(tf.square(predicted - x2), [tf.shape(x)[0], -1])  # any abstract shape
    return tf.reduce_mean(error, -1) * (1.0 - t.terminal)

  def _deer_terminal(self, t: Transition) -> Transition:
    """s' set to zeros after a terminal step, as deer's replay memory stores it."""
    if self._terminal_next_observation == 'observed':
      return t
    ended = tf.reshape(t.terminal > 0, [-1] + [1] * (len(t.next_observation.shape) - 1))
    return t._replace(next_observation=tf.where(ended, tf.zeros_like(t.next_observation),
                                                t.next_observation))

  def q_terms(self, t: Transition, x: tf.Tensor, x2: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The model-free loss 'q' (eq. 6), and any diagnostics of it; GMAS extends this."""
    return self._td_terms(t, self._q_network(x), x2)

  def _td_terms(self, t: Transition, q: tf.Tensor, x2: tf.Tensor) -> Dict[str, tf.Tensor]:
    """'q' and 'q_spread' from Q(x, .) [B, A]."""
    chosen = tf.gather(q, t.action, batch_dims=1)
    td = tf.reduce_mean(tf.square(chosen - self._td_target(t, x2)))
    if self._q_loss_reduction == 'all_actions':
      td /= self._num_actions  # the other outputs' errors are 0 by construction
    # q_spread (max_a Q - min_a Q) is a diagnostic: a flat Q cannot choose an action.
    return dict(q=td,
                q_spread=tf.reduce_mean(tf.reduce_max(q, -1) - tf.reduce_min(q, -1)))

  def _td_target(self, t: Transition, x2: tf.Tensor) -> tf.Tensor:
    # Double DQN: the online networks choose a', the target networks value it.
    # y = r + (1 - terminal) * gamma * Q_target(e_target(s'), argmax_a Q(e(s'), a))
    best = tf.argmax(self._q_network(x2), axis=-1)
    target_q = self._targets['q_network'](self._targets['encoder'](t.next_observation))
    value = tf.gather(target_q, best, batch_dims=1)
    return tf.stop_gradient(t.reward + (1.0 - t.terminal) * self._gamma * value)

  def _loss(self, experience, weights=None, training=False):
    del weights, training
    terms = self.loss_terms(experience)
    total = tf.add_n([self._loss_weights[n] * terms[n] for n in LOSS_ORDER])
    return tf_agent.LossInfo(total, terms)

  # -- update -------------------------------------------------------------------------

  def _gradients(self, loss, variables, tape):
    # Under tf.distribute each replica holds a shard of the batch and the optimizer sums
    # the replicas' gradients: scaling by 1/replicas makes that the global batch's mean.
    return tape.gradient(loss, variables,
                         output_gradients=tf.constant(1.0 / num_replicas(), loss.dtype))

  def _apply(self, optimizer, loss, variables, tape):
    """Applies loss's gradients through optimizer; returns them (before clipping)."""
    gradients = self._gradients(loss, variables, tape)
    optimizer.apply_gradients(zip(gradients, variables))
    return gradients

  def update_groups(self, experience: Transition):
    """The update, as [(optimizer, variables, {part: weighted loss})], one per RMSprop
    call: one per loss under the per-loss schemes, the Q loss split into its parts ('td';
    GMAS adds 'gradient_matching'), and one for every part under the joint sum. The losses
    come from one forward pass (deer's scheme takes each after the previous is applied)."""
    terms = self.loss_terms(experience)
    q_parts = self._loss_parts(terms) or {'td': (self._loss_weights['q'], terms['q'])}
    parts = {name: {name: self._loss_weights[name] * terms[name]} for name in LOSS_ORDER}
    parts['q'] = {name: weight * term for name, (weight, term) in q_parts.items()}
    if self._update_scheme == 'joint':
      variables = [v for n in NETWORK_NAMES for v in self.network(n).trainable_variables]
      every = {part: loss for group in parts.values() for part, loss in group.items()}
      return [(self._optimizers['joint'], variables, every)]
    return [(self._optimizers[self._optimizer_name(name)], self._variables_of(name),
             parts[name]) for name in LOSS_ORDER]

  def _loss_parts(self, terms: Dict[str, tf.Tensor]) -> Dict[str, Tuple[float, tf.Tensor]]:
    """Parts of the Q loss, as (weight, term of `terms`), whose pulls on the encoder and the
    Q network are logged apart (CRAR: none)."""
    del terms
    return {}

  def _log_gradients(self, experience, gradients_by_loss, tape, parts, q_parts):
    """How hard each loss pulls on the encoder, and the Q loss and its parts on the Q
    network: the global norm of its gradient there, before clipping (this replica's
    share), from the gradients applied per loss or, for `parts` and `q_parts` ((weight,
    term) each; q_parts are the Q loss's), differentiated on the persistent `tape`, whose
    forward values are the update's own. Also how steep the model-free Q is in x after the
    update, mean ||dQ(x, a)/dx|| over the batch: GMAS's cosine distance pulls on that
    slope as its inverse. Logged at the step the losses are, after the update is counted;
    deferred, so computed only on the steps whose summaries are recorded."""
    pulled = {'encoder': self._encoder.trainable_variables,
              'q_network': self._q_network.trainable_variables}
    cut = len(pulled['encoder'])
    norms = {}
    for name, gradients in gradients_by_loss.items():
      norms[f'encoder/{name}'] = lambda g=gradients[:cut]: tf.linalg.global_norm(g)
      if name == 'q':
        norms['q_network/q'] = lambda g=gradients[cut:]: tf.linalg.global_norm(g)
    for name, (weight, part) in {**parts, **q_parts}.items():
      on_q = name == 'q' or name in q_parts
      for network in ('encoder', 'q_network') if on_q else ('encoder',):
        # The weights multiply outside the tape, so they scale the norms instead.
        norms[f'{network}/{name}'] = lambda w=weight, p=part, v=pulled[network]: (
            abs(w) * tf.linalg.global_norm(self._gradients(p, v, tape)))

    def slope_norm():
      x = tf.stop_gradient(self._encoder(experience.observation))
      return gradient_matching.mean_slope_norm(x, experience.action, self._q_network)

    for tag, value in [*((f'Gradients/{n}', v) for n, v in norms.items()),
                       ('Diagnostics/q_slope_norm', slope_norm)]:
      tf.summary.write(tag, value, step=self.train_step_counter, metadata=_SCALAR_METADATA)

  def _in_cross_replica_context(self, fn):
    """Runs fn once per update, not once per replica, under tf.distribute."""
    context = tf.distribute.get_replica_context()
    if context is None:
      fn()
    else:
      context.merge_call(lambda strategy: fn())

  def _sync_targets_if_due(self):
    # deer: `if update_counter % freeze_interval == 0: resetQHat()`, the counter holding the
    # updates already made (so also at 0, where online and target are equal anyway).
    tf.cond(self.train_step_counter % self._target_update_period == 0,
            lambda: self.sync_targets() or tf.constant(True), lambda: tf.constant(False))

  def _train(self, experience, weights=None):
    del weights
    # Each scheme leaves the gradients it applied per loss and a persistent tape on which
    # the rest of each loss's pull on the encoder is taken, once the step is counted.
    parts = {}
    if self._update_scheme == 'deer':
      terms, gradients = {}, {}
      for name in LOSS_ORDER:  # each loss sees the encoder the previous one updated
        if name == 'q':
          self._in_cross_replica_context(self._sync_targets_if_due)
        variables = self._variables_of(name)
        with tf.GradientTape(persistent=name == 'q') as tape:  # q, the last, is kept
          terms.update(self.loss_terms(experience, (name,)))
          loss = self._loss_weights[name] * terms[name]
        gradients[name] = self._apply(self._optimizers[self._optimizer_name(name)], loss,
                                      variables, tape)
      total = tf.add_n([self._loss_weights[n] * terms[n] for n in LOSS_ORDER])
    elif self._update_scheme == 'per_loss':
      self._in_cross_replica_context(self._sync_targets_if_due)
      with tf.GradientTape(persistent=True) as tape:
        total, terms = self._loss(experience)
        weighted = {name: self._loss_weights[name] * terms[name] for name in LOSS_ORDER}
      # Every gradient is taken before any is applied: all at the same parameters.
      variables = {name: self._variables_of(name) for name in LOSS_ORDER}
      gradients = {name: self._gradients(weighted[name], variables[name], tape)
                   for name in LOSS_ORDER}
      for name in LOSS_ORDER:
        self._optimizers[self._optimizer_name(name)].apply_gradients(
            zip(gradients[name], variables[name]))
    else:
      self._in_cross_replica_context(self._sync_targets_if_due)
      variables = [v for n in NETWORK_NAMES for v in self.network(n).trainable_variables]
      with tf.GradientTape(persistent=True) as tape:
        loss_info = self._loss(experience)
      self._apply(self._optimizers['joint'], loss_info.loss, variables, tape)
      total, terms = loss_info
      # One gradient served all losses: each one's own is taken on recorded steps only.
      gradients = {}
      parts = {name: (self._loss_weights[name], terms[name]) for name in LOSS_ORDER}
    q_parts = self._loss_parts(terms)  # their weights as in this update, before it counts
    self._in_cross_replica_context(lambda: self.train_step_counter.assign_add(1))
    self._log_gradients(experience, gradients, tape, parts, q_parts)
    del tape
    for name, value in terms.items():
      tf.summary.scalar(f'Losses/{name}', value, step=self.train_step_counter)
    tf.summary.scalar('Losses/total', total, step=self.train_step_counter)
    return tf_agent.LossInfo(total, terms)
