"""The offline training loop: data, agent, checkpoints, evaluation, summaries, export.

root_dir/
  operative_config.gin   the gin config the run used
  checkpoints/           networks, optimizers, step (tf.train.CheckpointManager)
  train/, eval/          TensorBoard summaries
  scalars.csv            the training scalars of train/ as one CSV, rewritten every epoch
  evaluations.csv        one row per (epoch, evaluation depth)
  policies/depth_D/      SavedModels of the planning policy, one per evaluation depth

Rerunning with the same root_dir resumes from the latest checkpoint. SIGTERM or Ctrl-C
during the updates stops after the current one and saves it (exit status 128 + the signal's
number), so a stopped run loses no updates; an evaluation that was cut off runs again on
resume.
"""

import contextlib
import csv
import fcntl
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from typing import Dict, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf
from tf_agents.environments import tf_py_environment
from tf_agents.policies import policy_saver
from tf_agents.utils import common

from gmas_tf import data
from gmas_tf import diagnostics
from gmas_tf import evaluation
from gmas_tf import optimizers
from gmas_tf import scalars
from gmas_tf.agents import crar_agent
from gmas_tf.envs import maze
from gmas_tf.errors import Stopped, TrainingError

CSV_FIELDS = ('epoch', 'step', 'depth', 'deer_score', 'deer_episodes', 'held_out_score',
              'held_out_sem', 'held_out_normalized', 'held_out_epsilon_score',
              'held_out_epsilon_sem', 'held_out_epsilon_normalized', 'random_held_out_score',
              'optimal_held_out_score', 'held_out_keys', 'held_out_wall_bumps',
              'held_out_cells_visited', 'train_maze_score', 'train_maze_keys',
              *diagnostics.PROBE_FIELDS, 'steps_per_second')


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


@gin.configurable
def dataset_directory(data_root: str = 'data', num_transitions: int = 100_000,
                      seed: int = 0) -> str:
  """Where the dataset of this configuration is cached: named by N, seed and env config."""
  config = json.dumps(maze.MazeEnvironment().config(), sort_keys=True)
  digest = hashlib.sha256(config.encode()).hexdigest()[:8]
  return os.path.join(data_root, f'maze_n{num_transitions}_seed{seed}_{digest}')


@gin.configurable
def ensure_dataset(directory: Optional[str] = None, num_transitions: int = 100_000,
                   seed: int = 0) -> str:
  """Collects the configured dataset unless it is already on disk; returns its directory."""
  directory = directory or dataset_directory(num_transitions=num_transitions, seed=seed)
  if not os.path.exists(os.path.join(directory, data.METADATA_FILE)):
    print(f'collecting {num_transitions} transitions into {directory}', flush=True)
    env = maze.MazeEnvironment(seed=seed)
    arrays, hashes = data.collect(env, num_transitions, seed)
    try:
      data.save(directory, arrays, hashes, env, seed, num_transitions)
    except data.DatasetError:
      # Another run of a sweep saved the same dataset (same seed, same bytes) meanwhile.
      if not os.path.exists(os.path.join(directory, data.METADATA_FILE)):
        raise
  return directory


def greedy_act(policy):
  """A numpy act function for the evaluation protocols, traced once per policy."""
  shape = [None] + list(policy.time_step_spec.observation.shape)

  @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
  def act(observation):
    return tf.argmax(policy.plan_q(observation), axis=-1)

  return lambda observation: act(observation).numpy()


class _CsvLog:
  """Appends rows to evaluations.csv. On resume it keeps the rows up to the restored step,
  drops a truncated last line and, if the restored step's evaluation is incomplete (the
  run stopped between that checkpoint and the end of its evaluation), that step's rows,
  and says so in `evaluation_missing`."""

  def __init__(self, path: str, resume_step: int, expects_evaluation: bool,
               depths: Sequence[int]):
    self._path = path
    rows = []
    if os.path.exists(path):
      with open(path) as stream:
        rows = [r for r in csv.DictReader(stream)
                if None not in r.values() and int(r['step']) <= resume_step]
    done = {int(r['depth']) for r in rows if int(r['step']) == resume_step}
    self.evaluation_missing = expects_evaluation and not set(depths) <= done
    if self.evaluation_missing:
      rows = [r for r in rows if int(r['step']) < resume_step]
    with open(path, 'w', newline='') as stream:
      writer = csv.DictWriter(stream, CSV_FIELDS)
      writer.writeheader()
      writer.writerows(rows)

  def append(self, row):
    with open(self._path, 'a', newline='') as stream:
      csv.DictWriter(stream, CSV_FIELDS).writerow(row)


@gin.configurable
def train(root_dir: str,
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
          held_out_epsilon: float = 0.1) -> str:
  """Trains an agent offline for epochs x steps_per_epoch updates; resumes from root_dir.

  Args:
    root_dir: where checkpoints, summaries, the CSV and the SavedModels go.
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
      evaluation (0: none), beside the held-out ones: the gap between the two scores
      separates failing to learn from failing to generalize.
    held_out_epsilon: the held-out mazes are played twice per depth, greedily and with
      this epsilon (deer's test epsilon, on fixed mazes: the paper's score with far less
      noise than deer's 200 steps).
  Returns:
    root_dir.
  """
  os.makedirs(root_dir, exist_ok=True)
  with _exclusive(root_dir):
    runner = _Runner(root_dir, agent_class, epochs, steps_per_epoch, eval_depths, seed,
                     log_interval, summary_interval, deterministic, make_strategy(strategy),
                     train_mazes, held_out_epsilon)
    first_epoch = runner.start_step // steps_per_epoch
    if runner.evaluation_missing:
      runner.run_eval_phase(first_epoch - 1, speed=float('nan'))
    for epoch in range(first_epoch, epochs):
      speed = runner.run_train_phase(epoch)
      runner.checkpoint()  # before the evaluation: a run stopped during it keeps the epoch
      if runner.stop_requests:
        _progress(None)
        number = runner.stop_requests[0]
        raise Stopped(number, f'{signal.Signals(number).name} at step {runner.step}: its '
                      f'checkpoint is saved in {root_dir}; rerun the same command to resume.')
      runner.run_eval_phase(epoch, speed)
    runner.export()
  return root_dir


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


@contextlib.contextmanager
def _exclusive(root_dir: str):
  """Holds a lock on root_dir while training, so two processes never share a run."""
  with open(os.path.join(root_dir, '.lock'), 'w') as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise TrainingError(f'Another process is training in {root_dir}; wait for it or stop '
                          'it first.') from None
    yield


def training_maze_score(act, metadata: dict, num_mazes: int) -> Dict[str, float]:
  """Plays the first `num_mazes` mazes of the dataset (capped at those it holds).

  The collector's environment draws its mazes from a stream seeded with the dataset's seed,
  and `held_out_score` draws from the same stream, so these are the data's own mazes; the
  maze hashes recorded in the metadata prove it.
  """
  num_mazes = min(num_mazes, len(metadata['maze_hashes']))
  result = evaluation.held_out_score(act, seed=metadata['seed'], num_mazes=num_mazes,
                                     excluded_hashes=set(metadata['maze_hashes']))
  if result['overlap_with_data'] != num_mazes:
    raise TrainingError(f'Only {result["overlap_with_data"]} of the {num_mazes} mazes drawn '
                        f'with the dataset\'s seed {metadata["seed"]} are in the dataset; '
                        'the dataset was not made by this code\'s collector.')
  return result


def check_optimizer_format(path: str) -> None:
  """Refuses a checkpoint whose optimizer state this code would read wrongly."""
  saved = dict(tf.train.list_variables(path))
  key = 'optimizer_format/.ATTRIBUTES/VARIABLE_VALUE'
  if key not in saved or int(tf.train.load_variable(path, key)) != optimizers.FORMAT:
    raise TrainingError(
        f'The checkpoint {path} was made with another optimizer than this code\'s '
        '(deer\'s RMSprop, epsilon outside the square root) and cannot be resumed; '
        'retrain in a new root_dir.')


def check_optimizer_names(path: str, names) -> None:
  """Refuses a checkpoint whose optimizers are not the ones this config builds (another
  update scheme, or the reward and discount losses' RMSprop state shared or not)."""
  saved = {n.split('/')[1] for n, _ in tf.train.list_variables(path)
           if n.startswith('optimizers/')}
  if saved != set(names):
    raise TrainingError(
        f'The checkpoint {path} holds the optimizers {sorted(saved)} but this config builds '
        f'{sorted(names)}; resume it with the config it was made with (CrarAgent.update_scheme, '
        'CrarAgent.reward_discount_state) or retrain in a new root_dir.')


def _write_operative_config(root_dir):
  with open(os.path.join(root_dir, 'operative_config.gin'), 'w') as stream:
    stream.write(gin.operative_config_str())


def _progress(line: Optional[str]) -> None:
  """The progress line: rewritten in place on a terminal, one line per call in a file or
  pipe. None ends it (on a terminal) before other output."""
  if not sys.stdout.isatty():
    if line is not None:
      print(line, flush=True)
  elif line is None:
    print(flush=True)
  else:
    print(f'\r{line}\x1b[K', end='', flush=True)


class _Runner:
  """One training run, read as Dopamine's Runner: setup (data, agent, checkpoint, the
  evaluation's fixtures), then per epoch a train phase, an evaluation phase and a
  checkpoint; the policies are exported at the end."""

  def __init__(self, root_dir, agent_class, epochs, steps_per_epoch, eval_depths, seed,
               log_interval, summary_interval, deterministic, strategy, train_mazes,
               held_out_epsilon):
    self._root_dir = root_dir
    self._epochs, self._steps_per_epoch = epochs, steps_per_epoch
    self._seed, self._log_interval, self._summary_interval = seed, log_interval, summary_interval
    self._train_mazes, self._held_out_epsilon = train_mazes, held_out_epsilon
    self._total_steps = epochs * steps_per_epoch
    if deterministic:
      tf.config.experimental.enable_op_determinism()
    tf.keras.utils.set_random_seed(seed)
    env = maze.MazeEnvironment()
    self._arrays, self._metadata = data.load(ensure_dataset(), env)
    tf_env = tf_py_environment.TFPyEnvironment(env)
    with strategy.scope():
      self._agent = agent_class(tf_env.time_step_spec(), tf_env.action_spec())
      self._agent.initialize()
    self.start_step = self._restore_checkpoint()
    # Sampling is seeded by (seed, step), so a resumed run is reproducible too.
    tf.random.set_seed(seed * 1_000_003 + self.start_step)
    buffer = data.make_replay_buffer(self._arrays)
    self._iterator = iter(strategy.experimental_distribute_dataset(data.make_dataset(
        buffer, env.sprites, key_arrays=data.key_transitions(self._arrays))))
    self._train_step = distributed_train_step(self._agent, strategy)
    self._train_writer = tf.summary.create_file_writer(os.path.join(root_dir, 'train'))
    self._eval_writer = tf.summary.create_file_writer(os.path.join(root_dir, 'eval'))
    scalars.truncate(root_dir, self.start_step)
    self._csv_log = _CsvLog(os.path.join(root_dir, 'evaluations.csv'), self.start_step,
                            self.start_step > 0 and self.start_step % steps_per_epoch == 0,
                            eval_depths)
    self.stop_requests = []  # signal numbers received while training
    self._excluded = set(self._metadata['maze_hashes'])
    self._random = evaluation.held_out_score(
        evaluation.random_act(np.random.default_rng(seed)), excluded_hashes=self._excluded)
    self._probe = diagnostics.probe_transitions(self._arrays, env.sprites, seed=seed)
    self._policies = {d: self._agent.policy.with_depth(d) for d in eval_depths}
    self._acts = {d: greedy_act(p) for d, p in self._policies.items()}
    self._latest = {}  # depth -> (greedy score, epsilon score, score on the data's mazes)
    self._optimal = float('nan')
    _write_operative_config(root_dir)

  def _restore_checkpoint(self) -> int:
    self._checkpoint = tf.train.Checkpoint(
        agent=self._agent, optimizers=self._agent.optimizers,
        optimizer_format=tf.Variable(optimizers.FORMAT, trainable=False))
    self._manager = tf.train.CheckpointManager(
        self._checkpoint, os.path.join(self._root_dir, 'checkpoints'), max_to_keep=3)
    latest = self._manager.latest_checkpoint
    if latest:
      check_optimizer_format(latest)
      check_optimizer_names(latest, self._agent.optimizers)
      self._checkpoint.restore(latest).assert_existing_objects_matched()
    start_step = self.step
    if start_step:
      print(f'resuming from step {start_step} ({latest})', flush=True)
    return start_step

  @property
  def evaluation_missing(self) -> bool:
    return self._csv_log.evaluation_missing

  @property
  def step(self) -> int:
    return int(self._agent.train_step_counter.numpy())

  def _scores(self, column: int) -> Dict[int, float]:
    return {depth: scores[column] for depth, scores in self._latest.items()}

  def run_train_phase(self, epoch: int) -> float:
    """Updates to the end of the epoch with progress lines, or until SIGTERM; returns
    updates per second."""
    agent = self._agent
    epoch_start, window_start = time.time(), time.time()
    start_step = window_step = step = self.step
    end = (epoch + 1) * self._steps_per_epoch
    with self._train_writer.as_default(), tf.summary.record_if(
        lambda: agent.train_step_counter % self._summary_interval == 0), \
        _stop_after_update(self.stop_requests):
      while step < end and not self.stop_requests:
        loss_info = self._train_step(next(self._iterator))
        step = self.step
        if not math.isfinite(float(loss_info.loss)):
          bad = [k for k, v in loss_info.extra.items() if not math.isfinite(float(v))]
          raise TrainingError(
              f'The loss became {float(loss_info.loss)} at step {step} (in {bad}); training '
              f'stopped and the last good checkpoint ({self._manager.latest_checkpoint}) is '
              'kept.')
        if step % self._log_interval == 0:
          speed = (step - window_step) / (time.time() - window_start)
          tf.summary.scalar('charts/steps_per_second', speed, step=step)
          eta = (self._total_steps - step) / max(speed, 1e-9)
          _progress(f'step {step}/{self._total_steps}  {speed:.1f} steps/s  ETA '
                    f'{eta / 60:.1f} min  loss {float(loss_info.loss):.4f}  latest held-out '
                    f'{self._scores(0)}')
          window_start, window_step = time.time(), step
    return (step - start_step) / (time.time() - epoch_start)

  def run_eval_phase(self, epoch: int, speed: float) -> None:
    """The model probe, then every evaluation depth: deer's score, the held-out mazes
    greedily and with epsilon, the data's own mazes; to the CSV and TensorBoard."""
    eval_start, step = time.time(), self.step
    model_fit = diagnostics.model_probe(self._agent, self._probe)
    scalars = {f'probe/{name[len("probe_"):]}': v for name, v in model_fit.items()}
    scalars['eval/random_held_out_score'] = self._random['score']
    for depth, act in self._acts.items():
      deer = evaluation.deer_score(act, seed=self._seed * 10_000 + epoch)
      held = evaluation.held_out_score(act, epsilon=0.0, excluded_hashes=self._excluded)
      noisy = evaluation.held_out_score(act, epsilon=self._held_out_epsilon,
                                        excluded_hashes=self._excluded)
      own = (training_maze_score(act, self._metadata, self._train_mazes) if self._train_mazes
             else dict(score=float('nan'), keys_collected=float('nan')))
      self._latest[depth] = tuple(round(r['score'], 2) for r in (held, noisy, own))
      self._optimal = held['optimal']
      self._csv_log.append(dict(
          epoch=epoch + 1, step=step, depth=depth, deer_score=deer['score'],
          deer_episodes=deer['episodes'], held_out_score=held['score'],
          held_out_sem=held['score_sem'], held_out_normalized=held['normalized'],
          held_out_epsilon_score=noisy['score'], held_out_epsilon_sem=noisy['score_sem'],
          held_out_epsilon_normalized=noisy['normalized'],
          random_held_out_score=self._random['score'],
          optimal_held_out_score=held['optimal'], held_out_keys=held['keys_collected'],
          held_out_wall_bumps=held['wall_bump_fraction'],
          held_out_cells_visited=held['cells_visited'], train_maze_score=own['score'],
          train_maze_keys=own['keys_collected'], steps_per_second=speed, **model_fit))
      scalars.update({f'eval/deer_score_depth_{depth}': deer['score'],
                      f'eval/held_out_score_depth_{depth}': held['score'],
                      f'eval/held_out_normalized_depth_{depth}': held['normalized'],
                      f'eval/held_out_epsilon_score_depth_{depth}': noisy['score']})
      if self._train_mazes:
        scalars[f'eval/train_maze_score_depth_{depth}'] = own['score']
    with self._eval_writer.as_default():
      for name, value in scalars.items():
        tf.summary.scalar(name, value, step=step)
    own_text = (f', on the data\'s own mazes {self._scores(2)}' if self._train_mazes
                else '')
    _progress(None)
    print(f'epoch {epoch + 1}/{self._epochs} step {step}: held-out score by depth '
          f'{self._scores(0)} (random {self._random["score"]:.2f}){own_text}; '
          f'{speed:.1f} steps/s; evaluation took {time.time() - eval_start:.0f} s',
          flush=True)

  def checkpoint(self) -> None:
    self._manager.save(checkpoint_number=self.step)
    self._train_writer.flush()
    scalars.export(self._root_dir, last_step=self.step)
    # Gin records a binding once its function has run: rewritten after every epoch, the
    # file holds the dataset's and the evaluations' settings too.
    _write_operative_config(self._root_dir)

  def export(self) -> None:
    """SavedModels of the planning policy at every evaluation depth, and a closing line."""
    policies_dir = os.path.join(self._root_dir, 'policies')
    for depth, policy in self._policies.items():
      policy_saver.PolicySaver(policy, batch_size=None).save(
          os.path.join(policies_dir, f'depth_{depth}'))
    if self._latest:
      best = max(self._latest, key=lambda depth: self._latest[depth][0])
      generator = maze.MazeEnvironment(seed=evaluation.HELD_OUT_SEED)
      gif = os.path.join(self._root_dir, 'gifs', f'depth_{best}_and_random.gif')
      os.makedirs(os.path.dirname(gif), exist_ok=True)
      evaluation.save_episodes_gif(
          gif, [self._acts[best], evaluation.random_act(np.random.default_rng(self._seed))],
          [generator.draw_maze() for _ in range(3)])
      print(f'done after {self._total_steps} updates: held-out score by planning depth '
            f'{self._scores(0)} greedy, {self._scores(1)} with epsilon '
            f'{self._held_out_epsilon} (random policy {self._random["score"]:.2f}, optimal '
            f'tour {self._optimal:.2f}); policies in {policies_dir}/depth_D; depth {best} '
            f'(top row) and the random policy on 3 held-out mazes: {gif}', flush=True)
