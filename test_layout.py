"""The repository's layout: one line limit for every tracked source file, and imports that never run back up.

Library modules (interpolants, losses, models, fid, couplings) are copied alone into other projects, so they import
no project module; data may import fid; the commands (train, sample) import the library; nothing but tests and
experiments imports train. Read from the files as text (ast), nothing is imported or run.
"""
import ast
import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
LINE_LIMIT = 120
LIBRARY = {'interpolants', 'losses', 'models', 'fid', 'couplings'}
# what each top-level module may import from the project; a new module gets its line here
ALLOWED = {'interpolants': set(), 'losses': set(), 'models': set(), 'fid': set(), 'couplings': set(), 'data': {'fid'},
           'train': {'couplings', 'data', 'fid', 'interpolants', 'losses', 'models'},
           'sample': {'couplings', 'fid', 'interpolants', 'models'}}


def tracked(*patterns):
    try:
        out = subprocess.run(['git', 'ls-files', *patterns], cwd=HERE, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('not a git checkout: the tracked files are unknown')
    return out.stdout.split()


def long_lines(path):
    with open(os.path.join(HERE, path), encoding='utf-8') as f:
        return [n for n, line in enumerate(f, 1) if len(line.rstrip('\n')) > LINE_LIMIT]


def project_imports(path, modules):
    with open(os.path.join(HERE, path), encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split('.')[0])
    return names & modules


def test_every_tracked_source_line_fits_the_line_limit():
    files = tracked('*.py', '*.sh', '.ci/run')
    assert 'train.py' in files and 'test_layout.py' in files
    over = {path: long_lines(path) for path in files}
    assert {path: lines for path, lines in over.items() if lines} == {}, f'lines over {LINE_LIMIT} characters'


def test_library_modules_import_nothing_of_the_project_and_no_import_runs_back_up():
    modules = {path[:-3] for path in tracked('*.py') if '/' not in path and not path.startswith(('test_', 'conftest'))}
    assert modules == ALLOWED.keys(), 'a top-level module without its line in ALLOWED (or one gone)'
    imports = {name: project_imports(f'{name}.py', modules) for name in modules}
    assert {name: imports[name] for name in LIBRARY} == {name: set() for name in LIBRARY}
    assert {name: found - ALLOWED[name] for name, found in imports.items() if found - ALLOWED[name]} == {}


def test_nothing_but_tests_and_experiments_imports_train():
    users = {path for path in tracked('*.py') if 'train' in project_imports(path, {'train'})}
    assert users and all(os.path.basename(path).startswith('test_') or path.startswith('experiments/')
                         for path in users), sorted(users)
