import numpy as np
import pytest
from tf_agents.environments import utils as env_utils
from tf_agents.trajectories import time_step as ts

from gmas_tf.envs import maze

DOWN, RIGHT, UP, LEFT = 0, 1, 2, 3


def hand_built_walls():
  """8x8 with border walls and interior walls at (2, 1) and (1, 3)."""
  walls = np.ones((8, 8), bool)
  walls[1:-1, 1:-1] = False
  walls[2, 1] = True
  walls[1, 3] = True
  return walls


def test_validate_py_environment():
  env_utils.validate_py_environment(maze.MazeEnvironment(seed=3, step_limit=50), episodes=5)


def test_thousand_seeded_mazes_follow_the_distribution():
  env = maze.MazeEnvironment(seed=123)
  for _ in range(1000):
    env.reset()
    cells = env.cells()
    walls = cells == maze.WALL
    assert walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()
    interior = walls[1:-1, 1:-1]
    assert interior.sum() == 12
    assert not interior[5:].any() and not interior[:, 5:].any()  # rows/cols 1..5 only
    assert cells[maze.START] == maze.AGENT
    keys = np.argwhere(cells == maze.KEY)
    assert len(keys) == 3
    assert keys.min() >= 1 and keys.max() <= 6
    distances = maze.shortest_distances(walls, maze.START)
    assert all(distances[tuple(key)] > 0 for key in keys)


def test_scripted_episode_on_hand_built_maze():
  env = maze.MazeEnvironment(step_limit=None)
  env.reset_to(hand_built_walls(), keys=[(1, 2), (3, 2), (3, 3)])
  expected = [
      (DOWN, -0.1, (1, 1)),  # (2, 1) is a wall: the agent stays put
      (RIGHT, 1.0, (1, 2)),  # key
      (RIGHT, -0.1, (1, 2)),  # (1, 3) is a wall
      (DOWN, -0.1, (2, 2)),
      (DOWN, 1.0, (3, 2)),  # key
      (LEFT, -0.1, (3, 1)),
      (RIGHT, -0.1, (3, 2)),
      (RIGHT, 1.0, (3, 3)),  # last key: terminal
  ]
  for i, (action, reward, agent) in enumerate(expected):
    step = env.step(np.int32(action))
    assert step.reward == pytest.approx(reward)
    observation = step.observation[..., 0]
    r, c = agent
    cell = observation[6 * r:6 * r + 6, 6 * c:6 * c + 6]
    # deer's agent: one 0.6 pixel at (0, 2) and 17 of 0.8, on the floor's -1.
    assert cell[0, 2] == np.float32(0.6) and np.sum(cell == np.float32(0.6)) == 1
    assert np.sum(cell == np.float32(0.8)) == 17 and np.sum(cell == -1.0) == 18
    if i < len(expected) - 1:
      assert step.step_type == ts.StepType.MID and step.discount == 1.0
  assert step.step_type == ts.StepType.LAST and step.discount == 0.0
  observation = step.observation[..., 0]
  # All keys gone: only floor, walls and the agent remain.
  assert set(np.unique(observation)) == {-1.0, 1.0, np.float32(0.6), np.float32(0.8)}
  assert np.all(observation[12:18, 6:12] == 1.0)  # wall cell (2, 1)
  assert np.all(observation[6:12, 12:18] == -1.0)  # the collected key at (1, 2) is floor


def test_key_sprite_pixels():
  env = maze.MazeEnvironment()
  observation = env.reset_to(hand_built_walls(), keys=[(6, 6)]).observation[..., 0]
  cell = observation[36:42, 36:42]
  # deer's key (maze_env.py, values v drawn as 2v - 1): a figure of 14 pixels.
  expected = np.full((6, 6), -1.0, np.float32)
  expected[:, 1] = 0.4
  expected[0, 1:4] = expected[2, 1:4] = 0.2
  expected[1, 3] = expected[4, 2] = 0.4
  expected[5, 2:4] = 0.4
  np.testing.assert_array_equal(cell, expected)
  assert np.sum(cell != -1.0) == 14


def test_filled_sprites_are_the_other_style():
  sprites = maze.make_sprites(6, 'filled')
  assert np.sum(sprites[maze.AGENT] == np.float32(0.6)) == 32
  assert np.sum(sprites[maze.KEY] == np.float32(0.2)) == 18
  with pytest.raises(ValueError, match='sprite style'):
    maze.make_sprites(6, 'pretty')


def test_optimal_return_of_hand_built_maze():
  env = maze.MazeEnvironment()
  env.reset_to(hand_built_walls(), keys=[(1, 2), (3, 2), (3, 3)])
  # Shortest tour: (1,1) -> (1,2) 1 step, -> (3,2) 2 steps, -> (3,3) 1 step = 4 steps,
  # three of which collect keys: 3 * 1 + 1 * -0.1.
  assert env.optimal_return() == pytest.approx(2.9)
  env.reset_to(hand_built_walls(), keys=[(6, 6), (1, 2), (6, 1)])
  # (1,1)->(1,2) 1; (1,2)->(6,1): 5 down + 1 left = 6; (6,1)->(6,6) 5: 12 steps.
  assert env.optimal_return() == pytest.approx(3 - 0.1 * 9)


def test_scripted_optimal_tour_achieves_optimal_return():
  env = maze.MazeEnvironment()
  env.reset_to(hand_built_walls(), keys=[(1, 2), (3, 2), (3, 3)])
  optimal = env.optimal_return()
  total = sum(env.step(np.int32(a)).reward for a in (RIGHT, DOWN, DOWN, RIGHT))
  assert total == pytest.approx(optimal)


def test_step_limit_truncates_without_terminal():
  env = maze.MazeEnvironment(step_limit=5)
  env.reset_to(hand_built_walls(), keys=[(6, 6), (6, 5), (5, 6)])
  steps = [env.step(np.int32(UP)) for _ in range(5)]
  assert all(s.step_type == ts.StepType.MID for s in steps[:4])
  assert steps[4].step_type == ts.StepType.LAST
  assert steps[4].discount == 1.0  # a time limit, not a terminal
  assert env.step(np.int32(UP)).step_type == ts.StepType.FIRST  # auto reset


def test_no_step_limit_runs_past_fifty_steps():
  env = maze.MazeEnvironment(step_limit=None)
  env.reset_to(hand_built_walls(), keys=[(6, 6), (6, 5), (5, 6)])
  assert all(env.step(np.int32(UP)).step_type == ts.StepType.MID for _ in range(200))


def test_same_seed_same_mazes_other_seed_other_mazes():
  def hashes(seed):
    env = maze.MazeEnvironment(seed=seed)
    result = []
    for _ in range(20):
      env.reset()
      result.append(env.maze_hash)
    return result

  assert hashes(7) == hashes(7)
  assert not set(hashes(7)) & set(hashes(8))


def test_render_is_an_upscaled_rgb_image():
  env = maze.MazeEnvironment(seed=0)
  env.reset()
  image = env.render(scale=3)
  assert image.shape == (144, 144, 3) and image.dtype == np.uint8
  assert len(np.unique(image.reshape(-1, 3), axis=0)) >= 4  # floor, wall, agent, key


def test_bad_configuration_is_rejected():
  with pytest.raises(ValueError):
    maze.MazeEnvironment(num_walls=30)
