"""A run's checkpoints: the agent, its optimizers and step, saved every epoch, checked on
restore against the code and the config that would read them."""

import os

import tensorflow as tf

from gmas_tf import optimizers
from gmas_tf.errors import TrainingError

CHECKPOINT_DIR = 'checkpoints'


def check_optimizer_format(path: str) -> None:
  """Refuses a checkpoint whose optimizer state this code would read wrongly."""
  saved = dict(tf.train.list_variables(path))
  key = 'optimizer_format/.ATTRIBUTES/VARIABLE_VALUE'
  if key not in saved or int(tf.train.load_variable(path, key)) != optimizers.FORMAT:
    raise TrainingError(
        f'The checkpoint {path} was made with another optimizer than this code\'s '
        '(deer\'s RMSprop, epsilon outside the square root) and cannot be resumed; '
        'retrain in a new root_dir.')


def check_optimizer_names(path: str, names) -> None:
  """Refuses a checkpoint whose optimizers are not the ones this config builds (another
  update scheme, or the reward and discount losses' RMSprop state shared or not)."""
  saved = {n.split('/')[1] for n, _ in tf.train.list_variables(path)
           if n.startswith('optimizers/')}
  if saved != set(names):
    raise TrainingError(
        f'The checkpoint {path} holds the optimizers {sorted(saved)} but this config builds '
        f'{sorted(names)}; resume it with the config it was made with (CrarAgent.update_scheme, '
        'CrarAgent.reward_discount_state) or retrain in a new root_dir.')


class Checkpoints:
  """tf.train.CheckpointManager over root_dir/checkpoints, numbered by step (the last 3)."""

  def __init__(self, root_dir: str, agent):
    self._agent = agent
    checkpoint = tf.train.Checkpoint(
        agent=agent, optimizers=agent.optimizers,
        optimizer_format=tf.Variable(optimizers.FORMAT, trainable=False))
    self._checkpoint = checkpoint
    self.manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(root_dir, CHECKPOINT_DIR), max_to_keep=3)

  def restore(self) -> int:
    """Restores the latest checkpoint, if any, after checking it; returns its step."""
    latest = self.manager.latest_checkpoint
    if latest:
      check_optimizer_format(latest)
      check_optimizer_names(latest, self._agent.optimizers)
      self._checkpoint.restore(latest).assert_existing_objects_matched()
    step = int(self._agent.train_step_counter.numpy())
    if step:
      print(f'resuming from step {step} ({latest})', flush=True)
    return step

  def save(self, step: int) -> None:
    self.manager.save(checkpoint_number=step)
