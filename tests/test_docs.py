"""The docs' links and the commands they print name files that exist."""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def markdown_files():
  """README.md and the Markdown files of the repository's own folders."""
  yield os.path.join(REPO, 'README.md')
  for folder in ('bin', 'checkpoints', 'docs', 'gin', 'gmas_tf', 'tests'):
    for root, _, files in os.walk(os.path.join(REPO, folder)):
      yield from (os.path.join(root, name) for name in files if name.endswith('.md'))


def test_markdown_links_point_at_files_of_the_repository():
  broken = []
  for path in markdown_files():
    for target in re.findall(r'\]\(([^)\s]+)\)', open(path).read()):
      if re.match(r'[a-z]+:', target) or target.startswith('#'):
        continue
      if not os.path.exists(os.path.join(os.path.dirname(path), target.split('#')[0])):
        broken.append(f'{os.path.relpath(path, REPO)}: {target}')
  assert not broken


def test_the_tools_and_gin_files_the_docs_name_exist():
  # A command in a doc that names a moved tool or a removed gin file no longer runs.
  missing, paths = [], list(markdown_files())
  assert len(paths) > 20
  for path in paths:
    text = open(path).read()
    for name in re.findall(r'(?<![\w/.])(bin/[\w/]+(?:\.md)?|gin/[\w/]+\.gin)', text):
      if not os.path.exists(os.path.join(REPO, name)):
        missing.append(f'{os.path.relpath(path, REPO)}: {name}')
  assert not missing
