"""What every `bin/` entry point shares: gin parsing and errors a user can cause."""

import logging as python_logging
import os
import sys
from typing import Sequence

# A clean console for the entry points: TensorFlow's C++ banner, gym's deprecation notice
# (gym comes with TF-Agents; nothing here uses it) and the library-internal warnings of
# TensorFlow, TF-Agents and Keras (deprecations, SavedModel export chatter) are silenced
# where they are raised. Errors still show; ours are Python exceptions.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # before TensorFlow is imported
try:
  import gym_notices.notices  # noqa: E402  gym prints the notice found here on import
  gym_notices.notices.notices.clear()
except ImportError:
  pass

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import gin  # noqa: E402

from gmas_tf import errors  # noqa: E402

# TensorFlow's Python logger, set before TensorFlow exists: the entry points that never
# train (bin/sweep, bin/report) do not import it.
python_logging.getLogger('tensorflow').setLevel(python_logging.ERROR)
logging.set_verbosity(logging.ERROR)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UserError(Exception):
  """An error the user can fix; reported as one sentence, without a stack trace."""


# Errors whose message already tells the user what to do.
USER_ERRORS = (UserError, errors.DatasetError, errors.MissingDependency, errors.SpecError,
               errors.TrainingError)


def define_gin_flags():
  flags.DEFINE_multi_string('gin_file', [], 'gin config files, applied in order.')
  flags.DEFINE_multi_string('gin_param', [], 'gin bindings, e.g. "train.epochs = 3".')


def define_gymnasium_flags(env_id_help: str):
  """--env_id and --wrapper: a Gymnasium environment and the wrappers applied to it."""
  flags.DEFINE_string('env_id', None, 'A Gymnasium id ("module:Id" imports the module that '
                      f'registers it): {env_id_help}')
  flags.DEFINE_multi_string('wrapper', [], 'Entry points ("module:Class") of wrappers '
                            'applied, in order, to the Gymnasium environment.')


def first_line(error: Exception) -> str:
  """The error's own message: gin appends lines naming the configurable or file it came from."""
  return (str(error).strip().splitlines() or [''])[0]


def parse_gin(gin_files: Sequence[str], gin_params: Sequence[str]) -> None:
  """Parses gin files and bindings; an unknown binding or file becomes a UserError."""
  # Lets `include 'gin/crar.gin'` work from any working directory.
  gin.add_config_file_search_path(REPO_ROOT)
  for path in gin_files:
    if not os.path.exists(path) and not os.path.exists(os.path.join(REPO_ROOT, path)):
      raise UserError(f'gin file {path} does not exist.')
  try:
    gin.parse_config_files_and_bindings(gin_files, gin_params)
  except (ValueError, KeyError, SyntaxError, ImportError) as error:
    message = (first_line(error) or repr(error)).rstrip('.')
    raise UserError(f'Bad gin config: {message}. Check the binding names against the '
                    'gin files in gin/.') from None


def set_threads(threads: int) -> None:
  """TensorFlow's intra- and inter-op threads of this process (0: its default, every core).

  Call before TensorFlow runs an op. Several runs sharing the cores train faster with one
  thread each (docs/RESULTS.md, "Sweep layouts").
  """
  if threads < 0:
    raise UserError(f'--threads must be 0 (TensorFlow\'s default) or more, got {threads}.')
  if threads:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the imports)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def run(main):
  """Wraps an absl main so that a user's mistake ends with one line on stderr."""

  def wrapped(argv):
    try:
      return main(argv)
    except USER_ERRORS as error:
      print(f'error: {first_line(error)}', file=sys.stderr)
      sys.exit(1)
    except errors.Stopped as stop:
      print(f'stopped: {first_line(stop)}', file=sys.stderr)
      sys.exit(128 + stop.signal_number)

  return wrapped
