"""CPU-sized experiments for RealUID (arXiv 2509.22459): Table 1, Figure 2, App. A.1.4, images, UID+GAN.

    python experiments.py --out results --images /tmp/test      # full: about 25 min on 2 CPU cores
    python experiments.py --out /tmp/r --quick                   # smoke run of every experiment, under a minute

Every run is `train.main(argv)` with its own OUT under --runs, in a pool of --workers single-threaded processes;
its numbers are read back from OUT/metrics.jsonl, and swd_bal from OUT/ckpt.pt (see `swd_balanced`). Writes
OUT/README-table.md (tables, commands, hardware) and PNG plots drawn with torch alone.

1. Table 1 analogue on the conditional 8-Gaussian toy: alpha x beta/alpha grid plus UID, one fixed teacher.
2. Convergence (Figure 2): swd of UID and the best RealUID cell against the iteration.
3. Teacher errors (App. A.1.4): the same distillations from an under-trained teacher.
4. Images (--images DIR of class folders, e.g. the CIFAR-10 test JPEGs): teacher, UID, RealUID on a small U-Net.
5. UID+GAN (eq. 8, --gan 0.3 1) next to RealUID, with iterations per second.
"""
import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from types import SimpleNamespace

os.environ.setdefault('OMP_NUM_THREADS', '1')                  # before torch: one thread per run
import torch                                                    # noqa: E402
import torchvision                                              # noqa: E402

import models                                                   # noqa: E402
import train                                                    # noqa: E402
from interpolants import make_interpolant                       # noqa: E402

EMA = '0.99'        # the reported EMA: a ~100-step horizon suits 300-step runs (0.999 would still be ~75% init)
GAN = ('0.3', '1')  # Table 1 (right): the best (lambda_gen, lambda_disc) of the paper
PAPER_IMAGE_CELL = (0.98, 0.96)  # Table 2: the paper's best conditional RealUID, used for the image run

BUDGETS = {
    'full': SimpleNamespace(
        seeds=3, alphas=(0.90, 0.94, 0.98), ratios=(0.98, 1.00, 1.02), teacher_steps=None,  # None: 3000 (toy preset)
        steps=300, eval_every=25, batch=128, warmup=50, eval_samples=4000, bal_samples=20000,
        corrupt_steps=200, corrupt_alpha=0.90, corrupt_seeds=2, corrupt_updates=600, corrupt_eval_every=50,
        gan_seeds=3, timing_steps=150,
        img=dict(size=16, classes=3, teacher_steps=400, steps=80, eval_every=20, eval_samples=300, nfe=20)),
    'quick': SimpleNamespace(
        seeds=1, alphas=(0.94,), ratios=(1.00, 1.02), teacher_steps=200,
        steps=20, eval_every=10, batch=128, warmup=5, eval_samples=500, bal_samples=800,
        corrupt_steps=30, corrupt_alpha=0.90, corrupt_seeds=1, corrupt_updates=20, corrupt_eval_every=10,
        gan_seeds=1, timing_steps=10,
        img=dict(size=8, classes=2, teacher_steps=4, steps=2, eval_every=1, eval_samples=32, nfe=4)),
}


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='results', help='Markdown table and PNG plots')
    p.add_argument('--runs', default='runs/experiments', help='one train.py OUT per run (checkpoints, logs)')
    p.add_argument('--images', default=None, help='folder of class subfolders of images; without it, no experiment 4')
    p.add_argument('--classes', default=None, help='comma-separated class folders of --images (default: the first '
                   'few in sorted order)')
    p.add_argument('--quick', action='store_true', help='tiny budgets: checks the pipeline, not the method')
    p.add_argument('--workers', type=int, default=2, help='runs in parallel, one thread each')
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- runs

def run_train(argv, log_path):
    """One train.main(argv) in this worker, its output to log_path -> (ok, seconds)."""
    torch.set_num_threads(1)
    t0, ok = time.time(), False
    with open(log_path, 'w') as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            train.main(argv)
            ok = True
        except SystemExit as e:                                 # train.die: the message is in the log
            ok = e.code in (0, None)
        except Exception:
            traceback.print_exc()
    return ok, time.time() - t0


def run_jobs(jobs, runs_dir, workers):
    """jobs: [(name, argv, deps)] in priority order; a job starts once its deps succeeded -> {name: (ok, s)}."""
    done, running, pending = {}, {}, list(jobs)
    with ProcessPoolExecutor(workers, mp_context=get_context('fork')) as pool:
        while pending or running:
            for job in list(pending):
                name, argv, deps = job
                if any(d in done and not done[d][0] for d in deps):
                    pending.remove(job)
                    done[name] = (False, 0.0)
                    print(f'skip {name}: a run it needs failed', flush=True)
                elif len(running) < workers and all(d in done for d in deps):
                    pending.remove(job)
                    out = os.path.join(runs_dir, name)
                    shutil.rmtree(out, ignore_errors=True)      # metrics.jsonl appends: start clean
                    os.makedirs(out)
                    running[pool.submit(run_train, argv, os.path.join(out, 'log.txt'))] = name
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                done[name] = future.result()
                print(f'{"done" if done[name][0] else "FAILED"} {name} in {done[name][1]:.0f}s '
                      f'({len(done)}/{len(jobs)})', flush=True)
    return done


def read_metrics(run_dir):
    with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


def curve(run_dir, net, metric):
    """[(step, value)] of a network over the distillation's evaluations."""
    return [(e['step'], e['metrics'][net][metric]) for e in read_metrics(run_dir)
            if e['phase'] == 'distill' and net in e['metrics']]


def final(run_dir, net, metric):
    return curve(run_dir, net, metric)[-1][1]


def teacher_metric(run_dir, metric):
    entry = next(e for e in read_metrics(run_dir) if e['phase'] == 'teacher')
    return next(iter(entry['metrics'].values()))[metric]


def final_rate(run_dir):
    """it_per_s of the last evaluation: generator updates per second since the start, evaluations included."""
    return [e for e in read_metrics(run_dir) if e['phase'] == 'distill'][-1]['it_per_s']


# ---------------------------------------------------------------------------------------------------- metrics

def balanced_reference(n, seed, modes=8):
    """n // modes held-out points of each mode of train.toy_data -> x (n', 2), y (n',)."""
    x, y = train.toy_data(3 * n, seed)
    per = n // modes
    return torch.cat([x[y == c][:per] for c in range(modes)]), torch.arange(modes).repeat_interleave(per)


@torch.no_grad()
def swd_balanced(sample, n, seed=4321):
    """Sliced W2 of sample(z, y) against a class-balanced reference, both with n // 8 points per class.

    train.py's swd compares class-balanced samples with an i.i.d. reference whose per-class counts are
    multinomial: that mismatch alone gives swd 0.045-0.08 between two real samples of 4000 points, more than
    the differences this grid produces. Balancing both sides brings the real-vs-real floor to ~0.006 at 20 000.
    """
    ref, y = balanced_reference(n, seed)
    z = torch.randn(len(y), 2, generator=torch.Generator().manual_seed(1))
    return train.sliced_wasserstein(sample(z, y).double(), ref.double())


def toy_samplers(teacher_path, run_dir=None, nfe=100):
    """-> the teacher's nfe-step sampler, or the one-step EMA generator saved in run_dir/ckpt.pt."""
    interp = make_interpolant('fm')
    teacher, _ = models.load_teacher(teacher_path)
    if run_dir is None:
        return lambda z, y: interp.generate(teacher, z, y, steps=nfe)
    generator = models.Generator(teacher, interp)               # the teacher's copy is overwritten below
    state = torch.load(os.path.join(run_dir, 'ckpt.pt'), map_location='cpu', weights_only=False)
    generator.load_state_dict(state['distiller']['emas'][EMA])
    return generator


def mean_std(values):
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(t) > 1 else 0.0


def fmt(values, digits=4):
    """'mean ± std' over seeds, the bare value for one seed, '' for none."""
    if not values:
        return ''
    m, s = mean_std(values)
    return f'{m:.{digits}f} ± {s:.{digits}f}' if len(values) > 1 else f'{m:.{digits}f}'


def welch_z(a, b):
    """(mean(a) - mean(b)) / its standard error; |z| < 2 is read as no detectable difference. nan below 2 seeds."""
    if len(a) < 2 or len(b) < 2:
        return float('nan')
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    se = math.sqrt(sa ** 2 / len(a) + sb ** 2 / len(b))
    return (ma - mb) / se if se > 0 else float('nan')


def zfmt(z):
    return 'n/a' if math.isnan(z) else f'{z:+.1f}'


def steps_to_reach(points, target):
    """First step whose value is <= target, or None: how long a curve takes to match another's final value."""
    return next((step for step, value in points if value <= target), None)


def mean_curve(run_dirs, net, metric):
    curves = [curve(d, net, metric) for d in run_dirs]
    return [(step, sum(c[i][1] for c in curves) / len(curves)) for i, (step, _) in enumerate(curves[0])]


# ---------------------------------------------------------------------------------------------------- plots

PALETTE = [('red', (.85, .1, .1)), ('blue', (.1, .35, .85)), ('green', (.1, .6, .2)), ('orange', (.95, .55, 0)),
           ('purple', (.55, .2, .75)), ('teal', (0, .6, .6)), ('brown', (.5, .3, .1))]
GLYPHS = {  # 3 x 5 bitmap digits, row by row
    '0': '111101101101111', '1': '010110010010111', '2': '111001111100111', '3': '111001111001111',
    '4': '101101111001001', '5': '111100111001111', '6': '111100111101111', '7': '111001001001001',
    '8': '111101111101111', '9': '111101111001111', '.': '000000000000010', '-': '000000111000000',
    'e': '000111111100111', '+': '000010111010000', ' ': '000000000000000'}


def draw_text(canvas, text, col, row, scale=2):
    for i, ch in enumerate(text):
        glyph = torch.tensor([int(b) for b in GLYPHS[ch]], dtype=torch.bool).view(5, 3)
        block = glyph.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        c0 = col + i * 4 * scale
        region = canvas[:, row:row + 5 * scale, c0:c0 + 3 * scale]
        region[:, block[:region.shape[1], :region.shape[2]]] = 0


def draw_line(canvas, p, q, colour, width=2, dash=0):
    """Segment p -> q ((col, row) floats) of `width` pixels; dash > 0 leaves gaps of dash pixels."""
    n = int(max(abs(q[0] - p[0]), abs(q[1] - p[1]))) + 1
    s = torch.linspace(0, 1, n)
    cols, rows = (p[0] + s * (q[0] - p[0])).round().long(), (p[1] + s * (q[1] - p[1])).round().long()
    if dash:
        keep = (torch.arange(n) // dash) % 2 == 0
        cols, rows = cols[keep], rows[keep]
    for dr in range(width):
        for dc in range(width):
            r, c = (rows + dr).clamp(0, canvas.shape[1] - 1), (cols + dc).clamp(0, canvas.shape[2] - 1)
            canvas[:, r, c] = torch.tensor(colour, dtype=canvas.dtype)[:, None]


def line_plot(path, series, hlines=(), width=480, height=300):
    """series: [(colour, [(step, value), ...])]; hlines: [(colour, value)] dashed. Writes a PNG with axes,
    the y range and x range printed at the corners, and swatch i+1 in the colour of series i."""
    canvas = torch.ones(3, height, width)
    left, right, top, bottom = 64, 12, 26, 22
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts] + [v for _, v in hlines]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1, pad = (x1 if x1 > x0 else x0 + 1), (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad

    def px(x, y):
        return (left + (x - x0) / (x1 - x0) * (width - left - right - 1),
                top + (y1 - y) / (y1 - y0) * (height - top - bottom - 1))
    draw_line(canvas, (left, top), (left, height - bottom), (0, 0, 0), 1)
    draw_line(canvas, (left, height - bottom), (width - right, height - bottom), (0, 0, 0), 1)
    draw_text(canvas, f'{y1:.4g}', 2, top)
    draw_text(canvas, f'{y0:.4g}', 2, height - bottom - 10)
    draw_text(canvas, f'{x0:g}', left, height - bottom + 6)
    draw_text(canvas, f'{x1:g}', width - right - 8 * len(f'{x1:g}'), height - bottom + 6)
    for colour, value in hlines:
        draw_line(canvas, px(x0, value), px(x1, value), colour, 1, dash=4)
    for i, (colour, pts) in enumerate(series):
        for a, b in zip(pts, pts[1:]):
            draw_line(canvas, px(*a), px(*b), colour)
        canvas[:, 6:18, left + 36 * i:left + 36 * i + 12] = torch.tensor(colour, dtype=canvas.dtype)[:, None, None]
        draw_text(canvas, str(i + 1), left + 36 * i + 15, 7)
    torchvision.utils.save_image(canvas, path)


def image_grid(path, pngs, nrow):
    """Several PNGs (same size after resizing to the first) side by side, 4-pixel grey gutters."""
    images = [torchvision.io.read_image(p, torchvision.io.ImageReadMode.RGB).float() / 255 for p in pngs]
    size = images[0].shape[1:]
    images = [torch.nn.functional.interpolate(x[None], size=size, mode='nearest')[0] for x in images]
    torchvision.utils.save_image(torchvision.utils.make_grid(images, nrow=nrow, padding=4, pad_value=0.6), path)


def legend(names):
    return ', '.join(f'{i + 1} {PALETTE[i][0]}: {n}' for i, n in enumerate(names))


# ---------------------------------------------------------------------------------------------------- the study

def cell(alpha, ratio):
    """(label, alpha, beta) of a Table 1 cell: beta = alpha * (beta/alpha); alpha = 1 is UID."""
    if alpha == 1:
        return 'uid', 1.0, 1.0
    return f'a{alpha:.2f}_r{ratio:.2f}', alpha, round(alpha * ratio, 4)


def cell_name(alpha, beta):
    return 'UID' if alpha == 1 else f'RealUID alpha={alpha:.2f} beta={beta:.4g} (beta/alpha={beta / alpha:.2f})'


class Study:
    """The runs of one invocation (train.py OUT folders under `runs`) and the numbers read back from them."""
    def __init__(self, args):
        self.args, self.b = args, BUDGETS['quick' if args.quick else 'full']
        self.runs, self.out = os.path.abspath(args.runs), args.out
        self.status, self.argvs, self.cache = {}, {}, {}
        self.teacher, self.corrupt = self.run('toy_teacher/teacher.pt'), self.run('toy_corrupt_teacher/teacher.pt')

    def run(self, name):
        return os.path.join(self.runs, name)

    def launch(self, jobs, workers):
        self.argvs.update({name: argv for name, argv, _ in jobs})
        self.status.update(run_jobs(jobs, self.runs, workers))

    def ok(self, name):
        return self.status.get(name, (False,))[0]

    def names(self, prefix, label, seeds):
        return [f'{prefix}_{label}_s{s}' for s in range(seeds) if self.ok(f'{prefix}_{label}_s{s}')]

    def toy_argv(self, name, seed=0, steps=None, eval_every=None):
        b = self.b
        return ['--dataset', 'toy', '--cond', '--steps', str(b.steps if steps is None else steps),
                '--eval-every', str(eval_every or b.eval_every), '--batch-size', str(b.batch),
                '--warmup', str(b.warmup), '--eval-samples', str(b.eval_samples), '--ema', EMA, '0.999',
                '--seed', str(seed), '--log-every', '30', '--out', self.run(name)]

    def swd(self, name):                                        # train.py's swd of the final EMA
        return final(self.run(name), f'ema{EMA}', 'swd')

    def bal(self, name):                                        # swd_bal of the final EMA, from the checkpoint
        if name not in self.cache:
            teacher = self.corrupt if name.startswith('corrupt_') else self.teacher
            self.cache[name] = swd_balanced(toy_samplers(teacher, self.run(name)), self.b.bal_samples)
        return self.cache[name]

    def teacher_numbers(self, name, path):
        """swd_bal and swd of a teacher with 100 NFE, and of the same network as a one-step generator."""
        gen0 = models.Generator(models.load_teacher(path)[0], make_interpolant('fm'))
        return dict(swd_bal=swd_balanced(toy_samplers(path), self.b.bal_samples),
                    swd=teacher_metric(self.run(name), 'swd'), gen0_bal=swd_balanced(gen0, self.b.bal_samples),
                    gen0=final(self.run(name), 'generator', 'swd'))


def plan(s, classes, folder):
    """All runs but the timing ones -> [(name, argv, deps)], longest chains first."""
    b, img, jobs = s.b, s.b.img, []
    if folder:                                                  # experiment 4: the longest runs start first
        img_argv = ['--dataset', 'folder', '--data-dir', folder, '--cond', '--image-size', str(img['size']),
                    '--channels', '32', '--channel-mult', '1', '1', '--res-blocks', '1', '--attn', '1',
                    '--teacher-steps', str(img['teacher_steps']), '--teacher-batch-size', '64', '--teacher-lr', '5e-4',
                    '--teacher-ema', '0.99', '--batch-size', '32', '--lr', '2e-4', '--warmup', '10', '--ema', '0.95',
                    '--eval-samples', str(img['eval_samples']), '--nfe', str(img['nfe']), '--fid-samples', '0',
                    '--workers', '0', '--log-every', '30']
        jobs.append(('img_teacher', img_argv + ['--steps', '0', '--out', s.run('img_teacher')], []))
        for name, (a, beta) in (('img_uid', (1.0, 1.0)), ('img_realuid', PAPER_IMAGE_CELL)):
            jobs.append((name, img_argv + ['--steps', str(img['steps']), '--eval-every', str(img['eval_every']),
                                           '--teacher', s.run('img_teacher/teacher.pt'), '--alpha', str(a),
                                           '--beta', str(beta), '--out', s.run(name)], ['img_teacher']))
    jobs.append(('toy_teacher', s.toy_argv('toy_teacher', steps=0) +
                 (['--teacher-steps', str(b.teacher_steps)] if b.teacher_steps else []), []))
    jobs.append(('toy_corrupt_teacher', s.toy_argv('toy_corrupt_teacher', steps=0) +
                 ['--teacher-steps', str(b.corrupt_steps), '--teacher-ema', '0.99'], []))
    for seed in range(b.seeds):                                 # experiments 1 and 2
        for label, a, beta in [cell(1.0, 1.0)] + [cell(a, r) for a in b.alphas for r in b.ratios]:
            name = f'grid_{label}_s{seed}'
            coefficients = ['--alpha', str(a), '--beta', str(beta)]
            jobs.append((name, s.toy_argv(name, seed) + ['--teacher', s.teacher] + coefficients, ['toy_teacher']))
    for seed in range(b.gan_seeds):                             # experiment 5
        name = f'gan_uid_s{seed}'
        jobs.append((name, s.toy_argv(name, seed) + ['--teacher', s.teacher, '--gan', *GAN], ['toy_teacher']))
    for seed in range(b.corrupt_seeds):                         # experiment 3
        for label, a, beta in corrupt_cells(s):
            name = f'corrupt_{label}_s{seed}'
            argv = s.toy_argv(name, seed, steps=b.corrupt_updates, eval_every=b.corrupt_eval_every)
            jobs.append((name, argv + ['--teacher', s.corrupt, '--alpha', str(a), '--beta', str(beta)],
                         ['toy_corrupt_teacher']))
    return jobs


def corrupt_cells(s):
    a = s.b.corrupt_alpha
    if s.args.quick:
        return [cell(1.0, 1.0), cell(a, 1.02)]
    return [cell(1.0, 1.0), cell(a, 1.0), cell(a, 0.98), cell(a, 1.02)]


def section_header(s, machine):
    b = s.b
    mode = 'quick smoke run: tiny budgets, the numbers mean nothing' if s.args.quick else 'full mode'
    return [f'# RealUID experiments on CPU ({mode})', '', f'Hardware: {machine}.', '',
            'Written by `experiments.py`; every number below comes from the runs listed at the end. Toy runs: the '
            f'conditional 8-Gaussian toy (`--dataset toy --cond`), {b.steps} generator updates (train.py default '
            f'600) at batch {b.batch} (default 256), K=5 fake updates each, warm-up {b.warmup}, lr 1e-3. Reported '
            'network: '
            f'the EMA {EMA} of the one-step generator (1 NFE); after {b.steps} updates an EMA 0.999 would still be '
            'mostly the initialisation.', '',
            '**Metrics** (lower is better). `swd`: train.py\'s sliced 2-Wasserstein distance (256 projections) between '
            f'{b.eval_samples} generated and {b.eval_samples} held-out real points, from metrics.jsonl. Its reference '
            'has multinomial per-class counts while the generated points are class-balanced; that mismatch alone '
            'puts two real samples of 4000 points 0.045-0.08 apart, so `swd` does not resolve differences of ~0.01. '
            f'`swd_bal`: the same distance with both sides class-balanced, {b.bal_samples} points each, computed by '
            'experiments.py from the run\'s final checkpoint (real-vs-real floor ~0.006 at 20 000 points). Mean ± '
            'standard deviation over training seeds; teacher and evaluation noise are fixed, so the spread is that of '
            'training. "Welch z": difference of means over its standard error; |z| < 2 is read as no detectable '
            'difference.', '']


def section_table1(s, tt):
    """Experiment 1 -> (markdown, [the cell (alpha, ratio) of lowest mean, and of lowest with beta/alpha != 1])."""
    b = s.b
    values = lambda a, r, fn: [fn(n) for n in s.names('grid', cell(a, r)[0], b.seeds)]   # noqa: E731
    md = [f'## 1. Table 1 analogue ({b.seeds} seed(s) per cell, one teacher)', '',
          f'Teacher: {b.teacher_steps or 3000} UM steps (`--teacher-steps`), sampled with 100 NFE: swd_bal '
          f'{tt["swd_bal"]:.4f}, swd {tt["swd"]:.4f}. The same network as a one-step generator (the distillation\'s '
          f'initialisation): swd_bal {tt["gen0_bal"]:.4f}, swd {tt["gen0"]:.4f}.', '']
    for metric, fn in (('swd_bal', s.bal), ('swd', s.swd)):
        md += [f'**{metric}** of the 1-NFE generator (EMA {EMA}) after {b.steps} updates:', '',
               '| alpha \\ beta/alpha | ' + ' | '.join(f'{r:.2f}' for r in b.ratios) + ' |',
               '|---' * (len(b.ratios) + 1) + '|']
        md += [f'| {a:.2f} | ' + ' | '.join(fmt(values(a, r, fn)) or 'failed' for r in b.ratios) + ' |'
               for a in b.alphas]
        uid_row = [fmt(values(1.0, 1.0, fn)) if r == 1 else '' for r in b.ratios]
        md += ['| 1.00 (UID) | ' + ' | '.join(uid_row) + ' |', '']
    uid = values(1.0, 1.0, s.bal)
    cells = {(a, r): values(a, r, s.bal) for a in b.alphas for r in b.ratios}
    cells = {k: v for k, v in cells.items() if v}
    if not cells or not uid:
        return md + ['Too many runs failed for a comparison.', ''], []
    best = min(cells, key=lambda k: mean_std(cells[k])[0])
    off = {k: v for k, v in cells.items() if k[1] != 1.0}
    z_uid = {k: welch_z(v, uid) for k, v in off.items()}
    z_diag = {k: welch_z(v, cells[(k[0], 1.0)]) for k, v in off.items() if (k[0], 1.0) in cells}
    wins = [k for k in off if z_uid[k] < -2 and z_diag.get(k, -3) < -2]   # better than UID and alpha = beta
    losses = [k for k in off if z_uid[k] > 2]
    if b.seeds < 2:
        verdict, reading = 'Cannot tell with one seed', ''
    elif len(wins) > len(off) / 2:
        verdict, reading = 'Yes', 'This grid reproduces that ordering.'
    elif wins:
        verdict, reading = 'Partly', (f'Only {len(wins)} of {len(off)} cells do, so the ordering is reproduced at '
                                      'best in part.')
    else:
        verdict, reading = 'No', ('No cell with beta/alpha != 1 is better than both UID and alpha = beta by more than '
                                  'two standard errors: this toy does not reproduce the ordering.')
    mean = lambda v: mean_std(v)[0]                             # noqa: E731
    below_uid = sum(mean(v) < mean(uid) for v in off.values())
    below_diag = sum(mean(off[k]) < mean(cells[(k[0], 1.0)]) for k in z_diag)
    md += [f'**Does beta/alpha != 1 beat beta/alpha = 1 here? {verdict}.** On swd_bal, {below_uid} of {len(off)} '
           f'cells with beta/alpha != 1 have a lower mean than UID, {sum(z < -2 for z in z_uid.values())} with Welch '
           f'z < -2 and {len(losses)} with z > 2 (significantly worse); {below_diag} of {len(z_diag)} have a lower '
           f'mean than the alpha = beta cell of the same alpha, {sum(z < -2 for z in z_diag.values())} with z < -2; '
           f'{len(wins)} beat both UID and alpha = beta with z < -2. Lowest mean: alpha={best[0]:.2f}, '
           f'beta/alpha={best[1]:.2f}, swd_bal {fmt(cells[best])}, against UID {fmt(uid)} '
           f'(z {zfmt(welch_z(cells[best], uid))}; the lowest of {len(cells)} cells is biased low). The paper '
           '(Table 1, CIFAR-10 FID) finds beta/alpha in {0.98, 1.02} better than UID for most alpha and beta/alpha = 1 '
           'worse. ' + reading, '']
    best_off = min(off, key=lambda k: mean(off[k])) if off else best
    return md, [best] + ([best_off] if best_off != best else [])


def section_convergence(s, picks, tt):
    """Experiment 2: the grid runs' swd curves for UID, the picked RealUID cells and UID+GAN."""
    b = s.b
    series = [('UID', s.names('grid', 'uid', b.seeds))]
    series += [(cell_name(a, a * r), s.names('grid', cell(a, r)[0], b.seeds)) for a, r in picks]
    series += [('UID+GAN ' + ' '.join(GAN), s.names('gan', 'uid', b.gan_seeds))]
    curves = [(label, mean_curve([s.run(n) for n in names], f'ema{EMA}', 'swd')) for label, names in series if names]
    line_plot(os.path.join(s.out, 'convergence.png'), [(PALETTE[i][1], c) for i, (_, c) in enumerate(curves)],
              hlines=[((0, 0, 0), tt['swd'])])
    uid_final = curves[0][1][-1][1]
    reached = []
    for label, points in curves[1:1 + len(picks)]:
        reach = steps_to_reach(points, uid_final)
        reached.append(f'{label} reaches it ' + (f'after {reach} of {b.steps} updates ({reach / b.steps:.2f} of '
                                                 'UID\'s budget)' if reach is not None else 'at no evaluation'))
    md = ['## 2. Convergence (Figure 2 analogue)', '', '![swd vs iteration](convergence.png)', '',
          f'swd (metrics.jsonl, EMA {EMA}, mean over seeds) against the generator update, evaluated every '
          f'{b.eval_every} updates; {legend([n for n, _ in curves])}; dashed black: the 100-NFE teacher '
          f'({tt["swd"]:.4f}); axis ranges printed at the corners. The RealUID cells are the lowest-mean cell of '
          'section 1 and, if that has beta/alpha = 1, also the lowest-mean cell with beta/alpha != 1. UID ends at '
          f'{uid_final:.4f}; ' + '; '.join(reached) + '. The paper: the best RealUID reaches UID\'s saturated FID '
          'after about 1/3 of UID\'s iterations on CIFAR-10. Caveats: the EMA lags the generator by ~100 updates, and '
          'the curves end close to the `swd` floor of the reference sample, so a crossing here is within noise unless '
          'the gap is large.', '',
          '| update | ' + ' | '.join(n for n, _ in curves) + ' |', '|---' * (len(curves) + 1) + '|']
    n = len(curves[0][1])
    for i in sorted(set(range(0, n, max(1, n // 8))) | {n - 1}):
        md.append(f'| {curves[0][1][i][0]} | ' + ' | '.join(f'{c[i][1]:.4f}' for _, c in curves) + ' |')
    return md + ['']


def section_corrupt(s, ct, tt, picks):
    """Experiment 3: distillations of the under-trained teacher; the sample figure of the toy runs."""
    b = s.b
    md = ['## 3. Under-trained teacher (App. A.1.4)', '',
          f'Teacher: {b.corrupt_steps} UM steps with `--teacher-ema 0.99` instead of 3000 (wider modes, some samples '
          f'in the wrong class\'s mode). {b.corrupt_seeds} seed(s) per row, {b.corrupt_updates} generator updates '
          f'(evaluated every {b.corrupt_eval_every}; App. A.1.4 is about where the distillation settles, so these '
          f'runs are longer than section 1\'s {b.steps}); otherwise as section 1.', '',
          '| model | NFE | swd_bal | swd |', '|---|---|---|---|',
          f'| under-trained teacher | 100 | {ct["swd_bal"]:.4f} | {ct["swd"]:.4f} |',
          f'| under-trained teacher as a one-step generator (initialisation) | 1 | {ct["gen0_bal"]:.4f} | '
          f'{ct["gen0"]:.4f} |']
    if tt:
        md.append(f'| well-trained teacher of section 1, for reference | 100 | {tt["swd_bal"]:.4f} | {tt["swd"]:.4f} |')
    rows = [(a, beta, s.names('corrupt', label, b.corrupt_seeds)) for label, a, beta in corrupt_cells(s)]
    md += [f'| {cell_name(a, beta)} | 1 | {fmt([s.bal(n) for n in names]) or "failed"} | '
           f'{fmt([s.swd(n) for n in names]) or "failed"} |' for a, beta, names in rows]
    uid = [s.bal(n) for n in rows[0][2]]
    side = lambda m, ref: 'below' if m < ref else 'above'      # noqa: E731
    found, fixes = [], []
    for a, beta, names in rows:
        vals = [s.bal(n) for n in names]
        if vals:
            m, z = mean_std(vals)[0], welch_z(vals, uid)
            found.append(f'{cell_name(a, beta)} {m:.4f}: {side(m, ct["swd_bal"])} the teacher, '
                         f'{side(m, ct["gen0_bal"])} its initialisation'
                         + (f', Welch z vs UID {zfmt(z)}' if a < 1 else ''))
            if a < 1 and beta != a and z < -2:
                fixes.append(cell_name(a, beta))
    md += ['', 'swd_bal of the final EMA against the teacher\'s ' f'{ct["swd_bal"]:.4f} and the initialisation\'s '
           f'{ct["gen0_bal"]:.4f}: ' + '; '.join(found) + '. App. A.1.4 predicts that UID reproduces the corrupted '
           'teacher, alpha = beta < 1 does no better, and beta/alpha != 1 can move the generator towards the data. '
           + (f'Here {", ".join(fixes)} end(s) significantly closer to the data than UID.' if fixes else
              'Here no beta/alpha != 1 run ends significantly closer to the data than UID (z < -2): the prediction '
              'is not reproduced at this budget.'), '']
    curves = [(cell_name(a, beta), mean_curve([s.run(n) for n in names], f'ema{EMA}', 'swd'))
              for a, beta, names in rows if names]
    if curves:
        line_plot(os.path.join(s.out, 'corrupt.png'), [(PALETTE[i][1], c) for i, (_, c) in enumerate(curves)],
                  hlines=[((0, 0, 0), ct['swd'])])
        md += ['![swd vs iteration, under-trained teacher](corrupt.png)', '',
               f'swd (metrics.jsonl, EMA {EMA}, mean over seeds) against the update; {legend([n for n, _ in curves])}; '
               'dashed black: the under-trained teacher with 100 NFE.', '']
    pngs = [(s.run('toy_teacher'), 'teacher'), (s.run('grid_uid_s0'), f'ema{EMA}')]
    pngs += [(s.run(f'grid_{cell(*pick)[0]}_s0'), f'ema{EMA}') for pick in picks]
    pngs += [(s.run('toy_corrupt_teacher'), 'teacher')] + [(s.run(f'corrupt_{label}_s0'), f'ema{EMA}')
                                                           for label, *_ in corrupt_cells(s)]
    pngs = [p for p in (os.path.join(d, f'samples_{net}.png') for d, net in pngs) if os.path.isfile(p)]
    image_grid(os.path.join(s.out, 'toy_samples.png'), pngs, nrow=len(pngs))
    return md + ['![toy samples](toy_samples.png)', '',
                 'Samples (seed 0, colour = class), left to right: the well-trained teacher (100 NFE), UID, the '
                 'RealUID cell(s) of section 2, the under-trained teacher (100 NFE), then its distillations in the '
                 'order of the table (EMA, 1 NFE); runs that failed are left out.', '']


def section_gan(s, picks):
    """Experiment 5: UID+GAN next to UID and the picked RealUID cells; three timing runs, one at a time."""
    b = s.b
    timed = picks[-1]                                           # beta/alpha != 1 when the grid has such a cell
    timing = [(f'timing_{k}', s.toy_argv(f'timing_{k}', steps=b.timing_steps, eval_every=b.timing_steps) +
               ['--teacher', s.teacher, '--alpha', str(a), '--beta', str(beta)] + extra, [])
              for k, a, beta, extra in (('uid', 1.0, 1.0, []), ('realuid', *cell(*timed)[1:], []),
                                        ('gan', 1.0, 1.0, ['--gan', *GAN]))]
    print('timing runs, one at a time', flush=True)
    s.launch(timing, 1)
    rate = lambda name: final_rate(s.run(name)) if s.ok(name) else float('nan')   # noqa: E731
    md = ['## 5. UID+GAN (eq. 8) next to RealUID', '',
          f'UID+GAN: `--gan {" ".join(GAN)}` (the paper\'s best lambda_gen, lambda_disc) with alpha = beta = 1; the '
          'discriminator is a logit head on the fake network\'s last hidden layer, trained on real and generated data '
          'noised to t in [0, 0.2]. it/s: generator updates per second (each after K=5 fake updates), it_per_s of '
          f'metrics.jsonl. "In the grid": the runs above, whose rate includes the evaluations every {b.eval_every} '
          f'updates and which shared the CPU with a second run. "Alone": one {b.timing_steps}-update run at a time '
          'with a single evaluation after the last update, so the rate is the training loop on one thread (other '
          f'users\' jobs on the machine still count); for RealUID it is measured at {cell_name(*cell(*timed)[1:])} '
          '(the rate depends on alpha < 1, not on the values).', '',
          '| method | swd_bal | swd | it/s in the grid | it/s alone |', '|---|---|---|---|---|']
    methods = [('UID', s.names('grid', 'uid', b.seeds), 'timing_uid')]
    methods += [(cell_name(a, a * r), s.names('grid', cell(a, r)[0], b.seeds), 'timing_realuid' if (a, r) == timed
                 else None) for a, r in picks]
    methods += [(f'UID+GAN {" ".join(GAN)}', s.names('gan', 'uid', b.gan_seeds), 'timing_gan')]
    for name, names, tname in methods:
        alone = f'{rate(tname):.2f}' if tname else ''
        md.append(f'| {name} | {fmt([s.bal(n) for n in names])} | {fmt([s.swd(n) for n in names])} | '
                  f'{fmt([rate(n) for n in names], 2)} | {alone} |')
    gan = [s.bal(n) for n in s.names('gan', 'uid', b.gan_seeds)]
    bal = lambda a, r: [s.bal(n) for n in s.names('grid', cell(a, r)[0], b.seeds)]  # noqa: E731
    zs = [f'{cell_name(a, a * r)}: Welch z {zfmt(welch_z(bal(a, r), gan))}' for a, r in picks]
    speed = rate('timing_realuid') / rate('timing_gan')
    md += ['', 'RealUID vs UID+GAN on swd_bal (z < -2: RealUID better, z > 2: UID+GAN better): ' + '; '.join(zs) +
           f'. Alone, RealUID runs {speed:.2f}x as many updates per second as UID+GAN, UID '
           f'{rate("timing_uid") / rate("timing_gan"):.2f}x. RealUID needs no discriminator by construction; the rate '
           'gap is the discriminator\'s extra forward passes (one on a real and one on a generated batch per fake '
           'update, one in the generator update), while RealUID\'s own overhead over UID is the real half of its '
           'fused fake batch.' if gan else '', '']
    return md


def section_images(s, classes):
    """Experiment 4: teacher, UID and RealUID on a few classes of real images, fd_pix8 and sample grids."""
    img, ema = s.b.img, 'ema0.95'
    md = ['## 4. Images: a small U-Net on real images', '',
          f'Classes {", ".join(classes)} of the given folder at {img["size"]}x{img["size"]}, class-conditional. U-Net: '
          '32 channels, channel-mult 1 1, 1 res-block, attention only in the middle block. Teacher: '
          f'{img["teacher_steps"]} UM steps at batch 64, lr 5e-4, EMA 0.99, sampled with {img["nfe"]} NFE (not 100: '
          f'CPU time). Distillation: {img["steps"]} generator updates at batch 32, lr 2e-4, K=5, EMA 0.95; RealUID at '
          f'the paper\'s conditional alpha={PAPER_IMAGE_CELL[0]}, beta={PAPER_IMAGE_CELL[1]}. Metric `fd_pix8`: '
          'Frechet distance between Gaussians fitted to 8x8 average-pooled pixels (192-D, values in [-1, 1]) of '
          f'{img["eval_samples"]} generated images and {img["eval_samples"]} images of the training folder itself (no '
          'held-out split; no Inception network, FID is off with `--fid-samples 0`).', '']
    if not s.ok('img_teacher'):
        return md + ['The image teacher run failed; see its log.', '']
    names = [('img_uid', 'UID'), ('img_realuid', cell_name(*PAPER_IMAGE_CELL))]
    names = [(n, label) for n, label in names if s.ok(n)]
    teacher = teacher_metric(s.run('img_teacher'), 'fd_pix8')
    rows = [('teacher', img['nfe'], teacher),
            ('teacher as a one-step generator (initialisation)', 1,
             final(s.run('img_teacher'), 'generator', 'fd_pix8'))]
    for name, label in names:
        rows += [(f'{label}, generator', 1, final(s.run(name), 'generator', 'fd_pix8')),
                 (f'{label}, EMA 0.95', 1, final(s.run(name), ema, 'fd_pix8'))]
    md += ['| model | NFE | fd_pix8 |', '|---|---|---|'] + [f'| {n} | {k} | {v:.2f} |' for n, k, v in rows] + ['']
    if names:
        curves = [(label, curve(s.run(name), 'generator', 'fd_pix8')) for name, label in names]
        line_plot(os.path.join(s.out, 'images_fd.png'), [(PALETTE[i][1], c) for i, (_, c) in enumerate(curves)],
                  hlines=[((0, 0, 0), teacher)])
        md += ['![fd_pix8 vs iteration](images_fd.png)', '',
               f'fd_pix8 of the raw generator against the update; {legend([n for n, _ in curves])}; dashed black: the '
               'teacher.', '']
    pngs = [os.path.join(s.run('img_teacher'), 'samples_teacher.png')]
    pngs += [os.path.join(s.run(name), f'samples_{ema}.png') for name, _ in names]
    image_grid(os.path.join(s.out, 'images_samples.png'), pngs, nrow=1)
    return md + ['![image samples](images_samples.png)', '',
                 f'Samples, one row per class, top to bottom: the teacher ({img["nfe"]} NFE), then '
                 + ', '.join(label for _, label in names) + ' (EMA 0.95, 1 NFE).', '',
                 'What this shows: the whole pipeline (image folder, U-Net teacher, Algorithm 1 with and without real '
                 'data, the pooled-pixel metric) runs on real images and stays finite. What it cannot show: anything '
                 'about FID, or about RealUID against UID on images. The teacher is far from converged (the paper '
                 f'trains 400k steps at 128 channels on 50k images), {img["steps"]} generator updates are a '
                 'fraction of a percent of the paper\'s budget, there is one seed, and fd_pix8 only sees colour layout '
                 'at 8x8.', '']


def section_commands(s, total):
    md = ['## Commands', '', f'Total wall time {total / 60:.1f} min, {s.args.workers} runs at a time (one thread '
          'each). Each run is `train.main(argv)` in a worker process; the same from a shell, with the wall time of '
          'each:', '',
          '```']
    for name, (good, seconds) in s.status.items():
        md.append(f'# {name}: ' + (f'{seconds:.0f} s' if good else 'FAILED or skipped, see its log.txt'))
        md.append('python train.py ' + shlex.join(s.argvs[name]).replace(s.runs + '/', '$RUNS/'))
    return md + ['```', '', f'`$RUNS` is `{s.args.runs}`; each run\'s log is `$RUNS/<name>/log.txt`.', '']


def image_folder(args, runs_dir, n_classes):
    """runs_dir/images/<class> -> symlinks to the chosen class folders of --images -> (folder, classes)."""
    root = os.path.abspath(args.images)
    classes = args.classes.split(',') if args.classes else sorted(
        d.name for d in os.scandir(root) if d.is_dir())[:n_classes]
    missing = [c for c in classes if not os.path.isdir(os.path.join(root, c))]
    if not classes or missing:
        sys.exit(f'experiments.py: {root} needs class subfolders (missing: {", ".join(missing) or "all"})')
    folder = os.path.join(runs_dir, 'images')
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for c in classes:
        os.symlink(os.path.join(root, c), os.path.join(folder, c))
    return folder, classes


def hardware():
    with open('/proc/cpuinfo') as f:
        cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), 'unknown CPU')
    load = ', '.join(f'{x:.1f}' for x in os.getloadavg())
    return (f'{cpu}, {os.cpu_count()} cores visible, no GPU used, torch {torch.__version__}, python '
            f'{sys.version.split()[0]}; load average at the start (1, 5, 15 min, other users\' jobs included): {load}')


def main(argv=None):
    args = get_args(argv)
    torch.set_num_threads(1)
    s, t_start, machine = Study(args), time.time(), hardware()
    os.makedirs(s.runs, exist_ok=True)
    os.makedirs(s.out, exist_ok=True)
    folder, classes = image_folder(args, s.runs, s.b.img['classes']) if args.images else (None, [])
    jobs = plan(s, classes, folder)
    print(f'{len(jobs)} runs, {args.workers} at a time, outputs under {s.runs}', flush=True)
    s.launch(jobs, args.workers)

    print('reading the runs back', flush=True)
    tt = s.teacher_numbers('toy_teacher', s.teacher) if s.ok('toy_teacher') else None
    ct = s.teacher_numbers('toy_corrupt_teacher', s.corrupt) if s.ok('toy_corrupt_teacher') else None
    md, picks = section_header(s, machine), []
    if tt:
        table, picks = section_table1(s, tt)
        md += table + (section_convergence(s, picks, tt) if picks else [])
    md += section_corrupt(s, ct, tt, picks) if ct else ['## 3. Under-trained teacher', '', 'Its run failed.', '']
    md += section_images(s, classes) if args.images else [
        '## 4. Images', '', 'Skipped: no `--images DIR` given (for example the CIFAR-10 test JPEGs: '
        '`tar -xzf cifar10-test-jpeg.tar.gz -C /tmp`, then `--images /tmp/test`).', '']
    md += section_gan(s, picks) if picks else []
    md += section_commands(s, time.time() - t_start)
    path = os.path.join(s.out, 'README-table.md')
    with open(path, 'w') as f:
        f.write('\n'.join(md))
    print(f'wrote {path} and its PNGs in {(time.time() - t_start) / 60:.1f} min', flush=True)
    return path


if __name__ == '__main__':
    main()
