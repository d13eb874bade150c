"""What the experiments/ commands share with train.py's command line: bad input is one line on stderr naming the
program and the flag, exit 2, no traceback, nothing written first; a missing optional package is one line saying
how to install it. The rest they take from the project itself: train.checked's types, train.read_records for
metrics.jsonl (a cut last line is no entry), fid.write_atomic for a result replaced whole or not at all."""
import argparse
import importlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import train  # noqa: E402  (its argparse types; it imports nothing of experiments/)


def parser(prog, description, **kwargs):
    """argparse.ArgumentParser whose errors (argparse's own and p.error(...)): one line 'PROG: error: ...', exit 2."""
    p = argparse.ArgumentParser(prog=prog, description=description, **kwargs)

    def error(message):
        print(f'{prog}: error: {message}', file=sys.stderr)
        sys.exit(2)
    p.error = error
    return p


COUNT, NONNEG = train.COUNT, train.NONNEG                      # train.checked's: 'argument --x: must be ...'


def folder_for_output(p, flag, path):
    """p.error unless path is a folder or can be created as one (nothing is created here)."""
    if os.path.exists(path) and not os.path.isdir(path):
        p.error(f'{flag} {path} is a file, not a folder')
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        p.error(f'{flag} {path}: cannot create that folder ({parent} is a file)')


def study_folders(p, args, study, results):
    """A study's --out and --runs (args.out, args.runs, set in place): by default RESULTS and runs/STUDY, with --quick
    runs/STUDY-quick/{results,runs}; --quick never writes the committed results; then both checked (p.error)."""
    quick = os.path.join(ROOT, 'runs', f'{study}-quick')
    args.out = args.out or (os.path.join(quick, 'results') if args.quick else results)
    args.runs = args.runs or (os.path.join(quick, 'runs') if args.quick else os.path.join(ROOT, 'runs', study))
    if args.quick and os.path.realpath(args.out) == os.path.realpath(results):   # tiny budgets over the study's numbers
        p.error(f'--quick would overwrite the committed results in {args.out} with tiny-budget numbers: give another '
                '--out')
    folder_for_output(p, '--runs', args.runs)
    folder_for_output(p, '--out', args.out)


def input_folder(p, flag, path):
    """p.error unless path is an existing folder."""
    if not os.path.isdir(path):
        p.error(f'{flag} {path} is {"a file, not a folder" if os.path.exists(path) else "not found"}')


def reference_args(prog, description, default, argv=None):
    """The command line of a script that writes a committed reference file once: --out (default `default`), refused
    when it exists or its folder does not -> (parser, args)."""
    p = parser(prog, description)
    p.add_argument('--out', default=default, help='the .npz to write (refused if it exists)')
    args = p.parse_args(argv)
    if os.path.lexists(args.out):
        p.error(f'--out {args.out} exists: the reference is made once; remove it to make it again')
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        p.error(f'--out {args.out}: no folder {os.path.dirname(os.path.abspath(args.out))}')
    return p, args


def require(prog, module, install):
    """import module (an optional package's), else exit 1 with one line: what is missing and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        sys.exit(f'{prog}: error: needs {module.split(".")[0]}, which is not installed here ({e}); '
                 f'in a scratch venv: {install}')
