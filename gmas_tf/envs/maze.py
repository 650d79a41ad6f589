"""The labyrinth distribution of CRAR and GMAS (docs/DESIGN.md section 1).

Every `reset` draws a new maze: an 8x8 grid with a border of walls, 12 interior walls,
the agent at (1, 1) and 3 keys, redrawn until every key is reachable. The agent collects
a key by stepping on it; the episode terminates when all keys are collected.

The maze state is a small grid of cell codes (`EMPTY`, `WALL`, `KEY`, `AGENT`); the
observation is that grid drawn as 6x6-pixel sprites. Datasets store the codes and draw
the observations when they are read (`render.render_cells` and its TensorFlow twin in
`gmas_tf.data`), so 1e5 transitions take megabytes instead of gigabytes.
"""

import collections
import hashlib
import itertools
from typing import Optional

import gin
import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from gmas_tf import render

EMPTY, WALL, KEY, AGENT = 0, 1, 2, 3
NUM_CELL_CODES = 4

# Action a moves the agent by MOVES[a]: 0 row+1, 1 col+1, 2 row-1, 3 col-1.
MOVES = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])
START = (1, 1)


SPRITE_STYLES = ('deer', 'filled')


def make_sprites(cell_pixels: int = 6, style: str = 'deer') -> np.ndarray:
  """The pixel pattern of each cell code: float32 [4, cell_pixels, cell_pixels].

  Empty is -1 and wall +1 (deer). style 'deer': deer's 6x6 drawings on the empty
  background (`examples/maze/maze_env.py`, scaled by 2v - 1): the agent a figure of 18
  pixels (one 0.6, the others 0.8), a key a figure of 14 pixels (0.2 and 0.4).
  style 'filled': the agent a 0.8 square on a 0.6 cell, a key a 0.2 / 0.4 checkerboard
  filling its cell (this project's first drawing).
  """
  if style not in SPRITE_STYLES:
    raise ValueError(f'sprite style must be one of {SPRITE_STYLES}, got {style!r}.')
  sprites = np.empty((NUM_CELL_CODES, cell_pixels, cell_pixels), np.float32)
  sprites[EMPTY] = -1.0
  sprites[WALL] = 1.0
  if style == 'deer':
    if cell_pixels != 6:
      raise ValueError(f"deer's sprites are 6x6 pixels; cell_pixels is {cell_pixels}.")
    # Rows of deer's drawings: (row, columns, value) on a -1 background.
    agent = [(0, [2], 0.6), (1, range(0, 5), 0.8), (2, range(1, 4), 0.8),
             (3, range(1, 4), 0.8), (4, [1, 3], 0.8), (5, [0, 1, 3, 4], 0.8)]
    key = [(r, [1], 0.4) for r in range(6)] + [
        (0, [1, 2, 3], 0.2), (1, [3], 0.4), (2, [1, 2, 3], 0.2), (4, [2], 0.4),
        (5, [2, 3], 0.4)]
    for code, drawing in ((AGENT, agent), (KEY, key)):
      sprites[code] = -1.0
      for row, columns, value in drawing:
        sprites[code, row, list(columns)] = value
    return sprites
  sprites[AGENT] = 0.6
  inner = slice(cell_pixels // 3, cell_pixels - cell_pixels // 3)
  sprites[AGENT, inner, inner] = 0.8
  checker = (np.add.outer(np.arange(cell_pixels), np.arange(cell_pixels)) % 2).astype(bool)
  sprites[KEY] = np.where(checker, 0.4, 0.2)
  return sprites


def shortest_distances(walls: np.ndarray, source) -> np.ndarray:
  """4-connected BFS distances from `source` on a boolean wall grid; -1 where unreachable."""
  distances = np.full(walls.shape, -1, np.int64)
  distances[source] = 0
  queue = collections.deque([tuple(source)])
  while queue:
    cell = queue.popleft()
    for move in MOVES:
      nxt = (cell[0] + move[0], cell[1] + move[1])
      if not walls[nxt] and distances[nxt] < 0:
        distances[nxt] = distances[cell] + 1
        queue.append(nxt)
  return distances


@gin.configurable
class MazeEnvironment(py_environment.PyEnvironment):
  """A new random labyrinth at every reset; observations float32 [48, 48, 1], 4 actions."""

  def __init__(self,
               grid_size: int = 8,
               num_walls: int = 12,
               wall_max: int = 5,
               num_keys: int = 3,
               key_max: int = 6,
               cell_pixels: int = 6,
               sprite_style: str = 'deer',
               step_reward: float = -0.1,
               key_reward: float = 1.0,
               step_limit: Optional[int] = None,
               seed: Optional[int] = None):
    """Creates the environment.

    Args:
      grid_size: side of the square grid, border walls included.
      num_walls: distinct interior walls drawn at row, col in 1..wall_max (never START).
      wall_max: largest row or column an interior wall may take.
      num_keys: distinct keys drawn on free cells at row, col in 1..key_max.
      key_max: largest row or column a key may take.
      cell_pixels: side of one cell in the observation, in pixels.
      sprite_style: how the agent and keys are drawn (`make_sprites`); datasets store
        cell codes, so one dataset serves either style.
      step_reward: reward of a step that collects no key.
      key_reward: reward of the step that collects a key (replaces step_reward).
      step_limit: episodes are cut (a time limit, not a terminal) after this many
        steps; None for no limit (data collection). Evaluation uses 50.
      seed: seed of the maze and nothing else; the same seed gives the same mazes.
    """
    super().__init__(handle_auto_reset=True)
    if not 1 <= wall_max < grid_size - 1 or not 1 <= key_max < grid_size - 1:
      raise ValueError(f'wall_max and key_max must lie in 1..{grid_size - 2}.')
    interior = wall_max * wall_max - 1
    if num_walls > interior:
      raise ValueError(f'num_walls={num_walls} does not fit in {interior} interior cells.')
    self._grid_size = grid_size
    self._num_walls = num_walls
    self._wall_max = wall_max
    self._num_keys = num_keys
    self._key_max = key_max
    self._cell_pixels = cell_pixels
    self._step_reward = np.float32(step_reward)
    self._key_reward = np.float32(key_reward)
    self._step_limit = step_limit
    self._rng = np.random.default_rng(seed)
    self._sprites = make_sprites(cell_pixels, sprite_style)
    side = grid_size * cell_pixels
    self._observation_spec = array_spec.BoundedArraySpec(
        (side, side, 1), np.float32, minimum=-1.0, maximum=1.0, name='observation')
    self._action_spec = array_spec.BoundedArraySpec(
        (), np.int32, minimum=0, maximum=len(MOVES) - 1, name='action')
    self._walls = None
    self._keys = None
    self._agent = None
    self._steps = 0
    self._maze_hash = None
    self._given_maze = None

  # -- description --------------------------------------------------------------------

  def config(self) -> dict:
    """What defines the distribution of mazes and rewards (stored with every dataset)."""
    return dict(grid_size=self._grid_size, num_walls=self._num_walls,
                wall_max=self._wall_max, num_keys=self._num_keys, key_max=self._key_max,
                cell_pixels=self._cell_pixels, step_reward=float(self._step_reward),
                key_reward=float(self._key_reward))

  def observation_spec(self):
    return self._observation_spec

  def action_spec(self):
    return self._action_spec

  @property
  def sprites(self) -> np.ndarray:
    return self._sprites

  @property
  def step_limit(self) -> Optional[int]:
    return self._step_limit

  # -- the maze -----------------------------------------------------------------------

  def reset_to(self, walls: np.ndarray, keys) -> ts.TimeStep:
    """Starts an episode in a given maze: walls bool [n, n] with the border set."""
    self._given_maze = (walls, keys)
    return self.reset()

  def _place(self, walls: np.ndarray, keys) -> None:
    walls = np.asarray(walls, bool)
    if walls.shape != (self._grid_size,) * 2:
      raise ValueError(f'walls must have shape {(self._grid_size,) * 2}, got {walls.shape}.')
    self._walls = walls.copy()
    self._keys = {tuple(int(v) for v in key) for key in keys}
    self._agent = START
    self._steps = 0
    self._maze_hash = hashlib.sha256(self.cells().tobytes()).hexdigest()[:16]

  def draw_maze(self):
    """Draws a maze from this environment's seeded stream: (walls bool [n, n], keys)."""
    n = self._grid_size
    inside = [(r, c) for r in range(1, self._wall_max + 1)
              for c in range(1, self._wall_max + 1) if (r, c) != START]
    while True:
      walls = np.ones((n, n), bool)
      walls[1:-1, 1:-1] = False
      for index in self._rng.choice(len(inside), self._num_walls, replace=False):
        walls[inside[index]] = True
      free = [(r, c) for r in range(1, self._key_max + 1)
              for c in range(1, self._key_max + 1) if not walls[r, c] and (r, c) != START]
      keys = [free[i] for i in self._rng.choice(len(free), self._num_keys, replace=False)]
      distances = shortest_distances(walls, START)
      if all(distances[key] >= 0 for key in keys):
        return walls, keys

  def cells(self) -> np.ndarray:
    """The current maze as cell codes uint8 [n, n]."""
    cells = np.where(self._walls, WALL, EMPTY).astype(np.uint8)
    for key in self._keys:
      cells[key] = KEY
    cells[self._agent] = AGENT
    return cells

  @property
  def agent_cell(self):
    """The agent's (row, col)."""
    return tuple(int(v) for v in self._agent)

  @property
  def maze_hash(self) -> str:
    """A stable hash of the current maze as drawn at reset (walls, keys, start)."""
    return self._maze_hash

  def optimal_return(self) -> float:
    """Undiscounted return of the shortest tour over the remaining keys (BFS, all orders)."""
    points = [self._agent] + sorted(self._keys)
    distance = {p: shortest_distances(self._walls, p) for p in points}
    best_steps = min(
        sum(distance[a][b] for a, b in zip((self._agent,) + order, order))
        for order in itertools.permutations(sorted(self._keys)))
    num_keys = len(self._keys)
    return float(num_keys * self._key_reward + (best_steps - num_keys) * self._step_reward)

  def render(self, mode: str = 'rgb_array', scale: int = 4) -> np.ndarray:
    """The observation upscaled as an RGB image uint8 [n * p * scale, n * p * scale, 3]."""
    if mode != 'rgb_array':
      raise NotImplementedError(f'Only rgb_array rendering is supported, not {mode!r}.')
    return render.observation_to_rgb(self._observation(), scale)

  # -- dynamics -----------------------------------------------------------------------

  def _observation(self) -> np.ndarray:
    return render.render_cells(self.cells(), self._sprites)

  def _reset(self):
    walls, keys = self._given_maze or self.draw_maze()
    self._given_maze = None
    self._place(walls, keys)
    return ts.restart(self._observation())

  def _step(self, action):
    action = int(action)
    if not 0 <= action < len(MOVES):
      raise ValueError(f'action must be in 0..{len(MOVES) - 1}, got {action}.')
    target = (self._agent[0] + MOVES[action][0], self._agent[1] + MOVES[action][1])
    if not self._walls[target]:
      self._agent = target
    self._steps += 1
    reward = self._step_reward
    if self._agent in self._keys:
      self._keys.remove(self._agent)
      reward = self._key_reward
    observation = self._observation()
    if not self._keys:
      return ts.termination(observation, reward)
    if self._step_limit is not None and self._steps >= self._step_limit:
      return ts.truncation(observation, reward)
    return ts.transition(observation, reward)
