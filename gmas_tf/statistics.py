"""Aggregate statistics over seeds for reports (Agarwal et al. 2021, "Deep RL at the edge
of the statistical precipice"), through their library rliable: IQM, stratified bootstrap
confidence intervals and the probability of improvement; scipy for what rliable lacks:
intervals and tests on paired per-seed differences that stay honest with 3-5 seeds.

Scores are arrays [runs, tasks]: one row per seed, one column per task (here a task is,
e.g., an evaluation depth). The stratified bootstrap resamples the runs of each task
independently.
"""

import itertools
import warnings
from typing import Callable, Tuple

import numpy as np
from rliable import library
from rliable import metrics
import scipy.optimize
import scipy.stats


def iqm(scores: np.ndarray) -> float:
  """Interquartile mean: the mean of all scores after trimming 25% from each end."""
  values = np.asarray(scores, np.float64).ravel()
  if values.size == 0:
    raise ValueError('iqm of no scores')
  return float(metrics.aggregate_iqm(values[:, None]))


def stratified_bootstrap_ci(scores: np.ndarray, statistic: Callable[[np.ndarray], float],
                            confidence: float = 0.95, repetitions: int = 2000,
                            seed: int = 0) -> Tuple[float, float]:
  """Percentile stratified-bootstrap interval of statistic(scores [runs, tasks]) (rliable).

  Each repetition draws, for every task separately, as many runs with replacement. With
  n runs there are only C(2n - 1, n) distinct resamples (10 for n = 3): too few for an
  honest interval; use paired_t_interval on paired differences there. Returns (low, high).
  """
  scores = np.asarray(scores, np.float64)
  if scores.ndim == 1:
    scores = scores[:, None]
  with warnings.catch_warnings():
    # arch deprecates the RandomState that rliable hands it; the draws are the same.
    warnings.simplefilter('ignore', FutureWarning)
    _, intervals = library.get_interval_estimates(
        {'scores': scores}, lambda s: np.array([statistic(s)]), reps=repetitions,
        confidence_interval_size=confidence, random_state=np.random.RandomState(seed))
  low, high = intervals['scores'][:, 0]
  return float(low), float(high)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
  """P(X > Y) for a score X of method x against Y of method y, ties counting one half
  (rliable: the Mann-Whitney U statistic over all pairs of runs / the number of pairs)."""
  x = np.asarray(x, np.float64).ravel()[:, None]
  y = np.asarray(y, np.float64).ravel()[:, None]
  return float(metrics.probability_of_improvement(x, y))


def paired_t_interval(differences: np.ndarray,
                      confidence: float = 0.95) -> Tuple[float, float, float]:
  """Mean of per-seed differences with its Student-t interval: (mean, low, high).

  Exact for normal differences at any n, which a bootstrap over 3 seeds is not; NaN
  bounds for a single difference.
  """
  d = np.asarray(differences, np.float64).ravel()
  mean = float(d.mean())
  if len(d) < 2:
    return mean, float('nan'), float('nan')
  half = scipy.stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
  return mean, mean - float(half), mean + float(half)


def sign_flip_p_value(differences: np.ndarray) -> float:
  """Two-sided exact permutation p-value of mean(differences) = 0 (every sign flip).

  With n seeds the smallest possible p is 2 / 2^n (0.25 for n = 3): the test says how
  surely a consistent sign can be told from chance at this many seeds.
  """
  d = np.asarray(differences, np.float64).ravel()
  observed = abs(d.mean())
  flips = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
  return float(np.mean(np.abs((flips * d).mean(axis=1)) >= observed - 1e-12))


def resolvable_effects(sd: float, n: int, power: float = 0.8,
                       confidence: float = 0.95) -> Tuple[float, float]:
  """What n paired seeds can resolve when the per-seed differences have standard deviation
  sd: (the smallest observed mean difference whose t-interval excludes 0, the true mean
  difference that excludes 0 with probability `power`), from the noncentral t.
  """
  t = scipy.stats.t.ppf(0.5 + confidence / 2, n - 1)
  scale = sd / np.sqrt(n)

  # The probability that the interval lies above 0 (the two-sided test's far tail, an
  # interval below 0, is negligible at these effects).
  detected = scipy.optimize.brentq(
      lambda e: scipy.stats.nct.sf(t, n - 1, e / scale) - power, 0.0, (2 * t + 10) * scale)
  return float(t * scale), float(detected)


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
