import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from gmas_tf import benchmarking
from gmas_tf import gymnasium_task
from gmas_tf import planning
from gmas_tf.agents import gmas_agent

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_agents_are_built_by_name():
  agent, batches = benchmarking.agent_and_batches('gmas_cosine_depth3', 'per_loss', 500)
  assert isinstance(agent, gmas_agent.GmasAgent) and agent._training_depth == 3
  assert next(batches).observation.shape == (32, 48, 48, 1)
  with pytest.raises(ValueError, match='Unknown agent'):
    benchmarking.agent_and_batches('crar2', 'joint', 500)


def test_forward_flops_by_hand():
  inputs = tf.keras.layers.Input((5, 5, 2))
  h = tf.keras.layers.Conv2D(4, 3, padding='same')(inputs)
  outputs = tf.keras.layers.Dense(3)(tf.keras.layers.Flatten()(h))
  # Conv: 25 positions x 3 x 3 x 2 x 4 multiply-adds; dense: 100 x 3; 2 FLOPs each.
  assert benchmarking.forward_flops(tf.keras.Model(inputs, outputs)) == 2 * (1800 + 300)


def test_tree_nodes_are_the_rows_the_planner_evaluates():
  rows = {'tau': 0, 'q': 0}

  def transition(x, one_hot):
    rows['tau'] += x.shape[0]
    return tf.linalg.matvec(one_hot, tf.constant([1.0, -2.0, 0.5, 3.0]))[:, None] + 0 * x

  def q_network(x):
    rows['q'] += x.shape[0]
    return x * tf.constant([1.0, -1.0, 0.5, 0.0])

  scalar = lambda x, one_hot: 0.5 + 0 * x[:, 0]
  model = planning.WorldModel(transition, scalar, scalar, num_actions=4)
  x = tf.constant([[0.3]])
  planning.q_by_depth(x, q_network, model, depth=5)
  assert rows == {'tau': 124, 'q': 125}  # 4 + 8 + 16 + 32 + 64, and Q at the root
  assert benchmarking.tree_nodes(5, 2, 4) == 124
  rows.update(tau=0, q=0)
  planning.best_paths(x, tf.constant([1]), q_network, model, depth=3)
  assert rows == {'tau': 7, 'q': 7} and benchmarking.tree_nodes(3, 2, 1) == 7


def test_planner_flops_sum_the_networks():
  agent, _ = benchmarking.agent_and_batches('crar', 'joint', 500)
  flops = {name: benchmarking.forward_flops(agent.network(name)) for name in
           ('encoder', 'transition', 'reward', 'discount', 'q_network')}
  # The encoder's convolutions (docs/DESIGN.md section 3): 2x2 1->8 and 2x2 8->16 on 48 x 48, 3x3
  # 16->32 on 24 x 24, 1x1 32->3 on 8 x 8: 7.8 MFLOP, the figure.
  assert flops['encoder'] == 2 * (48 * 48 * (4 * 8 + 4 * 8 * 16) + 24 * 24 * 9 * 16 * 32
                                  + 8 * 8 * 32 * 3)
  expansion = flops['transition'] + flops['reward'] + flops['discount'] + flops['q_network']
  assert benchmarking.planner_flops(agent, 1) == (4 * expansion + flops['encoder']
                                                  + flops['q_network'])
  assert benchmarking.planner_flops(agent, 3, label=True) == 7 * expansion


def test_benchmarks_take_the_task_of_a_gin_file(tmp_path):
  dataset_root = str(tmp_path / 'minari')
  gymnasium_task.collect('minigrid:MiniGrid-DoorKey-5x5-v0',
                         gymnasium_task.MINIGRID_FULLY_OBSERVED, num_transitions=600, seed=0,
                         root=dataset_root, dataset_id='test/doorkey-v0')
  config = tmp_path / 'task.gin'
  config.write_text(f"include '{REPO}/gin/minigrid.gin'\n"
                    f"minari_dataset.root = '{dataset_root}'\n"
                    "minari_dataset.dataset_id = 'test/doorkey-v0'\n")
  agent, batches = benchmarking.agent_and_batches('gmas_cosine_depth3', 'per_loss',
                                                  gin_files=[str(config)])
  batch = next(batches)
  assert batch.observation.shape == (32, 5, 5, 3) and batch.action.shape == (32,)
  assert agent.world_model.num_actions == 7 and agent._training_depth == 3
  assert np.isfinite(agent.train(batch).loss.numpy())
  assert not gin.config_str()  # the task's config is cleared again
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'bin', 'benchmark'), '--gin_file', str(config),
       '--rounds', '1', '--steps', '1', '--batch_sizes', '3', '--depths', '1',
       '--output', str(tmp_path / 'benchmark.json')],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert result.returncode != 0 and 'set it to 0' in result.stderr
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'bin', 'benchmark'), '--gin_file', str(config),
       '--rounds', '1', '--steps', '1', '--batch_sizes', '3', '--depths', '1',
       '--evaluation_mazes', '0', '--output', str(tmp_path / 'benchmark.json')],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / 'benchmark.json') as stream:
    timings = json.load(stream)
  assert set(timings['planner_action_ms']) == {'depth1_batch3'}
  assert timings['ratio_to_crar']['crar'] == 1.0
