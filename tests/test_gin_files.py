import glob
import os

import gin
import pytest
from tf_agents.environments import tf_py_environment

from gmas_tf import cli
from gmas_tf import sweep
from gmas_tf import train  # noqa: F401  (registers train.* with gin)
from gmas_tf.agents import crar_agent
from gmas_tf.agents import gmas_agent
from gmas_tf.envs import maze

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(REPO, 'docs', 'experiments')
GIN_FILES = sorted(glob.glob(os.path.join(REPO, 'gin', '*.gin')))


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def test_every_figure1_cell_has_a_gin_file():
  names = {os.path.basename(p) for p in GIN_FILES}
  assert {'crar.gin', 'quickstart.gin', 'smoke.gin'} <= names
  for distance in ('cosine', 'l2'):
    for depth in (0, 1, 3, 5):
      assert f'gmas_{distance}_depth{depth}.gin' in names


@pytest.mark.parametrize('path', GIN_FILES, ids=os.path.basename)
def test_gin_file_builds_the_agent_it_names(path, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # includes must resolve from anywhere
  cli.parse_gin([path], [])
  agent_class = gin.query_parameter('train.agent_class') if 'gmas_' in path else None
  env = tf_py_environment.TFPyEnvironment(maze.MazeEnvironment())
  if agent_class is None:
    agent = crar_agent.CrarAgent(env.time_step_spec(), env.action_spec())
    assert type(agent) is crar_agent.CrarAgent
    return
  agent = gmas_agent.GmasAgent(env.time_step_spec(), env.action_spec())
  distance = 'cosine' if 'cosine' in path else 'l2'
  assert agent._distance == distance
  assert agent._alpha == (0.05 if distance == 'cosine' else 1.0)
  assert agent._training_depth == int(path[-5])
  assert agent._gamma == 0.9 and agent._target_update_period == 1000


SWEEPS = [os.path.join(REPO, 'gin', 'experiments', name)
          for name in ('figure1.gin', 'data_size.gin', 'depth_discount.gin', 'gmas_pulls.gin',
                       'adaptive_depth.gin', 'long_reference.gin')]


@pytest.mark.parametrize('path', SWEEPS, ids=os.path.basename)
def test_sweep_runs_parse_with_their_bindings(path, monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  cli.parse_gin([path], [])
  runs = sweep.experiment('runs')
  assert len({r.name for r in runs}) == len(runs) // len({r.seed for r in runs}) >= 2
  for run in runs[:len(runs) // len({r.seed for r in runs})]:
    gin.clear_config()
    command = run.command('bin/train')
    params = command[command.index('--gin_param') + 1:-2:2]
    cli.parse_gin([os.path.join(REPO, run.gin_file)], params)
    assert gin.query_parameter('train.seed') == run.seed
    assert gin.query_parameter('CrarAgent.update_scheme') == 'per_loss'


def sweep_runs(name):
  cli.parse_gin([os.path.join(REPO, 'gin', 'experiments', name)], [])
  runs = sweep.experiment('runs')
  gin.clear_config()
  return {run.name: run for run in runs if run.seed == 0}


@pytest.mark.parametrize('name, baseline, parameter, values', [
    ('depth_discount.gin', 'cosine_d3_gamma1', 'GmasAgent.depth_discount',
     {'cosine_d3_gamma1': 1.0, 'cosine_d3_gamma0.5': 0.5}),
    ('adaptive_depth.gin', 'cosine_d3_fixed', 'GmasAgent.adaptive_depth_threshold',
     {'cosine_d3_fixed': 'unbound', 'cosine_d3_adaptive': 3e-3}),
])
def test_variant_baseline_is_the_figure1_cell(name, baseline, parameter, values, monkeypatch):
  # The baseline runs are figure1's gmas_cosine_d3 (a committed symlink): the same runs.
  monkeypatch.chdir(REPO)
  committed = os.path.join(EXPERIMENTS, name[:-len('.gin')], 'runs', baseline)
  figure1_runs = os.path.join(EXPERIMENTS, 'figure1', 'runs', 'gmas_cosine_d3')
  assert os.path.realpath(committed) == os.path.realpath(figure1_runs)
  figure1, variants = sweep_runs('figure1.gin'), sweep_runs(name)
  assert variants[baseline].gin_file == figure1['gmas_cosine_d3'].gin_file
  assert variants[baseline].bindings == figure1['gmas_cosine_d3'].bindings
  bound = {}
  for run_name, run in variants.items():
    assert _bound(run, 'GmasAgent.training_depth') == 3
    try:
      bound[run_name] = _bound(run, parameter)
    except ValueError:  # the paper's default
      bound[run_name] = 'unbound'
  assert bound == values


def test_long_reference_is_figure1_but_for_the_budget(monkeypatch):
  monkeypatch.chdir(REPO)
  figure1, long = sweep_runs('figure1.gin'), sweep_runs('long_reference.gin')
  assert set(long) == {'crar', 'gmas_cosine_d3'}
  for name, run in long.items():
    assert run.gin_file == figure1[name].gin_file
    assert _bound(run, 'train.epochs') * _bound(run, 'train.steps_per_epoch') == 500_000
    budget = ('train.epochs', 'train.steps_per_epoch')
    assert ([b for b in run.bindings if not b.startswith(budget)] ==
            [b for b in figure1[name].bindings if not b.startswith(budget)])


def test_figure1_headline_runs_are_figure1_runs(monkeypatch):
  # The full sweep skips what the headline sweep finished: the runs must be the same.
  monkeypatch.chdir(REPO)
  runs = {}
  for name in ('figure1.gin', 'figure1_headline.gin'):
    cli.parse_gin([os.path.join(REPO, 'gin', 'experiments', name)], [])
    runs[name] = sweep.experiment('runs')
    gin.clear_config()
  headline = runs['figure1_headline.gin']
  assert [(r.name, r.seed) for r in headline[:4]] == [
      ('crar', 0), ('crar', 1), ('crar', 2), ('gmas_cosine_d0', 0)]
  assert set(headline) <= set(runs['figure1.gin']) and len(headline) == 9


def test_figure1_crar_seed_0_is_the_update_schemes_per_loss_run(monkeypatch):
  # update_schemes' crar_per_loss is a symlink to figure1's crar: the same runs.
  monkeypatch.chdir(REPO)
  figure1, schemes = sweep_runs('figure1.gin'), sweep_runs('update_schemes.gin')
  for name in ('CrarAgent.update_scheme', 'train.epochs', 'train.steps_per_epoch',
               'held_out_score.num_mazes', 'train.train_mazes', 'ensure_dataset.num_transitions',
               'CrarAgent.learning_rate', 'CrarAgent.reward_discount_state'):
    assert _bound(figure1['crar'], name) == _bound(schemes['crar_per_loss'], name), name


@pytest.mark.parametrize('cell', ['crar', 'gmas_cosine_d3'])
def test_reward_discount_state_run_is_figure1_s_but_for_the_state(monkeypatch, cell):
  # Its 'shared' arms are Figure 1's runs, so the two may differ in that binding alone.
  monkeypatch.chdir(REPO)
  figure1, states = sweep_runs('figure1.gin'), sweep_runs('reward_discount_state.gin')
  run = states[f'{cell}_separate']
  assert sorted(run.bindings) == sorted(
      b.replace("'shared'", "'separate'") for b in figure1[cell].bindings)
  assert _bound(run, 'CrarAgent.reward_discount_state') == 'separate'
  assert _bound(figure1[cell], 'CrarAgent.reward_discount_state') == 'shared'
  assert run.gin_file == figure1[cell].gin_file


def test_gmas_pulls_q_only_run_stops_the_matching_term_at_x(monkeypatch):
  monkeypatch.chdir(REPO)
  runs = sweep_runs('gmas_pulls.gin')
  assert _bound(runs['gmas_cosine_d3_q_only'], 'GmasAgent.matching_trains_encoder') is False
  with pytest.raises(ValueError, match='no value bound'):  # the paper's default, True
    _bound(runs['gmas_cosine_d3'], 'GmasAgent.matching_trains_encoder')
  assert _bound(runs['gmas_cosine_d3'], 'GmasAgent.training_depth') == 3


@pytest.mark.parametrize('name, run_name, cell, parameter, value', [
    ('gmas_delay.gin', 'gmas_cosine_d3_delay10k', 'gmas_cosine_d3', 'GmasAgent.matching_delay',
     10_000),
    ('gmas_l2_q_only.gin', 'gmas_l2_d0_q_only', 'gmas_l2_d0',
     'GmasAgent.matching_trains_encoder', False),
])
def test_variant_is_a_figure1_cell_but_for_one_binding(name, run_name, cell, parameter, value,
                                                       monkeypatch):
  monkeypatch.chdir(REPO)
  figure1, variants = sweep_runs('figure1.gin'), sweep_runs(name)
  run = variants[run_name]
  assert run.bindings == figure1[cell].bindings
  assert _bound(run, parameter) == value
  with pytest.raises(ValueError, match='no value bound'):  # the paper's default
    _bound(figure1[cell], parameter)
  for shared in ('GmasAgent.training_depth', 'GmasAgent.distance', 'GmasAgent.alpha',
                 'CrarAgent.update_scheme'):
    assert _bound(run, shared) == _bound(figure1[cell], shared), shared


def test_long_crar_run_config():
  cli.parse_gin([os.path.join(REPO, 'gin', 'experiments', 'crar_2e5_long.gin')], [])
  assert gin.query_parameter('ensure_dataset.num_transitions') == 200_000
  assert (gin.query_parameter('train.epochs') * gin.query_parameter('train.steps_per_epoch')
          >= 150_000)


def _bound(run, name):
  """The value `name` takes in `run` (its gin file plus the sweep's bindings)."""
  command = run.command('bin/train')
  cli.parse_gin([os.path.join(REPO, run.gin_file)], command[command.index('--gin_param') + 1:-2:2])
  try:
    return gin.query_parameter(name)
  finally:
    gin.clear_config()


def test_update_schemes_sweep_runs_the_scheme_each_name_says(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  runs = sweep_runs('update_schemes.gin')
  assert len(runs) == 4
  for name, run in runs.items():
    expected = 'per_loss' if name.endswith('per_loss') else 'deer'
    assert _bound(run, 'CrarAgent.update_scheme') == expected
    assert _bound(run, 'train.epochs') * _bound(run, 'train.steps_per_epoch') == 40_000


def test_crar_curves_sweeps_are_joint_60k_on_their_data_size(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  for sweep_file, size in (('crar_curves.gin', 100_000), ('crar_curves_2e5.gin', 200_000)):
    (run,) = sweep_runs(sweep_file).values()
    assert _bound(run, 'CrarAgent.update_scheme') == 'joint'
    assert _bound(run, 'ensure_dataset.num_transitions') == size
    assert _bound(run, 'train.epochs') * _bound(run, 'train.steps_per_epoch') == 60_000
