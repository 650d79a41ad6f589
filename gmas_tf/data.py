"""Offline datasets: collection by a random policy, storage on disk, and the replay buffer.

A dataset is a directory with two files:
  transitions.npz  the collected stream, one row per time step, in TF-Agents'
                   `Trajectory` layout (step_type, cells, action, next_step_type, reward,
                   discount); observations are stored as maze cell codes uint8 [n, n].
  metadata.json    format version, seed, number of transitions, environment config,
                   observation spec, sha256 of transitions.npz and the maze hashes.
The metadata is written last, each file under a temporary name and then renamed, so a
directory with metadata.json always holds a complete dataset.

Row t pairs with row t + 1 into a transition (s, a, r, terminal, s') unless row t's
next_step_type is FIRST: that marks the end of an episode, or the end of the data.
"""

import hashlib
import json
import math
import os
import tempfile
import zipfile
from typing import Dict, Optional

import gin
import numpy as np
import tensorflow as tf
from tf_agents.replay_buffers import tf_uniform_replay_buffer
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from gmas_tf.envs import maze
from gmas_tf.transitions import Transition
from gmas_tf.errors import DatasetError

FORMAT_VERSION = 1
DATA_FILE = 'transitions.npz'
METADATA_FILE = 'metadata.json'
FIELDS = ('step_type', 'cells', 'action', 'next_step_type', 'reward', 'discount')

# -- collection -----------------------------------------------------------------------


def collect(env: maze.MazeEnvironment, num_transitions: int, seed: int):
  """Runs a uniformly random policy for `num_transitions` transitions.

  Episodes run until all keys are collected (no step cap, as deer); the last one is cut
  when the count is reached. Returns (arrays keyed by FIELDS, list of maze hashes).
  """
  rng = np.random.default_rng([seed, 1])  # a stream apart from the environment's
  rows = {name: [] for name in FIELDS}
  maze_hashes = []

  def append(step_type, cells, action, next_step_type, reward, discount):
    for name, value in zip(FIELDS, (step_type, cells, action, next_step_type, reward,
                                    discount)):
      rows[name].append(value)

  time_step = env.reset()
  maze_hashes.append(env.maze_hash)
  count = 0
  while True:
    cells = env.cells()
    if time_step.is_last() or count == num_transitions:
      append(time_step.step_type, cells, 0, ts.StepType.FIRST, 0.0, 1.0)
      if count == num_transitions:
        break
      time_step = env.reset()
      maze_hashes.append(env.maze_hash)
      continue
    action = int(rng.integers(env.action_spec().maximum + 1))
    next_step = env.step(action)
    append(time_step.step_type, cells, action, next_step.step_type, next_step.reward,
           next_step.discount)
    time_step = next_step
    count += 1

  dtypes = dict(step_type=np.uint8, cells=np.uint8, action=np.uint8,
                next_step_type=np.uint8, reward=np.float32, discount=np.float32)
  arrays = {name: np.asarray(rows[name], dtypes[name]) for name in FIELDS}
  return arrays, maze_hashes


# -- storage --------------------------------------------------------------------------


def _write_npz(path: str, arrays: Dict[str, np.ndarray]) -> None:
  """Like np.savez_compressed, with fixed timestamps so equal data gives equal bytes."""
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
    for name, array in arrays.items():
      info = zipfile.ZipInfo(name + '.npy', date_time=(1980, 1, 1, 0, 0, 0))
      info.compress_type = zipfile.ZIP_DEFLATED
      with archive.open(info, 'w') as stream:
        np.lib.format.write_array(stream, np.ascontiguousarray(array), allow_pickle=False)


def _atomic_write(directory: str, name: str, write) -> str:
  """Calls write(temporary_path) and renames the result to directory/name."""
  handle, temporary = tempfile.mkstemp(prefix=f'.{name}.', dir=directory)
  os.close(handle)
  try:
    write(temporary)
    os.replace(temporary, os.path.join(directory, name))
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)
  return os.path.join(directory, name)


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as stream:
    for block in iter(lambda: stream.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def observation_spec_dict(env: maze.MazeEnvironment) -> dict:
  spec = env.observation_spec()
  return dict(shape=list(spec.shape), dtype=np.dtype(spec.dtype).name)


def save(directory: str, arrays, maze_hashes, env: maze.MazeEnvironment, seed: int,
         num_transitions: int) -> dict:
  """Writes a dataset atomically; refuses to replace an existing one. Returns metadata."""
  if os.path.exists(os.path.join(directory, METADATA_FILE)):
    raise DatasetError(f'{directory} already holds a dataset; choose another --output_dir '
                       'or remove it first.')
  os.makedirs(directory, exist_ok=True)
  data_path = _atomic_write(directory, DATA_FILE, lambda path: _write_npz(path, arrays))
  metadata = dict(
      format_version=FORMAT_VERSION, seed=seed, num_transitions=num_transitions,
      num_rows=int(len(arrays['action'])), environment=env.config(),
      observation_spec=observation_spec_dict(env), sha256=_sha256(data_path),
      maze_hashes=list(maze_hashes))

  def write_metadata(path):
    with open(path, 'w') as stream:
      json.dump(metadata, stream, indent=1, sort_keys=True)

  _atomic_write(directory, METADATA_FILE, write_metadata)
  return metadata


def load(directory: str, env: maze.MazeEnvironment):
  """Reads and verifies a dataset. Returns (arrays keyed by FIELDS, metadata).

  Raises DatasetError, with one sentence saying what to do, when the dataset is missing,
  corrupt, of another format version, or made for another environment configuration.
  """
  metadata_path = os.path.join(directory, METADATA_FILE)
  data_path = os.path.join(directory, DATA_FILE)
  if not os.path.exists(metadata_path) or not os.path.exists(data_path):
    raise DatasetError(f'No dataset in {directory}: make one with '
                       f'`bin/collect --output_dir {directory}`.')
  try:
    with open(metadata_path) as stream:
      metadata = json.load(stream)
    version = metadata['format_version']
  except (ValueError, KeyError, TypeError) as error:
    raise DatasetError(f'{metadata_path} is corrupt ({error}); collect the dataset again.'
                       ) from None
  if version != FORMAT_VERSION:
    raise DatasetError(f'{directory} has dataset format {version}, this code reads '
                       f'{FORMAT_VERSION}; collect the dataset again.')
  if _sha256(data_path) != metadata.get('sha256'):
    raise DatasetError(f'{data_path} does not match its checksum (corrupt or modified); '
                       'collect the dataset again.')
  expected = dict(environment=env.config(), observation_spec=observation_spec_dict(env))
  for key, value in expected.items():
    if metadata.get(key) != value:
      raise DatasetError(
          f'The dataset in {directory} was collected with {key} {metadata.get(key)}, but '
          f'the configured environment has {value}; collect a dataset for this config.')
  try:
    with np.load(data_path, allow_pickle=False) as archive:
      arrays = {name: archive[name] for name in FIELDS}
  except (ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
    raise DatasetError(f'{data_path} cannot be read ({error}); collect the dataset again.'
                       ) from None
  return arrays, metadata


# -- replay buffer --------------------------------------------------------------------


def data_spec(observations: np.ndarray):
  """The replay buffer's item: a `Trajectory` whose observation is one row of
  `observations` (the maze's cell codes [n, n], or any task's stored observation)."""
  step_type = tensor_spec.TensorSpec((), tf.int32, 'step_type')
  return trajectory.Trajectory(
      step_type=step_type,
      observation=tensor_spec.TensorSpec(observations.shape[1:], observations.dtype,
                                         'observation'),
      action=tensor_spec.TensorSpec((), tf.int32, 'action'),
      policy_info=(),
      next_step_type=step_type,
      reward=tensor_spec.TensorSpec((), tf.float32, 'reward'),
      discount=tensor_spec.TensorSpec((), tf.float32, 'discount'))


@gin.configurable
def make_replay_buffer(arrays, num_lanes: int = 512):
  """A TFUniformReplayBuffer holding the stream, filled with few `add_batch` calls.

  `arrays` are keyed by FIELDS: the maze's observations are its `cells`; any other task's
  are keyed `observation`.

  The stream is cut into `num_lanes` equal lanes (the buffer's batch dimension) that
  overlap by one row, so every consecutive pair of rows lies in exactly one lane and
  `as_dataset(num_steps=2)` can sample it. The last lane is padded with end-of-data rows
  (next_step_type FIRST), which no valid transition starts from.
  """
  num_rows = len(arrays['action'])
  num_lanes = max(1, min(num_lanes, num_rows - 1))
  pairs_per_lane = math.ceil((num_rows - 1) / num_lanes)
  # index[j, k] = row at position j of lane k; -1 marks padding.
  index = np.arange(num_lanes)[None, :] * pairs_per_lane + np.arange(pairs_per_lane + 1)[:, None]
  index = np.where(index < num_rows, index, -1)
  padded = {name: np.concatenate([array, array[-1:]]) for name, array in arrays.items()}
  padded['next_step_type'][-1] = ts.StepType.FIRST
  observation = 'cells' if 'cells' in arrays else 'observation'
  spec = data_spec(arrays[observation])
  buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
      spec, batch_size=num_lanes, max_length=pairs_per_lane + 1)
  for position in index:
    rows = {name: array[position] for name, array in padded.items()}
    buffer.add_batch(trajectory.Trajectory(
        step_type=tf.constant(rows['step_type'], tf.int32),
        observation=tf.constant(rows[observation]),
        action=tf.constant(rows['action'], tf.int32),
        policy_info=(),
        next_step_type=tf.constant(rows['next_step_type'], tf.int32),
        reward=tf.constant(rows['reward']),
        discount=tf.constant(rows['discount'])))
  return buffer


def render_cells_tf(cells: tf.Tensor, sprites: np.ndarray) -> tf.Tensor:
  """TensorFlow twin of render.render_cells: uint8 [..., n, n] -> float32 [..., n*p, n*p, 1]."""
  pixels = tf.gather(tf.constant(sprites), tf.cast(cells, tf.int32))  # [..., n, n, p, p]
  rank = len(pixels.shape)
  order = list(range(rank - 4)) + [rank - 4, rank - 2, rank - 3, rank - 1]
  pixels = tf.transpose(pixels, order)  # [..., n, p, n, p]
  side = pixels.shape[-4] * pixels.shape[-3]
  return tf.reshape(pixels, tf.concat([tf.shape(pixels)[:-4], [side, side, 1]], 0))


def to_transition(pairs: trajectory.Trajectory, sprites: Optional[np.ndarray]) -> Transition:
  """Turns sampled row pairs (each field [B, 2, ...]) into a `Transition`; observations are
  rendered with the maze's `sprites`, or, without them, cast to float32 as they are."""
  if sprites is None:
    render = lambda observation: tf.cast(observation, tf.float32)
  else:
    render = lambda cells: render_cells_tf(cells, sprites)
  return Transition(
      observation=render(pairs.observation[:, 0]),
      action=pairs.action[:, 0],
      reward=pairs.reward[:, 0],
      terminal=tf.cast(tf.equal(pairs.discount[:, 0], 0.0), tf.float32),
      next_observation=render(pairs.observation[:, 1]))


def transition_rows(arrays) -> np.ndarray:
  """The rows i for which rows i and i + 1 form a transition (row i ends no episode)."""
  return np.flatnonzero(arrays['next_step_type'][:-1] != ts.StepType.FIRST)


def key_transitions(arrays):
  """The dataset's key pickups (reward > 0) alone, as a stream of two-row episodes.

  Each pickup's row and the row after it are kept, and that second row is marked as ending
  its episode (next_step_type FIRST), so the only valid pairs are the pickups themselves.
  """
  rows = transition_rows(arrays)
  rows = rows[arrays['reward'][rows] > 0]
  index = np.stack([rows, rows + 1], axis=1).reshape(-1)
  kept = {name: array[index] for name, array in arrays.items()}
  kept['next_step_type'][1::2] = ts.StepType.FIRST
  return kept


@gin.configurable
def make_dataset(buffer, sprites: Optional[np.ndarray], batch_size: int = 32,
                 key_fraction: float = 0.0, key_arrays=None) -> tf.data.Dataset:
  """Batches of `Transition`s sampled uniformly from the valid pairs of the buffer (its
  observations rendered by `to_transition`).

  With key_fraction > 0 (a diagnostic, not the paper's method), each transition is instead
  drawn with that probability from `key_arrays` (the `key_transitions` of the data), so key
  pickups, about 0.6% of a random policy's transitions, are shown more often.
  Sampling follows TensorFlow's global seed (`tf.random.set_seed`).
  """
  def valid_pairs(source):
    return source.as_dataset(sample_batch_size=batch_size, num_steps=2).unbatch().filter(
        lambda pairs, _: tf.not_equal(pairs.next_step_type[0], ts.StepType.FIRST))

  dataset = valid_pairs(buffer)
  if key_fraction:
    if key_arrays is None or not len(key_arrays['action']):
      raise DatasetError(f'key_fraction = {key_fraction} needs key pickups, and the dataset '
                         'holds none.')
    dataset = tf.data.Dataset.sample_from_datasets(
        [dataset, valid_pairs(make_replay_buffer(key_arrays))],
        [1.0 - key_fraction, key_fraction])
  dataset = dataset.batch(batch_size, drop_remainder=True)
  dataset = dataset.map(lambda pairs, _: to_transition(pairs, sprites))
  return dataset.prefetch(tf.data.AUTOTUNE)


def describe(directory: str, arrays, metadata: dict, seconds: float) -> str:
  """A short human-readable summary of a dataset just collected."""
  episodes_done = int(np.sum(arrays['discount'] == 0.0))
  size_mb = os.path.getsize(os.path.join(directory, DATA_FILE)) / 2**20
  steps = metadata['num_transitions']
  return (f'{steps} transitions over {len(metadata["maze_hashes"])} mazes '
          f'({episodes_done} finished, mean length {steps / max(episodes_done, 1):.0f} steps) '
          f'in {seconds:.1f} s; {size_mb:.2f} MiB at {directory}')
