"""Gymnasium environments as TF-Agents `PyEnvironment`s.

TF-Agents 0.19's suite_gym wraps the old `gym` API; `GymnasiumEnvironment` adapts the
maintained one: the specs come from the spaces, `terminated` ends an episode with discount
0 and `truncated` (a time limit) with discount 1, so a value still bootstraps there, and
the first reset takes the seed (later resets continue the environment's own stream, so a
seed names a whole sequence of episodes).

Gymnasium is an optional dependency (requirements-gymnasium.txt); importing this module
without it works, using it says how to install it.
"""

import dataclasses
from typing import Optional, Sequence

import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from gmas_tf.errors import MissingDependency, SpecError

try:
  import gymnasium
except ImportError:  # the optional extra is not installed
  gymnasium = None

INSTALL = 'pip install --no-deps -r requirements-gymnasium.txt'


def require_gymnasium():
  if gymnasium is None:
    raise MissingDependency(f'Gymnasium tasks need the optional packages: run `{INSTALL}`.')
  return gymnasium


def action_spec_from_space(space) -> array_spec.BoundedArraySpec:
  """Discrete(n, start) -> a scalar int64 spec over 0..n-1 (the adapter adds `start`)."""
  if not isinstance(space, require_gymnasium().spaces.Discrete):
    raise SpecError(f'The agents choose among discrete actions, and this environment\'s '
                    f'action space is {space}.')
  return array_spec.BoundedArraySpec((), np.int64, 0, int(space.n) - 1, 'action')


def observation_spec_from_space(space) -> array_spec.ArraySpec:
  """Box -> an array spec of its shape and dtype, bounded where the Box is."""
  if not isinstance(space, require_gymnasium().spaces.Box):
    raise SpecError(f'The agents read an image or a vector (a Box space), and this '
                    f'environment\'s observation space is {space}; wrap the environment '
                    'so that it returns one (MiniGrid: ImgObsWrapper).')
  if np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
    return array_spec.BoundedArraySpec(space.shape, space.dtype, space.low, space.high,
                                       'observation')
  return array_spec.ArraySpec(space.shape, space.dtype, 'observation')


def make(env_id: str, wrappers: Sequence[str] = ()):
  """`gymnasium.make(env_id)` with the wrappers, given by entry point ('module:Class'),
  applied in order (Gymnasium records them in the environment's spec, and so does a
  Minari dataset collected from it). 'module:Id' imports the module that registers Id
  first ('minigrid:MiniGrid-DoorKey-6x6-v0')."""
  gym = require_gymnasium()
  try:
    env = gym.make(env_id)
  except (gym.error.Error, ModuleNotFoundError) as error:
    raise SpecError(f'Gymnasium cannot make {env_id!r} ({error}); name a registered id, '
                    'prefixed with the module that registers it (\'minigrid:Id\').') from None
  for entry_point in wrappers:
    env = gym.envs.registration.load_env_creator(entry_point)(env)
  return env


def make_from_spec(spec):
  """The environment a Gymnasium `EnvSpec` describes, its wrappers applied by entry point
  (gymnasium.make(spec) refuses wrappers that do not record their arguments, as
  MiniGrid's)."""
  gym = require_gymnasium()
  env = gym.make(dataclasses.replace(spec, additional_wrappers=()))
  for wrapper in spec.additional_wrappers:
    env = gym.envs.registration.load_env_creator(wrapper.entry_point)(env,
                                                                      **(wrapper.kwargs or {}))
  return env


class GymnasiumEnvironment(py_environment.PyEnvironment):
  """A Gymnasium environment with TF-Agents' interface (unbatched; auto-reset after the
  last step, as PyEnvironment's contract asks)."""

  def __init__(self, env, seed: Optional[int] = None):
    super().__init__(handle_auto_reset=True)
    self.gym_env = env
    self._seed = seed
    self._action_spec = action_spec_from_space(env.action_space)
    self._observation_spec = observation_spec_from_space(env.observation_space)
    self._action_start = int(env.action_space.start)

  def observation_spec(self):
    return self._observation_spec

  def action_spec(self):
    return self._action_spec

  def _observation(self, observation):
    return np.asarray(observation, self._observation_spec.dtype)

  def _reset(self):
    observation, _ = self.gym_env.reset(seed=self._seed)
    self._seed = None  # later resets continue the seeded stream
    return ts.restart(self._observation(observation))

  def _step(self, action):
    observation, reward, terminated, truncated, _ = self.gym_env.step(
        int(action) + self._action_start)
    observation, reward = self._observation(observation), np.float32(reward)
    if terminated:
      return ts.termination(observation, reward)
    if truncated:
      return ts.truncation(observation, reward, np.float32(1.0))
    return ts.transition(observation, reward, np.float32(1.0))

  def render(self, mode: str = 'rgb_array'):
    del mode  # Gymnasium fixes the render mode when the environment is made
    return self.gym_env.render()

  def close(self):
    self.gym_env.close()
