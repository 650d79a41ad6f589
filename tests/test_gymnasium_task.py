"""Gymnasium tasks: the adapter, Minari datasets, the evaluator and bin/train on MiniGrid."""

import csv
import json
import os
import subprocess
import sys
import types

import gin
import gymnasium as gym
import minari
from minigrid.wrappers import FullyObsWrapper, ImgObsWrapper
import numpy as np
import pytest
from tf_agents.environments import utils as env_utils
from tf_agents.trajectories import time_step as ts

from gmas_tf import data
from gmas_tf import evaluation
from gmas_tf import gymnasium_task
from gmas_tf.envs import gymnasium_env
from gmas_tf.errors import DatasetError, MissingDependency, SpecError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOORKEY = 'minigrid:MiniGrid-DoorKey-5x5-v0'
FULL = gymnasium_task.MINIGRID_FULLY_OBSERVED


def doorkey(seed=None):
  return gymnasium_env.GymnasiumEnvironment(gymnasium_env.make(DOORKEY, FULL), seed=seed)


# -- the adapter ----------------------------------------------------------------------


def test_a_fully_observed_minigrid_is_a_valid_py_environment():
  env = doorkey(seed=3)
  assert env.observation_spec().shape == (5, 5, 3)
  assert env.observation_spec().dtype == np.uint8
  assert (env.action_spec().minimum, env.action_spec().maximum) == (0, 6)
  env_utils.validate_py_environment(env, episodes=2)


def test_the_seed_names_a_stream_of_layouts():
  first = [doorkey(seed=5) for _ in range(2)]
  starts = [[env.reset().observation for _ in range(3)] for env in first]
  np.testing.assert_array_equal(np.stack(starts[0]), np.stack(starts[1]))
  other = doorkey(seed=6).reset().observation
  assert not np.array_equal(starts[0][0], other)


def test_a_time_limit_truncates_with_discount_1_and_a_goal_terminates_with_discount_0():
  env = gymnasium_env.GymnasiumEnvironment(
      ImgObsWrapper(FullyObsWrapper(gym.make('minigrid:MiniGrid-Empty-5x5-v0', max_steps=2))),
      seed=0)
  env.reset()
  env.step(np.int64(0))
  last = env.step(np.int64(0))  # turning in place until the time limit
  assert last.step_type == ts.StepType.LAST and last.discount == 1.0
  assert env.step(np.int64(0)).step_type == ts.StepType.FIRST  # auto-reset
  env = gymnasium_env.GymnasiumEnvironment(
      gymnasium_env.make('minigrid:MiniGrid-Empty-5x5-v0', FULL), seed=0)
  env.reset()
  # The agent starts at (1, 1) facing right, the goal is at (3, 3): 2, 2, turn, 2, 2.
  steps = [env.step(np.int64(a)) for a in (2, 2, 1, 2, 2)]
  assert [s.step_type for s in steps[:-1]] == [ts.StepType.MID] * 4
  assert steps[-1].step_type == ts.StepType.LAST and steps[-1].discount == 0.0
  assert steps[-1].reward == pytest.approx(1 - 0.9 * 5 / 100)


class _Shifted(gym.Env):
  """Actions 1..3 (Discrete(3, start=1)); the observation is the last action taken."""
  observation_space = gym.spaces.Box(0.0, 3.0, (1,), np.float32)
  action_space = gym.spaces.Discrete(3, start=1)

  def reset(self, seed=None, options=None):
    super().reset(seed=seed)
    return np.zeros(1, np.float32), {}

  def step(self, action):
    assert action in (1, 2, 3)
    return np.full(1, action, np.float32), 0.0, False, False, {}


def test_a_discrete_space_that_starts_elsewhere_becomes_actions_0_to_n_minus_1():
  env = gymnasium_env.GymnasiumEnvironment(_Shifted())
  assert (env.action_spec().minimum, env.action_spec().maximum) == (0, 2)
  env.reset()
  assert env.step(np.int64(0)).observation[0] == 1.0
  assert env.step(np.int64(2)).observation[0] == 3.0


def test_spaces_the_agents_cannot_take_end_in_one_sentence():
  with pytest.raises(SpecError, match='discrete actions, and this environment\'s action '
                     'space is Box'):
    gymnasium_env.GymnasiumEnvironment(gym.make('MountainCarContinuous-v0'))
  with pytest.raises(SpecError, match=r'a Box space\), and this environment\'s observation '
                     r'space is Dict.*ImgObsWrapper'):
    gymnasium_env.GymnasiumEnvironment(gym.make('minigrid:MiniGrid-Empty-5x5-v0'))
  with pytest.raises(SpecError, match="cannot make 'NoSuchTask-v0'"):
    gymnasium_env.make('NoSuchTask-v0')


def test_without_the_optional_packages_a_gymnasium_task_says_how_to_install_them(
    monkeypatch):
  monkeypatch.setattr(gymnasium_env, 'gymnasium', None)
  with pytest.raises(MissingDependency, match='pip install --no-deps -r '
                     'requirements-gymnasium.txt'):
    gymnasium_task.minari_dataset()


# -- Minari datasets ------------------------------------------------------------------


@pytest.fixture(scope='module')
def dataset_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('minari'))
  gymnasium_task.collect(DOORKEY, FULL, num_transitions=600, seed=0, root=root,
                         dataset_id='test/doorkey-v0')
  return root


def test_a_collected_dataset_reads_back_exactly(dataset_root):
  dataset = minari.MinariDataset(os.path.join(dataset_root, 'test/doorkey-v0', 'data'))
  env = gymnasium_env.make(DOORKEY, FULL)
  episodes = gymnasium_task.collect_episodes(env, 600, seed=0)  # the same collection again
  stored = list(dataset.iterate_episodes())
  assert len(stored) == len(episodes) and dataset.total_steps == 600
  for mine, theirs in zip(episodes, stored):
    # minari's HDF5 storage would return small uint8 grids as JPEG bytes; arrow keeps them.
    np.testing.assert_array_equal(np.stack(mine['observations']), theirs.observations)
    np.testing.assert_array_equal(mine['actions'], theirs.actions)
    np.testing.assert_array_equal(mine['terminations'], theirs.terminations)
  assert stored[-1].truncations[-1]  # the last episode is cut at 600 transitions
  assert 'FullyObsWrapper' in str(dataset.env_spec.additional_wrappers)
  remade = gymnasium_env.make_from_spec(dataset.env_spec)
  assert remade.observation_space.shape == (5, 5, 3)
  np.testing.assert_array_equal(remade.reset(seed=0)[0], stored[0].observations[0])


def test_episodes_become_rows_whose_pairs_are_the_transitions():
  episode = lambda actions, terminated: types.SimpleNamespace(
      observations=np.arange(len(actions) + 1, dtype=np.uint8)[:, None] * 10,
      actions=np.array(actions) + 1, rewards=np.arange(len(actions), dtype=np.float64),
      terminations=[False] * (len(actions) - 1) + [terminated],
      truncations=[False] * (len(actions) - 1) + [not terminated])
  rows = gymnasium_task.episodes_to_rows([episode([0, 2], True), episode([1], False)],
                                         action_start=1)
  F, M, L = ts.StepType.FIRST, ts.StepType.MID, ts.StepType.LAST
  np.testing.assert_array_equal(rows['step_type'], [F, M, L, F, L])
  np.testing.assert_array_equal(rows['next_step_type'], [M, L, F, L, F])
  np.testing.assert_array_equal(rows['observation'][:, 0], [0, 10, 20, 0, 10])
  np.testing.assert_array_equal(rows['action'], [0, 2, 0, 1, 0])
  np.testing.assert_array_equal(rows['reward'], [0, 1, 0, 0, 0])
  # Discount 0 only where the episode terminated; the truncated one bootstraps.
  np.testing.assert_array_equal(rows['discount'], [1, 0, 1, 1, 1])
  np.testing.assert_array_equal(data.transition_rows(rows), [0, 1, 3])


def test_minari_data_samples_the_dataset_s_own_transitions(dataset_root):
  dataset = minari.MinariDataset(os.path.join(dataset_root, 'test/doorkey-v0', 'data'))
  environment = gymnasium_env.GymnasiumEnvironment(gymnasium_env.make_from_spec(
      dataset.env_spec))
  with gin.unlock_config():
    gin.bind_parameter('minari_dataset.root', dataset_root)
    gin.bind_parameter('minari_dataset.dataset_id', 'test/doorkey-v0')
  try:
    offline = gymnasium_task.MinariData(environment)
    batch = next(iter(offline.transitions()))
  finally:
    gin.clear_config()
  assert offline.metadata['transitions'] == 600
  assert batch.observation.shape == (32, 5, 5, 3) and batch.observation.dtype.name == 'float32'
  pairs = {(o.tobytes(), int(a), n.tobytes()) for o, a, n in zip(
      offline.arrays['observation'][:-1].astype(np.float32), offline.arrays['action'][:-1],
      offline.arrays['observation'][1:].astype(np.float32))}
  for o, a, n in zip(batch.observation.numpy(), batch.action.numpy(),
                     batch.next_observation.numpy()):
    assert (o.tobytes(), int(a), n.tobytes()) in pairs


def test_datasets_it_cannot_use_end_in_one_sentence(dataset_root, tmp_path, monkeypatch):
  with pytest.raises(DatasetError, match='No Minari dataset test/none-v0 in'):
    gymnasium_task.minari_dataset(dataset_id='test/none-v0', root=dataset_root)
  with pytest.raises(DatasetError, match='already holds a dataset'):
    gymnasium_task.collect(DOORKEY, FULL, 10, 0, dataset_root, 'test/doorkey-v0')
  # Continuous actions: written without our collector's check, refused on reading.
  env = gym.make('MountainCarContinuous-v0')
  observation, _ = env.reset(seed=0)
  episode = dict(observations=[observation], actions=[], rewards=[], terminations=[],
                 truncations=[])
  for _ in range(3):
    action = env.action_space.sample()
    observation, reward, terminated, truncated, _ = env.step(action)
    for key, value in (('observations', observation), ('actions', action),
                       ('rewards', reward), ('terminations', terminated),
                       ('truncations', truncated)):
      episode[key].append(value)
  episode['truncations'][-1] = True
  monkeypatch.chdir(tmp_path)  # a relative root, as bin/collect's data/minari
  gymnasium_task.write_dataset('minari', 'test/car-v0', env, [episode], 0)
  dataset = gymnasium_task.minari_dataset(dataset_id='test/car-v0', root='minari')
  with pytest.raises(SpecError, match='discrete actions'):
    gymnasium_task.check_spaces(dataset, doorkey())
  # A damaged dataset.
  with open(os.path.join('minari', 'test/car-v0', 'data', 'metadata.json'), 'w') as stream:
    stream.write('{not json')
  with pytest.raises(DatasetError, match='cannot be read .*collect it again'):
    gymnasium_task.minari_dataset(dataset_id='test/car-v0', root='minari')


# -- evaluation -----------------------------------------------------------------------


def test_the_optimal_return_is_the_shortest_path_s():
  env = gymnasium_env.make('minigrid:MiniGrid-Empty-5x5-v0', FULL)
  # From (1, 1) facing right to the goal at (3, 3): 5 steps of the 100 allowed.
  assert gymnasium_task.minigrid_optimal_return(env, seed=0) == pytest.approx(1 - 0.9 * 5 / 100)
  env = gymnasium_env.make(DOORKEY, FULL)
  best = gymnasium_task.minigrid_optimal_return(env, seed=0)
  # Key, door and goal: more steps than the empty room's, fewer than a tour of the grid.
  steps = round((1 - best) / 0.9 * env.unwrapped.max_steps)
  assert 6 <= steps <= 20


def test_the_task_survey_reports_the_random_policy_and_the_optimum():
  # Empty-5x5 has one layout, its goal 5 steps away; the random policy is seeded.
  tool = os.path.join(REPO, 'bin', 'diagnostics', 'minigrid_tasks')
  result = subprocess.run(
      [sys.executable, tool, '--tasks', 'Empty-5x5', '--episodes', '4',
       '--optimal_episodes', '2'], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  header, _, line = result.stdout.splitlines()
  assert header.endswith('| distinct layouts of 4 |')
  env = gymnasium_env.make('minigrid:MiniGrid-Empty-5x5-v0', FULL)
  rng = np.random.default_rng(0)
  returns = [gymnasium_task.play(evaluation.random_act(rng, 7), [env], [seed])[0]
             for seed in range(4)]
  assert line == (f'| Empty-5x5 | {np.mean(returns):.3f} | '
                  f'{np.mean(np.array(returns) > 0):.0%} | 5.0 | 1 |')


def test_play_steps_every_environment_to_its_end_and_sums_the_rewards():
  envs = [gymnasium_env.make('minigrid:MiniGrid-Empty-5x5-v0', FULL) for _ in range(3)]
  plan = iter([[2], [2], [1], [2], [2]])
  forward = lambda observations: np.full(len(observations), 2)
  # Always forward: the agent walks into the wall and the time limit (100 steps) ends it.
  np.testing.assert_array_equal(gymnasium_task.play(forward, envs, [0, 1, 2]), [0, 0, 0])
  returns = gymnasium_task.play(lambda obs: np.array(next(plan)), envs[:1], [0])
  assert returns[0] == pytest.approx(1 - 0.9 * 5 / 100)
  assert evaluation.HELD_OUT_SEED > 1000  # held-out seeds lie far from datasets' seeds


def test_the_behaviour_counts_actions_and_what_the_episodes_reached():
  # Empty-5x5 from seed 0: forward, forward, right, forward, forward reaches the goal; the
  # second episode turns left until the time limit (100 steps).
  envs = [gymnasium_env.make('minigrid:MiniGrid-Empty-5x5-v0', FULL) for _ in range(2)]
  behaviour = gymnasium_task.MinigridBehaviour(envs)
  route = iter([2, 2, 1, 2, 2])
  act = lambda observations: np.array([next(route), 0] if len(observations) == 2 else [0])
  gymnasium_task.play(act, envs, [0, 0], behaviour.record)
  summary = behaviour.summary()
  assert summary['actions'] == dict(left=100, right=1, forward=4, pickup=0, drop=0, toggle=0,
                                    done=0)
  assert (summary['episodes_goal'], summary['episodes_carried'],
          summary['episodes_door_open']) == (0.5, 0.0, 0.0)

  # DoorKey: "pickup", then "left" until the time limit, carries the key only from a layout
  # whose agent starts facing it.
  def facing(env, seed):
    env.reset(seed=seed)
    cell = env.unwrapped.grid.get(*env.unwrapped.front_pos)
    return cell.type if cell else None

  env = gymnasium_env.make(DOORKEY, FULL)
  seeds = [next(s for s in range(200) if facing(env, s) == 'key'),
           next(s for s in range(200) if facing(env, s) != 'key')]
  envs = [gymnasium_env.make(DOORKEY, FULL) for _ in range(2)]
  behaviour = gymnasium_task.MinigridBehaviour(envs)
  calls = iter(range(10_000))
  act = lambda observations: np.full(len(observations), 3 if next(calls) == 0 else 0)
  gymnasium_task.play(act, envs, seeds, behaviour.record)
  summary = behaviour.summary()
  limit = envs[0].unwrapped.max_steps
  assert summary['actions']['pickup'] == 2 and summary['actions']['left'] == 2 * limit - 2
  assert (summary['episodes_carried'], summary['episodes_door_open'],
          summary['episodes_goal']) == (0.5, 0.0, 0.0)


# -- bin/train on the MiniGrid task ----------------------------------------------------


def test_bin_train_trains_evaluates_and_exports_on_minigrid(tmp_path):
  params = ['minari_dataset.num_transitions = 300', f"minari_dataset.root = '{tmp_path}'",
            'train.epochs = 1', 'train.steps_per_epoch = 4', 'train.eval_depths = (0, 1)',
            'train.log_interval = 2', 'EpisodeEvaluator.num_episodes = 2']
  command = [sys.executable, os.path.join(REPO, 'bin', 'train'), '--gin_file',
             os.path.join(REPO, 'gin', 'minigrid.gin'), '--root_dir', str(tmp_path / 'run')]
  for param in params:
    command += ['--gin_param', param]
  result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'collecting 300 transitions of minigrid:MiniGrid-DoorKey-6x6-v0' in result.stdout
  assert 'done after 4 updates: held-out return by planning depth' in result.stdout
  with open(tmp_path / 'run' / 'evaluations.csv') as stream:
    rows = list(csv.DictReader(stream))
  assert [(r['step'], r['depth']) for r in rows] == [('4', '0'), ('4', '1')]
  optimal = float(rows[0]['optimal_held_out_score'])
  env = gymnasium_env.make('minigrid:MiniGrid-DoorKey-6x6-v0', FULL)
  assert optimal == pytest.approx(np.mean([gymnasium_task.minigrid_optimal_return(
      env, evaluation.HELD_OUT_SEED + i) for i in range(2)]))
  for row in rows:
    assert 0.0 <= float(row['held_out_score']) <= optimal
  # bin/evaluate plays the exported policy (its observations are uint8) on the task.
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'bin', 'evaluate'), '--policy_dir',
       str(tmp_path / 'run' / 'policies' / 'depth_1'), '--env_id',
       'minigrid:MiniGrid-DoorKey-6x6-v0', '--num_episodes', '2',
       *(arg for wrapper in FULL for arg in ('--wrapper', wrapper))],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads(result.stdout)
  assert 0.0 <= summary['score'] <= summary['optimal'] <= 1.0 and summary['num_episodes'] == 2
  assert set(summary['actions']) == {'left', 'right', 'forward', 'pickup', 'drop', 'toggle',
                                     'done'} and sum(summary['actions'].values()) >= 2
  assert (summary['episodes_goal'] > 0) == (summary['score'] > 0)
  # The model probe rebuilds the run's task from its operative config.
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'bin', 'diagnostics', 'probe_model'), '--root_dir',
       str(tmp_path / 'run'), '--size', '8', '--depth', '1', '--batches', '2',
       '--measured', '16'], capture_output=True, text=True, cwd=REPO, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  probed = json.loads(result.stdout[result.stdout.index('{'):])
  dataset = minari.MinariDataset(os.path.join(
      tmp_path, gymnasium_task.default_dataset_id(
          'minigrid:MiniGrid-DoorKey-6x6-v0', FULL, 300, 0), 'data'))
  rewarded = sum(int(np.sum(e.rewards > 0)) for e in dataset.iterate_episodes())
  assert probed['step'] == 4 and probed['rewarded_transitions'] == min(rewarded, 8)
  assert np.isfinite(probed['probe_step_reward']) and probed['q_slope_norm'] > 0
