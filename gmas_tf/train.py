"""bin/train's entry point: the gin-configured `Runner` (gmas_tf.runner, the configurable
`train`), run to its end under a lock on root_dir."""

import os
from typing import Optional

from gmas_tf import runner


def train(root_dir: str, strategy: Optional[str] = None) -> str:
  """Trains (or resumes) the run in root_dir as the parsed gin config says; `strategy`, if
  given, overrides `train.strategy`. Returns root_dir."""
  os.makedirs(root_dir, exist_ok=True)
  with runner.exclusive(root_dir):
    kwargs = {} if strategy is None else dict(strategy=strategy)
    return runner.Runner(root_dir, **kwargs).run_experiment()
