"""What every bin/ entry point shares: one-line errors, and no TensorFlow where none trains."""

import glob
import os
import signal
import subprocess
import sys

import gin
import pytest

from gmas_tf import cli
from gmas_tf import errors


@gin.configurable
def fails_in_a_configurable(error):
  raise error


@pytest.mark.parametrize('error, code, line', [
    (errors.TrainingError('The loss became nan at step 4.'), 1,
     'error: The loss became nan at step 4.'),
    (errors.DatasetError('No dataset in /tmp/x.'), 1, 'error: No dataset in /tmp/x.'),
    (errors.Stopped(signal.SIGTERM, 'SIGTERM at step 9; saved.'), 128 + signal.SIGTERM,
     'stopped: SIGTERM at step 9; saved.'),
])
def test_an_error_raised_inside_a_gin_configurable_ends_in_its_own_line(error, code, line,
                                                                       capsys):
  # gin appends "In call to configurable ..." to the message of what a configurable raises.
  with pytest.raises(SystemExit) as exit_info:
    cli.run(lambda argv: fails_in_a_configurable(error))([])
  assert exit_info.value.code == code
  assert capsys.readouterr().err == line + '\n'


def test_every_sweep_parses_in_bin_sweep_without_tensorflow():
  # bin/sweep's coordinating process stays small and starts in a fraction of a second.
  # The other files in gin/experiments configure one bin/train run.
  experiments = os.path.join(cli.REPO_ROOT, 'gin', 'experiments', '*.gin')
  paths = [path for path in sorted(glob.glob(experiments))
           if 'experiment.configs' in open(path).read()]
  assert len(paths) >= 10
  program = (
      'import sys, gin\n'
      'from gmas_tf import cli, sweep\n'
      'for path in sys.argv[1:]:\n'
      '  gin.clear_config()\n'
      '  cli.parse_gin([path], [])\n'
      '  assert sweep.experiment("runs"), path\n'
      'assert "tensorflow" not in sys.modules\n')
  result = subprocess.run([sys.executable, '-c', program, *paths], capture_output=True,
                          text=True, cwd=cli.REPO_ROOT, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
