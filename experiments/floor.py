"""Where the one-step generator's floor on the toy comes from, in numbers (experiments/README.md sec. 5).

    python experiments/floor.py --teacher runs/floor/teacher_cond/teacher.pt --runs runs/floor --out experiments/results
    python experiments/floor.py ... --only metric capacity lag ablate time exact uid --jobs 2

Teachers: `python train.py --dataset toy --cond --steps 0 --out runs/floor/teacher_cond` (and without --cond for the
unconditional rows). Distillation here is train.py's own update functions (`train.fake_update`, `train.adam`,
`train.optimizer_step`, `train.ema_update`; the generator step is `train.generator_update`'s loss with an optional
time distribution), evaluated exactly as train.py does (4000 class-balanced held-out points, z from seed 1), so a
cell here is the same run as the train.py command with the same flags. Each cell is cached as JSON in --runs
(keyed by its config): a second invocation only redraws the tables in OUT/floor.md.
"""
import copy
import hashlib
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repo root
import cli                                                      # noqa: E402  (experiments/cli.py)
import data                                                     # noqa: E402
import fid                                                      # noqa: E402
import losses                                                   # noqa: E402
import models                                                   # noqa: E402
import train                                                    # noqa: E402
from interpolants import make_interpolant                       # noqa: E402

BASE = dict(teacher='learned', cond=True, alpha=0.98, beta=0.96, steps=600, lr=1e-3, lr_fake=None, decay='none',
            decay_fake=True, warmup=100, k=5, batch=256, betas_gen=(0.0, 0.999), betas_fake=(0.0, 0.999),
            ema=(0.99, 0.995, 0.999), fake_hidden=256, tdist='uniform', seed=0, eval_every=100, clip=1.0)


# ---------------------------------------------------------------------------------------------------- exact teacher

class ExactField(torch.nn.Module):
    """The exact fm field E[x1 - x0 | x_t] of data.toy_data (8 Gaussians, radius 2, std 0.15; one Gaussian per class
    given y, the equal mixture without y): what a perfect teacher would compute."""
    def __init__(self, modes=8, radius=2.0, std=0.15):
        super().__init__()
        angle = 2 * math.pi * torch.arange(modes) / modes
        self.mu, self.s2 = radius * torch.stack([angle.cos(), angle.sin()], 1), std ** 2

    def forward(self, t, x, y=None):
        t = t[:, None, None]
        v = (1 - t) ** 2 * self.s2 + t ** 2                          # per-coordinate variance of x_t | mode
        r = x[:, None, :] - (1 - t) * self.mu.to(x)[None]               # (B, modes, 2)
        if y is None:
            w = torch.softmax(-r.square().sum(-1, keepdim=True) / (2 * v), dim=1)
        else:
            w = torch.nn.functional.one_hot(y, len(self.mu)).to(x)[:, :, None]
        x0 = self.mu.to(x)[None] + (1 - t) * self.s2 / v * r
        x1 = t / v * r
        return (w * (x1 - x0)).sum(1)


# ---------------------------------------------------------------------------------------------------- one cell

def load(cfg):
    interp = make_interpolant('fm')
    path = cfg['teacher_path']
    net, _ = models.load_teacher(path, 'cpu', teachers_only=True)
    teacher = ExactField() if cfg['teacher'] == 'exact' else net
    return interp, net, teacher


def evaluator(cond, n=4000):
    """train.make_evaluator's toy metric: swd of n samples (z from seed 1, labels i mod 8) to held-out data."""
    ref = data.toy_data(n, seed=4321, balanced=cond)[0].double()

    @torch.no_grad()
    def swd(sample_fn):
        g = torch.Generator().manual_seed(1)
        labels = torch.arange(n) % 8 if cond else None
        x = torch.cat([sample_fn(torch.randn((min(500, n - i), 2), generator=g),
                                 labels[i:i + 500] if cond else None) for i in range(0, n, 500)])
        return fid.sliced_wasserstein(x.double(), ref)
    return swd


def sample_t(kind, n):
    u = torch.rand(n)
    return dict(uniform=u, low=u ** 2, high=1 - (1 - u) ** 2, mid=torch.distributions.Beta(2.0, 2.0).sample((n,)),
                trunc=0.05 + 0.95 * u)[kind]


def run_cell(cfg):
    """Algorithm 1 with cfg's knobs -> dict(curve=[(step, raw, {ema: swd})], seconds)."""
    torch.set_num_threads(1)
    torch.manual_seed(cfg['seed'])
    interp, net, teacher = load(cfg)
    cond = cfg['cond']
    classes = 8 if cond else None
    config = dict(kind='mlp', dim=2, hidden=cfg['fake_hidden'], num_layers=3, num_classes=classes)
    generator = models.Generator(copy.deepcopy(net).requires_grad_(True).train(), interp)
    fake = models.build_model(config)
    nets = SimpleNamespace(teacher=teacher, generator=generator, generator_ddp=generator, fake=fake, fake_ddp=fake,
                           head=None, fake_params=list(fake.parameters()))
    emas = {d: copy.deepcopy(generator).requires_grad_(False) for d in cfg['ema']}
    steps, k, lr_fake = cfg['steps'], cfg['k'], cfg['lr_fake'] or cfg['lr']
    opt_f, sch_f = train.adam(nets.fake_params, lr_fake, cfg['warmup'], tuple(cfg['betas_fake']),
                              cfg['decay'] if cfg['decay_fake'] else 'none', k * steps)
    opt_g, sch_g = train.adam(generator.parameters(), cfg['lr'], cfg['warmup'], tuple(cfg['betas_gen']), cfg['decay'],
                              steps)
    x, y = data.toy_data(20_000, seed=1234)
    batches = data.Batches(torch.utils.data.TensorDataset(x, y), cfg['batch'], cfg['seed'], 0, 1, torch.device('cpu'),
                           False)
    args = SimpleNamespace(alpha=cfg['alpha'], beta=cfg['beta'], loss='realuid', gamma=None, param='standard',
                           sid_alpha=0.5, amp='none', clip=cfg['clip'], gan=None)
    swd = evaluator(cond)
    use_real = cfg['alpha'] < 1
    curve, t0 = [(0, swd(generator), {})], time.time()
    for step in range(1, steps + 1):
        for _ in range(k):
            x_real, y_real = batches.next() if use_real else (None, None)
            z, y_gen = train.noise(interp, cfg['batch'], (2,), classes, 'cpu')
            train.fake_update(args, interp, nets, opt_f, sch_f, z, y_gen, x_real, y_real if cond else None)
        z, y_gen = train.noise(interp, cfg['batch'], (2,), classes, 'cpu')
        generator_step(cfg, interp, nets, opt_g, sch_g, z, y_gen)
        for d, ema in emas.items():
            train.ema_update(ema, generator, d)
        if step % cfg['eval_every'] == 0 or step == steps:
            curve.append((step, swd(generator), {str(d): swd(e) for d, e in emas.items()}))
    out = dict(curve=curve, seconds=time.time() - t0)
    if cfg.get('keep'):
        out['state'] = dict(generator=generator.state_dict(), fake=fake.state_dict())
    return out


def generator_step(cfg, interp, nets, opt, sched, z, y):
    """train.generator_update's eq. 17 step; t drawn from cfg['tdist'] (uniform: exactly train.py's)."""
    for p in nets.fake_params:
        p.requires_grad_(False)
    t = None if cfg['tdist'] == 'uniform' else sample_t(cfg['tdist'], len(z))
    loss = losses.realuid_generator_loss(nets.teacher, nets.fake, interp, nets.generator(z, y), cfg['alpha'],
                                         cfg['beta'], y, t=t)
    train.optimizer_step(loss, opt, sched, nets.generator.parameters(), cfg['clip'])
    for p in nets.fake_params:
        p.requires_grad_(True)


def cell_key(cfg):
    cfg = {k: v for k, v in cfg.items() if k not in ('name', 'order')}    # the label and run order are not the cell
    return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]


def cached(runs, cfg):
    path = os.path.join(runs, 'cells', cell_key(cfg) + '.json')
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)['result']
    return None


def _work(item):
    runs, cfg = item
    result = run_cell(cfg)
    result.pop('state', None)
    os.makedirs(os.path.join(runs, 'cells'), exist_ok=True)
    path = os.path.join(runs, 'cells', cell_key(cfg) + '.json')
    record = json.dumps(dict(cfg=cfg, result=result)).encode()
    fid.write_atomic(path, lambda f: f.write(record))           # a kill leaves no half cell for cached() to read
    print(f'{cfg.get("name", "")} seed {cfg["seed"]}: raw {result["curve"][-1][1]:.4f} '
          f'ema {result["curve"][-1][2]} ({result["seconds"]:.0f} s)', flush=True)
    return result


def run_all(runs, cfgs, jobs):
    todo = sorted([(runs, c) for c in cfgs if cached(runs, c) is None], key=lambda item: item[1].get('order', 0))
    if todo:
        print(f'{len(todo)} cells to run ({len(cfgs) - len(todo)} cached)', flush=True)
        if jobs > 1:
            with multiprocessing.get_context('spawn').Pool(jobs) as pool:
                list(pool.imap_unordered(_work, todo))
        else:
            for item in todo:
                _work(item)
    return [cached(runs, c) for c in cfgs]


def final(result, which):
    """The last evaluation (train.py's final metrics) of the raw generator ('raw') or an EMA ('0.99', ...)."""
    row = result['curve'][-1]
    return row[1] if which == 'raw' else row[2][which]


def best(result):
    """min over networks (raw and each EMA) of its final value."""
    return min([final(result, 'raw')] + [final(result, d) for d in result['curve'][-1][2]])


def stats(values):
    m = statistics.mean(values)
    return f'{m:.4f} ± {statistics.stdev(values):.4f}' if len(values) > 1 else f'{m:.4f}'


# ---------------------------------------------------------------------------------------------------- studies

def metric_floor(cond, seeds=10, n=4000):
    """swd between two independent class-balanced data samples of size n (the metric's own floor)."""
    ref = data.toy_data(n, seed=4321, balanced=cond)[0].double()
    return [fid.sliced_wasserstein(data.toy_data(n, seed=10_000 + s, balanced=cond)[0].double(), ref)
            for s in range(seeds)]


@torch.no_grad()
def teacher_map(teacher, interp, z, y, nfe=100):
    return interp.generate(teacher, z, y, steps=nfe)


def capacity(cfg, steps=3000, lr=1e-3, pool=50_000):
    """1a: the generator network (initialised from the teacher, as in distillation) regressed onto the teacher's
    100-NFE map of the same z (a pool of `pool` z, batches of 256, Adam with cosine decay): how close any one-step
    network of that size gets."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    interp, net, teacher = load(cfg)
    cond, swd = cfg['cond'], evaluator(cfg['cond'])
    gen = models.Generator(copy.deepcopy(net).requires_grad_(True), interp)
    opt, sched = train.adam(gen.parameters(), lr, 100, (0.9, 0.999), 'cosine', steps)
    t0 = time.time()
    zs, ys = torch.randn(pool, 2), torch.randint(8, (pool,)) if cond else None
    targets = torch.cat([teacher_map(teacher, interp, zs[i:i + 5000], ys[i:i + 5000] if cond else None)
                         for i in range(0, pool, 5000)])
    for step in range(steps):
        i = torch.randint(pool, (256,))
        loss = (gen(zs[i], ys[i] if cond else None) - targets[i]).square().sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(4000, 2, generator=g), torch.arange(4000) % 8 if cond else None
    with torch.no_grad():
        rms = (gen(z, y) - teacher_map(teacher, interp, z, y)).square().sum(1).mean().sqrt().item()
        rms0 = (net_init(net, interp)(z, y) - teacher_map(teacher, interp, z, y)).square().sum(1).mean().sqrt().item()
    return dict(swd_teacher=swd(lambda z, y: teacher_map(teacher, interp, z, y)), swd_fit=swd(gen), rms=rms, rms0=rms0,
                seconds=time.time() - t0, steps=steps)


def net_init(net, interp):
    return models.Generator(copy.deepcopy(net), interp)


@torch.no_grad()
def shape_of(generator, cond, n=8000):
    """What the error looks like, averaged over classes: |mean - mode| and the std along the two principal axes of each
    class's samples (the data: 0, and 0.15 along both)."""
    if not cond:
        return {}
    z, y = torch.randn(n, 2, generator=torch.Generator().manual_seed(5)), torch.arange(n) % 8
    x, mu = generator(z, y), ExactField().mu
    offs, lo, hi = [], [], []
    for c in range(8):
        xc = x[y == c]
        offs.append((xc.mean(0) - mu[c]).norm().item())
        ev = torch.linalg.eigvalsh(torch.cov(xc.T)).sqrt()
        lo.append(ev[0].item()), hi.append(ev[1].item())
    q = torch.tensor([0.1, 0.5, 0.9, 0.99])                     # quantiles of the distance to the own mode
    radial = (x - mu[y]).norm(dim=1).quantile(q).tolist()
    from_mode = (data.toy_data(n, seed=4321, balanced=True)[0] - mu[y]).norm(dim=1).quantile(q).tolist()
    return dict(offset=statistics.mean(offs), std_min=statistics.mean(lo), std_max=statistics.mean(hi),
                radial=radial, radial_data=from_mode)


def fixed_draws(cfg, n, seed):
    """One large fixed draw for comparing losses and gradients: z, y, real batch, t, x1."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g)
    y = torch.randint(8, (n,), generator=g) if cfg['cond'] else None
    x_real, y_real = data.toy_data(n, seed=seed + 1)
    return dict(z=z, y=y, x_real=x_real, y_real=y_real if cfg['cond'] else None,
                t=torch.rand(n, generator=g), x1=torch.randn(n, 2, generator=g))


def realum_value(cfg, interp, generator, fake, d):
    with torch.no_grad():
        return losses.realum_loss(fake, interp, generator(d['z'], d['y']), d['x_real'], cfg['alpha'], cfg['beta'],
                                  d['y'], d['y_real'], t=d['t'], x1_gen=d['x1'], eps=torch.zeros(len(d['z']), 2)).item()


def gen_grad(cfg, interp, teacher, generator, fake, d, idx=None):
    """Flattened gradient over the generator's parameters of eq. 17's generator loss on the fixed draws."""
    idx = slice(None) if idx is None else idx
    generator.zero_grad()
    z, y = d['z'][idx], d['y'][idx] if d['y'] is not None else None
    loss = losses.realuid_generator_loss(teacher, fake, interp, generator(z, y), cfg['alpha'], cfg['beta'], y,
                                         t=d['t'][idx], x1=d['x1'][idx], eps=torch.zeros(len(z), 2))
    loss.backward()
    return torch.cat([p.grad.flatten() for p in generator.parameters()])


def train_fake(cfg, interp, generator, fake, steps, lr, seed):
    """Fake to convergence on the frozen generator: RealUM (Def. 2), Adam betas (0, 0.999) with cosine decay."""
    torch.manual_seed(seed)
    opt, sched = train.adam(fake.parameters(), lr, 100, (0.0, 0.999), 'cosine', steps)
    x, y = data.toy_data(20_000, seed=1234)
    batches = data.Batches(torch.utils.data.TensorDataset(x, y), cfg['batch'], seed, 0, 1, torch.device('cpu'), False)
    nets = SimpleNamespace(generator=generator, fake=fake, fake_ddp=fake, head=None,
                           fake_params=list(fake.parameters()))
    args = SimpleNamespace(alpha=cfg['alpha'], beta=cfg['beta'], loss='realuid', gamma=None, param='standard',
                           amp='none', clip=cfg['clip'], gan=None)
    for _ in range(steps):
        x_real, y_real = batches.next()
        z, y_gen = train.noise(interp, cfg['batch'], (2,), 8 if cfg['cond'] else None, 'cpu')
        train.fake_update(args, interp, nets, opt, sched, z, y_gen, x_real, y_real if cfg['cond'] else None)
    return fake


def cos_rel(a, b):
    return (torch.dot(a, b) / (a.norm() * b.norm())).item(), ((a - b).norm() / b.norm()).item()


def end_state(cfg):
    """run_cell(cfg)'s final generator and fake, cached in cfg['runs']/states/."""
    path = os.path.join(cfg['runs'], 'states', cell_key({k: v for k, v in cfg.items() if k != 'runs'}) + '.pt')
    if not os.path.isfile(path):
        r = run_cell(dict(cfg, keep=True))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save(dict(state=r['state'], swd_raw=r['curve'][-1][1]), path)
    return torch.load(path)


def end_nets(cfg):
    """cfg's run at its end -> (its end state, interp, teacher, generator (trainable), running fake, fake's config)."""
    torch.set_num_threads(1)
    r = end_state(cfg)
    interp, net, teacher = load(cfg)
    config = dict(kind='mlp', dim=2, hidden=cfg['fake_hidden'], num_layers=3, num_classes=8 if cfg['cond'] else None)
    generator = models.Generator(copy.deepcopy(net), interp)
    generator.load_state_dict(r['state']['generator'])
    generator.requires_grad_(True)
    fake = models.build_model(config)
    fake.load_state_dict(r['state']['fake'])
    return r, interp, teacher, generator, fake, config


def lag(cfg, converge=3000, n=16_384):
    """1b: the running fake at the end of cfg's run vs fakes trained to convergence on that frozen generator (a fresh
    one from random init, and the running one continued). RealUM on a large fixed draw (lower = closer to the
    generator's field), and the generator's gradient on it: cosine and relative error against the converged fake's,
    next to those of one minibatch of 256 (the noise every update already has)."""
    r, interp, teacher, generator, running, config = end_nets(cfg)
    cont = train_fake(cfg, interp, generator, copy.deepcopy(running), converge, cfg['lr_fake'] or cfg['lr'], 11)
    torch.manual_seed(12)
    fresh = train_fake(cfg, interp, generator, models.build_model(config), converge, 1e-3, 12)
    d = fixed_draws(cfg, n, 99)
    out = dict(step=cfg['steps'], swd_raw=r['swd_raw'], **shape_of(generator, cfg['cond']))
    for name, f in (('running', running), ('continued', cont), ('fresh', fresh)):
        for p in f.parameters():
            p.requires_grad_(False)
        out[f'realum_{name}'] = realum_value(cfg, interp, generator, f, d)
    g_cont = gen_grad(cfg, interp, teacher, generator, cont, d)
    out['grad_running'] = cos_rel(gen_grad(cfg, interp, teacher, generator, running, d), g_cont)
    out['grad_fresh'] = cos_rel(gen_grad(cfg, interp, teacher, generator, fresh, d), g_cont)
    out['grad_batch256'] = cos_rel(gen_grad(cfg, interp, teacher, generator, cont, d, slice(0, 256)), g_cont)
    return out


def where_in_t(cfg, bins=10, n=20_000):
    """1d: where in t the generator's gradient comes from, at the end of cfg's run with a converged fake: per t bin,
    its share of the full-batch gradient (projection on it; the shares sum to 1) and of the per-sample gradient
    energy at the generator's output (the noise), mean ||dl/dx||^2 share."""
    _, interp, teacher, generator, fake, _ = end_nets(cfg)
    fake = train_fake(cfg, interp, generator, fake, 2000, cfg['lr_fake'] or cfg['lr'], 13)
    for p in fake.parameters():
        p.requires_grad_(False)
    d = fixed_draws(cfg, n, 98)
    d['t'] = (torch.arange(n) % bins + torch.rand(n)) / bins               # n / bins draws in each bin
    total = gen_grad(cfg, interp, teacher, generator, fake, d)
    x = generator(d['z'], d['y']).detach().requires_grad_(True)
    per = losses.realuid_generator_loss(teacher, fake, interp, x, cfg['alpha'], cfg['beta'], d['y'], t=d['t'],
                                        x1=d['x1'], eps=torch.zeros(n, 2), reduction='none')
    gx = torch.autograd.grad(per.sum(), x)[0].square().sum(1)
    rows = []
    for b in range(bins):
        idx = (torch.arange(n) % bins == b).nonzero()[:, 0]
        g_b = gen_grad(cfg, interp, teacher, generator, fake, d, idx)
        rows.append((b / bins, (b + 1) / bins, torch.dot(g_b, total).item() / bins / total.square().sum().item(),
                     gx[idx].sum().item() / gx.sum().item()))
    return rows


STUDIES = ['metric', 'capacity', 'ablate', 'lag', 'time', 'uid']


def main(argv=None):
    p = cli.parser('floor.py', __doc__.split('\n')[0])
    p.add_argument('--teacher', default='runs/floor/teacher_cond/teacher.pt')
    p.add_argument('--teacher-uncond', default='runs/floor/teacher_uncond/teacher.pt')
    p.add_argument('--runs', default='runs/floor')
    p.add_argument('--out', default='experiments/results')
    p.add_argument('--jobs', type=cli.COUNT, default=1)
    p.add_argument('--only', nargs='+', default=None, choices=STUDIES)
    p.add_argument('--no-run', action='store_true', help='tables of the cached cells only (others left out)')
    args = p.parse_args(argv)
    studies = args.only or ['metric', 'capacity', 'ablate']
    cli.folder_for_output(p, '--runs', args.runs)
    cli.folder_for_output(p, '--out', args.out)
    if os.path.isdir(os.path.join(args.out, 'floor.md')):
        p.error(f'--out {args.out}: floor.md there is a folder')
    trains = {'capacity', 'lag', 'time'} | (set() if args.no_run else {'ablate', 'uid'})
    for flag, path, needed in (('--teacher', args.teacher, trains & set(studies)),
                               ('--teacher-uncond', args.teacher_uncond, 'capacity' in studies)):
        if needed and not os.path.isfile(path):
            p.error(f'{flag} {path} is {"not a file" if os.path.exists(path) else "not found"} (studies '
                    f'{", ".join(sorted(trains & set(studies)))} need it)')
    torch.set_num_threads(1)
    lines = []
    base = dict(BASE, teacher_path=args.teacher)
    if 'metric' in studies:
        for cond in (True, False):
            v = metric_floor(cond)
            lines.append(f'metric floor ({"cond" if cond else "uncond"}): two data samples of 4000: {stats(v)} '
                         f'(min {min(v):.4f}, max {max(v):.4f}, 10 seeds)')
    if 'capacity' in studies:
        for cond, path in ((True, args.teacher), (False, args.teacher_uncond)):
            c = capacity(dict(base, cond=cond, teacher_path=path))
            lines.append(f'capacity ({"cond" if cond else "uncond"}): teacher 100 NFE swd {c["swd_teacher"]:.4f}; '
                         f'generator net regressed on it ({c["steps"]} steps) swd {c["swd_fit"]:.4f}, '
                         f'rms to the teacher map {c["rms"]:.4f} (at initialisation {c["rms0"]:.4f}; '
                         f'{c["seconds"]:.0f} s)')
    print('\n'.join(lines))
    if 'lag' in studies:
        for label, over in LAG_POINTS:
            o = lag(dict(base, **over, runs=args.runs))
            lines.append(f'lag, {label}: raw swd {o["swd_raw"]:.4f} (per class: mean off its mode by '
                         f'{o["offset"]:.4f}, '
                         f'principal stds {o["std_min"]:.4f} / {o["std_max"]:.4f}, data 0.15; distance to the mode, '
                         f'quantiles 0.1/0.5/0.9/0.99: {" / ".join(f"{v:.3f}" for v in o["radial"])}, data '
                         f'{" / ".join(f"{v:.3f}" for v in o["radial_data"])}); RealUM on 16384 fixed draws: '
                         'running fake '
                         f'{o["realum_running"]:.4f}, continued to convergence {o["realum_continued"]:.4f}, fresh '
                         f'{o["realum_fresh"]:.4f}; generator gradient vs the converged fake\'s (cosine, rel. error): '
                         f'running fake {o["grad_running"][0]:.3f}, {o["grad_running"][1]:.3f}; fresh fake '
                         f'{o["grad_fresh"][0]:.3f}, {o["grad_fresh"][1]:.3f}; one batch of 256 '
                         f'{o["grad_batch256"][0]:.3f}, {o["grad_batch256"][1]:.3f}')
            print(lines[-1], flush=True)
    if 'time' in studies:
        rows = where_in_t(dict(base, **TIME_POINT, runs=args.runs))
        lines.append('| t bin | share of the full-batch gradient | share of per-sample gradient energy |')
        lines.append('|---|---|---|')
        lines += [f'| [{a:.1f}, {b:.1f}) | {s:.3f} | {e:.3f} |' for a, b, s, e in rows]
        print('\n'.join(lines[-12:]), flush=True)
    grids = {study: ablation_grid(base, cells) for study, cells in (('ablate', ABLATIONS), ('uid', UID))
             if study in studies}
    for grid in grids.values():                                 # one queue, in PRIORITY's order, then the rest
        for name, cfg in grid:
            known = (name, cfg['seed']) in PRIORITY
            cfg['order'] = PRIORITY.index((name, cfg['seed'])) if known else 100 + cfg['order']
    if not args.no_run:
        run_all(args.runs, [c for grid in grids.values() for _, c in grid], args.jobs)
    for study, grid in grids.items():
        grid = [(name, c) for name, c in grid if cached(args.runs, c) is not None]
        results = [cached(args.runs, c) for _, c in grid]
        table(grid, results, lines)
        if study == 'uid':
            convergence(grid, results, lines)
    os.makedirs(args.out, exist_ok=True)
    text = '\n'.join(lines) + '\n'
    fid.write_atomic(os.path.join(args.out, 'floor.md'), lambda f: f.write(text.encode()))    # whole or not at all
    print('\n'.join(lines))


LAG_POINTS = [('old preset (lr 1e-3 constant, 600 updates)', dict(steps=600, eval_every=600)),
              ('lr 1e-3 cosine, 2000 updates', dict(steps=2000, eval_every=200, decay='cosine')),
              ('the preset: lr 3e-4, fake lr 1e-2, cosine, 2000 updates', dict(steps=2000, eval_every=200, lr=3e-4,
                                                                                lr_fake=1e-2, decay='cosine'))]
TIME_POINT = dict(steps=2000, eval_every=200, decay='cosine')


def ablation_grid(base, ablations):
    """-> [(name, cfg)]; cfg['order'] (not part of the cell's identity) is the run order: a cell's second seed runs
    4 places after its first, so the first cells get both seeds early."""
    return [(name, dict(base, **over, seed=seed, name=name, order=i + 4 * j)) for i, (name, over, seeds) in
            enumerate(ablations) for j, seed in enumerate(seeds)]


L = dict(steps=2000, eval_every=200)                            # the long cells: 2000 updates
ABLATIONS = [                                                   # (name, overrides, seeds)
    ('lr 3e-4 constant', dict(L, lr=3e-4), (0, 1)),
    ('lr 3e-4 cosine', dict(L, lr=3e-4, decay='cosine'), (0,)),
    ('exact teacher, lr 3e-4 cosine', dict(L, lr=3e-4, decay='cosine', teacher='exact'), (0,)),
    ('lr 1e-3 cosine', dict(L, decay='cosine'), (0,)),
    ('UID, lr 1e-3 cosine', dict(L, decay='cosine', alpha=1.0, beta=1.0), (0,)),
    ('lr 1e-3 cosine, K 10', dict(L, decay='cosine', k=10), (0,)),
    ('lr 3e-4 cosine, fake lr 1e-3', dict(L, lr=3e-4, lr_fake=1e-3, decay='cosine'), (0, 1)),
    ('lr 1e-4 cosine, fake lr 1e-3', dict(L, lr=1e-4, lr_fake=1e-3, decay='cosine'), (0,)),
    ('lr 3e-4 cosine, fake lr 3e-3', dict(L, lr=3e-4, lr_fake=3e-3, decay='cosine'), (0, 1)),
    ('lr 1e-3 cosine, fake lr 1e-2', dict(L, lr=1e-3, lr_fake=1e-2, decay='cosine'), (0,)),
    ('lr 3e-4 cosine, fake lr 1e-2 (the preset)', dict(L, lr=3e-4, lr_fake=1e-2, decay='cosine'), (0, 1, 2)),
    ('lr 3e-4 cosine, fake lr 3e-2', dict(L, lr=3e-4, lr_fake=3e-2, decay='cosine'), (0,)),
    ('the preset, t ~ u^2 (towards data)', dict(L, lr=3e-4, lr_fake=1e-2, decay='cosine', tdist='low'), (0,)),
    ('the preset, t ~ 1-(1-u)^2 (towards noise)', dict(L, lr=3e-4, lr_fake=1e-2, decay='cosine', tdist='high'), (0,)),
]
PRIORITY = []                                                   # (name, seed) to run first, e.g. while results come in
T2 = dict(L, lr=3e-4, lr_fake=1e-2, decay='cosine')             # the toy preset that follows from the ablations
UID = [('RealUID 0.98, 0.96', T2, (0, 1, 2)), ('UID', dict(T2, alpha=1.0, beta=1.0), (0, 1, 2))]


def convergence(grid, results, lines, which='0.99'):
    """Item 3: per method, the final swd of EMA `which` (last evaluation) and the first update from which it stays
    within 10% of that final value, mean over seeds, with the per-seed values."""
    by = {}
    for (name, cfg), r in zip(grid, results):
        curve = [(s, e[which]) for s, _, e in r['curve'][1:]]
        last = curve[-1][1]
        stay = next(s for i, (s, v) in enumerate(curve) if all(w <= 1.1 * last for _, w in curve[i:]))
        first = next(s for s, v in curve if v <= 1.1 * last)
        by.setdefault(name, []).append((last, first, stay))
    lines.append(f'| method | final swd, EMA {which} | updates to within 10% (first) | (and stays) | '
                 'per seed (final, first, stays) |')
    lines.append('|---|---|---|---|---|')
    for name, v in by.items():
        lines.append(f'| {name} | {stats([a for a, _, _ in v])} | {statistics.mean(b for _, b, _ in v):.0f} | '
                     f'{statistics.mean(c for _, _, c in v):.0f} | '
                     + '; '.join(f'{a:.4f}, {b}, {c}' for a, b, c in v) + ' |')


def table(grid, results, lines):
    by = {}
    for (name, cfg), r in zip(grid, results):
        by.setdefault(name, []).append(r)
    lines.append('| cell | best network | raw | EMA ' + ' | EMA '.join(map(str, BASE['ema'])) + ' | s/run |')
    lines.append('|---' * (4 + len(BASE['ema'])) + '|')
    for name, rs in by.items():
        emas = list(rs[0]['curve'][-1][2])
        lines.append(f'| {name} | {stats([best(r) for r in rs])} | {stats([final(r, "raw") for r in rs])} | ' +
                     ' | '.join(stats([final(r, d) for r in rs]) for d in emas) +
                     f' | {statistics.mean(r["seconds"] for r in rs):.0f} |')


if __name__ == '__main__':
    main()
