"""The agents, and `make_agent`, the one place that builds one."""

import gin
import tensorflow as tf

from gmas_tf.agents import crar_agent


@gin.configurable
def make_agent(time_step_spec, action_spec, agent_class=crar_agent.CrarAgent,
               strategy=None):
  """An initialized `agent_class` (CrarAgent, GmasAgent or a subclass, its arguments bound
  through gin) for an environment's specs, built in `strategy`'s scope if given."""
  with (strategy or tf.distribute.get_strategy()).scope():
    agent = agent_class(time_step_spec, action_spec)
    agent.initialize()
  return agent
