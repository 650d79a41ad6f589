"""tf.distribute: mirrored training on two logical CPUs equals one device on the same
global batch, and bin/train runs under --strategy mirrored.

The comparison runs in float64. In float32 the two differ by rounding (~1e-7, sums taken
in another order), and a rounding-sized change of the weights can flip an argmax (double
DQN's a', the planner's best path), which moves the next losses by ~1e-3: CI once saw
that on one machine. In float64 rounding is ~1e-16, and a wrong scaling of the gradients
or losses still shows at once.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from train_runs import REPO, train_command

# Runs in a fresh process: logical devices must be set before TensorFlow starts.
SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.keras.backend.set_floatx('float64')
from tf_agents.environments import tf_py_environment
from gmas_tf import data, runner
from gmas_tf.agents import gmas_agent
from gmas_tf.envs import maze

env = maze.MazeEnvironment(seed=0)
arrays, _ = data.collect(env, 600, 0)
tf.random.set_seed(0)
to_float64 = lambda t: tf.cast(t, tf.float64) if t.dtype == tf.float32 else t
batches = [tf.nest.map_structure(to_float64, batch) for batch in
           data.make_dataset(data.make_replay_buffer(arrays), env.sprites).take(4)]
tf_env = tf_py_environment.TFPyEnvironment(env)

def losses(strategy, scheme):
  tf.keras.utils.set_random_seed(1)
  with strategy.scope():
    agent = gmas_agent.GmasAgent(tf_env.time_step_spec(), tf_env.action_spec(),
                                 update_scheme=scheme, distance='cosine', training_depth=1,
                                 target_update_period=2)
    agent.initialize()
  step = runner.distributed_train_step(agent, strategy)
  result = []
  for batch in batches:
    shards = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))
    info = step(next(iter(shards)))
    result.append({k: float(v) for k, v in info.extra.items()})
  weights = [float(tf.reduce_sum(v)) for v in agent.network('encoder').variables]
  return dict(losses=result, encoder=weights, replicas=strategy.num_replicas_in_sync,
              step=int(agent.train_step_counter.numpy()))

mirrored = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
print(json.dumps({scheme: dict(single=losses(tf.distribute.get_strategy(), scheme),
                               mirrored=losses(mirrored, scheme))
                  for scheme in ('joint', 'per_loss', 'deer')}))
"""


@pytest.fixture(scope='module')
def runs():
  result = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True,
                          cwd=REPO, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('scheme', ['joint', 'per_loss', 'deer'])
def test_mirrored_on_two_cpus_matches_one_device(runs, scheme):
  single, mirrored = runs[scheme]['single'], runs[scheme]['mirrored']
  assert (single['replicas'], mirrored['replicas']) == (1, 2)
  assert single['step'] == mirrored['step'] == 4
  for one, two in zip(single['losses'], mirrored['losses']):
    assert one.keys() == two.keys()
    for name in one:
      assert two[name] == pytest.approx(one[name], rel=1e-10, abs=1e-12), name
  np.testing.assert_allclose(mirrored['encoder'], single['encoder'], rtol=1e-10, atol=1e-12)
  # The updates did something: the losses of the last step differ from the first.
  assert single['losses'][0]['q'] != single['losses'][-1]['q']


def test_bin_train_under_mirrored_checkpoints_resumes_and_exports(tmp_path):
  def train(epochs, eval_depths):
    command = train_command(tmp_path / 'run', tmp_path / 'data', f'train.epochs = {epochs}',
                            f'train.eval_depths = {eval_depths}')
    return subprocess.run(command + ['--strategy', 'mirrored'], capture_output=True,
                          text=True, cwd=REPO, timeout=600)

  first = train(1, ())  # no evaluation: the second run evaluates the first's checkpoint
  assert first.returncode == 0, first.stderr[-3000:]
  second = train(2, (1,))
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'resuming from step 4' in second.stdout
  assert os.path.exists(tmp_path / 'run' / 'policies' / 'depth_1' / 'saved_model.pb')
  with open(tmp_path / 'run' / 'evaluations.csv') as stream:
    steps = [line.split(',')[1] for line in stream.read().splitlines()[1:]]
  assert steps == ['4', '8']
