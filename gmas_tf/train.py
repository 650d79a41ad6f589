"""The offline training loop: data, agent, checkpoints, evaluation, summaries, export.

root_dir/
  operative_config.gin   the gin config the run used
  checkpoints/           networks, optimizers, step (tf.train.CheckpointManager)
  train/, eval/          TensorBoard summaries
  evaluations.csv        one row per (epoch, evaluation depth)
  policies/depth_D/      SavedModels of the planning policy, one per evaluation depth
"""

import contextlib
import csv
import fcntl
import hashlib
import json
import math
import os
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
from gmas_tf.agents import crar_agent
from gmas_tf.envs import maze

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


class TrainingError(RuntimeError):
  """Training cannot go on (e.g. a NaN loss); the last good checkpoint is kept."""


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

  @tf.function(input_signature=[tf.TensorSpec([None] + list(policy.time_step_spec.observation.shape),
                                              tf.float32)])
  def act(observation):
    return tf.argmax(policy.plan_q(observation), axis=-1)

  return lambda observation: act(observation).numpy()


class _CsvLog:
  """Appends rows to evaluations.csv, dropping rows past the restored step on resume."""

  def __init__(self, path: str, resume_step: int):
    self._path = path
    rows = []
    if os.path.exists(path):
      with open(path) as stream:
        rows = [r for r in csv.DictReader(stream) if int(r['step']) <= resume_step]
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
    epochs: number of epochs; each ends with an evaluation and a checkpoint.
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
    return _train(root_dir, agent_class, epochs, steps_per_epoch, eval_depths, seed,
                  log_interval, summary_interval, deterministic, make_strategy(strategy),
                  train_mazes, held_out_epsilon)


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


def _write_operative_config(root_dir):
  with open(os.path.join(root_dir, 'operative_config.gin'), 'w') as stream:
    stream.write(gin.operative_config_str())


def _train(root_dir, agent_class, epochs, steps_per_epoch, eval_depths, seed, log_interval,
           summary_interval, deterministic, strategy, train_mazes, held_out_epsilon):
  if deterministic:
    tf.config.experimental.enable_op_determinism()
  tf.keras.utils.set_random_seed(seed)
  dataset_dir = ensure_dataset()
  env = maze.MazeEnvironment()
  arrays, metadata = data.load(dataset_dir, env)
  buffer = data.make_replay_buffer(arrays)
  tf_env = tf_py_environment.TFPyEnvironment(env)
  with strategy.scope():
    agent = agent_class(tf_env.time_step_spec(), tf_env.action_spec())
    agent.initialize()

  checkpoint = tf.train.Checkpoint(
      agent=agent, optimizers=agent.optimizers,
      optimizer_format=tf.Variable(optimizers.FORMAT, trainable=False))
  manager = tf.train.CheckpointManager(checkpoint, os.path.join(root_dir, 'checkpoints'),
                                       max_to_keep=3)
  if manager.latest_checkpoint:
    check_optimizer_format(manager.latest_checkpoint)
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
  start_step = int(agent.train_step_counter.numpy())
  if start_step:
    print(f'resuming from step {start_step} ({manager.latest_checkpoint})', flush=True)
  if start_step % steps_per_epoch:
    raise TrainingError(f'The checkpoint in {root_dir} is at step {start_step}, not at an '
                        f'epoch boundary of {steps_per_epoch} steps; use the same config.')
  # Sampling is seeded by (seed, step), so a resumed run is reproducible too.
  tf.random.set_seed(seed * 1_000_003 + start_step)
  iterator = iter(strategy.experimental_distribute_dataset(
      data.make_dataset(buffer, env.sprites, key_arrays=data.key_transitions(arrays))))
  train_step = distributed_train_step(agent, strategy)
  train_writer = tf.summary.create_file_writer(os.path.join(root_dir, 'train'))
  eval_writer = tf.summary.create_file_writer(os.path.join(root_dir, 'eval'))
  csv_log = _CsvLog(os.path.join(root_dir, 'evaluations.csv'), start_step)
  excluded = set(metadata['maze_hashes'])
  random_reference = evaluation.held_out_score(
      evaluation.random_act(np.random.default_rng(seed)), excluded_hashes=excluded)
  probe = diagnostics.probe_transitions(arrays, env.sprites, seed=seed)
  policies = {d: agent.policy.with_depth(d) for d in eval_depths}
  acts = {d: greedy_act(p) for d, p in policies.items()}
  _write_operative_config(root_dir)
  total_steps = epochs * steps_per_epoch
  latest, latest_own, latest_noisy, optimal = {}, {}, {}, float('nan')

  for epoch in range(start_step // steps_per_epoch, epochs):
    epoch_start, window_start, window_step = time.time(), time.time(), epoch * steps_per_epoch
    with train_writer.as_default(), tf.summary.record_if(
        lambda: agent.train_step_counter % summary_interval == 0):
      for _ in range(steps_per_epoch):
        loss_info = train_step(next(iterator))
        step = int(agent.train_step_counter.numpy())
        if not math.isfinite(float(loss_info.loss)):
          bad = [k for k, v in loss_info.extra.items() if not math.isfinite(float(v))]
          raise TrainingError(
              f'The loss became {float(loss_info.loss)} at step {step} (in {bad}); training '
              f'stopped and the last good checkpoint ({manager.latest_checkpoint}) is kept.')
        if step % log_interval == 0:
          speed = (step - window_step) / (time.time() - window_start)
          tf.summary.scalar('charts/steps_per_second', speed, step=step)
          eta = (total_steps - step) / max(speed, 1e-9)
          print(f'step {step}/{total_steps}  {speed:.1f} steps/s  ETA {eta / 60:.1f} min  '
                f'loss {float(loss_info.loss):.4f}  latest held-out {latest}', flush=True)
          window_start, window_step = time.time(), step
    speed = steps_per_epoch / (time.time() - epoch_start)
    eval_start = time.time()
    model_fit = diagnostics.model_probe(agent, probe)
    with eval_writer.as_default():
      for name, value in model_fit.items():
        tf.summary.scalar(f'probe/{name[len("probe_"):]}', value, step=step)
    for depth, act in acts.items():
      deer = evaluation.deer_score(act, seed=seed * 10_000 + epoch)
      held = evaluation.held_out_score(act, epsilon=0.0, excluded_hashes=excluded)
      noisy = evaluation.held_out_score(act, epsilon=held_out_epsilon,
                                        excluded_hashes=excluded)
      own = (training_maze_score(act, metadata, train_mazes) if train_mazes
             else dict(score=float('nan'), keys_collected=float('nan')))
      latest[depth], latest_own[depth] = round(held['score'], 2), round(own['score'], 2)
      latest_noisy[depth], optimal = round(noisy['score'], 2), held['optimal']
      csv_log.append(dict(
          epoch=epoch + 1, step=step, depth=depth, deer_score=deer['score'],
          deer_episodes=deer['episodes'], held_out_score=held['score'],
          held_out_sem=held['score_sem'], held_out_normalized=held['normalized'],
          held_out_epsilon_score=noisy['score'], held_out_epsilon_sem=noisy['score_sem'],
          held_out_epsilon_normalized=noisy['normalized'],
          random_held_out_score=random_reference['score'],
          optimal_held_out_score=held['optimal'], held_out_keys=held['keys_collected'],
          held_out_wall_bumps=held['wall_bump_fraction'],
          held_out_cells_visited=held['cells_visited'], train_maze_score=own['score'],
          train_maze_keys=own['keys_collected'], steps_per_second=speed, **model_fit))
      with eval_writer.as_default():
        tf.summary.scalar(f'eval/deer_score_depth_{depth}', deer['score'], step=step)
        tf.summary.scalar(f'eval/held_out_score_depth_{depth}', held['score'], step=step)
        tf.summary.scalar(f'eval/held_out_normalized_depth_{depth}', held['normalized'],
                          step=step)
        tf.summary.scalar(f'eval/held_out_epsilon_score_depth_{depth}', noisy['score'],
                          step=step)
        if train_mazes:
          tf.summary.scalar(f'eval/train_maze_score_depth_{depth}', own['score'], step=step)
        tf.summary.scalar('eval/random_held_out_score', random_reference['score'], step=step)
    manager.save(checkpoint_number=step)
    # Gin records a binding once its function has run: rewritten after every epoch, the
    # file holds the dataset's and the evaluations' settings too.
    _write_operative_config(root_dir)
    own_text = f', on the data\'s own mazes {latest_own}' if train_mazes else ''
    print(f'epoch {epoch + 1}/{epochs} step {step}: held-out score by depth {latest} '
          f'(random {random_reference["score"]:.2f}){own_text}; {speed:.1f} steps/s; '
          f'evaluation took {time.time() - eval_start:.0f} s', flush=True)

  for depth, policy in policies.items():
    policy_saver.PolicySaver(policy, batch_size=None).save(
        os.path.join(root_dir, 'policies', f'depth_{depth}'))
  if latest:
    print(f'done after {total_steps} updates: held-out score by planning depth {latest} '
          f'greedy, {latest_noisy} with epsilon {held_out_epsilon} (random policy '
          f'{random_reference["score"]:.2f}, optimal tour {optimal:.2f}); policies in '
          f'{os.path.join(root_dir, "policies")}/depth_D; watch one with bin/evaluate '
          f'--policy_dir {os.path.join(root_dir, "policies", f"depth_{max(latest)}")} '
          f'--render_dir {os.path.join(root_dir, "gifs")}', flush=True)
  return root_dir
