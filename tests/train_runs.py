"""bin/train on gin/smoke.gin in its own process, for the end-to-end tests."""

import csv
import os
import subprocess
import sys

import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# For runs whose evaluations and exported policies no test reads: they cost most of a run.
NO_EVALUATION = 'train.eval_depths = ()'


def train_command(root_dir, data_root, *params):
  command = [sys.executable, os.path.join(REPO, 'bin', 'train'), '--gin_file',
             os.path.join(REPO, 'gin', 'smoke.gin'), '--root_dir', str(root_dir),
             '--gin_param', f"dataset_directory.data_root = '{data_root}'"]
  for param in params:
    command += ['--gin_param', param]
  return command


def run_train(root_dir, data_root, *params):
  return subprocess.run(train_command(root_dir, data_root, *params), capture_output=True,
                        text=True, cwd=REPO, timeout=600)


def read_csv(root_dir):
  with open(os.path.join(root_dir, 'evaluations.csv')) as stream:
    return list(csv.DictReader(stream))


def latest_checkpoint_step(root_dir):
  latest = tf.train.latest_checkpoint(os.path.join(root_dir, 'checkpoints'))
  return int(latest.rsplit('-', 1)[1]) if latest else None
