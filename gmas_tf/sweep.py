"""Resumable sweeps: configs x seeds, each run a separate `bin/train` process.

A sweep is a gin file:

  experiment.configs = {'crar': 'gin/crar.gin', 'gmas_cosine_d1': 'gin/gmas.gin'}
  experiment.gin_files = ['gin/figure1.gin']     # the setting, after each config's file
  experiment.bindings = ['train.epochs = 10']    # then these, for every run
  experiment.cell_bindings = {'gmas_cosine_d1': ['GmasAgent.training_depth = 1']}
  experiment.seeds = [0, 1, 2]
  experiment.config_major = True                 # optional: all seeds of a config first

Run `name` with seed `s` lives in root_dir/name/seed_s and trains with `train.seed = s`
and `ensure_dataset.seed = s` (so each seed has its own dataset, shared by all configs:
the comparison is paired; `experiment.seed_parameters` names others). A run that ended
well gets a `finished` file and is skipped next time; any other run resumes from its
checkpoints when the sweep is started again.

Checkpoints live only as long as root_dir does. To accumulate a sweep over sessions whose
working space does not survive (a fresh checkout each time), give a `results_dir` that is
kept (committed): every finished run's summaries (SUMMARY_FILES: its evaluations, its
operative config and its training scalars as one gzipped CSV, about 30 KB for 40k updates of
the maze; no event files, no checkpoint) are copied to results_dir/name/seed_s, and a run
whose evaluations.csv is there counts as finished. bin/report reads results_dir like a
root_dir. While a run trains, its latest checkpoint, its evaluations and scalars so far are
kept in results_dir/name/seed_s/unfinished, or kept_dir/name/seed_s if a kept_dir is given
(the latest checkpoint only, about 1.6 MB for CRAR; removed when the run finishes); a run
whose root_dir has no checkpoint starts from there. A sweep stopped with SIGTERM (or Ctrl-C)
stops its trainers after their current update and keeps those checkpoints, so nothing is
lost; a sweep killed outright loses at most one epoch of each run.
"""

import csv
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import gin

from gmas_tf import scalars

FINISHED_FILE = 'finished'
LOG_FILE = 'train.log'
# A finished run's summaries in results_dir, copied in this order: once evaluations.csv is
# there, the copy is whole and the run counts as finished (results_dir has no marker file).
SUMMARY_FILES = ('operative_config.gin', scalars.SCALARS_FILE, 'evaluations.csv')
UNFINISHED_DIR = 'unfinished'
CHECKPOINT_DIR = 'checkpoints'


def latest_checkpoint_files(directory: str) -> List[str]:
  """The files of the latest checkpoint in `directory` (a CheckpointManager's), with the
  `checkpoint` index first; [] if there is none. The index is read by hand, as
  tf.train.get_checkpoint_state would, so that the sweep never imports TensorFlow."""
  index = os.path.join(directory, 'checkpoint')
  if not os.path.exists(index):
    return []
  with open(index) as stream:
    prefix = stream.readline().split('"')[1]
  files = [name for name in sorted(os.listdir(directory)) if name.startswith(prefix + '.')]
  return ['checkpoint'] + files if files else []


def checkpoint_step(directory: str) -> Optional[int]:
  """The step of the latest checkpoint in `directory` (bin/train numbers its checkpoints
  by step: ckpt-<step>), or None if there is none."""
  files = latest_checkpoint_files(directory)
  return int(files[1].split('.')[0].split('-')[-1]) if files else None


def last_evaluation(path: str, metric: str = 'held_out_epsilon_score'
                    ) -> Optional[Tuple[int, str]]:
  """The step of the last evaluation in an evaluations.csv and its `metric` per evaluation
  depth ('d0 -4.41, d3 +0.32'); None if there is none."""
  if not os.path.exists(path):
    return None
  with open(path) as stream:
    rows = [r for r in csv.DictReader(stream) if r.get(metric)]
  if not rows:
    return None
  step = rows[-1]['step']
  return int(step), ', '.join(f'd{r["depth"]} {float(r[metric]):+.2f}'
                              for r in rows if r['step'] == step)


SEED_PARAMETERS = ('train.seed', 'ensure_dataset.seed')


class Run(NamedTuple):
  name: str
  seed: int
  gin_file: str
  bindings: Tuple[str, ...]
  root_dir: str
  results_dir: Optional[str] = None  # where this run's summaries are kept, if anywhere
  gin_files: Tuple[str, ...] = ()  # parsed after gin_file, before the bindings
  kept_root: Optional[str] = None  # kept_dir/name/seed_s: where an unfinished run is kept
  seed_parameters: Tuple[str, ...] = SEED_PARAMETERS  # bound to the seed

  @property
  def kept_dir(self) -> Optional[str]:
    """Where the latest checkpoint of an unfinished run is kept, if anywhere."""
    if self.kept_root:
      return self.kept_root
    return os.path.join(self.results_dir, UNFINISHED_DIR) if self.results_dir else None

  def command(self, train_binary: str, threads: int = 0) -> List[str]:
    """bin/train's command line; threads > 0 sets its TensorFlow threads."""
    params = [*(f'{name} = {self.seed}' for name in self.seed_parameters), *self.bindings]
    return ([sys.executable, train_binary]
            + [arg for f in (self.gin_file, *self.gin_files) for arg in ('--gin_file', f)]
            + [arg for p in params for arg in ('--gin_param', p)]
            + (['--threads', str(threads)] if threads else [])
            + ['--root_dir', self.root_dir])

  @property
  def finished(self) -> bool:
    return (os.path.exists(os.path.join(self.root_dir, FINISHED_FILE)) or bool(
        self.results_dir and os.path.exists(os.path.join(self.results_dir, 'evaluations.csv'))))

  def mark_finished(self):
    """Writes root_dir's `finished` file and copies the summaries to results_dir."""
    open(os.path.join(self.root_dir, FINISHED_FILE), 'w').close()
    if self.results_dir:
      os.makedirs(self.results_dir, exist_ok=True)
      for name in SUMMARY_FILES:
        if os.path.exists(os.path.join(self.root_dir, name)):
          shutil.copyfile(os.path.join(self.root_dir, name),
                          os.path.join(self.results_dir, name))
      shutil.rmtree(self.kept_dir, ignore_errors=True)

  def keep_progress(self) -> bool:
    """Copies the run's latest checkpoint, evaluations and training scalars to its kept
    folder (`kept_dir`) if they are newer than the kept ones (the kept checkpoint is
    replaced, never accumulated). Returns whether it copied."""
    if not self.kept_dir:
      return False
    source = os.path.join(self.root_dir, CHECKPOINT_DIR)
    files = latest_checkpoint_files(source)
    kept = self.kept_dir
    if not files or files == latest_checkpoint_files(os.path.join(kept, CHECKPOINT_DIR)):
      return False
    # Built beside the kept copy, then swapped in: a kill midway leaves the old one whole.
    staging = kept + '.partial'
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(os.path.join(staging, CHECKPOINT_DIR))
    for name in files[1:] + files[:1]:
      shutil.copyfile(os.path.join(source, name), os.path.join(staging, CHECKPOINT_DIR, name))
    for name in SUMMARY_FILES:
      if os.path.exists(os.path.join(self.root_dir, name)):
        shutil.copyfile(os.path.join(self.root_dir, name), os.path.join(staging, name))
    shutil.rmtree(kept, ignore_errors=True)
    os.rename(staging, kept)
    return True

  def status(self) -> str:
    """One line: finished, or where its latest checkpoint is, or not started; then its
    last evaluation (held-out score with epsilon 0.1 per evaluation depth)."""
    kept = self.kept_dir
    places = [d for d in (self.root_dir, self.results_dir, kept) if d]
    step = checkpoint_step(os.path.join(self.root_dir, CHECKPOINT_DIR))
    kept_step = kept and checkpoint_step(os.path.join(kept, CHECKPOINT_DIR))
    if self.finished:
      state = 'finished'
    elif step is not None:
      state = f'checkpoint at step {step}'
    elif kept_step is not None:
      state = f'kept checkpoint at step {kept_step}'
    else:
      state = 'not started'
    evaluations = [last_evaluation(os.path.join(d, 'evaluations.csv')) for d in places]
    latest = max(filter(None, evaluations), default=None)
    return f'{self.name} seed {self.seed}: {state}' + (
        f'; last evaluation at step {latest[0]}: {latest[1]}' if latest else '')

  def restore_progress(self) -> bool:
    """Starts root_dir from the kept checkpoint if root_dir has none. Returns whether it did."""
    kept = self.kept_dir
    if (not kept or not latest_checkpoint_files(os.path.join(kept, CHECKPOINT_DIR))
        or latest_checkpoint_files(os.path.join(self.root_dir, CHECKPOINT_DIR))):
      return False
    shutil.copytree(kept, self.root_dir, dirs_exist_ok=True)
    return True


@gin.configurable
def experiment(root_dir: str, configs: Dict[str, str] = gin.REQUIRED,
               seeds: Sequence[int] = (0, 1, 2),
               gin_files: Sequence[str] = (),
               bindings: Sequence[str] = (),
               cell_bindings: Optional[Dict[str, Sequence[str]]] = None,
               only: Optional[Sequence[str]] = None,
               results_dir: Optional[str] = None, kept_dir: Optional[str] = None,
               config_major: bool = False,
               seed_parameters: Sequence[str] = SEED_PARAMETERS) -> List[Run]:
  """The runs of a sweep, seed-major (every config gets seed 0 before any gets seed 1) or,
  with config_major, config by config in the order of `configs` (every seed of the first
  config before the second's).

  Run `name` parses configs[name], then `gin_files` (a setting shared by every run, such as
  gin/figure1.gin), then `bindings`, then cell_bindings[name] (what sets this cell apart:
  a training depth, a distance); later ones override earlier ones. An unfinished run's
  latest checkpoint is kept in kept_dir/name/seed_s if kept_dir is given (a folder apart
  from the results, as checkpoints are large), else in results_dir/name/seed_s/unfinished.
  `only`, if given, keeps
  the runs of those configs (--gin_param "experiment.only = ['gmas_cosine_d3']").
  `seed_parameters` are bound to the run's seed: the networks' and the dataset's seed
  (a Gymnasium task's dataset: 'minari_dataset.seed').
  """
  cell_bindings = dict(cell_bindings or {})
  for name, names in (('cell_bindings', cell_bindings), ('only', only or ())):
    unknown = set(names) - set(configs)
    if unknown:
      raise ValueError(f'experiment.{name} names runs that experiment.configs does not: '
                       f'{sorted(unknown)}.')
  if only is not None:
    configs = {name: configs[name] for name in configs if name in only}

  def under(directory, name, seed):
    return os.path.join(directory, name, f'seed_{seed}') if directory else None
  pairs = ([(name, seed) for name in configs for seed in seeds] if config_major
           else [(name, seed) for seed in seeds for name in configs])
  return [Run(name, seed, configs[name], (*bindings, *cell_bindings.get(name, ())),
              under(root_dir, name, seed), under(results_dir, name, seed), tuple(gin_files),
              under(kept_dir, name, seed), tuple(seed_parameters))
          for name, seed in pairs]


BACKENDS = ('local', 'ray')


def _die_with_parent():
  """In the child: receive SIGTERM when its parent dies, even by SIGKILL (Linux)."""
  ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def train_process(command: Sequence[str], log_path: str) -> subprocess.Popen:
  """Starts one `bin/train` process, its output appended to log_path."""
  with open(log_path, 'a') as log:
    return subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent)


def _train_and_wait(command: Sequence[str], log_path: str) -> int:
  """A Ray task's body: one `bin/train` process, to its end; returns its exit code."""
  return train_process(command, log_path).wait()


class _LocalRun:
  """A run trained by a child process of the sweep."""

  def __init__(self, command, log_path):
    self._process = train_process(command, log_path)

  def exit_code(self) -> Optional[int]:
    return self._process.poll()

  def stop(self):
    self._process.terminate()
    self._process.wait()


class _RayRun:
  """A run trained by a Ray task: on this machine's Ray instance or a cluster's. On a
  cluster, every node needs this checkout at the same path and root_dir on shared storage."""

  def __init__(self, command, log_path):
    import ray  # pylint: disable=import-outside-toplevel  (an optional extra)
    self._ray = ray
    self._ref = ray.remote(num_cpus=1)(_train_and_wait).remote(command, log_path)

  def exit_code(self) -> Optional[int]:
    ready, _ = self._ray.wait([self._ref], timeout=0)
    return self._ray.get(self._ref) if ready else None

  def stop(self):
    # The worker is killed; its trainer gets SIGTERM through PR_SET_PDEATHSIG.
    self._ray.cancel(self._ref, force=True)


def start_ray(address: Optional[str], parallel: int) -> None:
  """Connects to the Ray cluster at `address`, or starts a local instance of `parallel`
  CPUs (each run takes one)."""
  try:
    import ray  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise RuntimeError("The ray backend needs Ray: pip install -e '.[ray]'.") from None
  if address:
    ray.init(address=address, log_to_driver=False)
  else:
    ray.init(num_cpus=parallel, include_dashboard=False, log_to_driver=False)


def run_all(runs: Sequence[Run], train_binary: str, parallel: int = 1,
            poll_seconds: float = 2.0, backend: str = 'local', threads: int = 0) -> List[Run]:
  """Runs the unfinished runs, `parallel` at a time, each with `threads` TensorFlow
  threads (0: TensorFlow's default). Returns the runs that failed.

  backend 'local' trains each run in a child process; 'ray' in a Ray task (call start_ray
  first). A run is looked at again when its turn comes: one found finished then is skipped.
  If this process is interrupted or gets SIGTERM, its local runs stop after their current
  update and their checkpoints are kept (in the run's kept_dir too); if it is killed, its runs
  stop too and their checkpoints stay in root_dir.
  """
  if backend not in BACKENDS:
    raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}.')
  start = _LocalRun if backend == 'local' else _RayRun
  pending = [r for r in runs if not r.finished]
  print(f'{len(runs) - len(pending)} of {len(runs)} runs already finished', flush=True)
  active, failed = {}, []
  try:
    while pending or active:
      while pending and len(active) < parallel:
        run = pending.pop(0)
        if run.finished:  # finished meanwhile (its summaries were copied in, or another sweep)
          print(f'skipped {run.name} seed {run.seed}: finished elsewhere', flush=True)
          continue
        os.makedirs(run.root_dir, exist_ok=True)
        if run.restore_progress():
          print(f'{run.name} seed {run.seed}: starting from the checkpoint kept in '
                f'{run.kept_dir}', flush=True)
        active[run] = start(run.command(train_binary, threads),
                            os.path.join(run.root_dir, LOG_FILE))
        print(f'started {run.name} seed {run.seed}', flush=True)
      for run, job in list(active.items()):
        exit_code = job.exit_code()
        if exit_code is None:
          run.keep_progress()
          continue
        del active[run]
        if exit_code == 0:
          run.mark_finished()
          print(f'finished {run.name} seed {run.seed}', flush=True)
        else:
          run.keep_progress()  # e.g. the checkpoint it saved when stopped by SIGTERM
          failed.append(run)
          print(f'FAILED {run.name} seed {run.seed} (exit {exit_code}); see '
                f'{os.path.join(run.root_dir, LOG_FILE)}', flush=True)
      time.sleep(poll_seconds if active else 0)
  finally:
    for run, job in active.items():
      job.stop()  # a local trainer saves its last update first (bin/train on SIGTERM)
      run.keep_progress()
  return failed
