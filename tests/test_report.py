import csv
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from gmas_tf import report
from gmas_tf import maze_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(root, method, seed, scores_by_step, depths=(0, 3), random_score=-3.9):
  directory = os.path.join(root, method, f'seed_{seed}')
  os.makedirs(directory)
  with open(os.path.join(directory, 'evaluations.csv'), 'w', newline='') as stream:
    writer = csv.DictWriter(stream, maze_task.CSV_FIELDS)
    writer.writeheader()
    for epoch, (step, score) in enumerate(scores_by_step, 1):
      for depth in depths:
        writer.writerow(dict(epoch=epoch, step=step, depth=depth, deer_score=score,
                             held_out_score=score + depth, held_out_sem=0.1,
                             held_out_epsilon_score=score + depth + 0.5,
                             held_out_normalized=(score + depth + 5) / 7,
                             held_out_epsilon_normalized=(score + depth + 5.5) / 7,
                             random_held_out_score=random_score, optimal_held_out_score=2.0))


def plot_curves(*args):
  return run_bin(os.path.join('diagnostics', 'plot_curves'), *args)


def run_bin(name, *args):
  return subprocess.run([sys.executable, os.path.join(REPO, 'bin', name), *map(str, args)],
                        capture_output=True, text=True, check=False)


@pytest.fixture
def sweep_dir(tmp_path):
  root = str(tmp_path)
  write_run(root, 'crar', 0, [(100, -5.0), (200, -4.0)])
  write_run(root, 'crar', 1, [(100, -4.0), (200, -3.0), (300, -2.0)])  # ran further
  write_run(root, 'gmas_cosine_d1', 0, [(100, -3.0), (200, -1.0)])
  write_run(root, 'gmas_cosine_d1', 1, [(100, -3.0), (200, -2.0)])
  return root


def test_curves_keep_the_steps_every_seed_reached(sweep_dir):
  curves = report.load_curves(sweep_dir)
  steps, scores, seeds = curves['crar'][0]
  assert steps.tolist() == [100, 200] and seeds.tolist() == [0, 1]
  np.testing.assert_allclose(scores, [[-5, -4], [-4, -3]])
  np.testing.assert_allclose(curves['crar'][3][1], [[-2, -1], [-1, 0]])  # + depth
  assert report.common_step(curves, 0) == 200
  assert report.random_reference(sweep_dir) == pytest.approx(-3.9)


def test_depth_table_by_hand(sweep_dir):
  table = report.depth_table(report.load_curves(sweep_dir), 0, repetitions=200)
  rows = {line.split('|')[1].strip(): [c.strip() for c in line.split('|')[2:-1]]
          for line in table.splitlines() if line.startswith('| ') and 'method' not in line}
  # crar finals -4, -3: mean -3.5; AUC (trapezoid over 100..200): -4.5 and -3.5.
  assert rows['crar'][:2] == ['2', '-3.50']
  assert rows['crar'][3] == '-4.00'
  # gmas finals -1, -2 against -4, -3: every pair is won.
  assert rows['gmas_cosine_d1'][1] == '-1.50'
  assert rows['gmas_cosine_d1'][5] == '1.00'
  # Paired by seed: -1 - (-4) = +3 and -2 - (-3) = +1: mean 2, sd sqrt(2), t(0.975, 1 df)
  # = 12.706 so 2 -/+ 12.71; sign flips of (3, 1) give |mean| 2, 1, 1, 2: p = 2/4.
  assert rows['gmas_cosine_d1'][6] == '+2.00 [-10.71, +14.71] p=0.50 (2)'
  # Areas: gmas -2 and -2.5 against -4.5 and -3.5: +2.5 and +1, mean 1.75, sd 1.06, so
  # 1.75 -/+ 12.706 * 0.75; the sign flips give |mean| 1.75, 0.75, 0.75, 1.75: p = 2/4.
  assert rows['gmas_cosine_d1'][7] == '+1.75 [-7.78, +11.28] p=0.50 (2)'
  assert rows['crar'][5:] == ['', '', '']
  assert 'at step 200' in table


def test_paired_difference_matches_seeds_not_positions(tmp_path):
  root = str(tmp_path)
  for seed, final in ((2, -4.0), (10, -3.0)):  # seed_10 sorts before seed_2 as text
    write_run(root, 'crar', seed, [(100, final)])
  for seed, final in ((10, -1.0), (3, -2.0)):  # only seed 10 is shared with crar
    write_run(root, 'gmas', seed, [(100, final)])
  curves = report.load_curves(root)
  assert curves['crar'][0][2].tolist() == [2, 10]
  np.testing.assert_allclose(curves['crar'][0][1], [[-4], [-3]])
  table = report.depth_table(curves, 0, repetitions=50)
  assert '| +2.00 (1 pair: no interval) |' in table  # -1 - (-3) on seed 10 alone
  write_run(root, 'l2', 7, [(100, -1.0)])
  assert 'no shared seeds' in report.depth_table(report.load_curves(root), 0, repetitions=50)


def test_a_training_depth_has_one_colour_in_both_rows():
  methods = ['crar', 'gmas_cosine_d0', 'gmas_cosine_d3', 'gmas_l2_d3', 'gmas_l2_d1']
  colours = report.line_colours(methods, baseline='crar')
  assert colours['crar'] == 'black'
  assert colours['gmas_cosine_d3'] == colours['gmas_l2_d3']
  assert len({colours[m] for m in ('gmas_cosine_d0', 'gmas_l2_d1', 'gmas_l2_d3')}) == 3
  # The colours do not depend on the order in which the methods come.
  assert report.line_colours(['crar', 'gmas_l2_d3', 'gmas_l2_d1', 'gmas_cosine_d0'])[
      'gmas_l2_d3'] == colours['gmas_l2_d3']


def test_bin_report_writes_table_and_figure(sweep_dir, tmp_path):
  output = os.path.join(str(tmp_path), 'out', 'figure1')
  result = run_bin('report', '--root_dir', sweep_dir, '--output', output,
                   '--metric', 'held_out_score', '--profiles')
  assert result.returncode == 0, result.stderr
  assert os.path.getsize(output + '.png') > 10_000
  assert os.path.getsize(output + '_profiles.png') > 10_000
  with open(output + '.md') as stream:
    text = stream.read()
  assert text.count('Evaluation depth') == 2 and 'gmas_cosine_d1' in text
  assert '\n\n\n' not in text  # sections one blank line apart
  # Normalized 0.5 at depth 3: crar's seed 0 at 200 ((-1 + 5) / 7), seed 1 at 100.
  half = text[text.index('the normalized score (0.50)'):]
  assert ('| gmas_cosine_d1 | 3 | seed 0: 100, seed 1: 100 | seed 0: -100, seed 1: +0 | 200 |'
          in half)
  result = run_bin('report', '--root_dir', sweep_dir, '--output', output,
                   '--metric', 'held_out_score', '--decimals', '3')
  assert result.returncode == 0, result.stderr
  with open(output + '.md') as stream:
    text = stream.read()
  assert 'normalized score (0.500)' in text
  assert re.search(r'Random policy on the held-out episodes: -?\d+\.\d{3}\. ', text)
  assert re.search(r'\| [+-]\d+\.\d{3} \[[+-]\d+\.\d{3}, [+-]\d+\.\d{3}\] p=', text)


def test_save_figure_writes_a_palette_png_close_to_the_full_colour_one(tmp_path):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel

  def draw():
    fig, ax = plt.subplots(figsize=(4, 3))
    steps = np.arange(10)
    ax.plot(steps, np.sin(steps), color='tab:blue')
    ax.fill_between(steps, np.sin(steps) - 0.3, np.sin(steps) + 0.3, alpha=0.15)
    return fig

  full, palette = str(tmp_path / 'full.png'), str(tmp_path / 'palette.png')
  fig = draw()
  fig.savefig(full, dpi=110)
  plt.close(fig)
  report.save_figure(draw(), palette)
  with Image.open(full) as a, Image.open(palette) as b:
    assert b.mode == 'P' and a.size == b.size
    difference = np.abs(np.asarray(a.convert('RGB'), np.int16)
                        - np.asarray(b.convert('RGB'), np.int16))
  assert difference.mean() < 1.0 and difference.max() < 40
  assert os.path.getsize(palette) < os.path.getsize(full)


def test_bin_report_keeps_only_the_seeds_asked_for(sweep_dir, tmp_path):
  write_run(sweep_dir, 'crar', 2, [(100, 0.0), (200, 0.0)], random_score=-2.9)
  output = os.path.join(str(tmp_path), 'seeds01')
  result = run_bin('report', '--root_dir', sweep_dir, '--output', output, '--seeds', '0,1')
  assert result.returncode == 0, result.stderr
  with open(output + '.md') as stream:  # by default with epsilon 0.1 (+0.5 here)
    assert '| crar | 2 | -3.00 |' in stream.read()
  assert report.load_curves(sweep_dir, seeds=[2])['crar'][0][2].tolist() == [2]
  assert report.random_reference(sweep_dir, seeds=[0, 1]) == pytest.approx(-3.9)
  assert report.random_reference(sweep_dir, seeds=[2]) == pytest.approx(-2.9)
  result = run_bin('report', '--root_dir', sweep_dir, '--output', output, '--seeds', 'one')
  assert result.returncode == 1 and 'integers' in result.stderr
  result = run_bin('report', '--root_dir', sweep_dir, '--output', output, '--metric', 'keys')
  assert result.returncode == 1 and "no column 'keys'" in result.stderr
  assert 'Traceback' not in result.stderr


def test_bin_report_on_an_empty_directory_says_what_is_wrong(tmp_path):
  result = run_bin('report', '--root_dir', tmp_path, '--output', tmp_path / 'x')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith('error: No evaluations.csv')


def test_bin_plot_curves_draws_several_runs(sweep_dir, tmp_path):
  runs = [os.path.join(sweep_dir, 'crar', 'seed_0'), os.path.join(sweep_dir, 'crar', 'seed_1')]
  output = str(tmp_path / 'curves.png')
  result = plot_curves('--root_dir', runs[0], '--root_dir', runs[1],
                   '--output', output)
  assert result.returncode == 0, result.stderr
  assert os.path.getsize(output) > 10_000
  result = plot_curves('--root_dir', runs[0], '--output', output, '--depths', '3',
                   '--second_metric', 'held_out_epsilon_score')
  assert result.returncode == 0, result.stderr


def test_bin_plot_curves_tables_and_plots_the_scalars_of_every_run(sweep_dir, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  runs = [os.path.join(sweep_dir, 'crar', 'seed_0'), os.path.join(sweep_dir, 'crar', 'seed_1')]
  for scale, run in enumerate(runs, 1):
    with tf.summary.create_file_writer(os.path.join(run, 'train')).as_default():
      for step in (100, 200):
        tf.summary.scalar('Gradients/encoder/q', scale * step, step=step)
        tf.summary.scalar('Gradients/encoder/reward', 1.0, step=step)
        tf.summary.scalar('Diagnostics/q_slope_norm', scale * 0.5, step=step)
        tf.summary.scalar('Losses/q', 9.0, step=step)
  losses = str(tmp_path / 'losses.png')
  result = plot_curves('--root_dir', runs[0], '--root_dir', runs[1],
                   '--output', str(tmp_path / 'curves.png'), '--losses_output', losses,
                   '--scalar_prefix', 'Gradients/,Diagnostics/',
                   '--scalars', 'encoder/q,q_slope_norm', '--loss_table_window', '200',
                   '--log_scalars', '--first_reaching', 'q_slope_norm=0.75,encoder/reward=1')
  assert result.returncode == 0, result.stderr
  assert os.path.getsize(losses) > 5_000  # two panels drawn (a 256-colour PNG)
  tables, first_reaching = result.stdout.split('| run |')
  # Seed 1's slope (1.0) reaches 0.75 in the first window, seed 0's (0.5) never; the
  # reward pull was left out by --scalars.
  assert first_reaching.splitlines()[2:] == [
      '| crar/seed_0 | never (to 200) | not logged |', '| crar/seed_1 | 200 | not logged |']
  tables = tables.split('crar/seed_1:')
  assert 'crar/seed_0:' in tables[0] and len(tables) == 2
  for scale, table in enumerate(tables, 1):
    assert '| updates | encoder/q | q_slope_norm |' in table  # not reward, not Losses/q
    assert f'| 1-200 | {150 * scale:.4f} | {0.5 * scale:.4f} |' in table
  # Prefixes under which two scalars share a name end in one sentence, nothing drawn.
  result = plot_curves('--root_dir', runs[0], '--output', str(tmp_path / 'c.png'),
                   '--losses_output', str(tmp_path / 'mixed.png'),
                   '--scalar_prefix', 'Losses/,Gradients/encoder/')
  assert result.returncode == 1
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith('error: The scalars ') and "would both be named 'q'" in last_line
  assert 'Losses/q' in last_line and 'Gradients/encoder/q' in last_line
  assert not os.path.exists(tmp_path / 'mixed.png')
  # A run copied without its train/ directory has no scalars: one sentence, not a trace.
  copied = tmp_path / 'copied'
  copied.mkdir()
  shutil.copy(os.path.join(runs[1], 'evaluations.csv'), copied)
  result = plot_curves('--root_dir', runs[0], '--root_dir', str(copied),
                   '--output', str(tmp_path / 'd.png'), '--scalar_prefix', 'Gradients/',
                   '--scalars', 'encoder/q', '--loss_table_window', '200')
  assert result.returncode == 1
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith(f'error: {copied} has no TensorBoard scalars under Gradients/ '
                              'named encoder/q'), last_line


def test_loss_table_averages_each_window_by_hand(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.summary.create_file_writer(str(tmp_path / 'train')).as_default():
    for step, q, reward in [(100, 1.0, 0.5), (200, 3.0, 0.5), (300, 5.0, 0.25)]:
      tf.summary.scalar('Losses/q', q, step=step)
      tf.summary.scalar('Losses/reward', reward, step=step)
      tf.summary.scalar('Gradients/encoder/q', 2 * q, step=step)
  series = report.read_losses(str(tmp_path))
  assert series['q'] == ((100, 200, 300), (1.0, 3.0, 5.0))
  assert report.read_losses(str(tmp_path), 'Gradients/encoder/') == {
      'q': ((100, 200, 300), (2.0, 6.0, 10.0))}
  assert report.loss_table(series, 200).splitlines() == [
      '| updates | q | reward |', '|---|---|---|',
      '| 1-200 | 2.0000 | 0.5000 |', '| 201-300 | 5.0000 | 0.2500 |']
  assert report.loss_table(series, 200, names=['reward', 'absent']).splitlines()[0] == (
      '| updates | reward |')
  # The window means 2.0 (1-200) and 5.0 (201-300); from update 100 on, 3.0 (101-200: the
  # step 200 alone) and 5.0 (201-300).
  assert report.first_window_reaching(*series['q'], 2.0, 200) == 200
  assert report.first_window_reaching(*series['q'], 2.5, 200) == 300
  assert report.first_window_reaching(*series['q'], 2.5, 100, start=100) == 200
  assert report.first_window_reaching(*series['q'], 5.5, 200) is None
  # Two prefixes that give one name would mix two series: refused.
  with pytest.raises(ValueError, match="would both be named 'q'"):
    report.read_losses(str(tmp_path), ['Losses/', 'Gradients/encoder/'])
  assert set(report.read_losses(str(tmp_path), ['Losses/', 'Gradients/'])) == {
      'q', 'reward', 'encoder/q'}


def test_crossing_table_by_hand():
  curves = {'crar': {3: (np.array([5000, 10000, 15000]),
                         np.array([[-4.9, -3.5, -2.0], [-4.9, -4.8, -4.7]]), np.array([0, 2]))}}
  curves['gmas'] = {3: (np.array([5000, 10000]), np.array([[-3.0, -2.0], [-4.0, -3.0],
                                                          [-4.0, -4.0]]), np.array([0, 1, 2]))}
  table = report.crossing_table(curves, -3.75, 'the random policy', baseline='crar')
  assert '| crar | 3 | seed 0: 10000, seed 2: - |  | 15000 |' in table
  # seed 0: 5000 - 10000; seed 1: crar has no seed 1; seed 2: sooner by at least 15000 - 10000
  assert ('| gmas | 3 | seed 0: 5000, seed 1: 10000, seed 2: - | seed 0: -5000, seed 2: neither '
          '| 10000 |') in table
  curves['gmas'][3][1][2] = [-4.0, -3.0]
  curves['crar'][3][1][0] = [-4.9, -4.8, -4.7]
  table = report.crossing_table(curves, -3.75, 'the random policy', baseline='crar')
  assert 'seed 0: <-10000, seed 2: <-5000 |' in table  # crar never crossed by 15000
  curves['gmas'][3][1][:] = -4.5
  curves['crar'][3][1][0] = [-4.9, -3.0, -2.0]
  table = report.crossing_table(curves, -3.75, 'the random policy', baseline='crar')
  assert 'seed 0: >+0, seed 2: neither |' in table  # crar at 10000; gmas not by 10000


def write_binding(root, method, seed, text):
  with open(os.path.join(root, method, f'seed_{seed}', 'operative_config.gin'), 'w') as stream:
    stream.write(f'# Parameters for GmasAgent:\n{text}\nGmasAgent.depth = 3\n')


@pytest.fixture
def alpha_dir(tmp_path):
  root = str(tmp_path / 'alpha')
  for seed, base in ((0, -4.0), (1, -3.0)):
    write_run(root, 'crar', seed, [(100, base - 1), (200, base)])
    write_binding(root, 'crar', seed, 'DqnLearner.gamma = 0.9')
    # cosine_alpha0.01: +1 on seed 0, +3 on seed 1, on both steps; l2_alpha0.1: -1 on both.
    for method, alpha, gain in (('cosine_alpha0.01', '0.01', 1.0 + 2 * seed),
                                ('l2_alpha0.1', '0.1', -1.0)):
      write_run(root, method, seed, [(100, base - 1 + gain), (200, base + gain)])
      write_binding(root, method, seed, f'GmasAgent.alpha = {alpha}')
  return root


def test_paired_effects_and_binding_values_by_hand(alpha_dir):
  values = report.binding_values(alpha_dir, ['crar', 'cosine_alpha0.01', 'l2_alpha0.1'],
                                 'GmasAgent.alpha')
  assert values == {'cosine_alpha0.01': 0.01, 'l2_alpha0.1': 0.1}  # crar has no alpha
  step, effects = report.paired_effects(report.load_curves(alpha_dir), 3, 'crar')
  assert step == 200 and set(effects) == {'final score', 'area'}
  for what in effects:
    assert effects[what]['cosine_alpha0.01'].tolist() == [1.0, 3.0]
    assert effects[what]['l2_alpha0.1'].tolist() == [-1.0, -1.0]
    assert 'crar' not in effects[what]


def test_binding_values_refuse_disagreeing_or_non_numeric_runs(alpha_dir):
  write_binding(alpha_dir, 'l2_alpha0.1', 1, 'GmasAgent.alpha = 0.5')
  with pytest.raises(ValueError, match='several values'):
    report.binding_values(alpha_dir, ['l2_alpha0.1'], 'GmasAgent.alpha')
  for seed in (0, 1):
    write_binding(alpha_dir, 'crar', seed, "DqnLearner.gamma = 'high'")
  with pytest.raises(ValueError, match="binds DqnLearner.gamma to 'high', not a number"):
    report.binding_values(alpha_dir, ['crar'], 'DqnLearner.gamma')


def test_bin_report_plots_the_effect_against_a_binding(alpha_dir, tmp_path):
  output = os.path.join(str(tmp_path), 'alpha')
  result = run_bin('report', '--root_dir', alpha_dir, '--output', output,
                   '--effect_of', 'GmasAgent.alpha')
  assert result.returncode == 0, result.stderr
  assert os.path.getsize(output + '_effect.png') > 10_000
  result = run_bin('report', '--root_dir', alpha_dir, '--output', output,
                   '--effect_of', 'GmasAgent.alpha', '--baseline', 'dqn')
  assert result.returncode == 1 and 'baseline dqn' in result.stderr
  assert 'Traceback' not in result.stderr


def test_resolution_table_pools_the_paired_differences_by_hand(alpha_dir, tmp_path):
  table = report.resolution_table(report.load_curves(alpha_dir), 'crar', [3, 5])
  rows = [[c.strip() for c in line.split('|')[1:-1]] for line in table.splitlines()
          if line.startswith('| ') and 'depth' not in line]
  # Differences +1, +3 (cosine) and -1, -1 (L2) in final score and area alike: squares
  # about the means 2 + 0 over 1 + 1 df, SD 1. The interval's half width t(0.975, n - 1) /
  # sqrt(n): 4.303 / sqrt(3) = 2.48 and 2.776 / sqrt(5) = 1.24.
  assert len(rows) == 4  # depths 0 and 3, final score and area
  for row in rows:
    assert row[2:4] == ['1.00 (2)', '2.48'] and row[5] == '1.24'
    assert float(row[4]) > 2.48 and float(row[6]) > 1.24
  output = os.path.join(str(tmp_path), 'resolution')
  result = run_bin('report', '--root_dir', alpha_dir, '--output', output, '--resolution', '3,5')
  assert result.returncode == 0, result.stderr
  with open(output + '.md') as stream:
    assert table in stream.read()
  result = run_bin('report', '--root_dir', alpha_dir, '--output', output, '--resolution', '1')
  assert result.returncode == 1 and 'at least 2' in result.stderr
