import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from gmas_tf import data
from gmas_tf import maze_task
from gmas_tf.envs import maze

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_TRANSITIONS = 2500
SEED = 11


@pytest.fixture(scope='module')
def collected():
  env = maze.MazeEnvironment(seed=SEED)
  arrays, hashes = data.collect(env, NUM_TRANSITIONS, SEED)
  return env, arrays, hashes


@pytest.fixture
def dataset_dir(tmp_path, collected):
  env, arrays, hashes = collected
  data.save(str(tmp_path / 'ds'), arrays, hashes, env, SEED, NUM_TRANSITIONS)
  return str(tmp_path / 'ds')


def env_transitions(arrays):
  """Replays the recorded actions in a fresh environment with the same seed."""
  env = maze.MazeEnvironment(seed=SEED)
  step = env.reset()
  result = []
  for row in range(len(arrays['action'])):
    if arrays['next_step_type'][row] == 0:  # end of an episode or of the data
      if row + 1 < len(arrays['action']):
        step = env.reset()
      continue
    action = int(arrays['action'][row])
    next_step = env.step(np.int32(action))
    result.append((step.observation, action, float(next_step.reward),
                   float(next_step.is_last()), next_step.observation))
    step = next_step
  return result


def key(observation, action, reward, terminal, next_observation):
  digest = hashlib.sha1(np.asarray(observation, np.float32).tobytes())
  digest.update(np.asarray(next_observation, np.float32).tobytes())
  return digest.hexdigest(), int(action), round(float(reward), 4), float(terminal)


def unbatch(transition):
  return [key(*fields) for fields in zip(*(t.numpy() for t in transition))]


def test_collect_counts_and_episode_structure(collected):
  _, arrays, hashes = collected
  valid = arrays['next_step_type'] != 0
  assert valid.sum() == NUM_TRANSITIONS
  finished = int(np.sum(arrays['discount'] == 0))
  assert finished >= 2  # the test covers episode boundaries
  assert len(hashes) == finished + 1
  assert np.all(arrays['reward'][valid & (arrays['discount'] == 0)] == np.float32(1.0))


def test_round_trip_through_replay_buffer(dataset_dir, collected):
  env, _, _ = collected
  arrays, _ = data.load(dataset_dir, maze.MazeEnvironment())
  truth = sorted(key(*t) for t in env_transitions(arrays))
  assert len(truth) == NUM_TRANSITIONS

  buffer = data.make_replay_buffer(arrays, num_lanes=7)
  dataset = iter(data.make_dataset(buffer, env.sprites, batch_size=500))
  first = next(dataset)
  assert first.observation.shape == (500, 48, 48, 1)
  assert first.observation.dtype == tf.float32
  sampled = set(unbatch(first))
  for _ in range(99):  # 50000 draws over 2500 pairs: each is seen with p > 1 - 1e-8
    sampled.update(unbatch(next(dataset)))
  # Every pair comes out, and nothing else: no pair spans two episodes or two lanes.
  assert sampled == set(truth)


def test_same_seed_gives_identical_bytes(tmp_path):
  outputs = []
  for name in ('a', 'b'):
    env = maze.MazeEnvironment(seed=5)
    arrays, hashes = data.collect(env, 600, 5)
    data.save(str(tmp_path / name), arrays, hashes, env, 5, 600)
    with open(tmp_path / name / data.DATA_FILE, 'rb') as stream:
      outputs.append(stream.read())
  assert outputs[0] == outputs[1]


def test_missing_dataset(tmp_path):
  with pytest.raises(data.DatasetError, match='No dataset'):
    data.load(str(tmp_path / 'nothing'), maze.MazeEnvironment())


def test_corrupt_data_file(dataset_dir):
  path = os.path.join(dataset_dir, data.DATA_FILE)
  with open(path, 'r+b') as stream:
    stream.seek(100)
    stream.write(b'\x00garbage\x00')
  with pytest.raises(data.DatasetError, match='checksum'):
    data.load(dataset_dir, maze.MazeEnvironment())


def test_corrupt_metadata(dataset_dir):
  with open(os.path.join(dataset_dir, data.METADATA_FILE), 'w') as stream:
    stream.write('{"format_version": ')
  with pytest.raises(data.DatasetError, match='corrupt'):
    data.load(dataset_dir, maze.MazeEnvironment())


def test_dataset_of_another_environment(dataset_dir):
  with pytest.raises(data.DatasetError, match='num_walls'):
    data.load(dataset_dir, maze.MazeEnvironment(num_walls=10))
  with pytest.raises(data.DatasetError, match='observation_spec'):
    metadata_path = os.path.join(dataset_dir, data.METADATA_FILE)
    with open(metadata_path) as stream:
      metadata = json.load(stream)
    metadata['observation_spec']['shape'] = [64, 64, 1]
    with open(metadata_path, 'w') as stream:
      json.dump(metadata, stream)
    data.load(dataset_dir, maze.MazeEnvironment())


def test_existing_dataset_is_never_overwritten(dataset_dir, collected):
  env, arrays, hashes = collected
  path = os.path.join(dataset_dir, data.DATA_FILE)
  before = open(path, 'rb').read()
  with pytest.raises(data.DatasetError, match='already holds'):
    data.save(dataset_dir, {k: v[:10] for k, v in arrays.items()}, hashes, env, 0, 9)
  assert open(path, 'rb').read() == before
  assert sorted(os.listdir(dataset_dir)) == sorted([data.DATA_FILE, data.METADATA_FILE])


def run_collect(*args):
  return subprocess.run([sys.executable, os.path.join(REPO, 'bin', 'collect'), *args],
                        capture_output=True, text=True, cwd=REPO, timeout=300)


def test_collect_cli_and_its_errors(tmp_path):
  out = str(tmp_path / 'cli')
  result = run_collect('--output_dir', out, '--num_transitions', '300', '--seed', '2',
                       '--preview', str(tmp_path / 'preview.png'))
  assert result.returncode == 0, result.stderr
  assert '300 transitions' in result.stdout
  assert os.path.getsize(tmp_path / 'preview.png') > 0
  data.load(out, maze.MazeEnvironment())

  again = run_collect('--output_dir', out, '--num_transitions', '300')
  assert again.returncode == 1
  assert 'error: ' in again.stderr and 'Traceback' not in again.stderr

  unknown = run_collect('--output_dir', str(tmp_path / 'x'), '--gin_param',
                        'MazeEnvironment.no_such_thing = 3')
  assert unknown.returncode == 1
  assert 'no_such_thing' in unknown.stderr and 'Traceback' not in unknown.stderr
  assert not os.path.exists(tmp_path / 'x')


def test_ensure_dataset_accepts_a_copy_saved_by_a_concurrent_run(tmp_path, monkeypatch):
  directory = str(tmp_path / 'shared')
  real_save = data.save

  def save_after_another_run(*args):
    real_save(*args)  # the other run of the sweep finishes first...
    return real_save(*args)  # ...so this one finds a dataset there

  monkeypatch.setattr(data, 'save', save_after_another_run)
  assert maze_task.ensure_dataset(directory, num_transitions=50, seed=3) == directory
  arrays, metadata = data.load(directory, maze.MazeEnvironment())
  assert metadata['num_transitions'] == 50 and metadata['seed'] == 3


def test_key_fraction_mixes_in_the_key_pickups_and_nothing_else(collected):
  env, arrays, _ = collected
  truth = set(key(*t) for t in env_transitions(arrays))
  pickups = {t for t in truth if t[2] > 0}
  assert len(pickups) >= 3
  tf.random.set_seed(0)
  only_keys = data.make_dataset(data.make_replay_buffer(arrays), env.sprites, batch_size=100,
                                key_fraction=1.0, key_arrays=data.key_transitions(arrays))
  assert set(t for batch in only_keys.take(3) for t in unbatch(batch)) == pickups
  dataset = data.make_dataset(data.make_replay_buffer(arrays), env.sprites, batch_size=500,
                              key_fraction=0.25, key_arrays=data.key_transitions(arrays))
  sampled = [t for batch in dataset.take(8) for t in unbatch(batch)]
  assert set(sampled) <= truth  # every sample is a real transition of the data
  share = np.mean([t in pickups for t in sampled])
  natural = len(pickups) / len(truth)
  # 25% from the pickups, plus their natural share of the rest; 4000 draws: s.e. < 0.007.
  assert abs(share - (0.25 + 0.75 * natural)) < 0.03, (share, natural)
  with pytest.raises(data.DatasetError, match='holds none'):
    data.make_dataset(data.make_replay_buffer(arrays), env.sprites, key_fraction=0.25,
                      key_arrays=data.key_transitions({**arrays, 'reward': 0 * arrays['reward']}))
