"""The errors a user can cause, each ending a command in one sentence (gmas_tf.cli).

Kept apart from the modules that raise them so that entry points which never train
(bin/sweep, bin/report) can catch them without importing TensorFlow.
"""


class DatasetError(ValueError):
  """A dataset is missing, corrupt, or does not match the configured environment."""


class MissingDependency(ImportError):
  """An optional package the configured task needs is not installed."""


class SpecError(ValueError):
  """An environment's observation or action space the agents cannot take."""


class TrainingError(RuntimeError):
  """Training cannot go on (e.g. a NaN loss); the last good checkpoint is kept."""


class Stopped(Exception):
  """Training was stopped by a signal; a checkpoint at the last update is saved."""

  def __init__(self, signal_number: int, message: str):
    super().__init__(message)
    self.signal_number = signal_number
