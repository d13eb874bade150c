"""Times one distillation iteration (Algorithm 1: K fake steps + 1 generator step) of train.py's update functions
(`fake_update`, `generator_update`) against a naive loop with the same math, written the way the official RealUID
train_distil.py does it (arXiv 2509.22459).

    python experiments/bench.py                        # small U-Net on 3x16x16, batch 32, 1 CPU thread: ~2 min
    python experiments/bench.py --device cuda --full --amp bf16   # the paper's CIFAR-10 U-Net on 3x32x32, batch 256
    python experiments/bench.py ... --compile                     # train.py --compile's networks (compile_blocks)
    python experiments/bench.py ... --profile 25                  # and where one iteration's time goes
    python experiments/bench.py --mode teacher --device cuda --full --amp bf16   # teacher steps/s at batch 128

Every timing is followed by the FLOPs of one iteration (torch.utils.flop_counter: convolutions, matmuls and attention,
forward and backward), the TFLOP/s they make at the median time, and on a GPU of PEAK_TFLOPS the fraction of its
dense bf16 peak (--amp bf16) or TF32 peak (fp32: train.py and this script run fp32 convs and matmuls in TF32).
On CUDA also the host syncs one iteration makes (torch.cuda.set_sync_debug_mode), which should be 0.
The teacher mode runs train.py's teacher step (a batch from data.Batches with the data held on the device, UM
loss, Adam step, EMA) on a random uint8 CIFAR-10-sized dataset; no naive loop, no check.

First a check: both loops start from the same weights and RNG state, run one iteration, and must give the same
fake and generator losses, generator gradient and updated weights (PASS/FAIL, exit 1 on FAIL). Then M iterations
of each, interleaved so that load from other processes hits both, after warm-up; medians and their ratio.
"""
import argparse
import contextlib
import copy
import gc
import os
import statistics
import sys
import time
from types import SimpleNamespace

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repo root
import data                                                     # noqa: E402
import losses                                                   # noqa: E402
import models                                                   # noqa: E402
import train                                                    # noqa: E402
from interpolants import make_interpolant                       # noqa: E402

NUM_CLASSES = 10
# Tolerances (losses and gradient, updates), relative l2. float32 (eps 1.2e-7): the loops differ only in summation
# order (one fused fake forward on 2B samples vs two on B; the generator loss as -a||d||^2 + 2a<d,f*> - 2b<d,T> vs
# a||f*-sT||^2 - a||f-sT||^2, whose terms are ~100x the loss here). Observed <= 1.3e-5 on losses and gradient;
# 1e-4 still fails on any formula error (O(1)). Updates: Adam turns gradients below its eps 1e-8 -- rounding noise
# in parameters whose exact gradient is 0, e.g. a bias right before a GroupNorm with one channel per group -- into
# steps of ~lr g / eps that differ between the loops, so the updates differ by up to ~1e-2 (observed <= 9e-3 with
# 32 channels, <= 3e-4 with 64); 5e-2 still fails on a wrong lr, warm-up, clip or betas (O(1)). bf16 autocast:
# the two algebraic forms round differently (ours forms f* - f and its dot products in bf16, the naive loop
# subtracts the fp32 target first): observed <= 1.3e-2 on losses and gradient; Adam's sign-like first steps then
# flip on small gradients, so the updates are not compared.
RTOL = {'none': (1e-4, 5e-2), 'bf16': (5e-2, None)}
# dense (no sparsity) TFLOP/s from the vendors' datasheets, (bf16, TF32), by a part of torch.cuda.get_device_name
PEAK_TFLOPS = {'H200': (989, 495), 'H100 PCIe': (756, 378), 'H100': (989, 495), 'A100': (312, 156)}


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.error = usage_error
    a = p.add_argument
    a('--mode', choices=['distill', 'teacher'], default='distill', help='teacher: steps/s of the teacher phase')
    a('--device', choices=['cpu', 'cuda'], default='cpu')
    a('--amp', choices=['none', 'bf16'], default='none', help='bf16 autocast of all forwards, as train.py --amp')
    a('--batch-size', type=int, default=None, help='default 32 on CPU; on CUDA the paper\'s 256 (teacher: 128)')
    a('--compile', action='store_true', help='compile ours as train.py --compile does; its first iteration is timed')
    a('--peak', type=float, default=None, help='the device\'s peak TFLOP/s for the fraction (default: PEAK_TFLOPS)')
    a('--k', type=int, default=5, help='fake steps per generator step')
    a('--iters', type=int, default=8, help='timed iterations of each loop')
    a('--warm', type=int, default=1, help='untimed warm-up iterations of each loop')
    a('--alpha', type=float, default=0.98, help='RealUID coefficients (Table 2); alpha < 1 uses the real batch')
    a('--beta', type=float, default=0.96)
    a('--cond', action='store_true', help='class-conditional networks (10 classes)')
    a('--full', action='store_true', help="the paper's CIFAR-10 U-Net (models.CIFAR10_UNET) instead of the flags below")
    a('--image-size', type=int, default=None, help='default 16 (32 with --full): at 32x32 and batch 32 even a '
      '32-channel U-Net takes 15-25 s an iteration on one CPU core')
    a('--channels', type=int, default=32)
    a('--channel-mult', type=int, nargs='+', default=[1, 2])
    a('--res-blocks', type=int, default=1)
    a('--attn', default='8', help='attention resolutions (8 on 16x16 is where CIFAR-10 has 16 on 32x32)')
    a('--threads', type=int, default=1, help='torch intra-op CPU threads; 1 is steadiest on a shared machine')
    a('--seed', type=int, default=0)
    a('--profile', type=int, default=0, metavar='N', help="after the timing, torch.profiler's N most expensive ops "
      "of one iteration of ours (0: none)")
    args = p.parse_args(argv)
    if min(args.k, args.iters, args.threads) < 1 or min(args.warm, args.profile) < 0:
        p.error('--k, --iters and --threads must be >= 1, --warm and --profile >= 0')
    if args.device == 'cuda' and not torch.cuda.is_available():
        p.error('--device cuda: PyTorch sees no CUDA device here')
    if args.batch_size is None:
        args.batch_size = (128 if args.mode == 'teacher' else 256) if args.device == 'cuda' else 32
    if args.image_size is None:
        args.image_size = 32 if args.full else 16
    for flag, value in (('--batch-size', args.batch_size), ('--image-size', args.image_size),
                        ('--channels', args.channels), ('--res-blocks', args.res_blocks),
                        ('--channel-mult', min(args.channel_mult)), ('--peak', 1 if args.peak is None else args.peak)):
        if value <= 0:
            p.error(f'argument {flag}: must be positive, got {value}')
    try:                                                        # the U-Net these flags give builds (no weights: meta)
        with torch.device('meta'):
            models.build_model(unet_config(args))
    except ValueError as e:
        p.error(f'--image-size {args.image_size} / --channels / --channel-mult / --attn: {e}')
    return args


def usage_error(msg):                                          # one line on stderr, exit 2 (1 is a FAILed check)
    print(f'bench.py: error: {msg}', file=sys.stderr)
    sys.exit(2)


def unet_config(args):
    shape, classes = (3, args.image_size, args.image_size), NUM_CLASSES if args.cond else None
    heads = dict(num_head_channels=64) if args.channels >= 64 else dict(num_head_channels=-1, num_heads=4)
    return (dict(models.CIFAR10_UNET, dim=list(shape), num_classes=classes) if args.full else
            dict(kind='unet', dim=list(shape), num_channels=args.channels, num_res_blocks=args.res_blocks,
                 channel_mult=args.channel_mult, attention_resolutions=args.attn, dropout=0.0, num_classes=classes,
                 **heads))


def build(args):
    """-> (ours: train.py's networks, optimizers and arguments; NaiveLoop with the same initial weights; a fixed
    real batch (x, y)). The flow-matching teacher is a U-Net with random weights: timing needs no trained one.
    --compile: ours' three networks through models.compile_blocks, after NaiveLoop has copied them."""
    device, shape = torch.device(args.device), (3, args.image_size, args.image_size)
    classes = NUM_CLASSES if args.cond else None
    config = unet_config(args)
    torch.manual_seed(args.seed)
    teacher = randomize_zero_layers(models.build_model(config)).to(device).eval().requires_grad_(False)
    interp = make_interpolant('fm')
    generator = models.Generator(copy.deepcopy(teacher).requires_grad_(True).train(), interp)
    fake = randomize_zero_layers(models.build_model(config).to(device))  # every fake layer gets a gradient from step 1
    # the fields train.fake_update / generator_update read, at train.py's CIFAR-10 defaults (lr 3e-5, warm-up 500)
    train_args = argparse.Namespace(alpha=args.alpha, beta=args.beta, loss='realuid', gamma=None, param='standard',
                                    sid_alpha=0.5, clip=1.0, amp=args.amp, device=args.device, lr=3e-5, warmup=500,
                                    k=args.k, cond=args.cond, seed=args.seed)
    nets = SimpleNamespace(teacher=teacher, generator=generator, generator_ddp=generator, fake=fake, fake_ddp=fake,
                           head=None, fake_params=list(fake.parameters()))
    ours = SimpleNamespace(args=train_args, interp=interp, nets=nets, shape=shape, num_classes=classes, device=device,
                           emas={d: copy.deepcopy(generator).requires_grad_(False) for d in (0.999, 0.9996, 0.9999)})
    ours.opt_fake, ours.sched_fake = train.adam(fake.parameters(), train_args.lr, train_args.warmup, betas=(0.0, 0.999))
    ours.opt_gen, ours.sched_gen = train.adam(generator.parameters(), train_args.lr, train_args.warmup,
                                              betas=(0.0, 0.999))
    x_real = torch.rand(args.batch_size, *shape, device=device) * 2 - 1    # (B, 3, H, W) in [-1, 1]
    y_real = torch.randint(NUM_CLASSES, (args.batch_size,), device=device)
    naive = NaiveLoop(ours)
    for net in (teacher, generator, fake) if args.compile else ():
        models.compile_blocks(net)
    if args.compile:                                            # EMAs with the generator's channels_last layout
        ours.emas = {d: copy.deepcopy(generator).requires_grad_(False) for d in ours.emas}
    return ours, naive, (x_real, y_real)


def adam_with_warmup(params, args):                            # App. D.1: Adam(betas=(0, 0.999)), linear warm-up
    opt = torch.optim.Adam(params, lr=args.lr, betas=(0.0, 0.999))
    return opt, torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / args.warmup) if args.warmup else 1.0)


def draw(n, num_classes, interp, shape, device):               # labels first, then z: the order train.py draws in
    y = torch.randint(num_classes, (n,), device=device) if num_classes else None
    return y, interp.prior((n, *shape), device)


@torch.no_grad()
def randomize_zero_layers(net, std=0.02):
    """The U-Net zero-initialises its residual and output convs (f = 0); a stand-in for trained weights."""
    for p in net.parameters():
        if not p.any():
            p.normal_(0, std)
    return net


def ours_iteration(ours, x_real, y_real):
    """Algorithm 1 as train.py's loop runs it: K train.fake_update, one train.generator_update, the EMAs."""
    args, n, losses_fake = ours.args, len(x_real), []
    for _ in range(args.k):
        y_gen, z = draw(n, ours.num_classes, ours.interp, ours.shape, ours.device)
        losses_fake.append(train.fake_update(args, ours.interp, ours.nets, ours.opt_fake, ours.sched_fake, z, y_gen,
                                             x_real, y_real if args.cond else None))
    y_gen, z = draw(n, ours.num_classes, ours.interp, ours.shape, ours.device)
    loss_gen, _ = train.generator_update(args, ours.interp, ours.nets, ours.opt_gen, ours.sched_gen, z, y_gen)
    for decay, ema in ours.emas.items():
        train.ema_update(ema, ours.nets.generator, decay)
    return losses_fake, loss_gen


def sqnorm(v):                                                  # (B, ...) -> (B,)
    return v.flatten(1).pow(2).sum(1)


class NaiveLoop:
    """train.py's math written as the official train_distil.py does it:

    (a) the generator forward of a fake step runs with autograd, its output detached afterwards;
    (b) the fake sees the generated and the real x_t in two forwards instead of one fused one;
    (c) the fake keeps requires_grad in the generator step, so its parameter gradients are computed there
        (and zeroed by the next fake step);
    (d) gc.collect() every step.
    Optimizers, warm-up, clipping and EMAs mirror train.py: Adam(betas=(0, 0.999)), linear warm-up, clip, lerp.
    """
    def __init__(self, ours):
        self.args, self.interp, self.shape, self.device = ours.args, ours.interp, ours.shape, ours.device
        self.num_classes, self.teacher = ours.num_classes, ours.nets.teacher
        self.gen, self.fake = copy.deepcopy(ours.nets.generator), copy.deepcopy(ours.nets.fake)
        self.emas = {decay: copy.deepcopy(ema) for decay, ema in ours.emas.items()}
        self.opt_gen, self.sched_gen = adam_with_warmup(self.gen.parameters(), self.args)
        self.opt_fake, self.sched_fake = adam_with_warmup(self.fake.parameters(), self.args)

    def noise(self, n):                                         # same draws, same order as train.py
        return draw(n, self.num_classes, self.interp, self.shape, self.device)

    def paths(self, x_gen):                                     # t, x1, eps drawn in losses._paths' order
        t = self.interp.sample_t(len(x_gen), self.device)
        return t, torch.randn_like(x_gen), torch.randn_like(x_gen)

    def fake_step(self, x_real, y_real):                        # RealUM, Def. 2 / eq. 16, minimized by the fake
        gc.collect()                                            # (d)
        args, interp = self.args, self.interp
        self.opt_fake.zero_grad()
        y_gen, z = self.noise(len(x_real))
        with autocast(args):
            x_gen = self.gen(z, y_gen).float().detach()         # (a) forward with autograd, then detached
            t, x1, eps = self.paths(x_gen)
            _, xt_gen, target_gen = interp.sample(x_gen, x1, t, eps)
            out_gen = self.fake(t, xt_gen, y_gen)
            loss = args.alpha * (interp.weight(t) * sqnorm(out_gen - args.beta / args.alpha * target_gen)).mean()
            if args.alpha < 1:                                  # (b) a second forward for the real batch
                _, xt_real, target_real = interp.sample(x_real, x1, t, eps)
                out_real = self.fake(t, xt_real, y_real if args.cond else None)
                scale = (1 - args.beta) / (1 - args.alpha)
                loss = loss + (1 - args.alpha) * (interp.weight(t) * sqnorm(out_real - scale * target_real)).mean()
        loss.backward()
        nn.utils.clip_grad_norm_(self.fake.parameters(), args.clip)
        self.opt_fake.step()
        self.sched_fake.step()
        return loss.detach()

    def generator_step(self, n):                                # theta-terms of eq. 17, minimized by the generator
        gc.collect()                                            # (d)
        args, interp = self.args, self.interp
        self.opt_gen.zero_grad()
        y, z = self.noise(n)
        with autocast(args):
            x_gen = self.gen(z, y).float()
            t, x1, eps = self.paths(x_gen)
            _, xt, target = interp.sample(x_gen, x1, t, eps)
            target, w = args.beta / args.alpha * target, interp.weight(t)
            loss = (args.alpha * (w * sqnorm(self.teacher(t, xt, y) - target)).mean()
                    - args.alpha * (w * sqnorm(self.fake(t, xt, y) - target)).mean())
        loss.backward()                                         # (c) also fills the fake's .grad
        nn.utils.clip_grad_norm_(self.gen.parameters(), args.clip)
        self.opt_gen.step()
        self.sched_gen.step()
        with torch.no_grad():
            for decay, ema in self.emas.items():
                for p_ema, p in zip(ema.parameters(), self.gen.parameters()):
                    p_ema.lerp_(p, 1 - decay)
        return loss.detach()

    def iteration(self, x_real, y_real):
        losses_fake = [self.fake_step(x_real, y_real) for _ in range(self.args.k)]
        return losses_fake, self.generator_step(len(x_real))


def autocast(args):                                             # as train.py --amp: bf16 forwards, fp32 weights
    return torch.autocast(args.device, torch.bfloat16) if args.amp == 'bf16' else contextlib.nullcontext()


def rel(a, b):
    """||a - b|| / ||b|| over lists of tensors (b: the naive side)."""
    a, b = (torch.cat([x.detach().double().flatten() for x in xs]) for xs in (a, b))
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def check(ours, naive, batch, amp='none', verbose=True, tf32_off=True):
    """One iteration of each loop from identical weights and RNG state -> (passed, {quantity: (difference, tol)}).
    CUDA: TF32 convs and matmuls would pick per-batch-size rounding, so fp32 is checked with TF32 off; under
    --compile (tf32_off=False) toggling it would change the global state every compiled graph is guarded on and
    compile them all again, so TF32 stays on and fp32 gets bf16's tolerances (TF32 keeps 3 more mantissa bits)."""
    gen0, fake0 = ([p.detach().clone() for p in net.parameters()] for net in (ours.nets.generator, ours.nets.fake))
    seed, tf32 = ours.args.seed + 1, (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    if tf32_off:
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision('highest')
    try:
        torch.manual_seed(seed)
        ours_fake, ours_gen = ours_iteration(ours, *batch)
        torch.manual_seed(seed)
        naive_fake, naive_gen = naive.iteration(*batch)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32[0]
        torch.set_float32_matmul_precision(tf32[1])
    tolerances = 'bf16' if amp == 'bf16' or not tf32_off and ours.device.type == 'cuda' else 'none'
    gens, fakes = (ours.nets.generator, naive.gen), (ours.nets.fake, naive.fake)
    update = lambda net, start: [p - p0 for p, p0 in zip(net.parameters(), start)]
    rtol, utol = RTOL[tolerances]
    diffs = {'fake losses, K steps': (max(rel([a], [b]) for a, b in zip(ours_fake, naive_fake)), rtol),
             'generator loss': (rel([ours_gen], [naive_gen]), rtol),
             'generator gradient': (rel(*([p.grad for p in net.parameters()] for net in gens)), rtol),
             'generator update': (rel(*(update(net, gen0) for net in gens)), utol),
             'fake update, K steps': (rel(*(update(net, fake0) for net in fakes)), utol)}
    passed = all(tol is None or d <= tol for d, tol in diffs.values())
    if verbose:
        print(f'check: one iteration of each from the same weights and RNG state (relative l2 difference, amp {amp}, '
              f'{tolerances} tolerances)')
        for name, (d, tol) in diffs.items():
            print(f'  {name:22s} {d:8.1e}   ' + (f'tolerance {tol:g}' if tol else 'not compared (see RTOL)'))
        print(f'  last fake loss {float(ours_fake[-1]):.7g} (ours) {float(naive_fake[-1]):.7g} (naive), '
              f'generator loss {float(ours_gen):.7g} (ours) {float(naive_gen):.7g} (naive)')
        print('check:', 'PASS' if passed else 'FAIL')
    return passed, diffs


def timed(fn, device):
    """-> (seconds, peak CUDA memory above the start in MiB, or None on CPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start_mem = torch.cuda.memory_allocated()
    start = time.perf_counter()
    fn()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        return time.perf_counter() - start, (torch.cuda.max_memory_allocated() - start_mem) / 2 ** 20
    return time.perf_counter() - start, None


def main(argv=None):
    args = get_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == 'cuda':                                   # as train.py: cuDNN autotuning, TF32 matmuls
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision('high')
    if args.mode == 'teacher':
        return teacher_mode(args, device)
    model = 'models.CIFAR10_UNET' if args.full else (f'U-Net channels {args.channels} mult '
                                                      f'{",".join(map(str, args.channel_mult))} res_blocks '
                                                      f'{args.res_blocks} attn {args.attn}')
    where = (torch.cuda.get_device_name(device) if device.type == 'cuda'
             else f'cpu, {args.threads} thread{"s" * (args.threads > 1)}')
    print(f'bench.py: one iteration = {args.k} fake steps + 1 generator step | {model} on 3x{args.image_size}x'
          f'{args.image_size}{", cond" if args.cond else ""} | batch {args.batch_size} | alpha {args.alpha} beta '
          f'{args.beta} | {where}, amp {args.amp}, torch {torch.__version__}')
    ours, naive, batch = build(args)
    print(f'{sum(p.numel() for p in ours.nets.generator.parameters()) / 1e6:.2f}M parameters per network')
    start = time.perf_counter()
    passed, _ = check(ours, naive, batch, args.amp, tf32_off=not args.compile)
    if args.compile:
        print(f'compile: the check\'s iteration of ours took {time.perf_counter() - start:.0f} s, compiling included')
    if not passed:
        sys.exit(1)
    loops = {'ours': lambda: ours_iteration(ours, *batch), 'naive': lambda: naive.iteration(*batch)}
    for _ in range(args.warm):
        for fn in loops.values():
            fn()
    times, peaks = {name: [] for name in loops}, {name: [] for name in loops}
    for _ in range(args.iters):                                 # interleaved: ours, naive, ours, naive, ...
        for name, fn in loops.items():
            seconds, peak = timed(fn, device)
            times[name].append(seconds)
            peaks[name].append(peak)
    start = time.perf_counter()
    gc.collect()
    collect_ms = 1e3 * (time.perf_counter() - start)
    cuda = device.type == 'cuda'
    print(f'timing: {args.iters} interleaved iterations of each after {args.warm} warm-up (seconds per iteration)')
    print(f'  {"loop":6s} {"median":>7s} {"min":>7s} {"max":>7s}' + ('  peak MiB above start' if cuda else ''))
    for name in loops:
        t = times[name]
        print(f'  {name:6s} {statistics.median(t):7.3f} {min(t):7.3f} {max(t):7.3f}' +
              (f'  {max(peaks[name]):20.0f}' if cuda else ''))
    pairs = sorted(n / o for o, n in zip(times['ours'], times['naive']))
    print(f'  per-pair naive/ours: median {statistics.median(pairs):.2f}, range {pairs[0]:.2f}-{pairs[-1]:.2f}; '
          f'one gc.collect() here takes {collect_ms:.0f} ms ({len(gc.get_objects())} tracked objects), the naive loop '
          f'calls it {args.k + 1} times an iteration')
    print(f'ratio naive/ours: {statistics.median(times["naive"]) / statistics.median(times["ours"]):.2f}x')
    throughput(lambda: ours_iteration(ours, *batch), statistics.median(times['ours']), 'iteration of ours', device,
               args)
    if args.profile:
        profile(loops['ours'], device, args.profile)


def teacher_mode(args, device):
    """train.py's teacher step (train_teacher's loop body) at --batch-size, data held on the device by data.Batches:
    blocks of 20 steps, one sync at the end of each -> steps/s, TFLOP/s, peak memory."""
    torch.manual_seed(args.seed)
    shape, n = (3, args.image_size, args.image_size), 50_000 if args.full else 10 * args.batch_size
    interp, net = make_interpolant('fm'), models.build_model(unet_config(args)).to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    model = models.compile_blocks(interp.precondition(net)) if args.compile else interp.precondition(net)
    opt, sched = train.adam(net.parameters(), 2e-4, 0)          # train.py's teacher: Adam, lr 2e-4 (warm-up: no cost)
    g = torch.Generator().manual_seed(args.seed)                # a CIFAR-10-sized uint8 dataset, flipped as CIFAR-10
    dataset = torch.utils.data.TensorDataset(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
                                             torch.randint(NUM_CLASSES, (n,), generator=g))
    batches = data.Batches(dataset, args.batch_size, args.seed, 0, 1, device, flip=True)
    targs = argparse.Namespace(amp=args.amp, device=args.device)
    size = sum(p.numel() for p in net.parameters()) / 1e6
    print(f'bench.py --mode teacher: UM step (Def. 1) of train.py\'s teacher phase | {size:.2f}M '
          f'parameters on 3x{args.image_size}x{args.image_size}{", cond" if args.cond else ""} | '
          f'batch {args.batch_size} | '
          f'{n} uint8 images held on the device | amp {args.amp}{", compiled" if args.compile else ""}')

    def step():
        x, y = batches.next()
        with train.autocast(targs):
            loss = losses.um_loss(model, interp, x, y if args.cond else None)
        train.optimizer_step(loss, opt, sched, net.parameters(), 1.0)
        train.ema_update(ema, net, 0.999)

    seconds, _ = timed(step, device)
    print(f'first step {seconds:.1f} s' + (', compiling included' if args.compile else ''))
    for _ in range(args.warm * 20):
        step()
    block = lambda: [step() for _ in range(20)]
    times, peaks = zip(*(timed(block, device) for _ in range(args.iters)))
    rates = sorted(20 / t for t in times)
    print(f'teacher: {statistics.median(rates):.2f} steps/s (median of {args.iters} blocks of 20 steps, range '
          f'{rates[0]:.2f}-{rates[-1]:.2f})'
          + (f', peak MiB above start {max(peaks):.0f}' if device.type == 'cuda' else ''))
    throughput(step, statistics.median(times) / 20, 'teacher step', device, args)


def throughput(fn, seconds, what, device, args):
    """FLOPs of one call of fn (FlopCounterMode; attention through the math kernel, which it counts, compiled code
    run eagerly), TFLOP/s at `seconds` per call, the fraction of the device's peak; on CUDA the host syncs of one
    call."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    with (torch.compiler.set_stance('force_eager'), sdpa_kernel([SDPBackend.MATH]),
          FlopCounterMode(display=False) as counter):
        fn()
    flops, peak = counter.get_total_flops(), args.peak
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'
    if peak is None:
        peak = next(((bf16 if args.amp == 'bf16' else tf32) for part, (bf16, tf32) in PEAK_TFLOPS.items()
                     if part in name), None)
    line = f'flops: {flops / 1e12:.4g} TFLOP per {what} -> {flops / seconds / 1e12:.3g} TFLOP/s at {seconds:.4g} s'
    print(line + (f' = {flops / seconds / 1e12 / peak:.1%} of {name}\'s {peak:g} TFLOP/s (dense '
                  f'{"bf16" if args.amp == "bf16" else "TF32"}{", --peak" if args.peak else ""})' if peak else
                  ' (no peak known for this device: --peak)'))
    if device.type == 'cuda':
        import warnings
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            torch.cuda.set_sync_debug_mode('warn')
            try:
                fn()
            finally:
                torch.cuda.set_sync_debug_mode('default')
        syncs = [str(w.message) for w in caught if 'synchroniz' in str(w.message)]
        print(f'host syncs in one {what}: {len(syncs)}' + (f' (first: {syncs[0][:120]})' if syncs else ''))


def profile(fn, device, rows):
    """Where one iteration's time goes: torch.profiler's top ops by device time (CUDA) or CPU time."""
    from torch.profiler import ProfilerActivity
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
    key = 'cuda_time_total' if device.type == 'cuda' else 'cpu_time_total'
    print(f'profile of one iteration of ours, top {rows} ops by {key}:')
    print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60))


if __name__ == '__main__':
    main()
