"""Aggregate statistics over seeds for reports (Agarwal et al. 2021, "Deep RL at the edge
of the statistical precipice"): IQM, stratified bootstrap confidence intervals, and the
probability of improvement.

Scores are arrays [runs, tasks]: one row per seed, one column per task (here a task is,
e.g., an evaluation depth). The stratified bootstrap resamples the runs of each task
independently.
"""

from typing import Callable

import numpy as np
import scipy.stats


def iqm(scores: np.ndarray) -> float:
  """Interquartile mean: the mean of all scores after trimming 25% from each end."""
  values = np.asarray(scores, np.float64).ravel()
  if values.size == 0:
    raise ValueError('iqm of no scores')
  return float(scipy.stats.trim_mean(values, 0.25))


def stratified_bootstrap_ci(scores: np.ndarray, statistic: Callable[[np.ndarray], float],
                            confidence: float = 0.95, repetitions: int = 2000,
                            seed: int = 0):
  """Percentile bootstrap interval of statistic(scores [runs, tasks]).

  Each repetition draws, for every task separately, as many runs with replacement.
  Returns (low, high).
  """
  scores = np.asarray(scores, np.float64)
  if scores.ndim == 1:
    scores = scores[:, None]
  runs, tasks = scores.shape
  rng = np.random.default_rng(seed)
  samples = np.empty(repetitions)
  for r in range(repetitions):
    rows = rng.integers(runs, size=(runs, tasks))
    samples[r] = statistic(np.take_along_axis(scores, rows, axis=0))
  tail = 100 * (1 - confidence) / 2
  low, high = np.percentile(samples, [tail, 100 - tail])
  return float(low), float(high)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
  """P(X > Y) for a score X of method x against Y of method y, ties counting one half.

  The Mann-Whitney U statistic over all pairs of runs, divided by the number of pairs.
  """
  x = np.asarray(x, np.float64).ravel()[:, None]
  y = np.asarray(y, np.float64).ravel()[None, :]
  return float(np.mean((x > y) + 0.5 * (x == y)))


def area_under_curve(steps: np.ndarray, scores: np.ndarray) -> float:
  """The mean score over training: the trapezoid area under scores(steps) / step range.

  A single evaluation gives its score.
  """
  steps = np.asarray(steps, np.float64)
  scores = np.asarray(scores, np.float64)
  if len(steps) == 1:
    return float(scores[0])
  widths = np.diff(steps)
  return float(np.sum(widths * (scores[1:] + scores[:-1]) / 2) / (steps[-1] - steps[0]))
