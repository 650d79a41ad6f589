"""Tables and a Figure-1-style plot from a sweep's evaluation CSVs (see gmas_tf.sweep).

Methods are compared at the same budget: the last evaluation step every run has reached
(unfinished runs of a sweep in progress included), and the area under the curve up to it.
"""

import csv
import glob
import os
import re
import textwrap
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from gmas_tf import scalars
from gmas_tf import statistics

# curves[method][depth] = (steps [T], scores [runs, T], seeds [runs])
Curves = Dict[str, Dict[int, tuple]]
# Each raw score column's normalized one: 0 for the worst return (-0.1 x 50 steps), 1 for
# the optimal tour, per maze (gmas_tf.evaluation).
NORMALIZED = {'held_out_score': 'held_out_normalized',
              'held_out_epsilon_score': 'held_out_epsilon_normalized'}


def load_curves(root_dir: str, metric: str = 'held_out_score',
                seeds: Optional[Sequence[int]] = None) -> Curves:
  """Reads root_dir/<method>/seed_<s>/evaluations.csv, keeping the steps all seeds share.

  Runs are in the order of their seeds; `seeds`, if given, keeps only those.
  """
  by_method: Dict[str, Dict[int, List[dict]]] = {}
  for path in glob.glob(os.path.join(root_dir, '*', 'seed_*', 'evaluations.csv')):
    seed_dir = os.path.dirname(path)
    method = os.path.basename(os.path.dirname(seed_dir))
    with open(path) as stream:
      rows = list(csv.DictReader(stream))
    if rows and metric not in rows[0]:
      raise ValueError(f'{path} has no column {metric!r}.')
    if rows:
      seed = int(os.path.basename(seed_dir)[len('seed_'):])
      if seeds is None or seed in seeds:
        by_method.setdefault(method, {})[seed] = rows
  curves: Curves = {}
  for method, by_seed in by_method.items():
    run_seeds = sorted(by_seed)
    runs = [by_seed[s] for s in run_seeds]
    curves[method] = {}
    for depth in sorted({int(r['depth']) for r in runs[0]}):
      per_run = [{int(r['step']): float(r[metric]) for r in rows if int(r['depth']) == depth}
                 for rows in runs]
      steps = sorted(set.intersection(*(set(p) for p in per_run)))
      if steps:
        curves[method][depth] = (np.array(steps), np.array([[p[s] for s in steps]
                                                             for p in per_run]),
                                 np.array(run_seeds))
  return curves


def random_reference(root_dir: str, seeds: Optional[Sequence[int]] = None) -> float:
  """The random policy's held-out score recorded by the runs (the same mazes for all)."""
  return column_mean(root_dir, 'random_held_out_score', seeds)


def column_mean(root_dir: str, column: str, seeds: Optional[Sequence[int]] = None) -> float:
  """The mean of an evaluations.csv column over every run, depth and step (e.g. a reference
  such as 'optimal_held_out_score', the same for all)."""
  values = [scores.ravel() for by_depth in load_curves(root_dir, column, seeds).values()
            for _, scores, _ in by_depth.values()]
  return float(np.mean(np.concatenate(values))) if values else float('nan')


def common_step(curves: Curves, depth: int) -> int:
  """The largest step that every method has evaluated at this depth."""
  return int(min(curves[m][depth][0][-1] for m in curves if depth in curves[m]))


DECIMALS = 2  # of the scores in the tables; bin/report --decimals (3 for 0-1 returns)


def _fmt(value: float, sign: str = '') -> str:
  return f'{value:{sign}.{DECIMALS}f}'


def finals_and_areas(curves: Curves, depth: int) -> tuple:
  """At one evaluation depth: the common step, and per method its runs' scores at that step,
  their areas under the curve up to it, and their seeds (dicts by method)."""
  step = common_step(curves, depth)
  finals, areas, seeds = {}, {}, {}
  for method in sorted(curves):
    if depth not in curves[method]:
      continue
    steps, scores, seeds[method] = curves[method][depth]
    upto = steps <= step
    finals[method] = scores[:, np.flatnonzero(upto)[-1]]
    areas[method] = np.array([statistics.area_under_curve(steps[upto], s[upto])
                              for s in scores])
  return step, finals, areas, seeds


def depth_table(curves: Curves, depth: int, baseline: str = 'crar',
                repetitions: int = 2000) -> str:
  """A markdown table of every method at one evaluation depth, at the common step.

  Besides the unpaired statistics, each method's final score and area under the curve are
  compared with the baseline's seed by seed (the seeds of a sweep share their dataset):
  the mean paired difference over the seeds both have, its 95% t-interval and exact
  sign-flip p-value.
  """
  step, finals, areas, seeds = finals_and_areas(curves, depth)
  lines = [f'Evaluation depth {depth}, at step {step} (the last step every method reached).',
           '',
           f'| method | seeds | final mean | final IQM [95% CI] | AUC mean | AUC IQM [95% CI] '
           f'| P(final > {baseline}) | final - {baseline}, paired [95% CI] (pairs) '
           f'| AUC - {baseline}, paired [95% CI] (pairs) |',
           '|---|---|---|---|---|---|---|---|---|']
  for method in finals:
    cells = [method, str(len(finals[method]))]
    for values in (finals[method], areas[method]):
      low, high = statistics.stratified_bootstrap_ci(values, statistics.iqm,
                                                     repetitions=repetitions)
      cells += [_fmt(np.mean(values)),
                f'{_fmt(statistics.iqm(values))} [{_fmt(low)}, {_fmt(high)}]']
    if baseline in finals and method != baseline:
      cells.append(_fmt(statistics.probability_of_improvement(finals[method],
                                                              finals[baseline])))
      cells += [_paired_cell(values[method], seeds[method], values[baseline],
                             seeds[baseline]) for values in (finals, areas)]
    else:
      cells += ['', '', '']
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def first_crossings(steps: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
  """Per run, the first evaluated step whose score exceeds `threshold`; inf if none did."""
  above = scores > threshold
  return np.where(above.any(axis=1), steps[np.argmax(above, axis=1)], np.inf)


def _crossing_difference(x: float, x_last: int, y: float, y_last: int) -> str:
  """x's crossing step minus y's on one seed; a bound where a run never crossed by its
  last step ('<' x sooner by at least, '>' later by at least)."""
  if np.isfinite(x) and np.isfinite(y):
    return f'{x - y:+.0f}'
  if np.isfinite(x):
    return f'<{x - y_last:+.0f}'
  if np.isfinite(y):
    return f'>{x_last - y:+.0f}'
  return 'neither'


def crossing_table(curves: Curves, threshold: float, what: str,
                   baseline: str = 'crar') -> str:
  """Per method and depth, the first evaluated step at which each seed's score exceeds
  `threshold` ('-' for a seed that never did by its last evaluation), and on each seed the
  method shares with `baseline` (the same dataset) the difference of the two steps."""
  lines = [f'First evaluated step with a score above {what} ({_fmt(threshold)}), per seed, '
           f'and minus {baseline}\'s on the same seed (negative: sooner; a bound where a '
           'run never crossed):', '',
           f'| method | depth | first step, per seed | minus {baseline}, per seed | last step |',
           '|---|---|---|---|---|']
  for method in sorted(curves):
    for depth, (steps, scores, seeds) in sorted(curves[method].items()):
      crossed = first_crossings(steps, scores, threshold)
      cells = [f'seed {seed}: {step:.0f}' if np.isfinite(step) else f'seed {seed}: -'
               for seed, step in zip(seeds, crossed)]
      differences = []
      if method != baseline and depth in curves.get(baseline, {}):
        base_steps, base_scores, base_seeds = curves[baseline][depth]
        base_crossed = dict(zip(base_seeds, first_crossings(base_steps, base_scores,
                                                            threshold)))
        differences = [
            f'seed {seed}: '
            + _crossing_difference(step, steps[-1], base_crossed[seed], base_steps[-1])
            for seed, step in zip(seeds, crossed) if seed in base_crossed]
      lines.append(f'| {method} | {depth} | {", ".join(cells)} | {", ".join(differences)} '
                   f'| {steps[-1]} |')
  return '\n'.join(lines)


def paired_differences(x, x_seeds, y, y_seeds) -> np.ndarray:
  """x - y on each seed both have (the seeds of a sweep share their dataset)."""
  _, x_index, y_index = np.intersect1d(x_seeds, y_seeds, return_indices=True)
  return x[x_index] - y[y_index]


def _paired_cell(x, x_seeds, y, y_seeds) -> str:
  """Mean of x - y over the seeds both have, its 95% t-interval (a bootstrap over 3-5
  pairs is too narrow), the exact sign-flip p-value and the number of pairs."""
  differences = paired_differences(x, x_seeds, y, y_seeds)
  if not len(differences):
    return 'no shared seeds'
  if len(differences) == 1:
    return f'{_fmt(differences[0], "+")} (1 pair: no interval)'
  mean, low, high = statistics.paired_t_interval(differences)
  p = statistics.sign_flip_p_value(differences)
  return (f'{_fmt(mean, "+")} [{_fmt(low, "+")}, {_fmt(high, "+")}] p={p:.2f} '
          f'({len(differences)})')


DISTANCES = ('cosine', 'l2')  # the figure's rows, by the distance in a method's name
# Axis labels in words for the evaluations.csv columns that reports plot.
METRIC_LABELS = {'held_out_score': 'held-out score, greedy',
                 'held_out_epsilon_score': 'held-out score, epsilon 0.1',
                 'held_out_normalized': 'normalized held-out score, greedy',
                 'held_out_epsilon_normalized': 'normalized held-out score, epsilon 0.1',
                 'deer_score': "deer's 200-step score, epsilon 0.1"}
REFERENCE_COLOUR = 'tab:gray'  # the random policy's and the optimal return's lines


def line_colours(methods: Sequence[str], baseline: str = 'crar') -> Dict[str, str]:
  """One colour per method, black for the baseline, and the same colour for the cells
  that differ only in the distance (gmas_cosine_d3 and gmas_l2_d3), so that a training
  depth reads alike in the cosine and the L2 row. No method gets the reference lines'
  grey."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  cycle = [c for c in matplotlib.rcParams['axes.prop_cycle'].by_key()['color']
           if not matplotlib.colors.same_color(c, REFERENCE_COLOUR)]
  role = {m: re.sub(f"({'|'.join(DISTANCES)})_?", '', m) for m in methods if m != baseline}
  order = sorted(set(role.values()))
  colours = {m: cycle[order.index(r) % len(cycle)] for m, r in role.items()}
  if baseline in methods:
    colours[baseline] = 'black'
  return colours


def figure(curves: Curves, output: str, random_score: float, baseline: str = 'crar',
           repetitions: int = 500, metric: str = 'held_out_score',
           optimal_score: float = float('nan'), caption: str = ''):
  """Rows: cosine and L2 GMAS (plus the baseline in each); columns: evaluation depths.

  Each curve is the mean over seeds with its 95% stratified bootstrap band; one legend for
  all panels, and a caption under them: `caption`, then the metric, the seeds, the band
  and the budget.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  depths = sorted({d for by_depth in curves.values() for d in by_depth})
  rows = [kind for kind in DISTANCES if any(kind in m for m in curves)] or ['all']
  fig, axes = plt.subplots(len(rows), len(depths), figsize=(3.4 * len(depths),
                                                            2.9 * len(rows) + 1.1),
                           squeeze=False, sharey=True, sharex=True)
  colours = line_colours(sorted(curves), baseline)
  legend = {}
  for i, kind in enumerate(rows):
    methods = [m for m in sorted(curves)
               if kind == 'all' or kind in m or m == baseline]
    for j, depth in enumerate(depths):
      ax = axes[i][j]
      for method in methods:
        if depth not in curves[method]:
          continue
        steps, scores, _ = curves[method][depth]
        bands = np.array([statistics.stratified_bootstrap_ci(
            scores[:, t], np.mean, repetitions=repetitions) for t in range(len(steps))])
        # Both rows: a method is named by its role (gmas_d3), its row gives the distance.
        role = re.sub(f"_?({'|'.join(DISTANCES)})", '', method) if len(rows) > 1 else method
        legend[f'{role} ({len(scores)} seeds)'] = ax.plot(
            steps, scores.mean(0), color=colours[method], linewidth=1.4)[0]
        ax.fill_between(steps, bands[:, 0], bands[:, 1], alpha=0.15, color=colours[method],
                        linewidth=0)
      if np.isfinite(optimal_score):
        legend['optimal policy'] = ax.axhline(optimal_score, color=REFERENCE_COLOUR,
                                            linestyle='--', linewidth=1)
      if np.isfinite(random_score):
        legend['random policy'] = ax.axhline(random_score, color=REFERENCE_COLOUR,
                                             linestyle=':', linewidth=1.2)
      ax.set_title(f'{kind + ", " if kind != "all" else ""}planning depth {depth}',
                   fontsize=10)
      ax.grid(alpha=0.3, linewidth=0.5)
      if i == len(rows) - 1:
        ax.set_xlabel('updates')
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda x, _: f'{x / 1000:g}k'))
      if j == 0:
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
  budget = max(int(s[-1]) for by_depth in curves.values() for s, _, _ in by_depth.values())
  text = ' '.join(filter(None, [
      caption, f'Curves: the mean {METRIC_LABELS.get(metric, metric)} over each method\'s '
      f'seeds (in the legend); bands: 95% stratified bootstrap interval of that mean; '
      f'evaluated to {budget:,} updates.']))
  columns = min(len(legend), 6)
  caption_lines = textwrap.wrap(text, 40 * len(depths))
  # The inches under the panels: the legend's rows, then the caption's lines.
  bottom = (0.25 + 0.3 * -(-len(legend) // columns) + 0.17 * len(caption_lines)
            ) / fig.get_figheight()
  fig.legend(list(legend.values()), list(legend), loc='upper center', ncol=columns,
             fontsize=9, frameon=False, bbox_to_anchor=(0.5, bottom))
  fig.text(0.5, 0.01, '\n'.join(caption_lines), ha='center', va='bottom', fontsize=8.5)
  fig.tight_layout(rect=(0, bottom, 1, 1))
  save_figure(fig, output)


def binding_values(root_dir: str, methods: Sequence[str], binding: str) -> Dict[str, float]:
  """Each method's value of a numeric gin binding (GmasAgent.alpha, say), read from the
  operative_config.gin of its runs; methods without the binding (the baseline) are left
  out. Raises ValueError where a method's runs disagree or a value is not a number."""
  pattern = re.compile(rf'^{re.escape(binding)} = (.+)$', re.MULTILINE)
  values = {}
  for method in methods:
    found = set()
    for path in glob.glob(os.path.join(root_dir, method, 'seed_*', 'operative_config.gin')):
      with open(path) as stream:
        found.update(pattern.findall(stream.read()))
    if len(found) > 1:
      raise ValueError(f'The runs of {method} bind {binding} to several values: '
                       f'{sorted(found)}.')
    if found:
      text = found.pop()
      try:
        values[method] = float(text)
      except ValueError:
        raise ValueError(f'{method} binds {binding} to {text}, not a number.') from None
  return values


def paired_effects(curves: Curves, depth: int, baseline: str) -> tuple:
  """At one evaluation depth: the common step, and {'final score': ..., 'area': ...} of
  {method: its paired differences}, the method minus the baseline on each seed both have;
  methods sharing no seed with the baseline are left out."""
  step, finals, areas, seeds = finals_and_areas(curves, depth)
  effects = {}
  for what, by_method in (('final score', finals), ('area', areas)):
    effects[what] = {}
    for method in by_method:
      if method != baseline and baseline in by_method:
        differences = paired_differences(by_method[method], seeds[method],
                                         by_method[baseline], seeds[baseline])
        if len(differences):
          effects[what][method] = differences
  return step, effects


def resolution_table(curves: Curves, baseline: str, seed_counts: Sequence[int]) -> str:
  """What a sweep can resolve: per evaluation depth, the standard deviation of the methods'
  paired differences with the baseline (final score and area; their variances pooled over
  the methods), and, at each seed count, the smallest mean difference whose 95% t-interval
  excludes 0 and the true difference found with 80% power."""
  header = ' | '.join(f'{n} seeds: interval excludes 0 from | {n} seeds: 80% power at'
                      for n in seed_counts)
  lines = [f'What {" and ".join(map(str, seed_counts))} seeds resolve, from the spread of the '
           f'paired differences with {baseline} (pooled over the methods):', '',
           f'| depth | quantity | SD of a paired difference (df) | {header} |',
           '|---|---|---|' + '---|' * 2 * len(seed_counts)]
  for depth in sorted({d for by_depth in curves.values() for d in by_depth}):
    for what, by_method in paired_effects(curves, depth, baseline)[1].items():
      df = sum(len(d) - 1 for d in by_method.values())
      if not df:
        continue
      sd = np.sqrt(sum(np.sum((d - d.mean()) ** 2) for d in by_method.values()) / df)
      cells = [_fmt(x) for n in seed_counts for x in statistics.resolvable_effects(sd, n)]
      lines.append(f'| {depth} | {what} | {_fmt(sd)} ({df}) | {" | ".join(cells)} |')
  return '\n'.join(lines)


def effect_figure(curves: Curves, values: Dict[str, float], output: str, baseline: str,
                  xlabel: str, metric: str = 'held_out_score', caption: str = ''):
  """The paired effect against a setting (alpha, say): rows, each method's final score and
  area minus the baseline's on the same seed; columns, evaluation depths; x, the method's
  value of the setting (`values`), on a log axis where the values span a factor of 10 or
  more. One line per distance (the method names'), the mean difference with its 95%
  t-interval; 0 is the baseline."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  depths = sorted({d for m in values for d in curves.get(m, {})})
  if not depths or baseline not in curves:
    raise ValueError(f'No method with both a value of {xlabel} and the baseline {baseline}.')
  fig, axes = plt.subplots(2, len(depths), figsize=(3.4 * len(depths), 6.2), squeeze=False,
                           sharex=True)
  series = {kind: sorted((m for m in values if kind in m), key=values.get)
            for kind in DISTANCES}
  series = {kind: methods for kind, methods in series.items() if methods}
  spread = max(values.values()) / min(values.values()) if min(values.values()) > 0 else 1
  for j, depth in enumerate(depths):
    step, effects = paired_effects(curves, depth, baseline)
    for i, (what, by_method) in enumerate(effects.items()):
      ax = axes[i][j]
      ax.axhline(0, color=REFERENCE_COLOUR, linewidth=1)
      for k, (kind, methods) in enumerate(series.items()):
        points = [(values[m],) + statistics.paired_t_interval(by_method[m])
                  for m in methods if m in by_method]
        if not points:
          continue
        x, mean, low, high = map(np.array, zip(*points))
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], marker='os'[k % 2], capsize=3,
                    label=kind, linewidth=1.2)
      if spread >= 10:
        ax.set_xscale('log')
      ax.set_title(f'{what}, depth {depth}, step {step:,}', fontsize=9)
      ax.grid(alpha=0.3, linewidth=0.5)
      if j == 0:
        ax.set_ylabel(f'minus {baseline}, paired')
      if i == 1:
        ax.set_xlabel(xlabel)
  axes[0][0].legend(fontsize=8)
  text = ' '.join(filter(None, [
      caption, f'Each method minus {baseline} on the same seed, in '
      f'{METRIC_LABELS.get(metric, metric)}: the final score at the last step every method '
      'reached, and the area (the mean score over training up to it); points: the mean over '
      'the seeds, bars: its 95% t-interval.']))
  caption_lines = textwrap.wrap(text, 40 * len(depths))
  bottom = (0.1 + 0.17 * len(caption_lines)) / fig.get_figheight()
  fig.text(0.5, 0.01, '\n'.join(caption_lines), ha='center', va='bottom', fontsize=8.5)
  fig.tight_layout(rect=(0, bottom, 1, 1))
  save_figure(fig, output)


def save_figure(fig, output: str, dpi: int = 110):
  """Writes `fig` as a PNG of at most 256 colours (an adaptive palette), a third to a
  half of matplotlib's full-colour file for these line plots, and closes it."""
  import io  # pylint: disable=import-outside-toplevel
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=dpi)
  plt.close(fig)
  with Image.open(buffer) as image:
    image.convert('RGB').quantize(256).save(output, optimize=True)


def performance_profiles(curves: Curves, output: str, xlabel: str = 'held-out score',
                         reps: int = 500):
  """rliable's performance profiles: per evaluation depth, the fraction of a method's
  runs whose final score (at the common step) exceeds tau, with 95% bootstrap bands."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from rliable import library, plot_utils  # pylint: disable=import-outside-toplevel

  depths = sorted({d for by_depth in curves.values() for d in by_depth})
  fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.4), squeeze=False)
  for ax, depth in zip(axes[0], depths):
    step, finals, _, _ = finals_and_areas(curves, depth)
    finals = {method: scores[:, None] for method, scores in finals.items()}
    values = np.concatenate([v.ravel() for v in finals.values()])
    taus = np.linspace(values.min() - 0.05, values.max() + 0.05, 60)
    profiles, bands = library.create_performance_profile(finals, taus, reps=reps)
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=bands,
                                         ax=ax, xlabel=xlabel, ylabel='fraction of runs > tau')
    ax.set_title(f'evaluation depth {depth}, step {step}', fontsize=9)
    ax.legend(ax.get_lines()[:len(finals)], list(finals), fontsize=6)
  fig.tight_layout()
  save_figure(fig, output)


def read_losses(root_dir: str, prefix: Union[str, Sequence[str]] = 'Losses/'
                ) -> Dict[str, tuple]:
  """{name: (steps, values)} of the scalars under `prefix` (Losses/, Gradients/encoder/;
  or several prefixes) that a bin/train run logged (its scalars.csv.gz, else its event files);
  name is the tag without its prefix. Raises ValueError where two prefixes give one name
  (Gradients/encoder/q and Gradients/q_network/q under both prefixes), which would mix two
  series."""
  prefixes = (prefix,) if isinstance(prefix, str) else tuple(prefix)
  series, tags = {}, {}
  for tag, points in scalars.read(root_dir).items():
    if not tag.startswith(prefixes):
      continue
    name = tag[len(next(start for start in prefixes if tag.startswith(start))):]
    if name in tags:
      raise ValueError(f'The scalars {tags[name]} and {tag} would both be named {name!r}; '
                       'pass a shorter prefix that keeps them apart.')
    series[name], tags[name] = points, tag
  return series


def window_means(steps, values, window: int, last: int, start: int = 0):
  """[(first, last, mean or None)] over the windows (start + k w, start + (k + 1) w] that
  cover the updates up to `last`; None where a window holds no recorded step."""
  steps, values = np.asarray(steps), np.asarray(values)
  windows = []
  for begin in range(start, last, window):
    inside = (steps > begin) & (steps <= begin + window)
    windows.append((begin + 1, min(begin + window, last),
                    float(values[inside].mean()) if inside.any() else None))
  return windows


def first_window_reaching(steps, values, threshold: float, window: int,
                          start: int = 0) -> Optional[int]:
  """The last update of the first window after `start` whose mean value is at least
  `threshold` (when a logged scalar, such as Q's slope in x, has grown), or None."""
  for _, end, mean in window_means(steps, values, window, int(steps[-1]), start):
    if mean is not None and mean >= threshold:
      return end
  return None


def loss_table(series: Dict[str, tuple], window: int,
               names: Optional[Sequence[str]] = None) -> str:
  """A markdown table of each loss's mean over consecutive windows of `window` updates."""
  names = sorted(series) if names is None else [n for n in names if n in series]
  last = max(int(series[n][0][-1]) for n in names)
  columns = [window_means(*series[name], window, last) for name in names]
  lines = ['| updates | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']
  for row in zip(*columns):
    cells = ['' if mean is None else f'{mean:.4f}' for _, _, mean in row]
    lines.append(f'| {row[0][0]}-{row[0][1]} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)
