"""Evaluation protocols (docs/DESIGN.md section 7).

An `act` function maps observations float32 [B, 48, 48, 1] to actions int [B]; the agent's
planning policy, a SavedModel and the uniformly random policy all fit.

- deer's protocol: 200 environment steps on fresh mazes with epsilon 0.1, episodes cut at
  50 steps; score = total reward / number of episodes started (the floor is -5).
- held-out mazes: a fixed set of test mazes (drawn from a seed no dataset uses), each
  played once greedily, all in one batch; raw return and the normalized return
  (R - R_floor) / (R_optimal - R_floor), 0 for the floor and 1 for the optimal tour.
"""

from typing import Callable, Dict, Optional, Sequence

import gin
import numpy as np

from gmas_tf import render
from gmas_tf.envs import maze

Act = Callable[[np.ndarray], np.ndarray]
HELD_OUT_SEED = 1_000_003  # the test mazes' seed; no dataset is collected with it


def random_act(rng: np.random.Generator, num_actions: int) -> Act:
  """The uniformly random policy: the floor every agent must beat."""
  return lambda observations: rng.integers(num_actions, size=len(observations))


def epsilon_greedy(act: Act, epsilon: float, rng: np.random.Generator,
                   num_actions: int) -> Act:

  def act_with_exploration(observations):
    actions = np.asarray(act(observations))
    explore = rng.random(len(actions)) < epsilon
    return np.where(explore, rng.integers(num_actions, size=len(actions)), actions)

  return act_with_exploration


@gin.configurable
def deer_score(act: Act, seed: int, num_steps: int = 200, epsilon: float = 0.1,
               step_limit: int = 50) -> Dict[str, float]:
  """deer's test epoch: `num_steps` steps on fresh mazes, score per episode started."""
  rng = np.random.default_rng([seed, 2])
  env = maze.MazeEnvironment(seed=seed, step_limit=step_limit)
  act = epsilon_greedy(act, epsilon, rng, len(maze.MOVES))
  step = env.reset()
  total, episodes = 0.0, 1
  for i in range(num_steps):
    step = env.step(np.int32(act(step.observation[None])[0]))
    total += float(step.reward)
    if step.is_last() and i + 1 < num_steps:
      step = env.reset()
      episodes += 1
  return dict(score=total / episodes, episodes=episodes)


@gin.configurable
def held_out_score(act: Act, seed: int = HELD_OUT_SEED, num_mazes: int = 500,
                   step_limit: int = 50, epsilon: float = 0.0,
                   excluded_hashes: Optional[set] = None) -> Dict[str, float]:
  """Plays each of `num_mazes` test mazes once, all environments stepped together.

  Returns the mean raw return, its standard error, the mean normalized return, the mean
  optimal return, how the agent behaved (keys collected per episode, the fraction of moves
  into a wall, distinct cells visited per episode), and how many test mazes also appear in
  `excluded_hashes` (training data).
  """
  rng = np.random.default_rng([seed, 3])
  generator = maze.MazeEnvironment(seed=seed)
  envs, optimal = [], []
  observations = []
  for _ in range(num_mazes):
    env = maze.MazeEnvironment(step_limit=step_limit)
    observations.append(env.reset_to(*generator.draw_maze()).observation)
    envs.append(env)
    optimal.append(env.optimal_return())
  overlap = sum(env.maze_hash in (excluded_hashes or ()) for env in envs)
  act = epsilon_greedy(act, epsilon, rng, len(maze.MOVES))
  observations = np.stack(observations)
  returns = np.zeros(num_mazes)
  running = np.ones(num_mazes, bool)
  keys = np.zeros(num_mazes)
  bumps, steps = 0, 0  # moves that left the agent in place (into a wall)
  visited = [{maze.START} for _ in range(num_mazes)]
  while running.any():
    live = np.flatnonzero(running)
    actions = act(observations[live])
    for index, action in zip(live, actions):
      before = envs[index].agent_cell
      step = envs[index].step(np.int32(action))
      after = envs[index].agent_cell
      returns[index] += float(step.reward)
      keys[index] += float(step.reward) > 0
      bumps += after == before
      steps += 1
      visited[index].add(after)
      observations[index] = step.observation
      running[index] = not step.is_last()
  optimal = np.asarray(optimal)
  floor = step_limit * envs[0].config()['step_reward']
  normalized = (returns - floor) / (optimal - floor)
  return dict(score=float(returns.mean()),
              score_sem=float(returns.std(ddof=1) / np.sqrt(num_mazes)),
              normalized=float(normalized.mean()), optimal=float(optimal.mean()),
              keys_collected=float(keys.mean()), wall_bump_fraction=bumps / steps,
              cells_visited=float(np.mean([len(v) for v in visited])),
              overlap_with_data=int(overlap))


def episode_frames(act: Act, walls: np.ndarray, keys, step_limit: int = 50):
  """One greedy episode in a given maze as RGB frames: the maze now, beside the maze as it
  started with the cells visited so far tinted."""
  env = maze.MazeEnvironment(step_limit=step_limit)
  step = env.reset_to(walls, keys)
  first, visited, frames = step.observation, [maze.START], []
  while True:
    frames.append(render.tile([env.render(), render.path_image(first, visited)]))
    if step.is_last():
      return frames
    step = env.step(np.int32(act(step.observation[None])[0]))
    visited.append(env.agent_cell)


def save_episodes_gif(path: str, acts: Sequence[Act], mazes) -> None:
  """A GIF of each act playing each maze, stacked: one row per act, one column per maze;
  finished episodes hold their last frame."""
  rows = [[episode_frames(act, *m) for m in mazes] for act in acts]
  length = max(len(frames) for row in rows for frames in row)
  held = lambda frames, t: frames[min(t, len(frames) - 1)]
  pictures = []
  for t in range(length):
    lines = [render.tile([held(frames, t) for frames in row]) for row in rows]
    gap = np.full((8, lines[0].shape[1], 3), 255, np.uint8)
    pictures.append(np.concatenate([p for line in lines for p in (line, gap)][:-1], axis=0))
  render.save_gif(path, pictures)
