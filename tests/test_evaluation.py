import numpy as np
import pytest

from gmas_tf import evaluation

UP = 2


def always_up(observations):
  return np.full(len(observations), UP)  # into the border wall from the start cell


def test_deer_score_of_a_policy_that_never_moves():
  result = evaluation.deer_score(always_up, seed=0, num_steps=200, epsilon=0.0)
  assert result == dict(score=pytest.approx(-5.0), episodes=4)


def test_held_out_score_floor_and_random_policy():
  stuck = evaluation.held_out_score(always_up, num_mazes=20)
  assert stuck['score'] == pytest.approx(-5.0)
  assert stuck['normalized'] == pytest.approx(0.0)
  rng = np.random.default_rng(0)
  random = evaluation.held_out_score(evaluation.random_act(rng), num_mazes=100)
  assert -5.0 < random['score'] < random['optimal']
  assert 0.0 < random['normalized'] < 1.0
  # The set of test mazes is fixed by its seed.
  assert evaluation.held_out_score(always_up, num_mazes=20)['optimal'] == stuck['optimal']
