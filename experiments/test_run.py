"""experiments.py: its --quick mode end to end (about 30 s on 2 cores), and its metric and plotting helpers."""
import math
import os
import re
import shlex

import pytest
import torch
import torchvision

import experiments
import train


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
    """One --quick run on a synthetic 2-class image folder; -> (markdown text, results folder, runs folder)."""
    root = tmp_path_factory.mktemp('quick')
    images = root / 'images'
    for c, scale in (('dark', 0.5), ('bright', 1.0)):
        (images / c).mkdir(parents=True)
        for i in range(40):
            torchvision.utils.save_image(scale * torch.rand(3, 8, 8), images / c / f'{i}.png')
    path = experiments.main(['--quick', '--out', str(root / 'results'), '--runs', str(root / 'runs'),
                             '--images', str(images)])
    with open(path) as f:
        return f.read(), root / 'results', root / 'runs'


def test_quick_mode_writes_every_section_and_every_run_succeeds(quick_run):
    md, _, _ = quick_run
    for header in ('## 1. Table 1', '## 2. Convergence', '## 3. Under-trained teacher', '## 4. Images',
                   '## 5. UID+GAN', '## Commands'):
        assert header in md
    assert 'FAILED' not in md and '| failed' not in md and 'runs failed' not in md
    assert 'AMD' in md or 'Intel' in md or 'cores visible' in md          # the hardware line


def test_quick_mode_numbers_in_tables_are_finite(quick_run):
    md, _, _ = quick_run
    rows = [line for line in md.splitlines() if line.startswith('|') and not line.startswith('|---')]
    numbers = [float(x) for line in rows for x in re.findall(r'(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?', line)]
    assert len(numbers) > 30
    assert all(math.isfinite(x) for x in numbers)
    assert not re.search(r'\b(nan|inf)\b', '\n'.join(rows), re.IGNORECASE)


def test_quick_mode_plots_exist_and_decode(quick_run):
    md, results, _ = quick_run
    pngs = re.findall(r'!\[[^\]]*\]\(([^)]+\.png)\)', md)
    assert set(pngs) == {'convergence.png', 'corrupt.png', 'toy_samples.png', 'images_fd.png', 'images_samples.png'}
    for name in pngs:
        image = torchvision.io.read_image(str(results / name))
        assert image.shape[0] == 3 and min(image.shape[1:]) >= 20
        assert os.path.getsize(results / name) < 200_000                # small enough to commit


def test_printed_commands_are_valid_train_py_command_lines(quick_run):
    """Every `python train.py ...` line in the markdown parses with train.py's own parser (and was run)."""
    md, _, runs = quick_run
    commands = [line for line in md.splitlines() if line.startswith('python train.py ')]
    assert len(commands) == 14                                          # 11 runs + 3 timing runs in --quick
    for line in commands:
        argv = shlex.split(line.replace('$RUNS/', f'{runs}/'))[2:]
        args = train.get_args(argv)
        assert os.path.isfile(os.path.join(args.out, 'metrics.jsonl'))


def test_balanced_reference_has_equal_class_counts_and_a_lower_swd_floor():
    """Two class-balanced real samples are far closer in swd than two i.i.d. ones (multinomial class counts):
    the reason swd_bal exists. The i.i.d. floor at 4000 points is 0.045-0.08 for these seeds, the balanced one
    ~0.014, so a factor of 2 is a loose bound."""
    x, y = experiments.balanced_reference(4000, seed=1)
    assert torch.equal(torch.bincount(y), torch.full((8,), 500))
    ref, _ = experiments.balanced_reference(4000, seed=4321)
    iid = [train.sliced_wasserstein(train.toy_data(4000, s)[0].double(), train.toy_data(4000, 4321)[0].double())
           for s in range(3)]
    balanced = train.sliced_wasserstein(x.double(), ref.double())
    assert balanced < min(iid) / 2


def test_swd_balanced_of_the_true_sampler_is_at_the_floor():
    """A sampler that maps (z, y) to the toy mixture's mode y plus 0.15 z is the data distribution itself."""
    def sampler(z, y):
        angle = 2 * math.pi * y / 8
        return 2.0 * torch.stack([angle.cos(), angle.sin()], 1) + 0.15 * z
    assert experiments.swd_balanced(sampler, 4000) < 0.03
    assert experiments.swd_balanced(lambda z, y: sampler(z, y) + 0.3, 4000) > 0.25   # a shift of 0.3 per axis


def test_steps_to_reach_and_welch_z_match_hand_computation():
    assert experiments.steps_to_reach([(10, 0.5), (20, 0.3), (30, 0.2)], 0.3) == 20
    assert experiments.steps_to_reach([(10, 0.5)], 0.3) is None
    # means 1 and 2, sample variances 1 and 1, n = 3 each: z = -1 / sqrt(1/3 + 1/3)
    assert experiments.welch_z([0.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx(-1 / math.sqrt(2 / 3))
    assert math.isnan(experiments.welch_z([1.0], [1.0, 2.0]))          # one seed: no spread to compare with


def test_line_plot_draws_each_series_in_its_colour(tmp_path):
    path = str(tmp_path / 'plot.png')
    experiments.line_plot(path, [((1, 0, 0), [(0, 0.0), (10, 1.0)]), ((0, 0, 1), [(0, 1.0), (10, 0.0)])],
                          hlines=[((0, 0, 0), 0.5)])
    image = torchvision.io.read_image(path).float() / 255                 # (3, H, W)
    red = (image[0] > 0.9) & (image[1] < 0.1) & (image[2] < 0.1)
    blue = (image[2] > 0.9) & (image[0] < 0.1) & (image[1] < 0.1)
    assert red.sum() > 300 and blue.sum() > 300                           # two 2-pixel-wide diagonals of ~400 px
    rows, cols = red[24:].nonzero(as_tuple=True)                         # below the legend's swatches
    assert rows[cols.argmin()] > rows[cols.argmax()]                     # rising line: lower on the left
