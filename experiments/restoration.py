"""Data-to-data RealUID on the toy couplings (App. C, Def. 5): one-step restorers against their teacher and UID.

    python experiments/restoration.py                       # 14 runs of `python train.py ...`, 2 at a time
    python experiments/restoration.py --quick --workers 1   # smoke run, tiny budgets, into runs/restoration-quick

Runs, for each toy coupling and seeds 0, 1, 2: RealUID (the coupled quickstart command, REALUID: it trains its own
teacher), UID (UID: alpha = beta = 1 from that run's teacher.pt, same seed, so the two differ only by the real-data
term), and for seed 0 the negative control (CONTROL: RealUID with --source-noise 0 and its own teacher: a
deterministic G(c) cannot split its mass between two modes). A run whose command is unchanged and finished is reused
(run.Runner: RUNS/<name>.done). Then writes OUT/restoration.md (per coupling: the floor of exact posterior samples,
teacher, initialisation, UID, RealUID and control, cswd and mode_tv as mean ± std over the seeds, every command
with its wall time) and OUT/restoration.png (per coupling, seed 0: exact posterior, teacher, UID, RealUID, control,
each the samples of train.py's first 8 held-out inputs, a colour per input). Needs no matplotlib.

The held-out inputs are train.make_coupled_evaluator's on the CPU (train.py's default device here).
"""
import math
import os
import shlex
import sys
import time

import torch
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'results')                         # committed: written by the full run only
sys.path[:0] = [ROOT, HERE]
import cli  # noqa: E402  (experiments/cli.py)
import couplings  # noqa: E402
import fid  # noqa: E402
import run  # noqa: E402  (experiments/run.py: Runner, fmt, mean_sd)
import score_restorations  # noqa: E402  (held_out_inputs: the pairs train.py evaluates)
import train  # noqa: E402  (train.read_records)

COUPLINGS = ('toy-noise0.5', 'toy-proj0.1')
SEEDS = (0, 1, 2)
EXTRA_FLAGS = ''        # flags added to every command below (e.g. a tuned preset); '' = train.py's toy defaults
REALUID = ('python train.py --dataset toy --coupling {coupling} --alpha 0.98 --beta 0.96 --seed {seed} {extra} '
           '--out {out}')                                       # the coupled quickstart; trains its own teacher
UID = ('python train.py --dataset toy --coupling {coupling} --alpha 1 --beta 1 --teacher {teacher} --seed {seed} '
       '{extra} --out {out}')                                   # the RealUID run's teacher: only the real term differs
CONTROL = REALUID + ' --source-noise 0'                         # seed 0; after EXTRA_FLAGS, so it wins over theirs
QUICK_FLAGS = '--teacher-steps 200 --steps 20 --eval-every 20'  # --quick: checks the pipeline, not the method
TARGET_RATIO, TARGET_TV = 1.3, {'toy-noise0.5': 0.02, 'toy-proj0.1': 0.05}   # acceptance: best one-step vs teacher
FIGURE_INPUTS = 8                                               # the inputs train.py's samples_*.png show


def get_args(argv=None):
    p = cli.parser('restoration.py', __doc__.split('\n')[0])
    p.add_argument('--runs', default=None, help='one train.py OUT per run (default: runs/restoration; with --quick '
                   'runs/restoration-quick/runs)')
    p.add_argument('--out', default=None, help='restoration.md and .png (default: experiments/results, the committed '
                   'ones; with --quick runs/restoration-quick/results, never the committed ones)')
    p.add_argument('--workers', type=cli.COUNT, default=2, help='train.py processes at once, one thread each')
    p.add_argument('--quick', action='store_true', help=f'tiny budgets ({QUICK_FLAGS}): checks the pipeline only')
    args = p.parse_args(argv)
    cli.study_folders(p, args, 'restoration', RESULTS)
    args.out, args.runs = os.path.abspath(args.out), os.path.abspath(args.runs)
    return args


# ---------------------------------------------------------------------------------------------------- runs

def name(coupling, method, seed):
    return f'{coupling}_{method}_s{seed}'


def plan(runner, quick=False):
    """Adds every run to runner (run.Runner), each UID run after the RealUID run whose teacher it distils."""
    def add(template, job, deps=(), **fields):
        command = template.format(extra=EXTRA_FLAGS, out=shlex.quote(runner.out(job)), **fields)
        argv = shlex.split(command)[1:] + (QUICK_FLAGS.split() if quick else [])      # without 'python'
        return runner.add(job, argv, deps)
    for coupling in COUPLINGS:
        for seed in SEEDS:
            realuid = add(REALUID, name(coupling, 'realuid', seed), coupling=coupling, seed=seed)
            teacher = shlex.quote(os.path.join(runner.out(realuid), 'teacher.pt'))
            add(UID, name(coupling, 'uid', seed), [realuid], coupling=coupling, seed=seed, teacher=teacher)
        add(CONTROL, name(coupling, 'control', 0), coupling=coupling, seed=0)


# ---------------------------------------------------------------------------------------------------- reading

def read(out):
    """A run's metrics.jsonl -> dict(teacher, init, best: {'cswd', 'mode_tv', 'off_mode'}, network: the best's name,
    step, nfe). best: of the networks of the LAST evaluation (the one its samples_*.png show), the lowest cswd."""
    rows = train.read_records(os.path.join(out, 'metrics.jsonl'))
    (key, teacher), = next(r for r in rows if r['phase'] == 'teacher')['metrics'].items()    # 'teacher_nfe100'
    distill = [r for r in rows if r['phase'] == 'distill']
    init = next(r for r in distill if r['step'] == 0)['metrics']['generator']
    last = max(distill, key=lambda r: r['step'])
    number = lambda m: {k: math.nan if v is None else v for k, v in m.items()}    # null in metrics.jsonl: not finite
    network = min(last['metrics'], key=lambda net: (math.isnan(number(last['metrics'][net])['cswd']),
                                                    number(last['metrics'][net])['cswd']))
    return dict(teacher=number(teacher), init=number(init), best=number(last['metrics'][network]), network=network,
                step=last['step'], nfe=key.removeprefix('teacher_nfe'))


def floor(coupling_name, seeds=(1, 2, 3), per=None):
    """Exact posterior samples scored as train.py scores a run's (restoration_metrics, its reference seed 7), one
    independent draw per seed, `per` samples an input (default train.py's) -> [{'cswd', 'mode_tv', 'off_mode'}]: what
    a perfect restorer gets."""
    coupling = couplings.make_coupling(coupling_name)
    (x0, c), per = score_restorations.held_out_inputs(coupling), per or coupling.eval_pairs[1]
    return [couplings.restoration_metrics(coupling, x0, c, coupling.posterior_sample(c, per, gen(seed)), gen(7))
            for seed in seeds]


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------- tables

def row(label, metrics, ratios=None, networks=''):
    """One table line: cswd, mode_tv and off_mode as mean ± std over the runs, cswd over its teacher's per run."""
    cells = ' | '.join(run.fmt([m[k] for m in metrics]) for k in ('cswd', 'mode_tv', 'off_mode'))
    return f'| {label} | {cells} | {run.fmt(ratios, 2) if ratios else ""} | {networks} |'


def table(runs, coupling):
    """The markdown of one coupling's table -> (lines, {method: [read(...) per seed]})."""
    found = {method: [read(os.path.join(runs, name(coupling, method, s))) for s in seeds]
             for method, seeds in (('realuid', SEEDS), ('uid', SEEDS), ('control', (0,)))}
    ratio = lambda rs, key: [r[key]['cswd'] / r['teacher']['cswd'] for r in rs]               # per run, own teacher
    best = lambda method, label: row(label, [r['best'] for r in found[method]], ratio(found[method], 'best'),
                                     ', '.join(r['network'] for r in found[method]))
    realuid, control, nfe = found['realuid'], found['control'], found['realuid'][0]['nfe']
    lines = [f'## `{coupling}`', '',
             '| | cswd | mode_tv | off_mode | cswd / its teacher\'s | best network (per seed) |',
             '|---|---|---|---|---|---|',
             row('exact posterior samples (the floor)', floor(coupling)),
             row(f'teacher, {nfe} NFE', [r['teacher'] for r in realuid]),
             row('one-step generator at initialisation', [r['init'] for r in realuid], ratio(realuid, 'init')),
             best('uid', 'UID (alpha = beta = 1), best one-step'),
             best('realuid', 'RealUID (0.98, 0.96), best one-step'),
             row(f'control `--source-noise 0`: its teacher, {nfe} NFE', [r['teacher'] for r in control]),
             best('control', 'control `--source-noise 0`: RealUID, best one-step'), '']
    meets = lambda r: r['best']['cswd'] <= TARGET_RATIO * r['teacher']['cswd'] and r['best']['mode_tv'] <= TARGET_TV[
        coupling]
    met = {m: sum(map(meets, found[m])) for m in ('realuid', 'uid')}
    lines += [f'Target: best one-step cswd within {TARGET_RATIO}x of its teacher\'s and mode_tv at most '
              f'{TARGET_TV[coupling]}: met by RealUID in {met["realuid"]} of {len(SEEDS)} seeds, by UID in '
              f'{met["uid"]} of {len(SEEDS)}.', '']
    return lines, found


def tables(runs):
    """Every coupling's table, with the words that say what they measure -> (markdown lines, {coupling: found})."""
    found, body = {}, []
    for coupling in COUPLINGS:
        lines, found[coupling] = table(runs, coupling)
        body += lines
    steps = sorted({r['step'] for f in found.values() for rs in f.values() for r in rs})
    per = couplings.make_coupling(COUPLINGS[0]).eval_pairs
    head = ['# Data-to-data RealUID on the toy couplings (one-step restoration; lower is better)', '',
            f'train.py\'s coupled evaluation: {per[0]} held-out inputs c (never trained on) x {per[1]} samples each. '
            '`cswd`: sliced Wasserstein to exact posterior samples of p(x0 | c), averaged over the inputs; '
            '`mode_tv`: total variation between the samples\' nearest-mode histogram and the posterior\'s mode '
            'weights; `off_mode`: the fraction of samples outside every posterior component\'s 99.9% ellipse (of '
            'weight >= 1e-3), 0.001 for exact samples: the trails between modes. Mean ± std over seeds '
            f'{", ".join(map(str, SEEDS))} (the control: seed 0 only). Best one-step: '
            f'of the networks of the last evaluation (update {", ".join(map(str, steps))}: the generator and its '
            'EMAs), the one with the lowest cswd, per seed. `cswd / its teacher\'s`: per run, over the cswd of the '
            '100-NFE teacher it distils (UID: the RealUID run\'s teacher of its seed). The floor: three independent '
            'draws of exact posterior samples, scored as a run\'s samples are.', '']
    return head + body, found


# ---------------------------------------------------------------------------------------------------- figure

def figure(runs, found, path, size=256, head=24, side=110):
    """Per coupling (a row), seed 0: exact posterior samples of the first 8 held-out inputs (fid.save_scatter, a
    colour per input as train.py draws them), then the teacher's, UID's, RealUID's and the control's best network's
    samples_*.png (the last evaluation's)."""
    nfe = found[COUPLINGS[0]]['realuid'][0]['nfe']
    titles = ['exact p(x0 | c)', f'teacher, {nfe} NFE', 'UID, best one-step', 'RealUID 0.98/0.96, best',
              'control s = 0, best']
    sheet = Image.new('RGB', (side + len(titles) * size, head + len(COUPLINGS) * size), 'white')
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(titles):
        draw.text((side + j * size + 8, 6), title, fill='black')
    for i, coupling in enumerate(COUPLINGS):
        model = couplings.make_coupling(coupling)
        c, per = score_restorations.held_out_inputs(model)[1][:FIGURE_INPUTS], model.eval_pairs[1]
        exact = model.posterior_sample(c, per, gen(1)).flatten(0, 1)           # (8 * per, 2): input i's rows together
        exact_png = os.path.join(runs, f'exact_{coupling}.png')
        fid.save_scatter(exact, torch.arange(FIGURE_INPUTS).repeat_interleave(per), exact_png)
        realuid, uid, control = (os.path.join(runs, name(coupling, m, 0)) for m in ('realuid', 'uid', 'control'))
        panels = [(exact_png, ''), (os.path.join(realuid, 'samples_teacher.png'), '')]
        panels += [(os.path.join(out, f'samples_{r["network"]}.png'), r['network'])
                   for out, r in ((uid, found[coupling]['uid'][0]), (realuid, found[coupling]['realuid'][0]),
                                  (control, found[coupling]['control'][0]))]
        draw.text((8, head + i * size + size // 2), coupling, fill='black')
        for j, (png, label) in enumerate(panels):
            with Image.open(png) as image:
                sheet.paste(image.convert('RGB'), (side + j * size, head + i * size))
            draw.text((side + j * size + 6, head + i * size + 4), label, fill='black')
    fid.write_atomic(path, lambda f: sheet.save(f, format='PNG'))


# ---------------------------------------------------------------------------------------------------- main

def commands(runner, done, workers, quick):
    """The markdown of every command, RUNS spelled $RUNS, with its wall time."""
    where = os.path.relpath(runner.runs, ROOT) if runner.runs.startswith(ROOT + os.sep) else runner.runs
    lines = ['## Commands', '', f'`$RUNS` is `{where}`; each run\'s output is `$RUNS/<name>.log`. Run from the '
             f'repository root, one thread each (`OMP_NUM_THREADS=1`), {workers} at a time on 2 shared CPU cores; the '
             f'wall time is per run. EXTRA_FLAGS: `{EXTRA_FLAGS or "(none)"}`'
             + (f'; --quick adds `{QUICK_FLAGS}`' if quick else '') + '.', '', '```bash']
    for job, argv, _ in runner.jobs:
        took = f'{done[job] / 60:.1f} min' if done[job] >= 60 else f'{done[job]:.0f} s'
        lines.append(f'{runner.command(argv)}   # {took}')
    return lines + ['```', '']


def main(argv=None):
    args = get_args(argv)
    os.makedirs(args.runs, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    runner, t0 = run.Runner(args.runs, args.workers, prog='restoration.py'), time.time()
    plan(runner, args.quick)
    done = runner.run()
    print(f'all runs finished in {(time.time() - t0) / 60:.1f} min of wall time', flush=True)
    lines, found = tables(args.runs)
    figure(args.runs, found, os.path.join(args.out, 'restoration.png'))
    per = couplings.make_coupling(COUPLINGS[0]).eval_pairs[1]
    lines += ['![seed 0: exact posterior, teacher, UID, RealUID, control](restoration.png)', '',
              f'Seed 0, the first {FIGURE_INPUTS} held-out inputs, {per} samples each, a colour per input; a one-step '
              'panel shows its best network\'s samples at the last evaluation. With `--source-noise 0` every network '
              'is a deterministic function of c: the control\'s samples of one input fall on one point.', '',
              *commands(runner, done, args.workers, args.quick)]
    text = '\n'.join(lines)
    fid.write_atomic(os.path.join(args.out, 'restoration.md'), lambda f: f.write(text.encode()))
    print(text, flush=True)
    return done


if __name__ == '__main__':
    main()
