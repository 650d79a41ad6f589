import os

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# One intra-op thread in every test process and the bin/ processes the tests start: the
# three pytest-xdist workers and their subprocesses share 2 cores, and TensorFlow's
# default (a thread per core in each process) spends the oversubscribed cores spinning
# (two training runs with one thread each made 1.37x the progress of one run at a time,
# with two threads each 1.05x: docs/RESULTS.md, "Sweep layouts").
os.environ.setdefault('TF_NUM_INTRAOP_THREADS', '1')

# The files whose tests start bin/ processes (TensorFlow's import, tracing) take most of
# the suite's time; pytest-xdist (--dist loadfile) hands files out in collection order,
# so these go first and the short files fill the workers' time around them.
LONGEST_FIRST = ('test_distribute.py', 'test_train.py', 'test_train_stops.py',
                 'agents/test_gmas_agent.py', 'agents/test_crar_agent.py', 'test_sweep.py',
                 'test_gymnasium_task.py')


def pytest_collection_modifyitems(items):
  def rank(item):
    path = item.nodeid.split('::')[0]
    return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith(name)),
                len(LONGEST_FIRST))

  items.sort(key=rank)  # stable: each file's tests keep their order


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
  """A dataset directory shared by a module's bin/train runs (collected by the first)."""
  return str(tmp_path_factory.mktemp('data'))
