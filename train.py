"""RealUID: distill a matching-model teacher into a one-step generator with real data (arXiv 2509.22459).

    python train.py --alpha 0.98 --beta 0.96 --cond                 # conditional CIFAR-10 (Table 2 setting)
    python train.py --dataset toy --alpha 0.98 --beta 0.96 --cond   # 2-D toy, about 2 minutes on 2 CPU cores
    torchrun --nproc_per_node=8 train.py ...                         # DDP; --batch-size stays the global batch

Reads top to bottom: arguments (get_args, check_args) -> data (data.py) -> teacher (--teacher PATH, or trained here
with the UM loss, Def. 1: train_teacher) -> distill: generator (from the teacher), fake (random), EMAs, optimizers ->
Algorithm 1: K fake updates on RealUM (Def. 2) per generator update on RealUID (eq. 17) -> evaluation and an atomic
checkpoint every --eval-every steps, from which --resume continues exactly (the teacher phase too). `run` carries
what a process knows about itself: its device, whether it runs under DDP, its rank among `world`, and `log`.
"""
import argparse
import contextlib
import copy
import functools
import json
import math
import os
import sys
import time
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.nn as nn

import couplings
import data
import fid
import losses
import models
from interpolants import INTERPOLANTS, make_interpolant

# Per-dataset defaults for every flag left unset: the paper's (App. D.1, D.3) for images; toy: measured (README).
PRESETS = {
    'cifar10': dict(image_size=32, batch_size=256, lr=3e-5, lr_decay='none', steps=400_000, teacher_steps=400_000,
                    teacher_lr=2e-4, teacher_batch_size=128, eval_every=10_000, fid_samples=50_000, channels=128,
                    ema=[0.999, 0.9996, 0.9999]),
    'toy': dict(batch_size=256, lr=3e-4, lr_fake=1e-2, lr_decay='cosine', steps=2000, teacher_steps=3_000,
                teacher_lr=2e-3, teacher_batch_size=512, eval_every=500, fid_samples=0, warmup=100,
                ema=[0.99, 0.995, 0.999]),
}
PRESETS['celeba'] = dict(PRESETS['cifar10'], image_size=64, batch_size=64, lr=5e-6, steps=800_000,
                         teacher_batch_size=64)
PRESETS['folder'] = PRESETS['cifar10']
PRESETS['toy-coupled'] = dict(PRESETS['toy'], lr=1e-3, teacher_steps=8000)   # --coupling on the toy: measured (README)
PRESETS['toy-noise0.5'] = dict(PRESETS['toy-coupled'], batch_size=512, lr=3e-3, t_power=0.5, steps=3000,
                               ema=[0.995, 0.998, 0.999])   # a toy coupling's own: measured (README)
RESUMABLE = {'steps', 'teacher_steps', 'eval_every', 'log_every', 'workers',   # what --resume may change (README):
             'device', 'compile', 'fid_weights', 'data_dir', 'out', 'resume'}  # how long, how often, where files are
OUTPUTS = ['ckpt.pt', 'teacher_ckpt.pt', 'teacher.pt', 'metrics.jsonl', 'samples_teacher.png',   # what a run writes
           'samples_generator.png']                                                             # in --out (+ EMAs')


def die(msg, code=2):
    print(f'train.py: error: {msg}', file=sys.stderr)
    sys.exit(code)


def checked(cast, ok, what):
    """argparse type: cast, then one line 'argument --x: must be WHAT, got V' when ok(value) is false."""
    def parse(text):
        value = cast(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f'must be {what}, got {text}')
        return value
    parse.__name__ = cast.__name__                              # "invalid int value: 'x'" for unparsable text
    return parse


COUNT = checked(int, lambda v: v >= 1, 'an integer >= 1')
NONNEG = checked(int, lambda v: v >= 0, 'an integer >= 0')
RATE = checked(float, lambda v: 0 < v < math.inf, 'a positive number')
DECAY = checked(float, lambda v: 0 <= v < 1, 'in [0, 1)')
WIDTH = checked(int, lambda v: v >= 8 and v % 4 == 0, 'a multiple of 4, >= 8')
RESOLUTIONS = checked(str, lambda v: all(r.isdigit() and int(r) > 0 for r in v.split(',')) or not v,
                      'like 16 or 16,8')


class Help(argparse.ArgumentDefaultsHelpFormatter):            # one default a flag: the help's own, or the preset's
    def _get_help_string(self, a):
        preset = ' (default: per --dataset or toy --coupling, PRESETS)' * any(a.dest in p for p in PRESETS.values())
        if a.default is None or 'default' in (a.help or ''):
            return (a.help or '') + preset
        return super()._get_help_string(a)


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=Help)
    p.error = die                                               # one line on stderr, exit 2, no usage dump
    a = p.add_argument_group('method').add_argument
    a('--alpha', type=float, default=1.0, help='RealUM weight of generated data (Def. 2); 1 with beta=1 is UID')
    a('--beta', type=float, default=1.0,
      help='RealUM target weight; beta/alpha != 1 lets real data correct the teacher')
    a('--loss', choices=['realuid', 'normalized'], default='realuid', help='normalized: Def. 4, App. A.4')
    a('--gamma', type=float, default=None, help='General RealUID quadratic split (Def. 3); default alpha')
    a('--param', choices=['standard', 'beta'], default='standard', help='delta = f*-f or beta(f*-f) (App. A.2)')
    a('--sid-alpha', type=RATE, default=0.5, help='RealSiD generator coefficient (eq. 34); 0.5 is exact RealUID')
    a('--gan', type=checked(float, lambda v: 0 <= v < math.inf, 'a number >= 0'), nargs=2, metavar=('GEN', 'DISC'),
      help='UID+GAN (eq. 8) weights')
    a('--cond', action='store_true', help='class-conditional teacher, fake and generator')
    a('--interpolant', choices=sorted(INTERPOLANTS), default='fm')
    a('--coupling', choices=sorted(couplings.COUPLINGS), default=None,
      help='data-to-data (App. C, Def. 5): restore c = corruption(x0); every network sees c (couplings.py)')
    a('--source-noise', type=checked(float, lambda v: 0 <= v < math.inf, 'a number >= 0'), default=None,
      help="s of the coupled source x1 = c + s zeta (default: the coupling's: " + ', '.join(
          f'{k} {c.source_noise}' for k, c in couplings.COUPLINGS.items()) + '; measured, README)')
    a = p.add_argument_group('data').add_argument
    a('--dataset', choices=['cifar10', 'celeba', 'folder', 'toy'], default='cifar10')
    a('--data-dir', default='./data', help='CIFAR-10 root, or the image folder for folder/celeba')
    a('--image-size', type=checked(int, lambda v: v >= 8 and v & (v - 1) == 0, 'a power of 2, >= 8'), default=None)
    a('--workers', type=NONNEG, default=4, help='DataLoader workers for image folders')
    a = p.add_argument_group('teacher').add_argument
    a('--teacher', default=None, help='teacher checkpoint; without it one is trained and saved to OUT/teacher.pt')
    a('--teacher-key', default=None, help="EMA decay of an official checkpoint's ema_models (default: the largest)")
    a('--teacher-steps', type=NONNEG, default=None,
      help='UM steps; checkpointed every --eval-every to OUT/teacher_ckpt.pt')
    a('--teacher-lr', type=RATE, default=None)
    a('--teacher-batch-size', type=COUNT, default=None)
    a('--teacher-ema', type=DECAY, default=0.999,
      help='EMA decay of the trained teacher, warmed up as min(d, (1+s)/(10+s))')
    a('--nfe', type=NONNEG, default=100, help="teacher sampler steps for its reference samples (0: don't draw them)")
    a('--teacher-keep', type=checked(float, lambda v: 0 <= v <= 1, 'in [0, 1]'), nargs='+', metavar='F',
      help='fraction of each class the teacher trains on (0: a teacher missing that mode)')
    a = p.add_argument_group('distillation').add_argument
    a('--steps', type=NONNEG, default=None, help='generator updates; each follows K fake updates')
    a('--k', type=COUNT, default=5, help='fake updates per generator update (Algorithm 1)')
    a('--batch-size', type=COUNT, default=None, help='global batch over all ranks')
    a('--lr', type=RATE, default=None, help='Adam learning rate of the generator (1e-5 with --finetune)')
    a('--lr-fake', type=RATE, default=None, help="the fake's (default --lr, as in the paper; toy: 1e-2)")
    a('--warmup', type=NONNEG, default=None, help='linear learning-rate warm-up steps (default 500, 0 for --finetune)')
    a('--lr-decay', choices=['none', 'cosine', 'linear'], default=None,
      help='after warm-up, to 0 at --steps (toy: cosine)')
    a('--clip', type=RATE, default=1.0, help='gradient-norm clipping of both networks')
    a('--t-power', type=RATE, default=None, metavar='P', help="both distillation losses' times from u^P, u ~ U[0, 1] "
      "(the teacher's stay uniform): 1 is Algorithm 1, the default where no preset sets one; < 1 weights the source "
      "side (experiments/README 6b)")
    a('--ema', type=DECAY, nargs='+', default=None, help='EMA decays of the generator (toy: 0.99 0.995 0.999)')
    a('--finetune', default=None, metavar='CKPT',
      help="fine-tuning stage: generator from CKPT's EMA, fake from teacher")
    a = p.add_argument_group('model size (when a teacher is trained here)').add_argument
    a('--channels', type=WIDTH, default=None, help='U-Net base channels')
    a('--channel-mult', type=COUNT, nargs='+', default=[1, 2, 2, 2])
    a('--res-blocks', type=COUNT, default=2)
    a('--attn', type=RESOLUTIONS, default='16', help="U-Net attention resolutions, e.g. 16 or 16,8; '' for none")
    a('--hidden', type=COUNT, default=256, help='MLP width (toy)')
    a('--layers', type=COUNT, default=3, help='MLP depth (toy)')
    a = p.add_argument_group('run').add_argument
    a('--eval-every', type=COUNT, default=None, help='steps between evaluations and checkpoints')
    a('--eval-samples', type=checked(int, lambda v: v >= 2, 'an integer >= 2 (a covariance)'), default=4000,
      help='samples for the cheap metrics (toy distances, pixel FD)')
    a('--fid-samples', type=checked(int, lambda v: v == 0 or v >= 2, '0 or an integer >= 2'), default=None,
      help='samples for FID (paper: 50 000); 0 disables FID')
    a('--fid-weights', default=None, help='pt_inception-2015-12-05-6726825d.pth (default: torch hub cache)')
    a('--out', default='runs/realuid')
    a('--seed', type=checked(int, lambda v: 0 <= v < 2 ** 32, 'in [0, 2**32)'), default=0)
    a('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    a('--amp', choices=['none', 'bf16'], default='none', help='bf16 autocast of all forwards (fp32 weights, losses)')
    a('--compile', action='store_true', help='torch.compile each block of every network (models.compile_blocks)')
    a('--resume', action='store_true', help='continue exactly from OUT/teacher_ckpt.pt or OUT/ckpt.pt')
    a('--log-every', type=RATE, default=5.0, help='seconds between progress lines')
    args = p.parse_args(argv)
    if args.coupling and args.fid_samples:                      # the user's, before the image preset's 50 000
        p.error('--fid-samples: a --coupling run is scored by restoration metrics and fd_pix16, not FID (README)')
    if args.finetune:                                           # App. D.2: fine-tuning at lr 1e-5, no warm-up
        args.lr = args.lr or 1e-5
        args.warmup = 0 if args.warmup is None else args.warmup
        args.lr_fake = args.lr_fake or args.lr                  # both nets at the fine-tuning lr unless given
    toy_coupled = args.coupling and args.dataset == 'toy'         # a toy coupling's own preset, else 'toy-coupled'
    preset = PRESETS.get(args.coupling, PRESETS['toy-coupled']) if toy_coupled else PRESETS[args.dataset]
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.warmup = 500 if args.warmup is None else args.warmup
    args.t_power = args.t_power or 1.0                          # Algorithm 1's t ~ U[0, 1] unless a preset says
    if args.coupling and args.source_noise is None:
        args.source_noise = couplings.make_coupling(args.coupling).source_noise
    args.lr_fake = args.lr_fake or args.lr
    check_args(p, args)
    return args


def check_args(p, args):
    """The checks across flags, and against the files they name and --out holds: one line each (p.error)."""
    if args.dataset != 'toy':                                   # models.UNet's own checks, without allocating it
        try:
            with torch.device('meta'):
                models.build_model(model_config(args, (3, args.image_size, args.image_size), None))
        except ValueError as e:
            p.error(f'--channels / --channel-mult / --attn at --image-size {args.image_size}: {e}')
    try:
        losses.check_coefficients(args.alpha, args.beta, args.gamma)
    except ValueError as e:
        p.error(str(e))
    if fid.device_error(args.device):
        p.error(f'--device {fid.device_error(args.device)}')
    if args.coupling and (why := couplings.unfit(args.coupling, args.dataset == 'toy', args.interpolant)):
        p.error(f'--coupling {args.coupling}: {why}')
    if args.coupling and (args.cond or args.gan):
        p.error("--coupling takes no --cond or --gan: the networks' label slot carries c, and the GAN head noises "
                'data with the Gaussian source')
    if args.source_noise is not None and not args.coupling:
        p.error('--source-noise is the noise of a coupled source: it needs --coupling')
    if args.loss == 'normalized' and (args.gamma is not None or args.param != 'standard' or args.sid_alpha != 0.5):
        p.error('--loss normalized takes no --gamma, --param or --sid-alpha (they belong to Def. 3 / eq. 34)')
    for flag in ('teacher', 'finetune'):
        if getattr(args, flag) and not os.path.isfile(getattr(args, flag)):
            p.error(f'{flag} checkpoint {getattr(args, flag)} not found')
    if args.teacher_key and not args.teacher:
        p.error('--teacher-key picks an EMA of an official --teacher checkpoint; without --teacher, train.py trains '
                'its own (or reads OUT/teacher.pt)')
    own_teacher = os.path.join(args.out, 'teacher.pt')
    if args.teacher_keep and (args.teacher or os.path.isfile(own_teacher) and not args.resume):
        p.error(f'--teacher-keep shapes a teacher trained here; {args.teacher or own_teacher} '
                'would be distilled instead')
    if args.gan and 'RANK' in os.environ and 'WORLD_SIZE' in os.environ:
        p.error('--gan is not supported under torchrun (the head reads the fake outside its DDP wrapper)')
    for name in OUTPUTS + [f'samples_ema{decay}.png' for decay in args.ema] if os.path.isdir(args.out) else []:
        if why := fid.output_error(os.path.join(args.out, name)):   # before hours of work, not after
            p.error(f'--out {args.out}: {name} {why}')
    earlier = [f for f in ('ckpt.pt', 'teacher_ckpt.pt', 'metrics.jsonl') if os.path.isfile(os.path.join(args.out, f))]
    if earlier and not args.resume:                             # a new run there would overwrite them
        p.error(f'--out {args.out} holds an earlier run ({", ".join(earlier)}): --resume continues it, '
                f'or choose another --out')
    if args.teacher_steps == 0 and not args.teacher and not os.path.isfile(own_teacher):
        p.error('--teacher-steps 0 would distil an untrained, random teacher: give --teacher CKPT or some steps')
    data_dir = os.path.realpath(args.data_dir)
    if args.dataset in ('folder', 'celeba') and os.path.commonpath([os.path.realpath(args.out), data_dir]) == data_dir:
        p.error(f'--out {args.out} is inside the image folder --data-dir {args.data_dir}: '
                'its files would be read as images')
    checkpoints = [os.path.join(args.out, 'ckpt.pt'), os.path.join(args.out, 'teacher_ckpt.pt')]
    ckpt = next((load_checkpoint(path, 'checkpoint') for path in checkpoints if args.resume and os.path.isfile(path)),
                {})
    recorded = ckpt.get('args') or {}
    try:                                                        # the record may hold no step the run will redo
        steps = [e['step'] for e in read_records(os.path.join(args.out, 'metrics.jsonl')) if e['phase'] == 'distill']
    except ValueError as e:
        p.error(str(e))
    at = ckpt.get('step', 0) if os.path.isfile(checkpoints[0]) else None
    if max(steps, default=0) > (at or 0):
        p.error(f'--out {args.out}: metrics.jsonl records distillation step {max(steps)}, but '
                f'{"there is no ckpt.pt" if at is None else f"ckpt.pt is at step {at}"}: --resume would record those '
                'steps again; put the checkpoint back, or move metrics.jsonl away')
    changed = sorted(k for k in recorded.keys() & vars(args).keys() - RESUMABLE if recorded[k] != getattr(args, k))
    if recorded.get('steps', args.steps) != args.steps and args.lr_decay != 'none':    # allowed, but not silently
        print(f'train.py: --steps {args.steps} (was {recorded["steps"]}): the lr decays over the new --steps from here')
    if changed:                                                 # the run would silently become another one
        p.error(f'--resume with other flags than {args.out} was run with: ' + ', '.join(
            f'--{k.replace("_", "-")} {getattr(args, k)} (was {recorded[k]})' for k in changed))


# ---------------------------------------------------------------------------------------------------- helpers

def autocast(args):
    """--amp bf16: bf16 forwards; weights, optimizer states and the losses (fp32 targets promote) stay fp32."""
    if args.amp != 'bf16':
        return contextlib.nullcontext()
    return torch.autocast(torch.device(args.device).type, torch.bfloat16)


def optimizer_step(loss, opt, sched, params, clip):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    sched.step()
    return grad_norm


@torch.no_grad()
def ema_update(ema, net, decay):
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - decay)   # one kernel per group


def adam(params, lr, warmup, betas=(0.0, 0.999), decay='none', total=1):
    """Adam (App. D.1: beta1 = 0; fused on CUDA); lr linear over `warmup` steps, then constant or 'cosine'/'linear'
    to 0 at `total`."""
    params = list(params)
    opt = torch.optim.Adam(params, lr=lr, betas=betas, fused=params[0].is_cuda or None)
    shape = dict(none=lambda p: 1.0, linear=lambda p: 1 - p, cosine=lambda p: 0.5 + 0.5 * math.cos(math.pi * p))[decay]
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: (step + 1) / warmup if step < warmup else
                                                  shape(min(1.0, (step - warmup) / max(1, total - warmup))))


def load_checkpoint(path, what):
    try:
        return torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:
        die(f'{what} {path} cannot be read ({type(e).__name__}); move it away to start over')


def save_state(run, path, step, stateful, batches, **extra):
    """Atomic checkpoint: step, extra, every state_dict of stateful, and every rank's batch position and RNG."""
    mine = dict(data=batches.state_dict(), rng=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all() if run.device.type == 'cuda' else None)
    ranks = [mine]
    if run.ddp:
        ranks = [None] * run.world
        dist.all_gather_object(ranks, mine)
    if run.rank == 0:
        ckpt = dict(step=step, **extra, **{k: v.state_dict() for k, v in stateful.items()}, ranks=ranks)
        fid.write_atomic(path, lambda f: torch.save(ckpt, f))


def load_state(run, path, stateful, batches):
    """Restore what save_state wrote (one clear line if it does not fit this run) -> step."""
    ckpt = load_checkpoint(path, 'checkpoint')
    try:
        for key, obj in stateful.items():
            obj.load_state_dict(ckpt[key])
        mine = ckpt['ranks'][run.rank]
        batches.load_state_dict(mine['data'])
    except (KeyError, IndexError, TypeError, RuntimeError, ValueError) as e:
        die(f'checkpoint {path} does not fit this run ({type(e).__name__}: {str(e).splitlines()[0]})')
    torch.set_rng_state(mine['rng'])
    if mine['cuda'] is not None and torch.cuda.is_available():   # (a run moved to a CPU: --device may change)
        torch.cuda.set_rng_state_all(mine['cuda'])
    return ckpt['step']


class EMAs(dict):
    """{decay: EMA copy of the generator}, saved as {str(decay): state dict}."""
    def state_dict(self):
        return {str(decay): ema.state_dict() for decay, ema in self.items()}

    def load_state_dict(self, state):
        for decay, ema in self.items():
            ema.load_state_dict(state[str(decay)])


def noise(interp, n, shape, num_classes, device, c=None, s=None):
    """Generator input -> (z (n, *shape), y): labels (None if unconditional), then z = interp.prior at t=1; with a
    coupling's c (App. C.3): z = c + s zeta, the coupled source, and y = c, the condition of every network."""
    if c is not None:
        return couplings.source(c, s), c
    y = torch.randint(num_classes, (n,), device=device) if num_classes else None
    return interp.prior((n, *shape), device), y


def model_config(args, shape, num_classes):
    if args.dataset == 'toy':
        return dict(kind='mlp', dim=shape[0], hidden=args.hidden, num_layers=args.layers,
                    num_classes=num_classes if args.cond else None, **({'cond_dim': shape[0]} if args.coupling else {}))
    heads = dict(num_head_channels=64) if args.channels >= 64 else dict(num_head_channels=-1, num_heads=4)
    return dict(kind='unet', dim=list(shape), num_channels=args.channels, num_res_blocks=args.res_blocks,
                channel_mult=list(args.channel_mult), attention_resolutions=[r for r in args.attn.split(',') if r],
                dropout=0.0, num_classes=num_classes if args.cond else None, **heads,
                **({'cond_channels': shape[0]} if args.coupling else {}))    # I2SB, DDBM: c concatenated on channels


def wrap(net, args, run):
    """--compile: each block compiled in place (models.compile_blocks); then DDP-wrap a network that trains."""
    net = models.compile_blocks(net) if args.compile else net
    if not run.ddp:
        return net
    return nn.parallel.DistributedDataParallel(net, [run.device.index] if run.device.type == 'cuda' else None)


def stop_if_not_finite(pending, ckpt_path):
    """Reads pending [(step, {name: 0-d tensor})] in one host sync (the loops read only to log or checkpoint),
    empties it -> [{name: value}]. A NaN/inf ends the run: one line naming the first, exit 3; the last checkpoint
    stays."""
    rows = torch.stack([torch.stack([*values.values()]) for _, values in pending]).tolist()
    rows = [(step, dict(zip(values, row))) for (step, values), row in zip(pending, rows)]
    pending.clear()
    for step, values in rows:
        for name, value in values.items():
            if not math.isfinite(value):
                kept = f'; the last good checkpoint is kept at {ckpt_path}' if os.path.isfile(ckpt_path) else ''
                names = {'gen_grad': 'generator gradient norm', 'grad': 'teacher gradient norm'}
                what = names.get(name, f'{name} loss')
                die(f'non-finite {what} ({value}) at step {step}{kept}', code=3)
    return [values for _, values in rows]


# ---------------------------------------------------------------------------------------------------- evaluation

def make_evaluator(args, run, dataset, shape, num_classes, interp):
    """-> evaluate(name, sample_fn(z, y)) -> {metric: value}, writing OUT/samples_{name}.png.

    Toy: `fd` (Frechet distance) and `swd` (sliced Wasserstein) against held-out data, class-balanced like the
    samples with --cond; images: `fd_pix8` (8x8-pooled pixels) and `fid` when the Inception weights exist.
    Samples come from a fixed seed, so training randomness is untouched and evaluations are comparable.
    """
    toy, n, classes, device = args.dataset == 'toy', args.eval_samples, num_classes if args.cond else None, run.device
    inception, fid_ref = None, None
    try:
        idx = [] if toy else torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:n].tolist()
        if len(idx) < n and not toy:
            run.log(f'fd_pix8 compares {n} samples with all {len(idx)} images of the dataset (fewer than '
                    '--eval-samples)')
        ref = data.toy_data(n, seed=4321, balanced=args.cond)[0] if toy else torch.stack([dataset[i][0] for i in idx])
        if args.fid_samples and not toy:                        # a cached reference is checked before Inception loads
            # CIFAR-10's root can hold the cache for every run; an image folder cannot (a class folder to the loader)
            cache = (os.path.join(args.data_dir, 'fid_stats') if args.dataset == 'cifar10' and
                     os.access(args.data_dir, os.W_OK) else args.out)
            loader = torch.utils.data.DataLoader(dataset, batch_size=250, num_workers=args.workers)
            get_inception = functools.cache(lambda: fid.load_inception(args.fid_weights, device))    # loaded once
            fid_ref = fid.dataset_stats(args.dataset, loader, cache, args.image_size, device=device,
                                        get_net=get_inception, log=run.log)
            inception = get_inception()
    except fid.InceptionWeightsNotFound as e:
        run.log(f'FID disabled: {e}')
    except ValueError as e:
        die(data.last_line(e))
    ref_stats = fid.gaussian_stats(ref) if toy else fid.pixel_stats(ref)

    @torch.no_grad()
    @torch.compiler.set_stance('force_eager')                  # --compile: no graphs for evaluation's batch shapes
    def evaluate(name, sample_fn, quiet=False):                 # quiet: the caller shows the progress
        g = torch.Generator(device).manual_seed(1)
        bar = fid.Progress(f'samples of {name}', n, 'samples', None if quiet else run.log, args.log_every, end=False)
        labels = torch.arange(n, device=device) % classes if classes else None
        chunks = []
        for i in range(0, n, 500):
            z = interp.prior((min(500, n - i), *shape), device, g)
            chunks.append(sample_fn(z, labels[i:i + 500] if classes else None))
            bar(min(n, i + 500))
        x = torch.cat(chunks).float().cpu()
        labels, path = labels.cpu() if classes else None, os.path.join(args.out, f'samples_{name}.png')
        if toy:
            fid.save_scatter(x, labels, path)
            return dict(fd=fid.frechet_distance(*fid.gaussian_stats(x), *ref_stats),
                        swd=fid.sliced_wasserstein(x.double(), ref.double()))
        fid.save_grid(x, classes, path)                         # one row per class with --cond
        metrics = dict(fd_pix8=fid.frechet_distance(*fid.pixel_stats(x), *ref_stats))
        if fid_ref is not None:
            g = torch.Generator(device).manual_seed(2)          # (its progress lines say how long it took)
            mu, sigma = fid.generator_stats(lambda m, y: sample_fn(interp.prior((m, *shape), device, g), y),
                                            args.fid_samples, 250, classes, inception, device, log=run.log)
            metrics['fid'] = fid.frechet_distance(mu, sigma, *fid_ref)
        return metrics
    evaluate.samples = n
    return evaluate


def make_coupled_evaluator(args, run, coupling, held_out, dataset, interp, teacher):
    """With a coupling: evaluate(name, sample_fn(x1, c)) on coupling.eval_pairs held-out pairs (x0, c) -> couplings.
    restoration_metrics (+ images: fd_pix16 to clean training images); OUT/samples_{name}.png: rows input | teacher |
    two samples | ground truth (toy: 8 inputs' samples, a colour each). Fixed seeds: every evaluation sees the same."""
    (inputs, per), toy, device, s = coupling.eval_pairs, args.dataset == 'toy', run.device, args.source_noise
    x0, c = couplings.evaluation_pairs(coupling, held_out, device)
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:args.eval_samples].tolist()
    ref = None if toy else fid.pixel_stats(torch.stack([dataset[i][0] for i in idx]), 16)
    g = torch.Generator(device).manual_seed(6)                  # the teacher's column of the grids, drawn once
    teacher_rows = functools.cache(lambda: interp.generate(teacher, couplings.source(c[:10], s, g), c[:10],
                                                           steps=args.nfe or 100, generator=g).float().cpu())

    @torch.no_grad()
    @torch.compiler.set_stance('force_eager')
    def evaluate(name, sample_fn, quiet=False):
        bar = fid.Progress(f'samples of {name}', inputs * per, 'samples', None if quiet else run.log, args.log_every,
                           end=False)
        x = couplings.restore(sample_fn, c, per, s, torch.Generator(device).manual_seed(1), progress=bar)
        path = os.path.join(args.out, f'samples_{name}.png')
        metrics = couplings.restoration_metrics(coupling, x0.cpu(), c.cpu(), x, torch.Generator().manual_seed(7))
        if toy:
            fid.save_scatter(x[:8].flatten(0, 1), torch.arange(8).repeat_interleave(per), path)
            return metrics
        fid.save_grid(torch.cat([c[:10].cpu(), teacher_rows(), x[:10, 0], x[:10, 1], x0[:10].cpu()]), len(c[:10]), path)
        return dict(metrics, fd_pix16=fid.frechet_distance(*fid.pixel_stats(x.flatten(0, 1), 16), *ref))
    evaluate.samples = inputs * per
    return evaluate


def finite_or_none(obj):
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def record(args, log, **entry):
    """One JSON object per evaluation appended to OUT/metrics.jsonl as one line, and the same as a progress line."""
    with open(os.path.join(args.out, 'metrics.jsonl'), 'a') as f:
        f.write(json.dumps(finite_or_none(entry), allow_nan=False) + '\n')   # NaN/inf -> null: strict JSON
    short = json.loads(json.dumps(entry), parse_float=lambda v: float(f'{float(v):.4g}'))     # 4 digits on screen
    log(json.dumps(short, separators=(' ', '=')).replace('"', ''))


def read_records(path, repair=False):
    """OUT/metrics.jsonl -> its entries ([] if absent). A last line without its newline is what a kill left of an
    append: no entry (--resume redoes that evaluation); repair=True cuts it off the file before anything is appended,
    so that every line stays one JSON object. Any other line that is not JSON: ValueError in one line."""
    if not os.path.isfile(path):
        return []
    with open(path, 'rb+' if repair else 'rb') as f:
        text = f.read()
        whole = text[:text.rfind(b'\n') + 1]
        if repair and len(whole) < len(text):
            f.truncate(len(whole))
    entries = []
    for i, line in enumerate(whole.decode(errors='replace').splitlines()):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise ValueError(f'{path}: line {i + 1} is not JSON; fix or remove that line') from None
    return entries


# ---------------------------------------------------------------------------------------------------- phase 1: teacher

def train_teacher(args, run, dataset, shape, num_classes, interp):
    """Minimize the UM loss (Def. 1) on real data -> OUT/teacher.pt (EMA weights). Every --eval-every steps the
    whole state goes to OUT/teacher_ckpt.pt, from which --resume continues exactly."""
    config, ckpt_path = model_config(args, shape, num_classes), os.path.join(args.out, 'teacher_ckpt.pt')
    coupling = args.coupling and couplings.make_coupling(args.coupling)
    net = models.build_model(config).to(run.device)
    model = wrap(interp.precondition(net), args, run)
    ema = copy.deepcopy(net).requires_grad_(False)             # after wrap: its layout (--compile: channels_last)
    opt, sched = adam(net.parameters(), args.teacher_lr, min(args.warmup, args.teacher_steps // 10), (0.9, 0.999))
    if args.teacher_keep:
        dataset = data.keep_fractions(dataset, args.teacher_keep)
        run.log(f'teacher: trains on {len(dataset)} items, fractions {args.teacher_keep} of the classes')
    batches = data.Batches(dataset, args.teacher_batch_size, args.seed + 1, run.rank, run.world, run.device,
                           args.dataset == 'cifar10', args.workers)
    stateful, start = dict(net=net, ema=ema, opt=opt, sched=sched), 0
    if args.resume and os.path.isfile(ckpt_path):
        start = load_state(run, ckpt_path, stateful, batches)
        if start > args.teacher_steps:
            die(f'{ckpt_path} is at step {start}, past --teacher-steps {args.teacher_steps}')
        run.log(f'resumed the teacher from {ckpt_path} at step {start}')
    pending = []                                                # values on the device until read
    bar, t0 = fid.Progress('teacher', args.teacher_steps, 'it', run.log, args.log_every, start=start), time.time()
    for step in range(start + 1, args.teacher_steps + 1):
        x, y = batches.next()
        c = coupling.corrupt(x) if coupling else None           # App. C.1-C.2: pairs (x0, c), source c + s zeta
        with autocast(args):                                    # Def. 1 / eq. 3
            loss = losses.um_loss(model, interp, x, c if coupling else y if args.cond else None,
                                  x1=c if c is None else couplings.source(c, args.source_noise))
        grad_norm = optimizer_step(loss, opt, sched, net.parameters(), args.clip)
        ema_update(ema, net, min(args.teacher_ema, (1 + step) / (10 + step)))         # EMA with warm-up
        pending.append((step, dict(teacher=loss.detach(), grad=grad_norm)))
        if args.compile and step == start + 1:
            run.log(f'--compile: the first step took {time.time() - t0:.0f} s, compiling included')
        log_now = bar.due(step)
        if log_now or step % args.eval_every == 0:
            values = stop_if_not_finite(pending, ckpt_path)[-1]  # one host sync, only to log or checkpoint
        if log_now:
            bar(step, loss=values['teacher'], grad=values['grad'])
        if step % args.eval_every == 0 and step < args.teacher_steps:
            save_state(run, ckpt_path, step, stateful, batches, args=vars(args), model=config)
    path = os.path.join(args.out, 'teacher.pt')
    if run.rank == 0:
        extra = dict(config=dict(args=vars(args), steps=args.teacher_steps))
        fid.write_atomic(path, lambda f: models.save_teacher(f, ema, config, extra=extra))
    run.log(f'teacher: {args.teacher_steps} UM steps, saved to {path}')


def load_teacher(args, path, shape, num_classes, device):
    """models.load_teacher (ours, torchcfm, official), then the checks that it fits this run -> (net, model config,
    what it is in words)."""
    try:
        net, info = models.load_teacher(path, device, ema_key=args.teacher_key, teachers_only=True)
    except ValueError as e:
        die(str(e))
    config, fits, trained = info['config'], f'teacher {path} does not fit the data', info['trained']
    dim = tuple(config['dim']) if isinstance(config['dim'], list) else (config['dim'],)
    classes = config.get('num_classes')
    if dim != tuple(shape):
        die(f'{fits}: it is for shape {dim}, the {args.dataset} data has shape {tuple(shape)}')
    if args.cond != (classes is not None):
        die(f'{path} is class-conditional ({classes} classes): pass --cond' if classes else
            f'--cond needs a class-conditional teacher; {path} is unconditional')
    if args.cond and classes != num_classes:
        die(f'{fits}: it has {classes} classes, the {args.dataset} data {num_classes}')
    if trained.get('interpolant', args.interpolant) != args.interpolant:   # recorded in our teacher.pt
        die(f'teacher {path} was trained with --interpolant {trained["interpolant"]}, not {args.interpolant}')
    if (trained.get('coupling'), trained.get('source_noise')) != (args.coupling, args.source_noise):
        die(f'teacher {path} was trained with --coupling {trained.get("coupling")} --source-noise '
            f'{trained.get("source_noise")}, not --coupling {args.coupling} --source-noise {args.source_noise}')
    return net, config, f'{info["format"]}{", time-flipped" if info["flipped"] else ""}'


# ------------------------------------------------------------------------------------------------- phase 2: Algorithm 1

def discriminate(nets, interp, x, y):
    """UID+GAN baseline (eq. 8): logits of a head on the fake's bottleneck at slightly noised data, t in [0, 0.2]."""
    t = 0.2 * torch.rand(len(x), device=x.device)
    return nets.head(nets.fake.features(t, interp.sample(x, t=t)[1], y)).squeeze(1)


def fake_update(args, interp, nets, opt, sched, z, y_gen, x_real, y_real, x1=None):
    """One fake update: minimize RealUM (Def. 2 / eq. 16) on generated + real data; the generator is fixed. x1: with
    a coupling, the loss's fresh source draw, shared by the generated and real pairs, whose c is the same (Def. 5)."""
    with torch.no_grad(), autocast(args):
        x_gen = nets.generator(z, y_gen).float()
    with autocast(args):
        if args.loss == 'normalized':                           # Def. 4: the fake maximizes Normalized RealUID
            loss = -losses.normalized_realuid_loss(nets.teacher, nets.fake_ddp, interp, x_gen, x_real, args.alpha,
                                                   args.beta, y_gen, y_real, x1_gen=x1)
        elif args.gamma is None and args.param == 'standard':
            loss = losses.realum_loss(nets.fake_ddp, interp, x_gen, x_real, args.alpha, args.beta, y_gen, y_real,
                                      x1_gen=x1)
        else:                                                   # Def. 3: the fake maximizes General RealUID
            loss = -losses.general_realuid_loss(nets.teacher, nets.fake_ddp, interp, x_gen, x_real, args.alpha,
                                                args.beta, args.gamma, args.param, y_gen, y_real, x1_gen=x1)
        if nets.head is not None:
            loss = loss + args.gan[1] * losses.gan_discriminator_loss(discriminate(nets, interp, x_real, y_real),
                                                                      discriminate(nets, interp, x_gen, y_gen))
    optimizer_step(loss, opt, sched, nets.fake_params, args.clip)
    return loss.detach()


def generator_update(args, interp, nets, opt, sched, z, y, x1=None):
    """One generator update: minimize the theta-terms of RealUID (eq. 17) with the fake under stop-gradient:
    its parameters are frozen, so no gradient is computed for them (it still flows through x_t). x1: as above."""
    for p in nets.fake_params:
        p.requires_grad_(False)
    with autocast(args):
        x_gen = nets.generator_ddp(z, y).float()
        if args.loss == 'normalized':                           # Def. 4, App. A.4
            loss = losses.normalized_realuid_generator_loss(nets.teacher, nets.fake, interp, x_gen, args.alpha,
                                                            args.beta, y, x1=x1)
        else:                                                   # eq. 17 (eq. 34 with --sid-alpha, Def. 3 with --gamma)
            loss = losses.realuid_generator_loss(nets.teacher, nets.fake, interp, x_gen, args.alpha, args.beta, y,
                                                 x1=x1, sid_alpha=args.sid_alpha, gamma=args.gamma, param=args.param)
        if nets.head is not None:
            loss = loss + args.gan[0] * losses.gan_generator_loss(discriminate(nets, interp, x_gen, y))
    grad_norm = optimizer_step(loss, opt, sched, nets.generator.parameters(), args.clip)
    for p in nets.fake_params:
        p.requires_grad_(True)
    return loss.detach(), grad_norm.detach()


def finetune_start(args, config):
    """--finetune CKPT -> its largest-decay generator EMA, once CKPT is known to fit this run (model, interpolant)."""
    ckpt, name = load_checkpoint(args.finetune, '--finetune checkpoint'), f'--finetune checkpoint {args.finetune}'
    if not isinstance(ckpt, dict) or not ckpt.get('emas') or 'model' not in ckpt:
        die(f'{name} has no generator EMAs (expected a train.py ckpt.pt)')
    other = {k for k in {*config, *ckpt['model']} if config.get(k) != ckpt['model'].get(k)}
    if other:
        differences = ', '.join(f'{k} {ckpt["model"].get(k)} there, {config.get(k)} here' for k in sorted(other))
        die(f'{name} was distilled from another model ({differences})')
    recorded = ckpt.get('args') or {}
    for key in ('interpolant', 'coupling', 'source_noise'):
        if recorded.get(key, getattr(args, key)) != getattr(args, key):
            die(f'{name} was trained with --{key.replace("_", "-")} {recorded[key]}, not {getattr(args, key)}')
    return ckpt['emas'][max(ckpt['emas'], key=float)]


def distill(args, run, teacher_net, config, dataset, shape, num_classes, interp, finetune=None, held_out=None):
    classes, ckpt_path = num_classes if args.cond else None, os.path.join(args.out, 'ckpt.pt')
    coupling = args.coupling and couplings.make_coupling(args.coupling)
    source = lambda c: c if c is None else couplings.source(c, args.source_noise)   # a coupling's fresh x1, else None
    interp = copy.copy(interp)                                  # --t-power: this phase's times only (README)
    interp.t_power = args.t_power
    teacher = interp.precondition(teacher_net)
    generator = models.Generator(interp.precondition(copy.deepcopy(teacher_net)).requires_grad_(True).train(), interp)
    fake_net = models.build_model(config).to(run.device)        # random init (App. D.1)
    fake = interp.precondition(fake_net)
    if finetune is not None:                                    # App. D.2: generator from an EMA, fake from teacher
        generator.load_state_dict(finetune)
        fake.load_state_dict(teacher.state_dict())
    for m in (*generator.modules(), *fake.modules()):
        if isinstance(m, nn.Dropout):                           # App. D.1: no dropout in generator and fake
            m.p = 0.0
    head = nn.Linear(fake_net.feature_dim, 1).to(run.device) if args.gan else None    # on models' features()
    nets = SimpleNamespace(teacher=models.compile_blocks(teacher) if args.compile else teacher,
                           generator=generator, generator_ddp=wrap(generator, args, run),   # the _ddp ones train
                           fake=fake, fake_ddp=wrap(fake, args, run),
                           head=head, fake_params=[*fake.parameters(), *(head.parameters() if head else [])])
    emas = EMAs({decay: copy.deepcopy(generator).requires_grad_(False) for decay in args.ema})
    opt_fake, sched_fake = adam(nets.fake_params, args.lr_fake, args.warmup, decay=args.lr_decay,
                                total=args.k * args.steps)
    opt_gen, sched_gen = adam(generator.parameters(), args.lr, args.warmup, decay=args.lr_decay, total=args.steps)
    stateful = dict(generator=generator, fake=fake, emas=emas, opt_fake=opt_fake, opt_gen=opt_gen,
                    sched_fake=sched_fake, sched_gen=sched_gen, **(dict(head=head) if head else {}))
    batches = data.Batches(dataset, args.batch_size, args.seed, run.rank, run.world, run.device,
                           args.dataset == 'cifar10', args.workers)
    evaluate = None if run.rank else make_coupled_evaluator(args, run, coupling, held_out, dataset, interp, teacher) \
        if coupling else make_evaluator(args, run, dataset, shape, num_classes, interp)
    start = 0                                                   # (the evaluator's FID loader draws from the RNG)
    if args.resume and os.path.isfile(ckpt_path):
        start = load_state(run, ckpt_path, stateful, batches)
        run.log(f'resumed from {ckpt_path} at step {start}')

    def checkpoint(step):
        save_state(run, ckpt_path, step, stateful, batches, args=vars(args), model=config)

    def evaluation(step, running, rate):                        # at step 0 the EMAs equal the generator
        if run.rank == 0:
            named = {'generator': generator, **({f'ema{d}': m for d, m in emas.items()} if step else {})}
            metrics = {name: evaluate(name, net.eval()) for name, net in named.items()}
            generator.train()
            record(args, run.log, step=step, phase='distill', losses=running, metrics=metrics, it_per_s=rate)

    # The evaluations metrics.jsonl holds, as (phase, step): one lost to a kill (after its checkpoint, or cut short
    # while written) is done again below, and only then is the record appended to.
    records = read_records(os.path.join(args.out, 'metrics.jsonl'), repair=run.rank == 0)
    done = {(e['phase'], e['step']) for e in records}
    if run.rank == 0 and args.nfe and 'teacher' not in {phase for phase, _ in done}:
        t0, g = time.time(), torch.Generator(run.device).manual_seed(3)   # the SDE sampler's noise (bridge) is seeded
        bar = fid.Progress(f'teacher sampler, {args.nfe} NFE', evaluate.samples * args.nfe, 'sample-NFE', run.log,
                           args.log_every)
        metrics = evaluate('teacher', lambda z, y: interp.generate(lambda t, x, c: bar.add(len(x), teacher(t, x, c)),
                                                                   z, y, steps=args.nfe, generator=g), quiet=True)
        record(args, run.log, step=0, phase='teacher', metrics={f'teacher_nfe{args.nfe}': metrics},
               seconds=time.time() - t0)
    if ('distill', start) not in done:                          # step 0: the generator at its initialisation
        evaluation(start, {}, 0.0 if start == 0 else None)      # (a redone one: its losses went with the process)
    if start and start >= args.steps:
        return run.log(f'nothing to do: the run is at step {start}, --steps is {args.steps}')
    n = args.batch_size // run.world
    use_real = args.alpha < 1 or (args.gamma or 1) < 1 or args.gan is not None or coupling  # coupling: c from pairs
    bar = fid.Progress('distill', args.steps, 'it', run.log, args.log_every, start=start)
    pending = []                                                # per step: values on the device until read
    sums, count, seconds, peak = {}, 0, 0.0, 0.0                # since the last evaluation: for metrics.jsonl
    for step in range(start + 1, args.steps + 1):
        t0 = time.time()
        for _ in range(args.k):                                 # Algorithm 1: K fake updates on RealUM (Def. 2)
            x_real, y_real = batches.next() if use_real else (None, None)
            c = coupling.corrupt(x_real) if coupling else None   # Def. 5: real pairs (x0, c); generated (G(z, c), c)
            z, y_gen = noise(interp, n, shape, classes, run.device, c, args.source_noise)
            loss_fake = fake_update(args, interp, nets, opt_fake, sched_fake, z, y_gen, x_real,
                                    c if coupling else y_real if args.cond else None, source(c))
        c = coupling.corrupt(batches.next()[0]) if coupling else None   # then one generator update on RealUID (eq. 17)
        z, y_gen = noise(interp, n, shape, classes, run.device, c, args.source_noise)
        loss_gen, grad_norm = generator_update(args, interp, nets, opt_gen, sched_gen, z, y_gen, source(c))
        for decay, ema in emas.items():
            ema_update(ema, generator, decay)
        pending.append((step, dict(fake=loss_fake, gen=loss_gen, gen_grad=grad_norm)))
        if args.compile and step == start + 1:
            run.log(f'--compile: the first step took {time.time() - t0:.0f} s, compiling included')
        log_now, eval_now = bar.due(step), step % args.eval_every == 0
        for values in stop_if_not_finite(pending, ckpt_path) if log_now or eval_now else []:    # one host sync
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
            count += 1
            peak = max(peak, values['gen_grad'])
        seconds += time.time() - t0
        if log_now:
            bar(step, **values)
        if eval_now or step == args.steps:
            checkpoint(step)
            running = {name: total / count for name, total in sums.items()}
            evaluation(step, {**running, 'gen_grad_max': peak}, count / max(seconds, 1e-9))
            sums, count, seconds, peak = {}, 0, 0.0, 0.0
    if args.steps == start:
        checkpoint(start)


def main(argv=None):
    args = get_args(argv)
    ddp = 'RANK' in os.environ and 'WORLD_SIZE' in os.environ   # started by torchrun
    rank, world = (int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])) if ddp else (0, 1)
    device = torch.device(args.device)
    if ddp:
        if device.type == 'cuda':
            device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
            torch.cuda.set_device(device)
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
        if args.batch_size % world:
            die(f'--batch-size {args.batch_size} is not divisible by the {world} ranks')
    log = (lambda msg: print(msg, flush=True)) if rank == 0 else (lambda msg: None)
    run = SimpleNamespace(device=device, ddp=ddp, rank=rank, world=world, log=log)
    torch.manual_seed(args.seed + rank)
    if device.type == 'cuda':   # fixed shapes: cuDNN times its conv algorithms once (as EDM, SiD); fp32: TF32 matmuls
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision('high')
    created = not os.path.exists(args.out)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        die(f'--out {args.out}: cannot create that folder ({e.strerror})')
    if not os.access(args.out, os.W_OK):
        die(f'--out {args.out}: the folder is not writable')
    try:                                                        # a refusal below leaves no empty --out it created
        interp = make_interpolant(args.interpolant)
        dataset, shape, num_classes = data.make_dataset(args.dataset, args.data_dir, args.image_size, args.cond)
        if args.teacher_keep and len(args.teacher_keep) != num_classes:
            die(f'--teacher-keep takes one fraction per class: {num_classes} for {args.dataset}, '
                f'got {len(args.teacher_keep)}')
        dataset, held_out = (data.hold_out(dataset, couplings.make_coupling(args.coupling).eval_pairs[0])  # evaluation
                             if args.coupling else (dataset, None))        # pairs, out of both phases' training data
        log(f'{args.dataset}: {len(dataset)} items of shape {shape}, {num_classes} classes | alpha={args.alpha} '
            f'beta={args.beta} | {world} rank(s) on {device} | out {args.out}'
            + (f' | --coupling {args.coupling}, source c + {args.source_noise} zeta' if args.coupling else ''))
        if getattr(dataset, 'loose', None):
            log(f'{len(dataset.loose)} images directly in {args.data_dir} (e.g. {dataset.loose[0]}) are in no class '
                'folder: not used')

        teacher_path, finetune = args.teacher or os.path.join(args.out, 'teacher.pt'), None
        if not args.teacher and not os.path.isfile(teacher_path):
            if args.finetune:                                   # checked before hours of teacher training, not after
                finetune = finetune_start(args, model_config(args, shape, num_classes))
            train_teacher(args, run, dataset, shape, num_classes, interp)
            if ddp:
                dist.barrier()                                  # every rank then loads rank 0's file: one teacher
        teacher_net, config, kind = load_teacher(args, teacher_path, shape, num_classes, device)
        log(f'teacher: {teacher_path} ({kind})')
        if args.finetune and finetune is None:
            finetune = finetune_start(args, config)
        distill(args, run, teacher_net, config, dataset, shape, num_classes, interp, finetune, held_out)
        if ddp:
            dist.destroy_process_group()
    except data.DataError as e:                                 # missing or unreadable data: one line
        die(str(e))
    finally:
        if created and rank == 0 and os.path.isdir(args.out) and not os.listdir(args.out):
            os.rmdir(args.out)


if __name__ == '__main__':
    main()
