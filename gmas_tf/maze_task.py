"""The labyrinth task's factories for the runner: its offline data and its evaluator.

`MazeData` loads (collecting it the first time) the random-policy dataset of a seed and
makes the batches of transitions; `MazeEvaluator` scores the planning policies on the fixed
held-out mazes (greedily and with epsilon), with deer's protocol and on the data's own
mazes, beside the random policy and the optimal tour, and probes the model.
"""

import hashlib
import json
import os
from typing import Dict, Optional

import gin
import numpy as np
import tensorflow as tf

from gmas_tf import data
from gmas_tf import diagnostics
from gmas_tf import evaluation
from gmas_tf.agents import crar_agent
from gmas_tf.envs import maze
from gmas_tf.errors import TrainingError

CSV_FIELDS = ('epoch', 'step', 'depth', 'deer_score', 'deer_episodes', 'held_out_score',
              'held_out_sem', 'held_out_normalized', 'held_out_epsilon_score',
              'held_out_epsilon_sem', 'held_out_epsilon_normalized', 'random_held_out_score',
              'optimal_held_out_score', 'held_out_keys', 'held_out_wall_bumps',
              'held_out_cells_visited', 'train_maze_score', 'train_maze_keys',
              *diagnostics.PROBE_FIELDS, 'steps_per_second')


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


@gin.configurable
class MazeData:
  """The configured dataset (`ensure_dataset`) of a MazeEnvironment, loaded and checked."""

  def __init__(self, environment: maze.MazeEnvironment):
    self.environment = environment
    self.arrays, self.metadata = data.load(ensure_dataset(), environment)

  def transitions(self) -> tf.data.Dataset:
    """Batches of `Transition`s, sampled by TensorFlow's global seed as it is now."""
    buffer = data.make_replay_buffer(self.arrays)
    return data.make_dataset(buffer, self.environment.sprites,
                             key_arrays=data.key_transitions(self.arrays))


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


@gin.configurable
class MazeEvaluator:
  """The evaluation phase on the labyrinths: per planning depth, deer's score, the held-out
  mazes greedily and with epsilon, the data's own mazes; the model probe."""

  fields = CSV_FIELDS

  def __init__(self, environment: maze.MazeEnvironment, maze_data: MazeData, seed: int,
               train_mazes: int, held_out_epsilon: float):
    self._seed, self._train_mazes, self._epsilon = seed, train_mazes, held_out_epsilon
    self._metadata = maze_data.metadata
    self._excluded = set(maze_data.metadata['maze_hashes'])
    self._num_actions = crar_agent.num_actions(environment.action_spec())
    self.random = evaluation.held_out_score(
        evaluation.random_act(np.random.default_rng(seed), self._num_actions),
        excluded_hashes=self._excluded)
    self._probe = diagnostics.probe_transitions(maze_data.arrays, environment.sprites,
                                                seed=seed)
    self.latest = {}  # depth -> (greedy score, epsilon score, score on the data's mazes)
    self.optimal = float('nan')

  def scores(self, column: int) -> Dict[int, float]:
    return {depth: scores[column] for depth, scores in self.latest.items()}

  def evaluate(self, agent, acts, epoch: int, step: int, speed: float):
    """(CSV rows, TensorBoard scalars, a summary) of every planning depth's act."""
    model_fit = diagnostics.model_probe(agent, self._probe)
    scalars = {f'probe/{name[len("probe_"):]}': v for name, v in model_fit.items()}
    scalars['eval/random_held_out_score'] = self.random['score']
    rows = []
    for depth, act in acts.items():
      deer = evaluation.deer_score(act, seed=self._seed * 10_000 + epoch)
      held = evaluation.held_out_score(act, epsilon=0.0, excluded_hashes=self._excluded)
      noisy = evaluation.held_out_score(act, epsilon=self._epsilon,
                                        excluded_hashes=self._excluded)
      own = (training_maze_score(act, self._metadata, self._train_mazes) if self._train_mazes
             else dict(score=float('nan'), keys_collected=float('nan')))
      self.latest[depth] = tuple(round(r['score'], 2) for r in (held, noisy, own))
      self.optimal = held['optimal']
      rows.append(dict(
          epoch=epoch + 1, step=step, depth=depth, deer_score=deer['score'],
          deer_episodes=deer['episodes'], held_out_score=held['score'],
          held_out_sem=held['score_sem'], held_out_normalized=held['normalized'],
          held_out_epsilon_score=noisy['score'], held_out_epsilon_sem=noisy['score_sem'],
          held_out_epsilon_normalized=noisy['normalized'],
          random_held_out_score=self.random['score'],
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
    own_text = (f', on the data\'s own mazes {self.scores(2)}' if self._train_mazes else '')
    summary = (f'held-out score by depth {self.scores(0)} (random '
               f'{self.random["score"]:.2f}){own_text}')
    return rows, scalars, summary

  def closing(self, acts, root_dir: str) -> str:
    """A GIF of the best depth beside the random policy on 3 held-out mazes, and the line
    that ends the run."""
    best = max(self.latest, key=lambda depth: self.latest[depth][0])
    generator = maze.MazeEnvironment(seed=evaluation.HELD_OUT_SEED)
    gif = os.path.join(root_dir, 'gifs', f'depth_{best}_and_random.gif')
    os.makedirs(os.path.dirname(gif), exist_ok=True)
    evaluation.save_episodes_gif(
        gif, [acts[best], evaluation.random_act(np.random.default_rng(self._seed),
                                                self._num_actions)],
        [generator.draw_maze() for _ in range(3)])
    return (f'held-out score by planning depth {self.scores(0)} greedy, {self.scores(1)} '
            f'with epsilon {self._epsilon} (random policy {self.random["score"]:.2f}, optimal '
            f'tour {self.optimal:.2f}); depth {best} (top row) and the random policy on 3 '
            f'held-out mazes: {gif}')
