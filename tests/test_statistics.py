import numpy as np
import pytest

from gmas_tf import statistics


def test_iqm_by_hand():
  assert statistics.iqm([4, 1, 3, 2]) == pytest.approx(2.5)  # mean of 2, 3
  # n = 8: the lowest two and the highest two go.
  assert statistics.iqm([1, 3, 5, 7, 9, 11, 13, 100]) == pytest.approx((5 + 7 + 9 + 11) / 4)
  # An outlier does not move it: n = 5 drops one value from each end.
  assert statistics.iqm([0, 1, 2, 3, 1000]) == pytest.approx(2.0)
  assert statistics.iqm(np.full((3, 2), 7.0)) == pytest.approx(7.0)
  with pytest.raises(ValueError):
    statistics.iqm([])


def test_probability_of_improvement_by_hand():
  # Pairs (x, y): 3 > 1, 3 > 2, 1 = 1 (one half), 1 < 2: (1 + 1 + 0.5 + 0) / 4.
  assert statistics.probability_of_improvement([3, 1], [1, 2]) == pytest.approx(0.625)
  assert statistics.probability_of_improvement([5, 6], [1, 2]) == 1.0
  assert statistics.probability_of_improvement([1, 2], [5, 6]) == 0.0


def test_area_under_curve_by_hand():
  # Trapezoids over steps 0..2..6: (0 + 1) / 2 * 2 + (1 + 3) / 2 * 4 = 1 + 8 = 9, over 6.
  assert statistics.area_under_curve([0, 2, 6], [0, 1, 3]) == pytest.approx(1.5)
  assert statistics.area_under_curve([5], [-4.0]) == -4.0


def test_bootstrap_interval_of_constant_scores_is_a_point():
  low, high = statistics.stratified_bootstrap_ci(np.full((4, 2), -3.0), np.mean)
  assert low == high == -3.0


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_runs():
  rng = np.random.default_rng(0)
  few = rng.normal(1.0, 1.0, (5, 1))
  many = rng.normal(1.0, 1.0, (200, 1))
  low, high = statistics.stratified_bootstrap_ci(few, np.mean, repetitions=500)
  assert low < np.mean(few) < high
  low_many, high_many = statistics.stratified_bootstrap_ci(many, np.mean, repetitions=500)
  assert high_many - low_many < high - low
  # About +-1.96 standard errors for the mean of 200 unit-variance draws.
  assert high_many - low_many == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.2)


def test_bootstrap_is_stratified_by_task():
  # Task 0 is always 0 and task 1 always 10: resampling within tasks keeps the mean at 5;
  # resampling whole pooled values would not.
  scores = np.stack([np.zeros(6), np.full(6, 10.0)], axis=1)
  assert statistics.stratified_bootstrap_ci(scores, np.mean) == (5.0, 5.0)


def test_paired_t_interval_by_hand():
  # d = (1, 2, 3): mean 2, sd 1, t_{0.975, 2} = 4.302653
  mean, low, high = statistics.paired_t_interval([1.0, 2.0, 3.0])
  assert mean == 2.0
  assert (low, high) == pytest.approx((2 - 4.302653 / np.sqrt(3), 2 + 4.302653 / np.sqrt(3)),
                                      rel=1e-6)
  assert np.isnan(statistics.paired_t_interval([1.0])[1])


def test_sign_flip_p_value_by_hand():
  # Three positive differences: only the all-plus and all-minus flips reach |mean| = 2.
  assert statistics.sign_flip_p_value([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
  # (1, -1): every flip has |mean| >= 0.
  assert statistics.sign_flip_p_value([1.0, -1.0]) == 1.0


def test_resolvable_effects_by_hand_and_by_simulation():
  # n = 3: t(0.975, 2) = 4.3027, so the interval excludes 0 from 4.3027 * 2 / sqrt(3).
  half, detected = statistics.resolvable_effects(2.0, 3)
  assert half == pytest.approx(4.3027 * 2 / np.sqrt(3), rel=1e-4)
  # At that true effect, 80% of 3-seed experiments have an interval above 0.
  rng = np.random.default_rng(0)
  d = rng.normal(detected, 2.0, size=(200_000, 3))
  lows = d.mean(1) - 4.3027 * d.std(1, ddof=1) / np.sqrt(3)
  assert np.mean(lows > 0) == pytest.approx(0.8, abs=0.005)
  # Many pairs: the normal approximation (1.960 + 0.842) sd / sqrt(n).
  half, detected = statistics.resolvable_effects(1.0, 400)
  assert half == pytest.approx(1.966 / 20, rel=1e-3)
  assert detected == pytest.approx((1.960 + 0.8416) / 20, rel=5e-3)
