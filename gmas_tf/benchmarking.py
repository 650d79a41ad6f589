"""A named agent beside a small dataset of its environment: what bin/profile_step and
bin/benchmark_layouts time."""

from typing import Iterator, Tuple

from tf_agents.environments import tf_py_environment

from gmas_tf import data
from gmas_tf.agents import crar_agent
from gmas_tf.agents import gmas_agent
from gmas_tf.envs import maze


def agent_and_batches(name: str, update_scheme: str,
                      num_transitions: int = 5000) -> Tuple[crar_agent.CrarAgent, Iterator]:
  """name 'crar' or 'gmas_cosine_depthD' (the paper's alpha 0.05), initialized, and an
  iterator of training batches from num_transitions random-policy transitions (seed 0)."""
  env = maze.MazeEnvironment(seed=0)
  arrays, _ = data.collect(env, num_transitions, 0)
  batches = iter(data.make_dataset(data.make_replay_buffer(arrays), env.sprites))
  tf_env = tf_py_environment.TFPyEnvironment(env)
  specs = (tf_env.time_step_spec(), tf_env.action_spec())
  if name == 'crar':
    agent = crar_agent.CrarAgent(*specs, update_scheme=update_scheme)
  elif name.startswith('gmas_cosine_depth'):
    agent = gmas_agent.GmasAgent(*specs, update_scheme=update_scheme, distance='cosine',
                                 alpha=0.05, training_depth=int(name[len('gmas_cosine_depth'):]))
  else:
    raise ValueError(f"Unknown agent {name!r}: 'crar' or 'gmas_cosine_depthD'.")
  agent.initialize()
  return agent, batches
