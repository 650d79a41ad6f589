"""The offline training loop, in the shape of Dopamine's Runner.

A `Runner` is given factories (the environment, its offline data, the agent, the evaluator)
and owns its loop: per epoch a train phase, a checkpoint and an evaluation phase; the
policies are exported at the end. root_dir holds

  operative_config.gin   the gin config the run used
  checkpoints/           networks, optimizers, step (tf.train.CheckpointManager)
  train/, eval/          TensorBoard summaries
  scalars.csv.gz         the training scalars of train/ as one gzipped CSV, every epoch
  evaluations.csv        one row per (epoch, evaluation depth)
  policies/depth_D/      SavedModels of the planning policy, one per evaluation depth

Rerunning with the same root_dir resumes from the latest checkpoint. SIGTERM or Ctrl-C
during the updates stops after the current one and saves it (exit status 128 + the signal's
number), so a stopped run loses no updates; an evaluation that was cut off runs again on
resume. The runner is the gin configurable `train` (`train.epochs = 8`, ...).
"""

import contextlib
import fcntl
import inspect
import math
import os
import signal
import threading
import time
from typing import Sequence

import gin
import tensorflow as tf
from tf_agents.environments import tf_py_environment
from tf_agents.policies import policy_saver
from tf_agents.utils import common

from gmas_tf import agents
from gmas_tf import checkpoints
from gmas_tf import maze_task
from gmas_tf import run_log
from gmas_tf import scalars
from gmas_tf.agents import crar_agent
from gmas_tf.envs import maze
from gmas_tf.errors import Stopped, TrainingError

STRATEGIES = ('default', 'mirrored', 'multi_worker')


def make_strategy(name: str) -> tf.distribute.Strategy:
  """'default' (one device), 'mirrored' (every local GPU, else the CPU) or 'multi_worker'
  (MultiWorkerMirroredStrategy; the cluster comes from the TF_CONFIG variable)."""
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'mirrored':
    return tf.distribute.MirroredStrategy()
  if name == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f'strategy must be one of {STRATEGIES}, got {name!r}.')


def distributed_train_step(agent, strategy: tf.distribute.Strategy):
  """A traced update on a global batch split across the strategy's replicas.

  Returns the LossInfo averaged over replicas (for mean losses: the global batch's).
  """

  def step(batch):
    per_replica = strategy.run(agent.train, args=(batch,))
    return tf.nest.map_structure(
        lambda t: strategy.reduce(tf.distribute.ReduceOp.MEAN, t, axis=None), per_replica)

  return common.function(step)


def greedy_act(policy):
  """A numpy act function for the evaluation protocols, traced once per policy."""
  spec = policy.time_step_spec.observation

  @tf.function(input_signature=[tf.TensorSpec([None] + list(spec.shape), spec.dtype)])
  def act(observation):
    return tf.argmax(policy.plan_q(observation), axis=-1)

  return lambda observation: act(observation).numpy()


@contextlib.contextmanager
def exclusive(root_dir: str):
  """Holds a lock on root_dir while training, so two processes never share a run."""
  with open(os.path.join(root_dir, '.lock'), 'w') as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise TrainingError(f'Another process is training in {root_dir}; wait for it or stop '
                          'it first.') from None
    yield


@contextlib.contextmanager
def _stop_after_update(requests: list):
  """While training, SIGTERM and SIGINT (Ctrl-C) append their number to `requests` (the
  loop stops after the current update and saves it) instead of ending the process.
  Elsewhere, as during an evaluation, they end it as usual: the last checkpoint is then at
  most that evaluation old."""
  if threading.current_thread() is not threading.main_thread():
    yield  # signal handlers can only be set in the main thread
    return
  stops = (signal.SIGTERM, signal.SIGINT)
  previous = {number: signal.signal(number, lambda number, _: requests.append(number))
              for number in stops}
  try:
    yield
  finally:
    for number, handler in previous.items():
      signal.signal(number, handler)


def configured(name: str):
  """What the parsed gin config gives `train`'s argument `name`: its binding (a reference
  resolved to its class or function), else Runner's default."""
  try:
    value = gin.query_parameter(f'train.{name}')
  except ValueError:
    return inspect.signature(Runner.__init__).parameters[name].default
  if isinstance(value, gin.config.ConfigurableReference):
    return value.scoped_configurable_fn
  return value


def configured_task():
  """(environment, offline data) of the task the parsed gin config trains on, built by its
  `train.environment_fn` and `train.data_fn`, as a run builds them."""
  environment = configured('environment_fn')()
  return environment, configured('data_fn')(environment)


@gin.configurable('train')
class Runner:
  """One training run: setup from the factories, then `run_experiment`'s loop."""

  def __init__(self, root_dir: str,
               agent_class=crar_agent.CrarAgent,
               epochs: int = 250,
               steps_per_epoch: int = 2000,
               eval_depths: Sequence[int] = (0, 1, 3, 5),
               seed: int = 0,
               log_interval: int = 200,
               summary_interval: int = 100,
               deterministic: bool = True,
               strategy: str = 'default',
               train_mazes: int = 100,
               held_out_epsilon: float = 0.1,
               environment_fn=maze.MazeEnvironment,
               data_fn=maze_task.MazeData,
               agent_fn=agents.make_agent,
               evaluator_fn=maze_task.MazeEvaluator):
    """Sets the run up: data, agent, checkpoint, the evaluation's fixtures.

    Args:
      root_dir: where checkpoints, summaries, the CSVs and the SavedModels go.
      agent_class: the agent to train (CrarAgent or a subclass), configured through gin.
      epochs: number of epochs; each ends with a checkpoint and an evaluation.
      steps_per_epoch: train steps per epoch.
      eval_depths: planning depths evaluated after every epoch and exported at the end.
      seed: seed of the networks, the sampling and the evaluation.
      log_interval: steps between console progress lines.
      summary_interval: steps between TensorBoard loss summaries.
      deterministic: enable TensorFlow's op determinism (same seed, same losses).
      strategy: the tf.distribute strategy (see make_strategy); the batch size stays the
        global batch, split across replicas.
      train_mazes: how many of the dataset's own mazes are also played greedily at each
        evaluation (0: none), beside the held-out ones.
      held_out_epsilon: the held-out mazes are played twice per depth, greedily and with
        this epsilon (deer's test epsilon).
      environment_fn: () -> the task's PyEnvironment (its specs build the agent).
      data_fn: environment -> the offline data: `.transitions()`, a tf.data.Dataset of
        `Transition`s, and `.metadata`.
      agent_fn: (time_step_spec, action_spec, agent_class, strategy) -> an initialized agent.
      evaluator_fn: (environment, data, seed, train_mazes, held_out_epsilon) -> the
        evaluator: `fields`, `evaluate(agent, acts, epoch, step, speed)` and `closing`.
    """
    self._root_dir = root_dir
    self._epochs, self._steps_per_epoch = epochs, steps_per_epoch
    self._log_interval, self._summary_interval = log_interval, summary_interval
    self._total_steps = epochs * steps_per_epoch
    strategy = make_strategy(strategy)
    if deterministic:
      tf.config.experimental.enable_op_determinism()
    tf.keras.utils.set_random_seed(seed)
    environment = environment_fn()
    offline_data = data_fn(environment)
    tf_env = tf_py_environment.TFPyEnvironment(environment)
    self._agent = agent_fn(tf_env.time_step_spec(), tf_env.action_spec(),
                           agent_class=agent_class, strategy=strategy)
    self._checkpoints = checkpoints.Checkpoints(root_dir, self._agent)
    self.start_step = self._checkpoints.restore()
    # Sampling is seeded by (seed, step), so a resumed run is reproducible too.
    tf.random.set_seed(seed * 1_000_003 + self.start_step)
    self._iterator = iter(strategy.experimental_distribute_dataset(
        offline_data.transitions()))
    self._train_step = distributed_train_step(self._agent, strategy)
    self._train_writer = tf.summary.create_file_writer(os.path.join(root_dir, 'train'))
    self._eval_writer = tf.summary.create_file_writer(os.path.join(root_dir, 'eval'))
    scalars.truncate(root_dir, self.start_step)
    self._evaluator = evaluator_fn(environment, offline_data, seed, train_mazes,
                                   held_out_epsilon)
    self._csv_log = run_log.CsvLog(
        os.path.join(root_dir, 'evaluations.csv'), self._evaluator.fields, self.start_step,
        self.start_step > 0 and self.start_step % steps_per_epoch == 0, eval_depths)
    self._stop_requests = []  # signal numbers received while training
    self._policies = {d: self._agent.policy.with_depth(d) for d in eval_depths}
    self._acts = {d: greedy_act(p) for d, p in self._policies.items()}
    run_log.write_operative_config(root_dir)

  @property
  def step(self) -> int:
    return int(self._agent.train_step_counter.numpy())

  def run_experiment(self) -> str:
    """Trains to epochs x steps_per_epoch updates from where the run stands; returns
    root_dir."""
    first_epoch = self.start_step // self._steps_per_epoch
    if self._csv_log.evaluation_missing:
      self._run_eval_phase(first_epoch - 1, speed=float('nan'))
    for epoch in range(first_epoch, self._epochs):
      speed = self._run_train_phase(epoch)
      self._checkpoint_experiment()  # before the evaluation: a stop during it keeps the epoch
      if self._stop_requests:
        run_log.progress(None)
        number = self._stop_requests[0]
        raise Stopped(number, f'{signal.Signals(number).name} at step {self.step}: its '
                      f'checkpoint is saved in {self._root_dir}; rerun the same command to '
                      'resume.')
      self._run_eval_phase(epoch, speed)
    self._export()
    return self._root_dir

  def _run_train_phase(self, epoch: int) -> float:
    """Updates to the end of the epoch with progress lines, or until SIGTERM; returns
    updates per second."""
    agent = self._agent
    epoch_start, window_start = time.time(), time.time()
    start_step = window_step = step = self.step
    end = (epoch + 1) * self._steps_per_epoch
    with self._train_writer.as_default(), tf.summary.record_if(
        lambda: agent.train_step_counter % self._summary_interval == 0), \
        _stop_after_update(self._stop_requests):
      while step < end and not self._stop_requests:
        loss_info = self._train_step(next(self._iterator))
        step = self.step
        if not math.isfinite(float(loss_info.loss)):
          bad = [k for k, v in loss_info.extra.items() if not math.isfinite(float(v))]
          raise TrainingError(
              f'The loss became {float(loss_info.loss)} at step {step} (in {bad}); training '
              f'stopped and the last good checkpoint '
              f'({self._checkpoints.manager.latest_checkpoint}) is kept.')
        if step % self._log_interval == 0:
          speed = (step - window_step) / (time.time() - window_start)
          tf.summary.scalar('charts/steps_per_second', speed, step=step)
          eta = (self._total_steps - step) / max(speed, 1e-9)
          run_log.progress(
              f'step {step}/{self._total_steps}  {speed:.1f} steps/s  ETA {eta / 60:.1f} min'
              f'  loss {float(loss_info.loss):.4f}  latest held-out '
              f'{self._evaluator.scores(0)}')
          window_start, window_step = time.time(), step
    return (step - start_step) / (time.time() - epoch_start)

  def _run_eval_phase(self, epoch: int, speed: float) -> None:
    """Every evaluation depth, to the CSV and TensorBoard."""
    eval_start, step = time.time(), self.step
    rows, values, summary = self._evaluator.evaluate(self._agent, self._acts, epoch, step,
                                                     speed)
    for row in rows:
      self._csv_log.append(row)
    with self._eval_writer.as_default():
      for name, value in values.items():
        tf.summary.scalar(name, value, step=step)
    run_log.progress(None)
    print(f'epoch {epoch + 1}/{self._epochs} step {step}: {summary}; {speed:.1f} steps/s; '
          f'evaluation took {time.time() - eval_start:.0f} s', flush=True)

  def _checkpoint_experiment(self) -> None:
    self._checkpoints.save(self.step)
    self._train_writer.flush()
    scalars.export(self._root_dir, last_step=self.step)
    # Gin records a binding once its function has run: rewritten after every epoch, the
    # file holds the dataset's and the evaluations' settings too.
    run_log.write_operative_config(self._root_dir)

  def _export(self) -> None:
    """SavedModels of the planning policy at every evaluation depth, and a closing line."""
    policies_dir = os.path.join(self._root_dir, 'policies')
    for depth, policy in self._policies.items():
      policy_saver.PolicySaver(policy, batch_size=None).save(
          os.path.join(policies_dir, f'depth_{depth}'))
    if self._evaluator.latest:
      print(f'done after {self._total_steps} updates: '
            f'{self._evaluator.closing(self._acts, self._root_dir)}; policies in '
            f'{policies_dir}/depth_D', flush=True)
