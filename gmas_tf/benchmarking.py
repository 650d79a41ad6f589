"""A named agent beside training batches of its task, the maze's or any gin-configured one
(what bin/benchmark, bin/diagnostics/profile_step and bin/diagnostics/benchmark_layouts
time), and the arithmetic of the planner's tree (what bin/benchmark divides its times by)."""

import os
from typing import Iterator, Sequence, Tuple

import gin
import numpy as np
import tensorflow as tf
from tf_agents.environments import py_environment
from tf_agents.environments import tf_py_environment

from gmas_tf import agents
from gmas_tf import cli
from gmas_tf import data
from gmas_tf import runner
from gmas_tf.agents import crar_agent
from gmas_tf.envs import maze


def named_agent(name: str, time_step_spec, action_spec,
                update_scheme: str) -> crar_agent.CrarAgent:
  """'crar' (gin/crar.gin) or 'gmas_cosine_depthD' (gin/gmas.gin at training depth D) under
  `update_scheme`, built by `agents.make_agent` as bin/train builds it; the gin config is
  cleared before and after."""
  if name == 'crar':
    gin_file, bindings = 'crar.gin', []
  elif name.startswith('gmas_cosine_depth'):
    gin_file = 'gmas.gin'
    bindings = [f'GmasAgent.training_depth = {int(name[len("gmas_cosine_depth"):])}']
  else:
    raise ValueError(f"Unknown agent {name!r}: 'crar' or 'gmas_cosine_depthD'.")
  gin.clear_config()
  cli.parse_gin([os.path.join(cli.REPO_ROOT, 'gin', gin_file)],
                bindings + [f"CrarAgent.update_scheme = '{update_scheme}'"])
  try:
    return agents.make_agent(time_step_spec, action_spec, runner.configured('agent_class'))
  finally:
    gin.clear_config()


def task_and_batches(gin_files: Sequence[str] = (), num_transitions: int = 5000
                     ) -> Tuple[py_environment.PyEnvironment, Iterator]:
  """An environment and an iterator of its training batches: the task the gin files
  configure (`train.environment_fn` and `train.data_fn`, its data as a run reads them), or
  without gin files the maze with num_transitions random-policy transitions (seed 0). The
  gin config is cleared before and after."""
  gin.clear_config()
  if not gin_files:
    env = maze.MazeEnvironment(seed=0)
    arrays, _ = data.collect(env, num_transitions, 0)
    return env, iter(data.make_dataset(data.make_replay_buffer(arrays), env.sprites))
  cli.parse_gin(gin_files, [])
  try:
    env, offline_data = runner.configured_task()
    return env, iter(offline_data.transitions())
  finally:
    gin.clear_config()


def agent_and_batches(name: str, update_scheme: str, num_transitions: int = 5000,
                      gin_files: Sequence[str] = ()
                      ) -> Tuple[crar_agent.CrarAgent, Iterator]:
  """`named_agent(name)`, initialized, for `task_and_batches(gin_files, num_transitions)`,
  and that iterator."""
  env, batches = task_and_batches(gin_files, num_transitions)
  tf_env = tf_py_environment.TFPyEnvironment(env)
  return named_agent(name, tf_env.time_step_spec(), tf_env.action_spec(), update_scheme), batches


def forward_flops(model: tf.keras.Model) -> int:
  """Floating-point operations of one sample's forward pass through the model's
  convolutions and dense layers, a multiply-add counted as 2; biases, activations and
  pooling are left out (under 1% in CRAR's networks)."""
  total = 0
  for layer in model.layers:
    if isinstance(layer, tf.keras.layers.Conv2D):
      _, height, width, _ = layer.output_shape
      total += 2 * height * width * int(np.prod(layer.kernel.shape))
    elif isinstance(layer, tf.keras.layers.Dense):
      total += 2 * int(np.prod(layer.kernel.shape))
  return total


def tree_nodes(depth: int, branching: int, root_actions: int) -> int:
  """Nodes below one root of the planner's tree (planning._grow): the root expands
  root_actions actions, every node above the leaves its top `branching`. Each node is one
  row through tau, rho and g (the expansion that made it) and one through Q."""
  return sum(root_actions * branching ** level for level in range(depth))


def planner_flops(agent: crar_agent.CrarAgent, depth: int, label: bool = False) -> int:
  """Forward FLOPs per root of the agent's planner tree (its branching and actions): a
  policy's action (the encoder and Q at the root, every action expanded), or with `label`
  the tree GMAS's label grows under the taken action alone to find its best paths."""
  expansion = sum(forward_flops(agent.network(name)) for name in
                  ('transition', 'reward', 'discount', 'q_network'))
  root_actions = 1 if label else agent.world_model.num_actions
  flops = tree_nodes(depth, agent.branching, root_actions) * expansion
  if not label:
    flops += forward_flops(agent.network('encoder')) + forward_flops(agent.network('q_network'))
  return flops
