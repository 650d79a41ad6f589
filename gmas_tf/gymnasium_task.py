"""Any Gymnasium task with discrete actions, trained from a Minari dataset: the runner's
factories (`minari_environment`, `MinariData`, `EpisodeEvaluator`) and the collector.

The dataset names the task: `minari_environment` is the environment the dataset records
(its Gymnasium spec: id and wrappers), so a local Minari
dataset of any such environment trains as ours do. Ours are a uniformly random policy's,
written by `collect` (bin/collect --env_id) under `minari_dataset.root`; the configured one
is collected the first time it is asked for, as the maze's is.

Datasets are written in Minari's arrow format: minari 0.5.3's HDF5 storage JPEG-encodes
every uint8 array of rank 3 on writing but decodes only images of 32x32 and more, so small
grids (MiniGrid's) would come back as JPEG bytes; arrow stores them as they are.

Held-out episodes: episode i of an evaluation starts from `reset(seed=HELD_OUT_SEED + i)`;
a dataset's episodes continue the stream of one `reset(seed=seed)` with a small seed. How
many held-out layouts also open a dataset episode is measured and reported.
"""

import contextlib
import copy
import hashlib
import json
import os
import tempfile
import warnings
from typing import Dict, List, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from gmas_tf import data
from gmas_tf import evaluation
from gmas_tf.agents import crar_agent
from gmas_tf.envs import gymnasium_env
from gmas_tf.errors import DatasetError, MissingDependency, SpecError

MINIGRID_FULLY_OBSERVED = ('minigrid.wrappers:FullyObsWrapper',
                           'minigrid.wrappers:ImgObsWrapper')


def _minari():
  gymnasium_env.require_gymnasium()
  try:
    import minari  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise MissingDependency('Minari datasets need the optional packages: run '
                            f'`{gymnasium_env.INSTALL}`.') from None
  return minari


def default_dataset_id(env_id: str, wrappers: Sequence[str], num_transitions: int,
                       seed: int) -> str:
  """gmas_tf/<env id>-<wrappers' digest>-random-n<N>-seed<S>-v0."""
  name = env_id.split(':')[-1].rsplit('-v', 1)[0]
  digest = hashlib.sha256(json.dumps(list(wrappers)).encode()).hexdigest()[:8]
  return f'gmas_tf/{name}-{digest}-random-n{num_transitions}-seed{seed}-v0'


# -- collection -----------------------------------------------------------------------


def collect_episodes(env, num_transitions: int, seed: int) -> List[dict]:
  """A uniformly random policy's episodes in a Gymnasium environment, `num_transitions`
  steps in all; the first reset takes `seed`, later ones continue its stream, and the last
  episode is cut (truncated) when the count is reached."""
  rng = np.random.default_rng([seed, 1])  # a stream apart from the environment's
  num_actions, start = int(env.action_space.n), int(env.action_space.start)
  episodes, count = [], 0
  observation, _ = env.reset(seed=seed)
  while count < num_transitions:
    episode = dict(observations=[observation], actions=[], rewards=[], terminations=[],
                   truncations=[])
    while True:
      action = int(rng.integers(num_actions)) + start
      observation, reward, terminated, truncated, _ = env.step(action)
      count += 1
      truncated = truncated or count == num_transitions
      for key, value in (('observations', observation), ('actions', action),
                         ('rewards', reward), ('terminations', terminated),
                         ('truncations', truncated)):
        episode[key].append(value)
      if terminated or truncated:
        break
    episodes.append(episode)
    observation, _ = env.reset()
  return episodes


@contextlib.contextmanager
def _datasets_path(path: str):
  """Minari 0.5.3 writes under $MINARI_DATASETS_PATH; this points it at `path` a while."""
  before = os.environ.get('MINARI_DATASETS_PATH')
  os.environ['MINARI_DATASETS_PATH'] = path
  try:
    yield
  finally:
    if before is None:
      del os.environ['MINARI_DATASETS_PATH']
    else:
      os.environ['MINARI_DATASETS_PATH'] = before


def write_dataset(root: str, dataset_id: str, env, episodes: List[dict], seed: int):
  """Writes `episodes` as the Minari dataset `dataset_id` under `root`, atomically (into a
  temporary root, then renamed); refuses to replace one."""
  minari = _minari()
  from minari.data_collector import EpisodeBuffer  # pylint: disable=import-outside-toplevel
  root = os.path.abspath(root)  # minari's arrow storage misplaces files under relative ones
  target = os.path.join(root, dataset_id)
  if os.path.exists(target):
    raise DatasetError(f'{target} already holds a dataset; choose another dataset id or '
                       'remove it first.')
  os.makedirs(root, exist_ok=True)
  buffers = [EpisodeBuffer(
      id=index, observations=np.stack(e['observations']), actions=np.asarray(e['actions']),
      rewards=[float(r) for r in e['rewards']], terminations=list(e['terminations']),
      truncations=list(e['truncations']), infos={}) for index, e in enumerate(episodes)]
  with tempfile.TemporaryDirectory(dir=root, prefix='.writing-') as temporary:
    with _datasets_path(temporary), warnings.catch_warnings():
      # Minari asks for an author, a code link and an evaluation environment (the
      # collector's is the one to use); the dataset's description says what it is.
      warnings.filterwarnings('ignore', category=UserWarning, module='minari')
      minari.create_dataset_from_buffers(
          dataset_id, buffers, env=env, algorithm_name=f'uniformly random policy, seed {seed}',
          description=f'{sum(len(e["actions"]) for e in episodes)} transitions of a uniformly '
          f'random policy; the first reset seeded with {seed}.', data_format='arrow')
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(os.path.join(temporary, dataset_id), target)
  return target


def collect(env_id: str, wrappers: Sequence[str], num_transitions: int, seed: int,
            root: str, dataset_id: Optional[str] = None) -> str:
  """Collects and writes a random policy's Minari dataset; returns its directory."""
  env = gymnasium_env.make(env_id, wrappers)
  gymnasium_env.GymnasiumEnvironment(env)  # its spaces must suit the agents
  dataset_id = dataset_id or default_dataset_id(env_id, wrappers, num_transitions, seed)
  episodes = collect_episodes(env, num_transitions, seed)
  return write_dataset(root, dataset_id, env, episodes, seed)


def describe(path: str, seconds: float) -> str:
  """A short summary of a Minari dataset just collected: episodes, how many earned a
  positive return, how many distinct first observations (layouts, if fully observed)."""
  dataset = _minari().MinariDataset(os.path.join(path, 'data'))
  episodes = list(dataset.iterate_episodes())
  rewarded = sum(float(np.sum(e.rewards)) > 0 for e in episodes)
  layouts = len({e.observations[0].tobytes() for e in episodes})
  size = sum(os.path.getsize(os.path.join(folder, name))
             for folder, _, names in os.walk(path) for name in names) / 2**20
  return (f'{dataset.total_steps} transitions in {len(episodes)} episodes ({rewarded} with '
          f'a positive return, {layouts} distinct first observations) in {seconds:.1f} s; '
          f'{size:.2f} MiB at {path}')


# -- reading --------------------------------------------------------------------------


@gin.configurable
def minari_dataset(dataset_id: Optional[str] = None, root: str = 'data/minari',
                   env_id: str = 'minigrid:MiniGrid-DoorKey-6x6-v0',
                   wrappers: Sequence[str] = MINIGRID_FULLY_OBSERVED,
                   num_transitions: int = 100_000, seed: int = 0):
  """The configured Minari dataset, loaded: `dataset_id` under `root` if given (any local
  Minari dataset: root is then usually Minari's own, ~/.minari/datasets); else our random
  policy's dataset of (env_id, wrappers, num_transitions, seed), collected if missing."""
  minari = _minari()
  root = os.path.expanduser(root)
  collect_it = dataset_id is None
  dataset_id = dataset_id or default_dataset_id(env_id, wrappers, num_transitions, seed)
  path = os.path.join(root, dataset_id, 'data')
  if not os.path.exists(os.path.join(path, 'metadata.json')):
    if not collect_it:
      raise DatasetError(f'No Minari dataset {dataset_id} in {root}: set '
                         '`minari_dataset.root` to the directory that holds it.')
    print(f'collecting {num_transitions} transitions of {env_id} into '
          f'{os.path.join(root, dataset_id)}', flush=True)
    collect(env_id, wrappers, num_transitions, seed, root, dataset_id)
  try:
    return minari.MinariDataset(path)
  except Exception as error:  # Minari raises many kinds on a damaged dataset
    raise DatasetError(f'The Minari dataset in {path} cannot be read ({type(error).__name__}: '
                       f'{error}); collect it again.') from None


@gin.configurable
def minari_environment() -> gymnasium_env.GymnasiumEnvironment:
  """The environment the configured dataset was collected in, as a PyEnvironment."""
  return gymnasium_env.GymnasiumEnvironment(
      gymnasium_env.make_from_spec(minari_dataset().env_spec))


def episodes_to_rows(episodes, action_start: int = 0) -> Dict[str, np.ndarray]:
  """Minari episodes -> the row stream of gmas_tf.data (FIELDS, observations under
  'observation', actions less the space's `action_start`): row t of an episode pairs with
  row t + 1; its last observation is a row whose next_step_type is FIRST; discount 0 only
  on a termination."""
  columns = {name: [] for name in data.FIELDS if name != 'cells'}
  columns['observation'] = []
  for episode in episodes:
    length = len(episode.actions)
    step_type = np.full(length + 1, ts.StepType.MID)
    step_type[0], step_type[-1] = ts.StepType.FIRST, ts.StepType.LAST
    next_step_type = np.append(step_type[1:], ts.StepType.FIRST)
    discount = np.append(1.0 - np.asarray(episode.terminations, np.float32), 1.0)
    for name, values in (('step_type', step_type), ('observation', episode.observations),
                         ('action', np.append(np.asarray(episode.actions) - action_start, 0)),
                         ('next_step_type', next_step_type),
                         ('reward', np.append(episode.rewards, 0.0)),
                         ('discount', discount)):
      columns[name].append(values)
  dtypes = dict(step_type=np.uint8, action=np.int32, next_step_type=np.uint8,
                reward=np.float32, discount=np.float32, observation=None)
  return {name: np.concatenate(values).astype(dtypes[name] or values[0].dtype)
          for name, values in columns.items()}


def check_spaces(dataset, environment: gymnasium_env.GymnasiumEnvironment) -> None:
  """One sentence if the dataset's spaces are not the environment's, or not the agents'."""
  gymnasium_env.action_spec_from_space(dataset.action_space)
  spec = gymnasium_env.observation_spec_from_space(dataset.observation_space)
  wanted = environment.observation_spec()
  if spec.shape != wanted.shape or spec.dtype != wanted.dtype:
    raise SpecError(f'The dataset\'s observations are {spec.shape} {spec.dtype.name}, the '
                    f'environment\'s {wanted.shape} {wanted.dtype.name}.')


@gin.configurable
class MinariData:
  """The configured Minari dataset (`minari_dataset`) as batches of transitions."""

  def __init__(self, environment: gymnasium_env.GymnasiumEnvironment):
    dataset = minari_dataset()
    check_spaces(dataset, environment)
    episodes = list(dataset.iterate_episodes())
    self.arrays = episodes_to_rows(episodes, int(dataset.action_space.start))
    self.first_observations = {e.observations[0].tobytes() for e in episodes}
    self.metadata = dict(dataset_id=dataset.spec.dataset_id, episodes=len(episodes),
                         transitions=int(sum(len(e.actions) for e in episodes)))

  def transitions(self) -> tf.data.Dataset:
    """Batches of `Transition`s, sampled by TensorFlow's global seed as it is now."""
    buffer = data.make_replay_buffer(self.arrays)
    return data.make_dataset(buffer, sprites=None)


# -- evaluation -----------------------------------------------------------------------


def play(act: evaluation.Act, envs, seeds: Sequence[int], on_step=None) -> np.ndarray:
  """One episode in each env from reset(seed), all stepped together; their returns.
  `on_step(index, action, env, reward, terminated)`, if given, sees every step."""
  observations = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)]
  start = int(envs[0].action_space.start)
  returns, running = np.zeros(len(envs)), np.ones(len(envs), bool)
  while running.any():
    live = np.flatnonzero(running)
    actions = act(np.stack([observations[i] for i in live]))
    for index, action in zip(live, actions):
      observations[index], reward, terminated, truncated, _ = envs[index].step(
          int(action) + start)
      returns[index] += reward
      running[index] = not (terminated or truncated)
      if on_step:
        on_step(index, int(action), envs[index], reward, terminated)
  return returns


class MinigridBehaviour:
  """What a policy does in MiniGrid episodes (give `record` to `play` as on_step): its
  actions counted by name, and the fraction of episodes in which it ever carried an
  object, had a door open, and reached the goal (a rewarded termination)."""

  EVENTS = ('carried', 'door_open', 'goal')

  def __init__(self, envs):
    self._names = [action.name for action in envs[0].unwrapped.actions]
    self._counts = np.zeros(len(self._names), int)
    self._events = np.zeros((len(envs), len(self.EVENTS)), bool)

  def record(self, index: int, action: int, env, reward: float, terminated: bool):
    self._counts[action] += 1
    grid = env.unwrapped.grid.grid
    self._events[index] |= (
        env.unwrapped.carrying is not None,
        any(cell is not None and cell.type == 'door' and cell.is_open for cell in grid),
        terminated and reward > 0)

  def summary(self) -> dict:
    return dict(actions=dict(zip(self._names, self._counts.tolist())),
                **{f'episodes_{event}': float(self._events[:, i].mean())
                   for i, event in enumerate(self.EVENTS)})


@gin.register
def minigrid_optimal_return(env, seed: int) -> float:
  """The best return of the MiniGrid episode that reset(seed) starts: breadth-first search
  over copies of the environment (states told apart by MiniGrid's `hash()`), for the fewest
  steps to a rewarded termination; 0 if none is reachable."""
  env.reset(seed=seed)
  frontier, seen = [copy.deepcopy(env)], {env.unwrapped.hash()}
  while frontier:
    successors = []
    for state in frontier:
      for action in range(int(env.action_space.n)):
        child = copy.deepcopy(state)
        _, reward, terminated, truncated, _ = child.step(action)
        if terminated and reward > 0:
          return float(reward)  # every step of a level costs the same: the first is best
        key = child.unwrapped.hash()
        if not (terminated or truncated) and key not in seen:
          seen.add(key)
          successors.append(child)
    frontier = successors
  return 0.0


def mean_optimal_return(optimal_fn, env, seeds: Sequence[int]) -> float:
  """The mean of `optimal_fn(env, seed)` over the episodes the seeds start."""
  return float(np.mean([optimal_fn(env, seed) for seed in seeds]))


def standard_error(returns: np.ndarray) -> float:
  return float(returns.std(ddof=1) / np.sqrt(len(returns)))


@gin.configurable
class EpisodeEvaluator:
  """The evaluation phase on held-out episodes of a Gymnasium task: per planning depth,
  the mean return greedily and with epsilon, beside the random policy's and (given
  `optimal_fn`) the optimal one."""

  fields = ('epoch', 'step', 'depth', 'held_out_score', 'held_out_sem',
            'held_out_normalized', 'held_out_epsilon_score', 'held_out_epsilon_sem',
            'held_out_epsilon_normalized', 'random_held_out_score', 'optimal_held_out_score',
            'held_out_in_data', 'steps_per_second')

  def __init__(self, environment: gymnasium_env.GymnasiumEnvironment, offline_data, seed: int,
               train_mazes: int, held_out_epsilon: float, num_episodes: int = 100,
               optimal_fn=None):
    del train_mazes  # the maze's diagnostic
    self._seed, self._epsilon = seed, held_out_epsilon
    self._num_actions = crar_agent.num_actions(environment.action_spec())
    self._envs = [copy.deepcopy(environment.gym_env) for _ in range(num_episodes)]
    self._seeds = [evaluation.HELD_OUT_SEED + i for i in range(num_episodes)]
    self.random = float(np.mean(self._returns(
        evaluation.random_act(np.random.default_rng([seed, 4]), self._num_actions), 0.0)))
    self.optimal = (mean_optimal_return(optimal_fn, self._envs[0], self._seeds)
                    if optimal_fn else float('nan'))
    self._in_data = float(np.mean([
        env.reset(seed=s)[0].tobytes() in offline_data.first_observations
        for env, s in zip(self._envs, self._seeds)]))
    self.latest = {}  # depth -> (greedy score, epsilon score)

  def _returns(self, act, epsilon: float) -> np.ndarray:
    rng = np.random.default_rng([self._seed, 3])
    return play(evaluation.epsilon_greedy(act, epsilon, rng, self._num_actions), self._envs,
                self._seeds)

  def _normalized(self, score: float) -> float:
    return (score - self.random) / (self.optimal - self.random)

  def scores(self, column: int) -> Dict[int, float]:
    return {depth: scores[column] for depth, scores in self.latest.items()}

  def evaluate(self, agent, acts, epoch: int, step: int, speed: float):
    """(CSV rows, TensorBoard scalars, a summary) of every planning depth's act."""
    del agent
    rows, scalars = [], {'eval/random_held_out_score': self.random}
    for depth, act in acts.items():
      greedy, noisy = self._returns(act, 0.0), self._returns(act, self._epsilon)
      self.latest[depth] = (round(greedy.mean(), 3), round(noisy.mean(), 3))
      rows.append(dict(
          epoch=epoch + 1, step=step, depth=depth, held_out_score=greedy.mean(),
          held_out_sem=standard_error(greedy), held_out_normalized=self._normalized(greedy.mean()),
          held_out_epsilon_score=noisy.mean(), held_out_epsilon_sem=standard_error(noisy),
          held_out_epsilon_normalized=self._normalized(noisy.mean()),
          random_held_out_score=self.random, optimal_held_out_score=self.optimal,
          held_out_in_data=self._in_data, steps_per_second=speed))
      scalars.update({f'eval/held_out_score_depth_{depth}': greedy.mean(),
                      f'eval/held_out_epsilon_score_depth_{depth}': noisy.mean()})
    return rows, scalars, (f'held-out return by depth {self.scores(0)} (random '
                           f'{self.random:.3f})')

  def closing(self, acts, root_dir: str) -> str:
    del acts, root_dir
    return (f'held-out return by planning depth {self.scores(0)} greedy, {self.scores(1)} '
            f'with epsilon {self._epsilon} (random policy {self.random:.3f}, optimal '
            f'{self.optimal:.3f}; {self._in_data:.0%} of the held-out episodes start as one '
            'of the dataset\'s)')
