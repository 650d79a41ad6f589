import pytest

from gmas_tf import benchmarking
from gmas_tf.agents import gmas_agent


def test_agents_are_built_by_name():
  agent, batches = benchmarking.agent_and_batches('gmas_cosine_depth3', 'per_loss', 500)
  assert isinstance(agent, gmas_agent.GmasAgent) and agent._training_depth == 3
  assert next(batches).observation.shape == (32, 48, 48, 1)
  with pytest.raises(ValueError, match='Unknown agent'):
    benchmarking.agent_and_batches('crar2', 'joint', 500)
