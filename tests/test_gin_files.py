"""The gin files: each builds the agent it says, and each sweep binds today exactly what its
committed runs were trained with (so a rerun of a sweep repeats them)."""

import ast
import glob
import inspect
import os

import gin
import pytest
from tf_agents.environments import tf_py_environment

from gmas_tf import cli
from gmas_tf import evaluation
from gmas_tf import sweep
from gmas_tf import maze_task
from gmas_tf import runner
from gmas_tf.agents import crar_agent
from gmas_tf.agents import gmas_agent
from gmas_tf.envs import maze

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(REPO, 'docs', 'experiments')
GIN_FILES = sorted(glob.glob(os.path.join(REPO, 'gin', '*.gin')))
SWEEPS = sorted(glob.glob(os.path.join(REPO, 'gin', 'experiments', '*.gin')))


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.mark.parametrize('path', [p for p in GIN_FILES if not p.endswith('figure1.gin')],
                         ids=os.path.basename)
def test_gin_file_builds_the_agent_it_names(path, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # includes must resolve from anywhere
  cli.parse_gin([path], [])
  env = tf_py_environment.TFPyEnvironment(maze.MazeEnvironment())
  if not path.endswith('gmas.gin'):
    agent = crar_agent.CrarAgent(env.time_step_spec(), env.action_spec())
    assert type(agent) is crar_agent.CrarAgent
    return
  assert str(gin.query_parameter('train.agent_class')) == '@GmasAgent'
  agent = gmas_agent.GmasAgent(env.time_step_spec(), env.action_spec())
  assert (agent._distance, agent._alpha, agent._training_depth) == ('cosine', 0.05, 3)
  assert agent._gamma == 0.9 and agent._target_update_period == 1000


def test_the_depth_and_the_distance_are_bindings(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  cli.parse_gin([os.path.join(REPO, 'gin', 'gmas.gin')],
                ["GmasAgent.distance = 'l2'", 'GmasAgent.alpha = 1.0',
                 'GmasAgent.training_depth = 1'])
  env = tf_py_environment.TFPyEnvironment(maze.MazeEnvironment())
  agent = gmas_agent.GmasAgent(env.time_step_spec(), env.action_spec())
  assert (agent._distance, agent._alpha, agent._training_depth) == ('l2', 1.0, 1)


def sweep_runs(name, results_dir=None):
  cli.parse_gin([os.path.join(REPO, 'gin', 'experiments', name)], [])
  runs = sweep.experiment('runs', results_dir=results_dir)
  gin.clear_config()
  return runs


def parse_run(run):
  """Parses a run's gin files and bindings as bin/train would."""
  command = run.command('bin/train')
  files = [command[i + 1] for i, arg in enumerate(command) if arg == '--gin_file']
  params = [command[i + 1] for i, arg in enumerate(command) if arg == '--gin_param']
  cli.parse_gin([os.path.join(REPO, f) for f in files], params)


@pytest.mark.parametrize('path', SWEEPS, ids=os.path.basename)
def test_every_sweep_parses_and_its_runs_parse_with_their_bindings(path, monkeypatch,
                                                                   tmp_path):
  monkeypatch.chdir(tmp_path)
  runs = sweep_runs(path)
  seeds = {r.seed for r in runs}
  assert len(runs) == len({r.name for r in runs}) * len(seeds)
  for run in runs:
    parse_run(run)
    # The networks' seed and the dataset's (the maze's, or a Gymnasium task's).
    for name in run.seed_parameters:
      assert gin.query_parameter(name) == run.seed
    assert run.seed_parameters[0] == 'train.seed' and len(run.seed_parameters) == 2
    gin.clear_config()


def test_a_cell_binding_for_no_config_is_refused_in_one_sentence(tmp_path):
  with pytest.raises(ValueError, match=r"cell_bindings names runs that experiment.configs "
                     r"does not: \['b'\]"):
    sweep.experiment('runs', configs={'a': 'a.gin'}, cell_bindings={'b': ['x = 1']})
  with pytest.raises(ValueError, match=r"only names runs that experiment.configs does not"):
    sweep.experiment('runs', configs={'a': 'a.gin'}, only=['c'])


def test_only_keeps_the_runs_of_the_configs_it_names_with_their_cell_bindings():
  runs = sweep.experiment('runs', configs={'a': 'a.gin', 'b': 'b.gin'}, seeds=[0, 1],
                          cell_bindings={'b': ['x = 1']}, bindings=['y = 2'], only=['b'],
                          gin_files=['s.gin'])
  assert [(r.name, r.seed, r.bindings, r.gin_files) for r in runs] == [
      ('b', 0, ('y = 2', 'x = 1'), ('s.gin',)), ('b', 1, ('y = 2', 'x = 1'), ('s.gin',))]
  command = runs[0].command('bin/train')
  assert command[2:6] == ['--gin_file', 'b.gin', '--gin_file', 's.gin']
  assert command[-6:-2] == ['--gin_param', 'y = 2', '--gin_param', 'x = 1']


# The parameters any experiment has varied, and where their defaults are.
RUNNER = runner.Runner.__init__
VARIED = {
    'train.agent_class': RUNNER, 'train.epochs': RUNNER, 'train.steps_per_epoch': RUNNER,
    'train.eval_depths': RUNNER, 'train.train_mazes': RUNNER,
    'held_out_score.num_mazes': evaluation.held_out_score,
    'ensure_dataset.num_transitions': maze_task.ensure_dataset,
    'CrarAgent.update_scheme': crar_agent.CrarAgent.__init__,
    'CrarAgent.reward_discount_state': crar_agent.CrarAgent.__init__,
    'CrarAgent.learning_rate': crar_agent.CrarAgent.__init__,
    **{f'GmasAgent.{name}': gmas_agent.GmasAgent.__init__
       for name in ('distance', 'alpha', 'training_depth', 'depth_discount', 'matching_delay',
                    'matching_trains_encoder', 'adaptive_depth_threshold')},
}


def _value(text):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a reference such as @GmasAgent


def effective_value(name):
  """What `name` takes in the parsed config: its binding, else its default."""
  try:
    value = gin.query_parameter(name)
  except ValueError:
    value = inspect.signature(VARIED[name]).parameters[name.split('.')[1]].default
  if inspect.isclass(value) or isinstance(value, gin.config.ConfigurableReference):
    return '@' + (value.__name__ if inspect.isclass(value) else str(value)[1:])
  return list(value) if isinstance(value, tuple) else value


def committed_values(path):
  values = {}
  for line in open(path):
    name, sep, text = line.partition(' = ')
    if sep and name in VARIED:
      value = _value(text.strip())
      values[name] = list(value) if isinstance(value, tuple) else value
  return values


# Sweep file -> the folder of its committed runs.
COMMITTED = {'figure1.gin': 'figure1', 'update_schemes.gin': 'update_schemes',
             'reward_discount_state.gin': 'reward_discount_state',
             'depth_discount.gin': 'depth_discount', 'adaptive_depth.gin': 'adaptive_depth',
             'gmas_delay.gin': 'gmas_delay', 'gmas_pulls.gin': 'gmas_pulls',
             'crar_curves.gin': 'crar_curves'}


@pytest.mark.parametrize('name, folder', COMMITTED.items())
def test_each_committed_run_is_what_its_sweep_binds_today(name, folder, monkeypatch):
  # Every parameter an experiment has varied, in every committed run of the sweep (symlinked
  # arms included): the run's operative config against the sweep's config today.
  monkeypatch.chdir(REPO)
  checked = 0
  for run in sweep_runs(name, os.path.join(EXPERIMENTS, folder, 'runs')):
    path = os.path.join(run.results_dir, 'operative_config.gin')
    if not os.path.exists(path):
      continue
    committed = committed_values(path)
    parse_run(run)
    assert {n: effective_value(n) for n in committed} == committed, (run.name, run.seed)
    gin.clear_config()
    checked += 1
  assert checked >= 1


def test_the_arms_kept_once_are_the_same_runs_as_figure1s():
  for link, target in [('update_schemes/runs/crar_per_loss', 'crar'),
                       ('update_schemes/runs/gmas_cosine_d3_per_loss', 'gmas_cosine_d3'),
                       ('reward_discount_state/runs/crar_shared', 'crar'),
                       ('reward_discount_state/runs/gmas_cosine_d3_shared', 'gmas_cosine_d3'),
                       ('depth_discount/runs/cosine_d3_gamma1', 'gmas_cosine_d3'),
                       ('adaptive_depth/runs/cosine_d3_fixed', 'gmas_cosine_d3')]:
    path = os.path.join(EXPERIMENTS, link)
    assert os.path.islink(path), link
    assert os.path.realpath(path) == os.path.join(EXPERIMENTS, 'figure1', 'runs', target)


def test_the_long_runs_are_figure1_but_for_the_budget(monkeypatch):
  monkeypatch.chdir(REPO)
  figure1 = {r.name: r for r in sweep_runs('figure1.gin') if r.seed == 0}
  for name, budget in (('long_budget.gin', 150_000), ('long_reference.gin', 500_000)):
    for run in (r for r in sweep_runs(name) if r.seed == 0):
      values = {}
      for each in (run, figure1[run.name]):
        parse_run(each)
        values[each is run] = {n: effective_value(n) for n in VARIED}
        gin.clear_config()
      assert values[True]['train.epochs'] * values[True]['train.steps_per_epoch'] == budget
      for key in ('train.epochs', 'train.steps_per_epoch'):
        del values[True][key], values[False][key]
      assert values[True] == values[False], (name, run.name)


def test_the_alpha_screen_varies_alpha_alone(monkeypatch):
  monkeypatch.chdir(REPO)
  figure1 = {r.name: r for r in sweep_runs('figure1.gin') if r.seed == 0}
  expected = {'cosine_alpha0.01': ('gmas_cosine_d3', 0.01),
              'cosine_alpha0.1': ('gmas_cosine_d3', 0.1), 'l2_alpha0.1': ('gmas_l2_d3', 0.1)}
  runs = [r for r in sweep_runs('alpha.gin') if r.seed == 0]
  assert {r.name for r in runs} == set(expected)
  for run in runs:
    cell, alpha = expected[run.name]
    values = {}
    for each in (run, figure1[cell]):
      parse_run(each)
      values[each is run] = {n: effective_value(n) for n in VARIED}
      gin.clear_config()
    assert values[True].pop('GmasAgent.alpha') == alpha
    values[False].pop('GmasAgent.alpha')
    assert values[True] == values[False], run.name


def test_the_seed_parameters_are_bound_to_each_run_s_seed():
  (run,) = sweep.experiment('runs', configs={'a': 'a.gin'}, seeds=[4],
                            seed_parameters=['train.seed', 'minari_dataset.seed'])
  params = [arg for arg in run.command('bin/train') if '=' in arg]
  assert params == ['train.seed = 4', 'minari_dataset.seed = 4']
  (run,) = sweep.experiment('runs', configs={'a': 'a.gin'}, seeds=[4])
  assert [arg for arg in run.command('bin/train') if '=' in arg] == [
      'train.seed = 4', 'ensure_dataset.seed = 4']
