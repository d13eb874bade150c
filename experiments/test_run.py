"""run.py: its --quick mode end to end (train.py and sample.py subprocesses, every table), and its helpers.

The quick run takes 50-80 s on 2 CPU cores (17 short subprocesses, two at a time, ~4 s of it imports each): its four
tests are marked slow (`pytest -m slow`); it needs neither ../shared nor matplotlib (without matplotlib the plots are
skipped with one printed line). The helpers' tests run by default.
"""
import math
import sys
import os
import re
import shlex

import numpy as np
import pytest
import torch
import torchvision

import mixture
import run
import sample
import train

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
    """One --quick run on a synthetic 2-class image folder -> (results folder, runs folder, {job: seconds})."""
    root = tmp_path_factory.mktemp('quick')
    for c, scale in (('dark', 0.3), ('bright', 1.0)):
        (root / 'images' / c).mkdir(parents=True)
        for i in range(40):
            torchvision.utils.save_image(scale * torch.rand(3, 8, 8), root / 'images' / c / f'{i}.png')
    done = run.main(['--quick', '--out', str(root / 'results'), '--runs', str(root / 'runs'),
                     '--images', str(root / 'images')])
    return root / 'results', root / 'runs', done


def table_rows(path):
    with open(path) as f:
        return [line for line in f.read().splitlines() if line.startswith('|') and not line.startswith('|---')]


@pytest.mark.slow
def test_quick_mode_writes_every_table_with_finite_numbers(quick_run):
    results, _, _ = quick_run
    for name, rows in (('missing_mode.md', 4), ('convergence.md', 4), ('images.md', 6)):
        lines = table_rows(results / name)
        assert len(lines) >= rows, (name, lines)
        numbers = [float(x) for x in re.findall(r'(?<![\w.])-?\d+\.\d+', '\n'.join(lines))]
        assert numbers and all(math.isfinite(x) for x in numbers)
        assert not re.search(r'\b(nan|inf)\b', '\n'.join(lines), re.IGNORECASE)
    missing = '\n'.join(table_rows(results / 'missing_mode.md'))
    assert '| 1 | 1 | 1 |' in missing and '| 0.9 | 0.99 | 1.1 |' in missing       # UID and a RealUID cell
    images = '\n'.join(table_rows(results / 'images.md'))
    assert '| real images (half vs the other half) |' in images and '| RealUID 0.98, 0.96 | 1 |' in images


@pytest.mark.slow
def test_commands_md_lists_every_job_as_a_valid_command_that_ran(quick_run):
    """Every `python train.py|sample.py ...` line parses with that script's own parser, and its output exists."""
    results, runs, done = quick_run
    with open(results / 'commands.md') as f:
        text = f.read()
    commands = [line for line in text.splitlines() if line.startswith('python ')]
    assert len(commands) == len(done) == 17
    assert re.findall(r'^# \S+: \d+ s$', text, re.MULTILINE).__len__() == len(done)   # a wall time per job
    for line in commands:
        argv = shlex.split(line.replace('$RUNS', str(runs)))[1:]
        if argv[0] == 'train.py':
            # --resume: the run is there, and without it train.py refuses to start a new one over it
            assert os.path.isfile(os.path.join(train.get_args(argv[1:] + ['--resume']).out, 'metrics.jsonl'))
        else:
            args, _ = sample.get_args(argv[1:])
            assert os.path.isfile(os.path.join(args.out, 'samples.npz'))


@pytest.mark.slow
def test_quick_mode_plots_decode(quick_run):
    pytest.importorskip('matplotlib')
    results, _, _ = quick_run
    for name in ('missing_mode.png', 'convergence.png', 'images.png'):
        image = torchvision.io.read_image(str(results / name))
        assert image.shape[0] in (3, 4) and min(image.shape[1:]) >= 100
        assert os.path.getsize(results / name) < 300_000                # small enough to commit


@pytest.mark.slow
def test_second_invocation_reuses_finished_runs(quick_run, tmp_path):
    """A finished job leaves RUNS/<name>.done: rerunning only redraws the tables (no subprocess starts)."""
    results, runs, done = quick_run
    again = run.main(['--quick', '--out', str(tmp_path), '--runs', str(runs), '--only', 'missing'])
    assert again == {k: v for k, v in done.items() if k.startswith('missing')}


def test_no_matplotlib_means_plots_skipped_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'matplotlib', None)                           # import matplotlib -> ImportError
    assert run.plt_or_none() is None
    assert capsys.readouterr().out.count('\n') == 1


def test_fraction_on_missing_counts_points_nearest_to_mode_7():
    centers = mixture.CENTERS
    x = np.stack([centers[7], centers[7] * 0.9, centers[0], centers[3],
                  (centers[6] + centers[7]) / 2 + 0.01 * centers[7]])
    assert run.fraction_on_missing(x) == pytest.approx(3 / 5)


def test_class_check_passes_on_labelled_real_images_and_fails_on_swapped_labels():
    """Three classes of noisy constant-colour images: the true labels pass (diagonal smallest, 1-NN 100%), a
    cyclic relabelling of the samples fails in every row."""
    g = torch.Generator().manual_seed(0)
    colours = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    y = torch.arange(60) % 3
    x = colours[y][:, :, None, None] + 0.5 * torch.randn(60, 3, 4, 4, generator=g)
    x_real = colours[y][:, :, None, None] + 0.5 * torch.randn(60, 3, 4, 4, generator=g)
    D, accuracy = run.class_distances(x, y, x_real, y, 3)
    assert run.passes(D) and accuracy.min() == 1
    D, accuracy = run.class_distances(x, (y + 1) % 3, x_real, y, 3)
    assert not run.passes(D) and (D.argmin(1) != torch.arange(3)).all() and accuracy.max() == 0


def test_updates_to_reach_matches_hand_computation():
    points = [(100, 1.0), (200, 0.5), (300, 0.2), (400, 0.35), (500, 0.21), (600, 0.2), (700, 0.19)]
    final, first, stays = run.updates_to_reach(points)          # final = (0.21 + 0.2 + 0.19) / 3 = 0.2, bound 0.22
    assert final == pytest.approx(0.2) and first == 300 and stays == 500


def test_quick_mode_never_writes_into_the_committed_results(capsys):
    args = run.get_args(['--quick'])
    assert os.path.realpath(args.out) != os.path.realpath(run.RESULTS) and 'experiments-quick' in args.out
    assert 'experiments-quick' in args.runs and run.get_args([]).out == run.RESULTS
    with pytest.raises(SystemExit) as exit_:
        run.get_args(['--quick', '--out', os.path.join(run.HERE, 'results')])
    assert exit_.value.code == 2 and 'would overwrite the committed results' in capsys.readouterr().err
