"""restoration.py without its runs: its commands (parsed by train.py's own parser), its tables read from fake
metrics.jsonl files (mean ± std, the best network of the last evaluation, the per-run ratio to the teacher), the
floor's held-out inputs against those train.py evaluates, and the figure's panels. About 10 s on 2 CPU cores."""
import json
import os
import re
import statistics

import pytest
import torch
from PIL import Image

import couplings
import restoration_baselines
import restoration
import run
import score_restorations
import train
from conftest import exit_code

pytestmark = pytest.mark.usefixtures('one_thread')


def planned(runs, quick=False):
    runner = run.Runner(str(runs), 1)
    restoration.plan(runner, quick)
    return runner


def test_commands_parse_with_train_py_and_each_uid_run_distils_its_seeds_realuid_teacher(tmp_path, monkeypatch):
    monkeypatch.setattr(restoration, 'EXTRA_FLAGS', '--lr 0.001 --source-noise 0.7')
    runner = planned(tmp_path, quick=True)
    assert len(runner.jobs) == 2 * (3 + 3 + 1)
    for name, argv, deps in runner.jobs:
        if '--teacher' in argv:                                 # train.py refuses a --teacher file it cannot find
            os.makedirs(os.path.dirname(argv[argv.index('--teacher') + 1]), exist_ok=True)
            open(argv[argv.index('--teacher') + 1], 'w').close()
    parsed = {}
    for name, argv, deps in runner.jobs:
        assert argv[0] == 'train.py'
        parsed[name] = args = train.get_args(argv[1:])
        coupling, method, seed = re.fullmatch(r'(toy-\w+\.\d)_(\w+)_s(\d)', name).groups()
        assert (args.coupling, args.seed, args.out, args.lr) == (coupling, int(seed), runner.out(name), 0.001)
        assert (args.teacher_steps, args.steps, args.eval_every) == (200, 20, 20)          # --quick's budget
        assert (args.alpha, args.beta) == ((1, 1) if method == 'uid' else (0.98, 0.96))
        assert args.source_noise == (0 if method == 'control' else 0.7)   # the control's 0 wins over EXTRA_FLAGS
        assert args.teacher == (os.path.join(runner.out(deps[0]), 'teacher.pt') if method == 'uid' else None)
        assert deps == ((f'{coupling}_realuid_s{seed}',) if method == 'uid' else ())
    assert sorted(n for n in parsed if 'control' in n) == ['toy-noise0.5_control_s0', 'toy-proj0.1_control_s0']
    assert '--steps' not in planned(tmp_path).jobs[0][1]     # the full run: train.py's toy preset


def test_quick_never_writes_the_committed_results(capsys):
    with pytest.raises(SystemExit) as e:
        restoration.get_args(['--quick', '--out', restoration.RESULTS])
    assert e.value.code == 2 and capsys.readouterr().err.count('\n') == 1


def test_floor_inputs_are_the_held_out_pairs_train_py_evaluates(tmp_path, monkeypatch):
    """train.py's own evaluation inputs (caught where it draws the sources) against score_restorations'."""
    seen, real = [], train.make_coupled_evaluator

    def spy(*args, **kwargs):
        evaluate = real(*args, **kwargs)
        wrapped = lambda name, sample_fn, quiet=False: evaluate(name, lambda x1, c: seen.append(c) or x1, quiet)
        wrapped.samples = evaluate.samples
        return wrapped
    monkeypatch.setattr(train, 'make_coupled_evaluator', spy)
    code = exit_code(train.main)('--dataset', 'toy', '--coupling', 'toy-proj0.1', '--teacher-steps', 1, '--steps', 0,
                                 '--nfe', 0, '--hidden', 16, '--out', tmp_path / 'run')
    assert code == 0
    coupling = couplings.make_coupling('toy-proj0.1')
    inputs, per = coupling.eval_pairs
    c = torch.cat(seen).view(inputs, per, 2)
    assert torch.equal(c, c[:, :1].expand(-1, per, -1))        # input i: rows i*per ... i*per + per - 1
    assert torch.equal(c[:, 0], score_restorations.held_out_inputs(coupling)[1])


def test_floor_scores_per_exact_samples_an_input_train_py_s_count_by_default(monkeypatch):
    """experiments/README's 4 000-sample floor: `per` reaches the exact draws; without it train.py's 500 an input."""
    shapes, real = [], couplings.restoration_metrics
    monkeypatch.setattr(couplings, 'restoration_metrics',
                        lambda cp, x0, c, x, g: shapes.append(tuple(x.shape)) or real(cp, x0, c, x, g))
    assert len(restoration.floor('toy-noise0.5', seeds=(1, 2), per=7)) == 2
    restoration.floor('toy-noise0.5', seeds=(1,))
    assert shapes == [(32, 7, 2), (32, 7, 2), (32, 500, 2)]


# ---------------------------------------------------------------------------------------------------- tables

TEACHER = [0.1, 0.2, 0.3]                                       # cswd of seed 0, 1, 2's teacher
BEST = {'realuid': [('ema0.999', 0.2), ('generator', 0.25), ('ema0.99', 0.3)],       # the last evaluation's lowest
        'uid': [('ema0.995', 0.4), ('ema0.995', 0.5), ('ema0.995', 0.6)], 'control': [('generator', 0.9)]}
TV = {'realuid': [0.01, 0.03, 0.015], 'uid': [0.2, 0.3, 0.4], 'control': [0.5]}    # the best network's mode_tv
NETS = ('generator', 'ema0.99', 'ema0.995', 'ema0.999')


def write_run(folder, teacher, best, tv, last=20):
    """metrics.jsonl as train.py writes it: teacher, step 0, step 10 (with lower numbers than any at the last
    evaluation: no best network comes from it), step `last` (best: lowest cswd, another network lowest mode_tv)."""
    network, cswd = best
    m = lambda c, t: dict(cswd=c, mode_tv=t, off_mode=t / 2)
    rows = [dict(step=0, phase='teacher', metrics={'teacher_nfe100': m(teacher, 0.005)}, seconds=1.0),
            dict(step=0, phase='distill', losses={}, metrics={'generator': m(10 * teacher, 0.5)}, it_per_s=0.0),
            dict(step=10, phase='distill', losses={}, metrics={n: m(0.01, 0.001) for n in NETS}, it_per_s=1.0),
            dict(step=last, phase='distill', losses={},
                 metrics={n: m(cswd, tv) if n == network else m(cswd + 0.1 + i / 100, 0.0) for i, n in enumerate(NETS)},
                 it_per_s=1.0)]
    os.makedirs(folder)
    with open(os.path.join(folder, 'metrics.jsonl'), 'w') as f:
        f.write(''.join(json.dumps(r) + '\n' for r in rows))


@pytest.fixture(scope='module')
def fake_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp('runs')
    for coupling in restoration.COUPLINGS:
        for method, best in BEST.items():
            for seed, (b, tv) in enumerate(zip(best, TV[method])):
                teacher = 0.5 if method == 'control' else TEACHER[seed]
                write_run(runs / restoration.name(coupling, method, seed), teacher, b, tv)
    return runs


def cells(lines, label):
    line, = [line for line in lines if line.startswith(f'| {label} |')]
    return [cell.strip() for cell in line.strip('|').split('|')][1:]


def mean_sd(values, digits):
    return f'{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}'


def test_table_means_stds_best_network_of_the_last_evaluation_and_ratio_per_seed(fake_runs):
    lines, found = restoration.tables(str(fake_runs))
    assert found['toy-noise0.5']['realuid'][0]['step'] == 20
    start = lines.index('## `toy-proj0.1`')
    for coupling, part in (('toy-noise0.5', lines[:start]), ('toy-proj0.1', lines[start:])):
        assert cells(part, 'teacher, 100 NFE') == [mean_sd(TEACHER, 4), '0.0050 ± 0.0000', '0.0025 ± 0.0000', '', '']
        assert cells(part, 'one-step generator at initialisation') == [mean_sd([1.0, 2.0, 3.0], 4), '0.5000 ± 0.0000',
                                                                       '0.2500 ± 0.0000', '10.00 ± 0.00', '']
        # per-seed ratios 2, 1.25, 1: mean 1.42 (a ratio of the means would be 0.75 / 0.6 = 1.25)
        assert cells(part, 'RealUID (0.98, 0.96), best one-step') == [
            mean_sd([0.2, 0.25, 0.3], 4), mean_sd(TV['realuid'], 4), mean_sd([t / 2 for t in TV['realuid']], 4),
            '1.42 ± 0.52', 'ema0.999, generator, ema0.99']
        assert cells(part, 'UID (alpha = beta = 1), best one-step') == [
            mean_sd([0.4, 0.5, 0.6], 4), mean_sd(TV['uid'], 4), mean_sd([t / 2 for t in TV['uid']], 4),
            mean_sd([4, 2.5, 2], 2), ', '.join(['ema0.995'] * 3)]
        assert cells(part, 'control `--source-noise 0`: RealUID, best one-step') == ['0.9000', '0.5000', '0.2500',
                                                                                     '1.80', 'generator']
        assert cells(part, 'control `--source-noise 0`: its teacher, 100 NFE') == ['0.5000', '0.0050', '0.0025', '', '']
        # seed 2 meets both (ratio 1 <= 1.3, mode_tv 0.015); seed 1 (1.25) with mode_tv 0.03 only toy-proj0.1's 0.05
        met = 1 if coupling == 'toy-noise0.5' else 2
        assert f'met by RealUID in {met} of 3 seeds, by UID in 0 of 3' in '\n'.join(part)
        floor = cells(part, 'exact posterior samples (the floor)')
        floor_cswd, floor_tv, floor_off = (float(c.split(' ± ')[0]) for c in floor[:3])
        # These inputs: 0.0755 (toy-noise0.5; the planning: ~0.072) and 0.247 (toy-proj0.1, draws 0.23-0.27;
        # test_couplings' inputs 0.18, over other inputs 0.19 +- 0.03); mode_tv of exact samples is multinomial noise,
        # ~0.01-0.02 at 500 an input. The windows catch scoring the posterior mean (0.37 / 0.98 on these inputs) or a
        # cswd of one pooled cloud (0.019 / 0.028).
        assert (0.065 < floor_cswd < 0.085) if coupling == 'toy-noise0.5' else (0.20 < floor_cswd < 0.30)
        assert 0.005 < floor_tv < 0.03 and 0 <= floor_off < 0.004          # 0.001 + the light components' mass


def test_figure_pastes_each_runs_best_network(fake_runs, tmp_path):
    """Every samples_*.png a solid colour of its own: the UID, RealUID and control panels are their best network's."""
    colours = {n: (40 * i, 200, 255 - 40 * i) for i, n in enumerate(('teacher', *NETS))}
    for folder in fake_runs.iterdir():
        for net, colour in colours.items() if folder.is_dir() else ():
            Image.new('RGB', (256, 256), colour).save(folder / f'samples_{net}.png')
    _, found = restoration.tables(str(fake_runs))
    restoration.figure(str(fake_runs), found, str(tmp_path / 'fig.png'), size=256, head=24, side=110)
    with Image.open(tmp_path / 'fig.png') as image:
        assert image.size == (110 + 5 * 256, 24 + 2 * 256)
        for i in range(2):
            pixel = lambda j: image.getpixel((110 + j * 256 + 200, 24 + i * 256 + 200))
            assert pixel(1) == colours['teacher']
            assert [pixel(j) for j in (2, 3, 4)] == [colours['ema0.995'], colours['ema0.999'], colours['generator']]
            panel = image.crop((110, 24 + i * 256, 110 + 256, 24 + (i + 1) * 256))   # the exact posterior's scatter
            drawn = [n for n, colour in panel.getcolors(256 * 256) if colour != (255, 255, 255)]
            assert sum(drawn) > 1000 and len(drawn) >= 8 and set(colours.values()).isdisjoint(panel.getcolors())


def test_classical_baselines_restore_what_they_should():
    # a smooth ramp: bicubic upsampling of its 2x2 block means is closer to it than their nearest copy; the zero fill
    # keeps the known pixels exactly (consistency 0) and zeroes the hole
    ramp = torch.linspace(-0.8, 0.8, 16)
    x0 = (ramp[None, :] + 0.5 * ramp[:, None]).expand(2, 3, 16, 16) / 1.5
    sr2 = couplings.make_coupling('sr2')
    out = restoration_baselines.baselines(sr2, x0, sr2.corrupt(x0))
    assert torch.equal(out['nearest (the input)'], sr2.corrupt(x0))
    assert couplings.psnr(out['bicubic'], x0).mean() > couplings.psnr(out['nearest (the input)'], x0).mean() + 3
    hole = couplings.make_coupling('inpaint-center')
    c = hole.corrupt(x0, torch.Generator().manual_seed(0))
    zero = restoration_baselines.baselines(hole, x0, c)['hole set to 0']
    assert couplings.consistency(hole, zero, c).max() == 0 and zero[..., 4:12, 4:12].eq(0).all()
