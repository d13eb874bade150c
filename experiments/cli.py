"""What the experiments/ commands share with train.py's command line: bad input is one line on stderr naming the
program and the flag, exit 2, no traceback, nothing written first; results are replaced whole or not at all; a
metrics.jsonl whose last line a kill cut is an unfinished run, not a JSONDecodeError."""
import argparse
import json
import os
import sys


def parser(prog, description, **kwargs):
    """argparse.ArgumentParser whose errors (argparse's own and p.error(...)) are one line 'PROG: error: ...', exit 2."""
    p = argparse.ArgumentParser(prog=prog, description=description, **kwargs)

    def error(message):
        print(f'{prog}: error: {message}', file=sys.stderr)
        sys.exit(2)
    p.error = error
    return p


def checked(cast, ok, what):
    """argparse type: cast, then 'argument --x: must be WHAT, got V' when ok(value) is false (as train.py's)."""
    def parse(text):
        value = cast(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f'must be {what}, got {text}')
        return value
    parse.__name__ = cast.__name__                              # "invalid int value: 'x'" for unparsable text
    return parse


COUNT = checked(int, lambda v: v >= 1, 'an integer >= 1')
NONNEG = checked(int, lambda v: v >= 0, 'an integer >= 0')
POSITIVE = checked(float, lambda v: 0 < v < float('inf'), 'a positive number')


def folder_for_output(p, flag, path):
    """p.error unless path is a folder or can be created as one (nothing is created here)."""
    if os.path.exists(path) and not os.path.isdir(path):
        p.error(f'{flag} {path} is a file, not a folder')
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        p.error(f'{flag} {path}: cannot create that folder ({parent} is a file)')


def input_folder(p, flag, path):
    """p.error unless path is an existing folder."""
    if not os.path.isdir(path):
        p.error(f'{flag} {path} is {"a file, not a folder" if os.path.exists(path) else "not found"}')


def read_metrics(path):
    """metrics.jsonl -> [record]; a last line without its newline (a kill cut it mid-write) is left out, the record
    it held never happened. None when the file is missing. A bad line before the last is a ValueError."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        lines = f.read().split('\n')
    rows = []
    for i, line in enumerate(lines[:-1]):                       # lines[-1]: '' after the last newline, or a cut line
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise ValueError(f'{path}: line {i + 1} is not JSON') from None
    return rows


def is_cut(path):
    """True when path exists and its last line was cut (no final newline)."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return False
    with open(path, 'rb') as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b'\n'


def write_text(path, text):
    """Replace path by text whole or not at all: write path.tmp, then rename; no .tmp is left on failure."""
    tmp = path + '.tmp'
    try:
        with open(tmp, 'w') as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
