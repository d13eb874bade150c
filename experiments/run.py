"""RealUID's claims at CPU scale (arXiv 2509.22459): each run is a `python train.py ...` command, read back from
its OUT/metrics.jsonl and from samples that `python sample.py` draws from its checkpoints.

    python experiments/run.py --images /tmp/test                  # full study: about an hour on 2 CPU cores
    python experiments/run.py --quick --images FOLDER            # smoke run, < 1 min, into runs/experiments-quick

Sections 2-4 of experiments/README.md:
2. missing mode: a toy teacher trained on data where mode 7 is under-weighted (--teacher-keep), distilled with
   real data that has every mode; the generator's mass on mode 7 measured next to the closed form (mixture.py).
3. convergence: long conditional toy runs, UID and RealUID against the 100-step teacher they distill.
4. images: a small class-conditional U-Net teacher on a few classes of a folder of images (the CIFAR-10 test
   JPEGs), UID and RealUID from it, with a class check of every model's samples.

Runs go to --runs/<name> (a finished run is reused when its command is unchanged); the tables go to
--out/*.md, the plots (matplotlib, optional) to --out/*.png, and every command with its wall time to
--out/commands.md. The conclusions are written by hand in experiments/README.md.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'results')                         # committed: written by the full study only
sys.path[:0] = [ROOT, HERE]
import cli                                                      # noqa: E402
import fid                                                      # noqa: E402  (the top-level module)
import mixture                                                  # noqa: E402
import train                                                    # noqa: E402  (train.read_records)

EMA = '0.99'            # the reported generator EMA: a ~100-update horizon, short against every budget below
PAPER_CELL = (0.98, 0.96)   # Table 2: the paper's best conditional RealUID

BUDGETS = {
    'full': dict(
        missing=dict(keep=0.05, seeds=(0, 1, 2, 3), steps=1200, eval_every=100, batch=128, samples=4000,
                     alphas=(0.8, 0.9), ratios=(0.9, 0.95, 1.05, 1.1), spacing=0.05, t_points=16,
                     predict_alphas=(0.8, 0.9, 0.95, 0.98), predict_ratios=(0.9, 0.95, 1.0, 1.02, 1.05, 1.1)),
        convergence=dict(seeds=(0, 1), steps=6000, eval_every=100, batch=128, samples=4000),
        images=dict(classes=('airplane', 'frog', 'ship'), size=16, teacher_steps=3000, teacher_batch=32,
                    teacher_lr=1e-3, steps=150, eval_every=50, batch=32, lr=2e-4, warmup=20, samples=300,
                    unet=['--channels', '32', '--channel-mult', '1', '2', '--res-blocks', '1', '--attn', '8'])),
    'quick': dict(
        missing=dict(keep=0.05, seeds=(0,), steps=20, eval_every=10, batch=128, samples=500, teacher_steps=100,
                     cells=((1.0, 1.0), (0.9, 0.99)), spacing=0.1, t_points=8, predict_alphas=(0.9,),
                     predict_ratios=(1.0, 1.1)),
        convergence=dict(seeds=(0,), steps=30, eval_every=10, batch=128, samples=500, teacher_steps=100,
                         cells=((1.0, 1.0),)),
        images=dict(classes=None, size=8, teacher_steps=4, teacher_batch=16, teacher_lr=1e-3, steps=2, eval_every=1,
                    batch=16, lr=2e-4, warmup=1, samples=30, nfe=4,
                    unet=['--channels', '32', '--channel-mult', '1', '--res-blocks', '1', '--attn', ''])),
}


def get_args(argv=None):
    p = cli.parser('run.py', __doc__.split('\n')[0])
    p.add_argument('--out', default=None, help='tables (.md) and plots (.png) (default: experiments/results, the '
                   'committed ones; with --quick runs/experiments-quick/results, and never the committed ones)')
    p.add_argument('--runs', default=None, help='one folder per run (default: runs/experiments; with --quick '
                   'runs/experiments-quick/runs, so that it never replaces a full run\'s jobs)')
    p.add_argument('--images', default=None, help='folder of class subfolders (e.g. /tmp/test from the CIFAR-10 '
                   'test JPEGs); without it, no image study')
    p.add_argument('--only', nargs='+', choices=['missing', 'convergence', 'images'], default=None)
    p.add_argument('--quick', action='store_true', help='tiny budgets: checks the pipeline, not the method')
    p.add_argument('--workers', type=cli.COUNT, default=2, help='processes at once, one thread each')
    args = p.parse_args(argv)
    cli.study_folders(p, args, 'experiments', RESULTS)
    if args.images is not None:
        cli.input_folder(p, '--images', args.images)
    elif 'images' in (args.only or []):
        p.error('--only images needs --images')
    return args


# ---------------------------------------------------------------------------------------------------- runs

class Runner:
    """Runs `python SCRIPT ...` jobs from the repo root, `workers` at a time, one thread each, in dependency order.

    A job is (name, argv, deps); its output goes to RUNS/<name>.log, and RUNS/<name>.done records its command and
    wall time once it succeeded, so a second invocation reuses it, unless its command changed or a job it needs
    runs again (delete the .done file to force a rerun).
    """
    def __init__(self, runs, workers, prog='run.py'):          # prog: the script its failure line names
        self.runs, self.workers, self.jobs, self.prog = runs, workers, [], prog

    def add(self, name, argv, deps=()):
        self.jobs.append((name, [str(a) for a in argv], tuple(deps)))
        return name

    def out(self, name):
        return os.path.join(self.runs, name)

    def command(self, argv):                                     # as printed: RUNS spelled $RUNS
        return 'python ' + ' '.join(shlex.quote(a) for a in argv).replace(self.runs, '$RUNS')

    def run(self):
        env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
        done, running, pending, failed = {}, {}, list(self.jobs), []
        for name, argv, deps in self.jobs:                      # reuse: same command, and nothing it needs reruns
            marker = os.path.join(self.runs, name + '.done')   # removed when a job starts, written when it ends
            if os.path.isfile(marker) and all(d in done for d in deps):
                try:
                    with open(marker) as f:
                        record = json.load(f)
                except ValueError:                              # cut by a kill: the job reruns
                    record = {}
                if record.get('argv') == argv:
                    done[name] = record['seconds']
        pending = [job for job in pending if job[0] not in done]
        print(f'{len(self.jobs)} jobs ({len(done)} reused), {self.workers} at a time; each one\'s output in '
              f'{self.runs}/<name>.log', flush=True)
        bar = fid.Progress('jobs', len(self.jobs), 'jobs', every=10.0, start=len(done))   # ETA from the recent rate
        while pending or running:
            for job in list(pending):
                name, argv, deps = job
                if any(d in failed for d in deps):
                    pending.remove(job)
                    failed.append(name)
                    print(f'skip {name}: a job it needs failed', flush=True)
                elif len(running) < self.workers and all(d in done for d in deps):
                    pending.remove(job)
                    if os.path.isfile(self.out(name) + '.done'):  # an earlier run's: killed from here on, not done
                        os.remove(self.out(name) + '.done')
                    for path in (self.out(name), self.out(name) + '.log'):   # metrics.jsonl appends: start clean
                        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else None
                    log = open(self.out(name) + '.log', 'w')
                    proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
                    running[name] = (proc, time.time(), log, argv)
            time.sleep(0.2)
            for name, (proc, t0, log, argv) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                log.close()
                seconds = time.time() - t0
                if proc.returncode == 0:
                    done[name] = seconds
                    record = json.dumps(dict(seconds=seconds, argv=argv)).encode()
                    fid.write_atomic(self.out(name) + '.done', lambda f: f.write(record))
                else:
                    failed.append(name)
                print(f'{"done" if proc.returncode == 0 else "FAILED"} {name} in {seconds:.0f}s '
                      f'({len(done) + len(failed)}/{len(self.jobs)})', flush=True)
            bar(len(done) + len(failed), running=' '.join(running) or '-')
        if failed:
            sys.exit(f'{self.prog}: {len(failed)} job(s) failed, see their logs in {self.runs}: {", ".join(failed)}')
        return done

    def commands_md(self, done):
        lines = ['# Commands\n', f'`$RUNS` is `{os.path.relpath(self.runs, ROOT)}`; each run\'s output is '
                 '`$RUNS/<name>.log`. Run from the repository root, one thread each (`OMP_NUM_THREADS=1`), '
                 f'{self.workers} at a time. Wall times are per run, measured on a shared 2-core CPU.\n', '```bash']
        for name, argv, _ in self.jobs:
            lines += [f'# {name}: {done[name]:.0f} s', self.command(argv)]
        return '\n'.join(lines + ['```', ''])


def read_metrics(out):
    return train.read_records(os.path.join(out, 'metrics.jsonl'))


def curve(rows, net, metric):
    """[(update, value)] of one network over a run's distillation evaluations."""
    return [(r['step'], r['metrics'][net][metric]) for r in rows if r['phase'] == 'distill' and net in r['metrics']]


def teacher_metric(rows, metric):
    return next(next(iter(r['metrics'].values()))[metric] for r in rows if r['phase'] == 'teacher')


def load_samples(folder):
    """sample.py's samples.npz -> (arr_0, labels or None)."""
    with np.load(os.path.join(folder, 'samples.npz')) as f:
        return f['arr_0'], (f['labels'] if 'labels' in f.files else None)


def mean_sd(values):
    values = np.asarray(values, dtype=float)
    return values.mean(), (values.std(ddof=1) if len(values) > 1 else float('nan'))


def fmt(values, digits=4):
    m, s = mean_sd(values)
    return f'{m:.{digits}f}' + (f' ± {s:.{digits}f}' if np.isfinite(s) else '')


def plt_or_none():
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        print('matplotlib is not installed (pip install -r experiments/requirements.txt): plots skipped', flush=True)
        return None


def toy_flags(b):
    return ['--dataset', 'toy', '--batch-size', b['batch'], '--eval-every', b['eval_every'], '--eval-samples',
            b['samples'], '--ema', EMA, '0.999', '--log-every', 30,
            '--lr', 0.001, '--lr-fake', 0.001, '--lr-decay', 'none']    # one constant lr: what the tables measured


def cell_name(alpha, beta):
    return 'uid' if alpha == 1 else f'a{alpha:g}_b{beta:g}'


# ---------------------------------------------------------------------------------------------------- 2. missing mode

def fraction_on_missing(x):
    """Share of 2-D samples whose nearest mode center is mode 7."""
    return float((((x[:, None] - mixture.CENTERS) ** 2).sum(-1).argmin(1) == mixture.MISSING).mean())


def fraction_in_missing(x, radius=3 * mixture.STD):
    """Share of 2-D samples within 3 data stds of mode 7's center (the data: 0.125 (1 - e^-4.5) = 0.1236)."""
    return float((((x - mixture.CENTERS[mixture.MISSING]) ** 2).sum(-1) < radius ** 2).mean())


def missing_cells(b):
    """UID, then alpha = beta and every beta/alpha at each alpha (or the budget's own list)."""
    cells = b.get('cells') or [(1.0, 1.0)] + [(a, round(a * r, 6)) for a in b['alphas'] for r in (1.0, *b['ratios'])]
    return sorted(set(cells), key=lambda c: (-c[0], c[1]))


def plan_missing(runner, b):
    keep = ['1'] * 7 + [str(b['keep'])]
    teacher = runner.add('missing_teacher', ['train.py', *toy_flags(b), '--teacher-keep', *keep, '--steps', 0,
                                             *(['--teacher-steps', b['teacher_steps']] if 'teacher_steps' in b else []),
                                             '--out', runner.out('missing_teacher')])
    runner.add('missing_teacher_samples', ['sample.py', runner.out('missing_teacher/teacher.pt'), '--n', b['samples'],
                                           '--out', runner.out('missing_teacher_samples')], [teacher])
    for alpha, beta in missing_cells(b):
        for seed in b['seeds']:
            name = f'missing_{cell_name(alpha, beta)}_s{seed}'
            runner.add(name, ['train.py', *toy_flags(b), '--teacher', runner.out('missing_teacher/teacher.pt'),
                              '--alpha', alpha, '--beta', beta, '--seed', seed, '--steps', b['steps'],
                              '--out', runner.out(name)], [teacher])
            runner.add(name + '_samples', ['sample.py', runner.out(name + '/ckpt.pt'), '--n', b['samples'],
                                           '--ema', EMA, '--out', runner.out(name + '_samples')], [name])


def report_missing(runner, b, out, plt):
    teacher_x, _ = load_samples(runner.out('missing_teacher_samples'))
    w_teacher = fraction_on_missing(teacher_x)
    teacher_rows = read_metrics(runner.out('missing_teacher'))
    t0 = time.time()
    cells = missing_cells(b)
    predict = sorted(set(cells) | {(a, round(a * r, 6)) for a in b['predict_alphas'] for r in b['predict_ratios']
                                   if a * r <= 1}, key=lambda c: (-c[0], c[1]))
    rule = dict(spacing=b['spacing'], t_points=b['t_points'])
    predicted = {c: mixture.predicted_mass(w_teacher, *c, **rule) for c in predict}
    dropped = {c: mixture.predicted_mass(0.0, *c, **rule) for c in predict}        # a teacher with no mode 7 at all
    predict_seconds = time.time() - t0
    measured, inside, swd, init_swd = {}, {}, {}, None
    for alpha, beta in cells:
        names = [f'missing_{cell_name(alpha, beta)}_s{s}' for s in b['seeds']]
        samples = [load_samples(runner.out(n + '_samples'))[0] for n in names]
        measured[alpha, beta] = [fraction_on_missing(x) for x in samples]
        inside[alpha, beta] = [fraction_in_missing(x) for x in samples]
        rows = [read_metrics(runner.out(n)) for n in names]
        swd[alpha, beta] = [curve(r, 'ema' + EMA, 'swd')[-1][1] for r in rows]
        init_swd = curve(rows[0], 'generator', 'swd')[0][1]
    lines = ['# Missing mode: mass of the one-step generator on mode 7\n',
             f'Teacher: unconditional toy, trained with `--teacher-keep 1 1 1 1 1 1 1 {b["keep"]}` (mode 7 has '
             f'{b["keep"]:g}/({7 + b["keep"]:g}) = {b["keep"] / (7 + b["keep"]):.4f} of its training data); '
             'its 100-NFE '
             f'samples put **{w_teacher:.4f}** on mode 7 (data: 0.125), swd {teacher_metric(teacher_rows, "swd"):.4f}. '
             f'Distillation with all the real data: {b["steps"]} updates, batch {b["batch"]}, '
             f'seeds {list(b["seeds"])}; '
             f'measured on {b["samples"]} samples of the final EMA {EMA} (`sample.py`), nearest mode center = 7; '
             f'swd: metrics.jsonl, final EMA {EMA}. The generator\'s initialisation (the teacher in one Euler step) '
             f'has swd {init_swd:.4f}. Predicted: argmin over w of eq. 25 integrated over t (mixture.py) with the '
             f'teacher\'s measured {w_teacher:.4f} on mode 7, and for a teacher with none ({predict_seconds:.0f} s for '
             f'{2 * len(predict)} optima). '
             f'"within 3 std": share of samples within 0.45 of mode 7\'s center (data: 0.1236).\n',
             '| alpha | beta | beta/alpha | predicted, teacher without mode 7 | predicted mass | measured mass (per '
             'seed) | measured mean ± sd | within 3 std, mean ± sd | swd |', '|---|---|---|---|---|---|---|---|---|']
    for c in predict:
        row = f'| {c[0]:g} | {c[1]:g} | {c[1] / c[0]:.3g} | {dropped[c]:.4f} | {predicted[c]:.4f} |'
        if c in measured:
            row += (f' {", ".join(f"{v:.4f}" for v in measured[c])} | {fmt(measured[c])} | {fmt(inside[c])} | '
                    f'{fmt(swd[c])} |')
        else:
            row += ' | | | |'
        lines.append(row)
    lines.append(f'| teacher (100 NFE) | | | | | {w_teacher:.4f} | | {fraction_in_missing(teacher_x):.4f} | '
                 f'{teacher_metric(teacher_rows, "swd"):.4f} |')
    text = '\n'.join(lines) + '\n'
    fid.write_atomic(os.path.join(out, 'missing_mode.md'), lambda f: f.write(text.encode()))   # whole or not at all
    if plt:
        fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), gridspec_kw=dict(width_ratios=[2.2, 1, 1, 1]))
        ax, labels = axes[0], [f'{a:g}\n{bb / a:.3g}' for a, bb in cells]
        ax.plot(range(len(cells)), [predicted[c] for c in cells], 'o', color='C3', label='predicted (closed form)')
        for i, c in enumerate(cells):
            ax.plot([i] * len(measured[c]), measured[c], 'x', color='C0', label='measured (seeds)' if i == 0 else None)
        ax.axhline(w_teacher, color='k', ls='--', lw=1, label='teacher (100 NFE)')
        ax.set_xticks(range(len(cells)), labels)
        ax.set_xlabel('alpha / beta over alpha')
        ax.set_ylabel('mass on mode 7 (data: 0.125)')
        ax.legend(fontsize=8)
        best = max((c for c in cells if c != (1.0, 1.0)), key=lambda c: np.mean(measured[c]))   # the best RealUID cell
        seed = b['seeds'][int(np.argmax(measured[best]))]
        for ax, x, title in zip(axes[1:], (teacher_x, load_samples(runner.out(f'missing_uid_s{seed}_samples'))[0],
                                           load_samples(runner.out(f'missing_{cell_name(*best)}_s{seed}_samples'))[0]),
                                ('teacher', f'UID, seed {seed}', f'{best[0]:g}, {best[1]:g}, seed {seed}')):
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3, color='k')
            ax.scatter(*mixture.CENTERS[mixture.MISSING], marker='o', s=400, facecolors='none', edgecolors='C2')
            ax.set_title(f'{title}: {fraction_on_missing(x):.4f} nearest mode 7', fontsize=8)
            ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect='equal', xticks=[], yticks=[])
        fig.tight_layout()
        fig.savefig(os.path.join(out, 'missing_mode.png'), dpi=80)
        plt.close(fig)


# ---------------------------------------------------------------------------------------------------- 3. convergence

def conv_cells(b):
    return b.get('cells') or [(1.0, 1.0), PAPER_CELL]


def plan_convergence(runner, b):
    teacher = runner.add('conv_teacher', ['train.py', *toy_flags(b), '--cond', '--steps', 0,
                                          *(['--teacher-steps', b['teacher_steps']] if 'teacher_steps' in b else []),
                                          '--out', runner.out('conv_teacher')])
    runner.add('conv_teacher_samples', ['sample.py', runner.out('conv_teacher/teacher.pt'), '--n', 2 * b['samples'],
                                        '--out', runner.out('conv_teacher_samples')], [teacher])
    for alpha, beta in conv_cells(b):
        for seed in b['seeds']:
            name = f'conv_{cell_name(alpha, beta)}_s{seed}'
            runner.add(name, ['train.py', *toy_flags(b), '--cond', '--teacher', runner.out('conv_teacher/teacher.pt'),
                              '--alpha', alpha, '--beta', beta, '--seed', seed, '--steps', b['steps'],
                              '--out', runner.out(name)], [teacher])
            runner.add(name + '_samples', ['sample.py', runner.out(name + '/ckpt.pt'), '--n', b['samples'],
                                           '--ema', EMA, '--out', runner.out(name + '_samples')], [name])


def updates_to_reach(points, factor=1.1):
    """points [(update, d)]: final = mean d of the last 3 evaluations -> (final, first update with d <= factor *
    final, first update from which d stays <= factor * final)."""
    final = float(np.mean([d for _, d in points[-3:]]))
    first = next(s for s, d in points if d <= factor * final)
    stays = next(s for i, (s, _) in enumerate(points) if all(d <= factor * final for _, d in points[i:]))
    return final, first, stays


def report_convergence(runner, b, out, plt):
    teacher_rows = read_metrics(runner.out('conv_teacher'))
    teacher_swd = teacher_metric(teacher_rows, 'swd')
    x_teacher, _ = load_samples(runner.out('conv_teacher_samples'))
    n = b['samples']
    floor = fid.sliced_wasserstein(torch.from_numpy(x_teacher[:n]).double(), torch.from_numpy(x_teacher[n:]).double())
    lines = ['# Convergence to the teacher (conditional toy)\n',
             f'{b["steps"]} updates, batch {b["batch"]}, seeds {list(b["seeds"])}, evaluated every {b["eval_every"]}. '
             f'Distance: swd to held-out data (metrics.jsonl) of the EMA {EMA} and of the raw generator; "final" is '
             f'the mean of the last 3 evaluations. The 100-step teacher: swd {teacher_swd:.4f}. swd(gen, teacher): '
             f'{n} samples of the final EMA {EMA} against {n} teacher samples (100 NFE, `sample.py`); two teacher '
             f'sample sets are {floor:.4f} apart (the floor). Updates to reach: the first evaluation within 10% of '
             f'the final distance, and the first from which the curve stays there (curve = mean over seeds).\n',
             f'| method | final swd, EMA {EMA} | final swd, raw | swd(gen, teacher) | updates to within 10% (first) '
             f'| (stays) |', '|---|---|---|---|---|---|']
    curves = {}
    for alpha, beta in conv_cells(b):
        names = [f'conv_{cell_name(alpha, beta)}_s{s}' for s in b['seeds']]
        rows = [read_metrics(runner.out(nm)) for nm in names]
        ema = [curve(r, 'ema' + EMA, 'swd') for r in rows]
        raw = [curve(r, 'generator', 'swd') for r in rows]
        mean_curve = [(s, float(np.mean([c[i][1] for c in ema]))) for i, (s, _) in enumerate(ema[0])]
        final, first, stays = updates_to_reach(mean_curve)
        to_teacher = [fid.sliced_wasserstein(torch.from_numpy(load_samples(runner.out(nm + '_samples'))[0]).double(),
                                             torch.from_numpy(x_teacher[:n]).double()) for nm in names]
        label = 'UID' if alpha == 1 else f'RealUID {alpha:g}, {beta:g}'
        curves[label] = (mean_curve, ema)
        lines.append(f'| {label} | {fmt([np.mean([d for _, d in c[-3:]]) for c in ema])} | '
                     f'{fmt([np.mean([d for _, d in c[-3:]]) for c in raw])} | {fmt(to_teacher)} | {first} | {stays} |')
    lines.append(f'| teacher, 100 NFE | {teacher_swd:.4f} | | {floor:.4f} (floor) | | |')
    lines += ['', f'EMA {EMA} swd (mean over seeds) by update:\n', '| update | ' + ' | '.join(curves) + ' |',
              '|---|' + '---|' * len(curves)]
    steps = [s for s, _ in next(iter(curves.values()))[0]]
    for i, s in enumerate(steps):
        if s % (5 * b['eval_every']) == 0 or i == len(steps) - 1:
            lines.append(f'| {s} | ' + ' | '.join(f'{c[0][i][1]:.4f}' for c in curves.values()) + ' |')
    text = '\n'.join(lines) + '\n'
    fid.write_atomic(os.path.join(out, 'convergence.md'), lambda f: f.write(text.encode()))
    if plt:
        fig, ax = plt.subplots(figsize=(7, 4))
        for (label, (mean_curve, per_seed)), color in zip(curves.items(), ('C0', 'C3')):
            ax.plot(*zip(*mean_curve), color=color, label=f'{label} (EMA {EMA}, mean of seeds)')
            for c in per_seed:
                ax.plot(*zip(*c), color=color, lw=0.5, alpha=0.4)
        ax.axhline(teacher_swd, color='k', ls='--', lw=1, label='teacher, 100 NFE')
        ax.set_yscale('log')
        ax.set_xlabel('generator update')
        ax.set_ylabel('swd to data')
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, 'convergence.png'), dpi=80)
        plt.close(fig)


# ---------------------------------------------------------------------------------------------------- 4. images

def image_folder(runner, images, classes):
    """RUNS/images/<class> -> symlinks to images/<class> for the chosen classes (all of them when None)."""
    classes = classes or sorted(d.name for d in os.scandir(images) if d.is_dir())
    folder = runner.out('images')
    os.makedirs(folder, exist_ok=True)
    for c in classes:
        link = os.path.join(folder, c)
        if not os.path.islink(link):
            os.symlink(os.path.abspath(os.path.join(images, c)), link)
    return folder, classes


def plan_images(runner, b, folder):
    common = ['--dataset', 'folder', '--data-dir', folder, '--cond', '--image-size', b['size'], *b['unet'],
              '--batch-size', b['batch'], '--lr', b['lr'], '--warmup', b['warmup'], '--ema', EMA, '--eval-samples',
              b['samples'], '--fid-samples', 0, '--workers', 0, '--log-every', 30, '--nfe', b.get('nfe', 100)]
    teacher = runner.add('img_teacher', ['train.py', *common, '--teacher-steps', b['teacher_steps'],
                                         '--teacher-batch-size',
                                         b['teacher_batch'], '--teacher-lr', b['teacher_lr'], '--steps', 0,
                                         '--eval-every', 1000, '--out', runner.out('img_teacher')])
    nfe = ['--nfe', b['nfe']] if 'nfe' in b else []
    runner.add('img_teacher_samples', ['sample.py', runner.out('img_teacher/teacher.pt'), '--n', b['samples'], *nfe,
                                       '--npz', '--out', runner.out('img_teacher_samples')], [teacher])
    runner.add('img_init_samples', ['sample.py', runner.out('img_teacher/ckpt.pt'), '--n', b['samples'], '--ema', 'raw',
                                    '--npz', '--out', runner.out('img_init_samples')], [teacher])
    for alpha, beta in ((1.0, 1.0), PAPER_CELL):
        name = f'img_{cell_name(alpha, beta)}'
        runner.add(name, ['train.py', *common, '--teacher', runner.out('img_teacher/teacher.pt'), '--alpha', alpha,
                          '--beta', beta, '--steps', b['steps'], '--eval-every', b['eval_every'],
                          '--out', runner.out(name)], [teacher])
        runner.add(name + '_samples', ['sample.py', runner.out(name + '/ckpt.pt'), '--n', b['samples'], '--ema', EMA,
                                       '--npz', '--out', runner.out(name + '_samples')], [name])


def real_images(folder, size):
    """The folder's images as train.py sees them (Resize, CenterCrop, [-1, 1]) -> (x (N, 3, s, s), y (N,))."""
    tf = torchvision.transforms
    data = torchvision.datasets.ImageFolder(folder, tf.Compose([tf.Resize(size), tf.CenterCrop(size), tf.ToTensor(),
                                                                tf.Normalize([0.5] * 3, [0.5] * 3)]))
    return torch.stack([x for x, _ in data]), torch.tensor(data.targets)


def class_distances(x, y, x_real, y_real, classes, k=10):
    """D[c, c'] = mean over samples of class c of their mean l2 distance to the k nearest real images of class c'.
    The class check passes when every row's smallest entry is its diagonal: samples of class c are nearest, on
    average, to the real images of class c. Also -> the 1-NN accuracy per class (nearest real image's class)."""
    x, x_real = x.flatten(1).double(), x_real.flatten(1).double()
    D = torch.zeros(classes, classes, dtype=torch.float64)
    for c in range(classes):
        for c2 in range(classes):
            D[c, c2] = torch.cdist(x[y == c], x_real[y_real == c2]).topk(k, largest=False).values.mean()
    nearest = y_real[torch.cdist(x, x_real).argmin(1)]
    accuracy = torch.stack([(nearest[y == c] == c).double().mean() for c in range(classes)])
    return D, accuracy


def passes(D):
    return bool((D.argmin(1) == torch.arange(len(D))).all())


def npz_images(folder):
    """sample.py --npz -> (x (N, 3, H, W) in [-1, 1], labels)."""
    images, labels = load_samples(folder)
    return torch.from_numpy(images).permute(0, 3, 1, 2).double() / 127.5 - 1, torch.from_numpy(labels)


def report_images(runner, b, folder, classes, out, plt):
    x_real, y_real = real_images(folder, b['size'])
    half = torch.arange(len(y_real)) % 2 == 0                  # real vs real: the check's own reference level
    models_ = [('real images (half vs the other half)', None, x_real[half], y_real[half], x_real[~half], y_real[~half])]
    for label, nfe, name in (('teacher', b.get('nfe', 100), 'img_teacher_samples'),
                             ('generator at initialisation (teacher, 1 Euler step)', 1, 'img_init_samples'),
                             ('UID', 1, 'img_uid_samples'),
                             (f'RealUID {PAPER_CELL[0]:g}, {PAPER_CELL[1]:g}', 1,
                              f'img_{cell_name(*PAPER_CELL)}_samples')):
        models_.append((label, nfe, *npz_images(runner.out(name)), x_real, y_real))
    fd = {'teacher': teacher_metric(read_metrics(runner.out('img_teacher')), 'fd_pix8'),
          'generator at initialisation (teacher, 1 Euler step)':
              curve(read_metrics(runner.out('img_teacher')), 'generator', 'fd_pix8')[0][1],
          'UID': curve(read_metrics(runner.out('img_uid')), 'ema' + EMA, 'fd_pix8')[-1][1],
          f'RealUID {PAPER_CELL[0]:g}, {PAPER_CELL[1]:g}':
              curve(read_metrics(runner.out(f'img_{cell_name(*PAPER_CELL)}')), 'ema' + EMA, 'fd_pix8')[-1][1]}
    lines = ['# Images: class-conditional U-Net on ' + ', '.join(classes) + f' at {b["size"]}x{b["size"]}\n',
             f'Teacher: {b["teacher_steps"]} UM steps at batch {b["teacher_batch"]}, lr {b["teacher_lr"]:g}, U-Net '
             f'`{" ".join(map(str, b["unet"]))}`; distillation {b["steps"]} updates at batch {b["batch"]}, '
             f'lr {b["lr"]:g}, '
             f'K = 5, EMA {EMA}. Class check on {b["samples"]} class-balanced samples (`sample.py --npz`): D[c, c\'] = '
             'mean over samples of class c of the mean l2 distance (pixels in [-1, 1]) to the 10 nearest real '
             'images of class c\'; it passes when each row is smallest on its diagonal. 1-NN: share of class-c '
             'samples whose nearest real image is of class c. fd_pix8: Frechet distance of 8x8-pooled pixels to '
             f'the folder (metrics.jsonl; generators: EMA {EMA}, final).\n',
             '| model | NFE | fd_pix8 | class check | D rows (' + ', '.join(classes) + ') | 1-NN accuracy |',
             '|---|---|---|---|---|---|']
    for label, nfe, x, y, xr, yr in models_:
        D, accuracy = class_distances(x, y, xr, yr, len(classes))
        rows = '; '.join(' '.join(f'{v:.2f}' for v in row) for row in D.tolist())
        lines.append(f'| {label} | {nfe or ""} | {fd.get(label, float("nan")):.2f} | '
                     f'{"pass" if passes(D) else "FAIL"} | {rows} | '
                     f'{" ".join(f"{a:.2f}" for a in accuracy.tolist())} |')
    text = '\n'.join(lines).replace('| nan |', '| |') + '\n'
    fid.write_atomic(os.path.join(out, 'images.md'), lambda f: f.write(text.encode()))
    grids = [('teacher', 'img_teacher/samples_teacher.png'), ('initialisation', 'img_teacher/samples_generator.png'),
             ('UID', f'img_uid/samples_ema{EMA}.png'),
             (f'RealUID {PAPER_CELL[0]:g}, {PAPER_CELL[1]:g}', f'img_{cell_name(*PAPER_CELL)}/samples_ema{EMA}.png')]
    if plt:
        fig, axes = plt.subplots(2, 2, figsize=(10, 3.8))
        for ax, (label, path) in zip(axes.flat, grids):
            ax.imshow(plt.imread(runner.out(path)), interpolation='nearest')
            ax.set_title(label, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks(range(b['size'] // 2 + 2, len(classes) * (b['size'] + 2), b['size'] + 2), classes, fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(out, 'images.png'), dpi=100)
        plt.close(fig)


# ---------------------------------------------------------------------------------------------------- main

def main(argv=None):
    args = get_args(argv)
    budget = BUDGETS['quick' if args.quick else 'full']
    args.runs, args.out = os.path.abspath(args.runs), os.path.abspath(args.out)
    os.makedirs(args.runs, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    studies = args.only or ['missing', 'convergence'] + (['images'] if args.images else [])
    runner, t0 = Runner(args.runs, args.workers), time.time()
    # the image teacher is the longest single run: planned first, so that it starts first
    if 'images' in studies:
        folder, classes = image_folder(runner, args.images, budget['images']['classes'])
        plan_images(runner, budget['images'], folder)
    if 'missing' in studies:
        plan_missing(runner, budget['missing'])
    if 'convergence' in studies:
        plan_convergence(runner, budget['convergence'])
    done = runner.run()
    print(f'all runs finished in {(time.time() - t0) / 60:.1f} min of wall time', flush=True)
    plt = plt_or_none()
    if 'missing' in studies:
        report_missing(runner, budget['missing'], args.out, plt)
    if 'convergence' in studies:
        report_convergence(runner, budget['convergence'], args.out, plt)
    if 'images' in studies:
        report_images(runner, budget['images'], folder, classes, args.out, plt)
    text = runner.commands_md(done)
    fid.write_atomic(os.path.join(args.out, 'commands.md'), lambda f: f.write(text.encode()))
    print(f'tables and plots in {args.out}', flush=True)
    return done


if __name__ == '__main__':
    main()
