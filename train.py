"""RealUID: distill a matching-model teacher into a one-step generator with real data (arXiv 2509.22459).

    python train.py --alpha 0.98 --beta 0.96 --cond                 # conditional CIFAR-10 (Table 2 setting)
    python train.py --dataset toy --alpha 0.98 --beta 0.96 --cond   # 2-D toy, about a minute on a laptop CPU
    torchrun --nproc_per_node=8 train.py ...                         # DDP; --batch-size stays the global batch

Phases: (1) teacher: --teacher PATH (ours, torchcfm or official RealUID checkpoints), or train one with the
UM loss (Def. 1); (2) distillation, Algorithm 1: K fake updates on the RealUM loss (Def. 2) per generator
update on the RealUID loss (eq. 17); (3) evaluation every --eval-every steps and at the end: sample PNGs,
metrics.jsonl, and an atomic checkpoint from which --resume continues exactly.
"""
import argparse
import contextlib
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import fid
import losses
import models
from interpolants import INTERPOLANTS, make_interpolant

# Per-dataset defaults for every flag left unset: the paper's (App. D.1, D.3) for images, a CPU budget for toy.
PRESETS = {
    'cifar10': dict(image_size=32, batch_size=256, lr=3e-5, steps=400_000, teacher_steps=400_000, teacher_lr=2e-4,
                    teacher_batch_size=128, eval_every=10_000, fid_samples=50_000, channels=128),
    'celeba': dict(image_size=64, batch_size=64, lr=5e-6, steps=800_000, teacher_steps=400_000, teacher_lr=2e-4,
                   teacher_batch_size=64, eval_every=10_000, fid_samples=50_000, channels=128),
    'folder': dict(image_size=32, batch_size=256, lr=3e-5, steps=400_000, teacher_steps=400_000, teacher_lr=2e-4,
                   teacher_batch_size=128, eval_every=10_000, fid_samples=50_000, channels=128),
    'toy': dict(batch_size=256, lr=1e-3, steps=600, teacher_steps=3_000, teacher_lr=2e-3, teacher_batch_size=512,
                eval_every=300, fid_samples=0, warmup=100),
}


class Parser(argparse.ArgumentParser):
    def error(self, message):                                   # one line, no usage dump
        die(message)


def get_args(argv=None):
    p = Parser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument_group('method').add_argument
    a('--alpha', type=float, default=1.0, help='RealUM weight of generated data (Def. 2); 1 with beta=1 is UID')
    a('--beta', type=float, default=1.0, help='RealUM target weight; beta/alpha != 1 lets real data correct the teacher')
    a('--gamma', type=float, default=None, help='General RealUID quadratic split (Def. 3); default alpha')
    a('--param', choices=['standard', 'beta'], default='standard', help='delta = f*-f or beta(f*-f) (App. A.2)')
    a('--sid-alpha', type=float, default=0.5, help='RealSiD generator coefficient (eq. 34); 0.5 is exact RealUID')
    a('--gan', type=float, nargs=2, metavar=('GEN_COEF', 'DISC_COEF'), default=None,
      help='UID+GAN baseline (eq. 8): adversarial loss weights for the generator and the discriminator head')
    a('--cond', action='store_true', help='class-conditional teacher, fake and generator')
    a('--interpolant', choices=sorted(INTERPOLANTS), default='fm')
    a = p.add_argument_group('data').add_argument
    a('--dataset', choices=['cifar10', 'celeba', 'folder', 'toy'], default='cifar10')
    a('--data-dir', default='./data', help='CIFAR-10 root, or the image folder for folder/celeba')
    a('--image-size', type=int, default=None)
    a('--workers', type=int, default=4, help='DataLoader workers for image folders')
    a = p.add_argument_group('teacher').add_argument
    a('--teacher', default=None, help='teacher checkpoint; without it one is trained and saved to OUT/teacher.pt')
    a('--teacher-key', default=None, help="EMA decay to load from an official checkpoint's ema_models (default: the "
      "largest; the official distillation used 0.999)")
    a('--teacher-steps', type=int, default=None)
    a('--teacher-lr', type=float, default=None)
    a('--teacher-batch-size', type=int, default=None)
    a('--teacher-ema', type=float, default=0.999, help='EMA decay of the trained teacher (the saved weights)')
    a('--nfe', type=int, default=100, help='teacher sampler steps for its reference samples')
    a = p.add_argument_group('distillation').add_argument
    a('--steps', type=int, default=None, help='generator updates; each follows K fake updates')
    a('--k', type=int, default=5, help='fake updates per generator update (Algorithm 1)')
    a('--batch-size', type=int, default=None, help='global batch over all ranks')
    a('--lr', type=float, default=None, help='Adam learning rate of generator and fake')
    a('--warmup', type=int, default=None, help='linear learning-rate warm-up steps (default 500, 0 for --finetune)')
    a('--clip', type=float, default=1.0, help='gradient-norm clipping of both networks')
    a('--ema', type=float, nargs='+', default=[0.999, 0.9996, 0.9999], help='EMA decays of the generator')
    a('--finetune', default=None, metavar='CKPT', help='fine-tuning stage: generator from CKPT\'s EMA, fake from teacher')
    a = p.add_argument_group('model size (when a teacher is trained here)').add_argument
    a('--channels', type=int, default=None, help='U-Net base channels')
    a('--channel-mult', type=int, nargs='+', default=[1, 2, 2, 2])
    a('--res-blocks', type=int, default=2)
    a('--attn', default='16', help='U-Net attention resolutions, e.g. 16 or 16,8')
    a('--hidden', type=int, default=256, help='MLP width (toy)')
    a('--layers', type=int, default=3, help='MLP depth (toy)')
    a = p.add_argument_group('run').add_argument
    a('--eval-every', type=int, default=None)
    a('--eval-samples', type=int, default=4000, help='samples for the cheap metrics (toy distances, pixel FD)')
    a('--fid-samples', type=int, default=None, help='samples for FID (paper: 50 000); 0 disables FID')
    a('--fid-weights', default=None, help='pt_inception-2015-12-05-6726825d.pth (default: torch hub cache)')
    a('--out', default='runs/realuid')
    a('--seed', type=int, default=0)
    a('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    a('--amp', choices=['none', 'bf16'], default='none', help='bf16 autocast of all forwards (fp32 weights, losses)')
    a('--compile', action='store_true', help='torch.compile the networks')
    a('--resume', action='store_true', help='continue exactly from OUT/ckpt.pt')
    a('--log-every', type=float, default=5.0, help='seconds between progress lines')
    a('--nan-at', type=int, default=None, help=argparse.SUPPRESS)  # test hook: inject a NaN loss at this step
    args = p.parse_args(argv)
    for key, value in PRESETS[args.dataset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.warmup is None:
        args.warmup = 0 if args.finetune else 500
    if args.finetune and '--lr' not in (argv if argv is not None else sys.argv):
        args.lr = 1e-5                                          # App. D.2: fine-tuning at lr 1e-5, no warm-up
    try:
        losses.check_coefficients(args.alpha, args.beta, args.gamma)
    except ValueError as e:
        p.error(str(e))
    if not 0 < args.sid_alpha:
        p.error(f'--sid-alpha must be positive, got {args.sid_alpha}')
    if args.k < 1 or args.steps < 0 or args.batch_size < 1:
        p.error('--k and --batch-size must be >= 1 and --steps >= 0')
    if args.teacher and not os.path.isfile(args.teacher):
        p.error(f'teacher checkpoint {args.teacher} not found')
    if args.finetune and not os.path.isfile(args.finetune):
        p.error(f'--finetune checkpoint {args.finetune} not found')
    return args


def die(msg, code=2):
    print(f'train.py: error: {msg}', file=sys.stderr)
    sys.exit(code)


# ---------------------------------------------------------------------------------------------------- data

def toy_data(n, seed, modes=8, radius=2.0, std=0.15):
    """8 Gaussians on a circle; the label is the mode. -> x (n, 2), y (n,)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(modes, (n,), generator=g)
    angle = 2 * math.pi * y / modes
    return radius * torch.stack([angle.cos(), angle.sin()], 1) + std * torch.randn(n, 2, generator=g), y


class FlatFolder(torch.utils.data.Dataset):
    """A folder of images without class subfolders (the official CelebA layout); label 0."""
    def __init__(self, root, transform):
        self.files = sorted(os.path.join(root, f) for f in os.listdir(root)
                            if os.path.splitext(f)[1].lower() in fid.IMAGE_EXTENSIONS)
        self.transform = transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return self.transform(torchvision.datasets.folder.default_loader(self.files[i])), 0


def make_dataset(args):
    """-> (map-style dataset of (x, y), x shape, num_classes). Images in [-1, 1]; flips happen in Batches."""
    if args.dataset == 'toy':
        x, y = toy_data(20_000, seed=1234)
        return torch.utils.data.TensorDataset(x, y), (2,), 8
    size = args.image_size
    tf = torchvision.transforms
    transform = tf.Compose([tf.Resize(size), tf.CenterCrop(size), tf.ToTensor(), tf.Normalize([0.5] * 3, [0.5] * 3)])
    if args.dataset == 'cifar10':
        try:
            data = torchvision.datasets.CIFAR10(args.data_dir, train=True, transform=transform, download=False)
        except RuntimeError:
            try:
                data = torchvision.datasets.CIFAR10(args.data_dir, train=True, transform=transform, download=True)
            except Exception:
                die(f'CIFAR-10 not found in {args.data_dir} and it cannot be downloaded: put the extracted '
                    f'cifar-10-batches-py/ folder (from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) '
                    f'there, or pass --data-dir')
        return data, (3, size, size), 10
    if not os.path.isdir(args.data_dir):
        die(f'image folder {args.data_dir} does not exist')
    subdirs = [d for d in os.scandir(args.data_dir) if d.is_dir()]
    if args.dataset == 'folder' and subdirs:
        try:
            data = torchvision.datasets.ImageFolder(args.data_dir, transform=transform)
        except (FileNotFoundError, RuntimeError):
            die(f'no images found in the class folders of {args.data_dir}')
        return data, (3, size, size), len(data.classes)
    data = FlatFolder(args.data_dir, transform)
    if len(data) == 0:
        die(f'no images ({", ".join(sorted(fid.IMAGE_EXTENSIONS))}) found in {args.data_dir}')
    if args.cond:
        die(f'--cond needs class subfolders in {args.data_dir}')
    return data, (3, size, size), 1


class Batches:
    """Endless, resumable batches: an epoch-seeded permutation sharded over ranks, flips drawn here.

    The order depends only on (seed, epoch, position), so a resumed run sees exactly the same batches.
    """
    def __init__(self, dataset, batch_size, seed, rank, world, device, flip, workers=0):
        self.dataset, self.batch_size, self.seed, self.rank, self.world = dataset, batch_size, seed, rank, world
        self.device, self.flip, self.workers = device, flip, workers
        self.tensors = dataset.tensors if isinstance(dataset, torch.utils.data.TensorDataset) else None
        self.epoch, self.pos, self.iterator = 0, 0, None
        self.flip_rng = torch.Generator().manual_seed(seed * 1000 + rank)

    def _epoch_batches(self):
        n = len(self.dataset)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + 7919 * self.epoch))
        local = self.batch_size // self.world
        for start in range(self.pos * self.batch_size, n - self.batch_size + 1, self.batch_size):
            yield order[start + self.rank * local: start + (self.rank + 1) * local].tolist()

    def _iterate(self):
        while True:
            if self.tensors is not None:
                for idx in self._epoch_batches():
                    yield self.tensors[0][idx], self.tensors[1][idx]
            else:   # generator=: each new iterator (every epoch, and on resume) draws a seed there, not globally
                yield from torch.utils.data.DataLoader(self.dataset, batch_sampler=list(self._epoch_batches()),
                                                       num_workers=self.workers, pin_memory=self.device.type == 'cuda',
                                                       generator=torch.Generator())
            self.epoch, self.pos = self.epoch + 1, 0

    def next(self):
        if len(self.dataset) < self.batch_size:
            die(f'the dataset has {len(self.dataset)} items, fewer than one batch of {self.batch_size}')
        if self.iterator is None:
            self.iterator = self._iterate()
        x, y = next(self.iterator)
        self.pos += 1
        if self.flip:                                           # random horizontal flip (CIFAR-10 training)
            mask = torch.rand(len(x), generator=self.flip_rng) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x.to(self.device, non_blocking=True), torch.as_tensor(y).to(self.device, non_blocking=True)

    def state_dict(self):
        return dict(epoch=self.epoch, pos=self.pos, flip_rng=self.flip_rng.get_state())

    def load_state_dict(self, state):
        self.epoch, self.pos, self.iterator = state['epoch'], state['pos'], None
        self.flip_rng.set_state(state['flip_rng'])


# ---------------------------------------------------------------------------------------------------- helpers

class Discriminator(nn.Module):
    """UID+GAN baseline (eq. 8): a logit head on the fake network's bottleneck features, as in SiDA / DMD2."""
    def __init__(self, fake):
        super().__init__()
        body = fake.net if isinstance(fake, models.TimeFlip) else fake
        site = body.middle_block if hasattr(body, 'middle_block') else (list(body.hidden) or [body.inp])[-1]
        site.register_forward_hook(lambda module, inputs, output: setattr(self, 'features', output))
        width = site[-1].out_layers[-1].out_channels if hasattr(body, 'middle_block') else site.out_features
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(width, 1))
        self.fake = [fake]                                  # not a submodule: the fake owns its parameters

    def forward(self, t, x, y):                             # runs the fake, reads its bottleneck -> (B,) logits
        self.fake[0](t, x, y)
        h = self.features
        return self.head(h.mean((2, 3)) if h.dim() == 4 else h).squeeze(1)


def warmup_schedule(opt, warmup):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)


def optimizer_step(loss, opt, sched, params, clip):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    sched.step()
    return grad_norm


def autocast(args, device):
    """--amp bf16: bf16 forwards; weights, optimizer states and the losses (fp32 targets promote) stay fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if args.amp == 'bf16' else contextlib.nullcontext()


def save_atomic(obj, path):
    """torch.save to a temporary file, then rename: the previous file stays intact until the new one is complete."""
    torch.save(obj, path + '.tmp')
    os.replace(path + '.tmp', path)


def rng_state(device):
    return dict(torch=torch.get_rng_state(), cuda=torch.cuda.get_rng_state_all() if device.type == 'cuda' else None)


def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    if state['cuda'] is not None:
        torch.cuda.set_rng_state_all(state['cuda'])


def class_labels(n, num_classes, device, generator=None):
    return torch.randint(num_classes, (n,), device=device, generator=generator) if num_classes else None


# ---------------------------------------------------------------------------------------------------- evaluation

def sliced_wasserstein(x, y, projections=256, seed=0):
    """Sliced 2-Wasserstein distance between equal-size point clouds (sensitive to missing modes)."""
    theta = torch.randn(x.shape[1], projections, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    theta = theta / theta.norm(dim=0)
    px, py = (x @ theta).sort(0).values, (y @ theta).sort(0).values
    return float(((px - py) ** 2).mean().sqrt())


def stats(x):
    x = x.double().flatten(1).cpu().numpy()
    return x.mean(0), np.cov(x, rowvar=False)


def scatter_png(x, y, path, extent=3.5, size=256):
    """2-D points as a PNG without matplotlib: one colour per class on white."""
    palette = torch.tensor([[.9, .1, .1], [.1, .5, .9], [.1, .7, .2], [.9, .6, 0], [.6, .2, .8], [0, .7, .7],
                            [.5, .3, .1], [.9, .3, .6], [.3, .3, .3], [.6, .6, 0]])
    image = torch.ones(3, size, size)
    ij = ((x.cpu().float() + extent) / (2 * extent) * (size - 1)).round().long()
    keep = ((ij >= 0) & (ij < size)).all(1)
    colour = palette[(y.cpu() if y is not None else torch.zeros(len(x), dtype=torch.long))[keep] % len(palette)]
    image[:, size - 1 - ij[keep, 1], ij[keep, 0]] = colour.T
    torchvision.utils.save_image(image, path)


class Evaluator:
    """Samples, PNGs and metrics; draws from its own seeded generator so training randomness is untouched."""
    def __init__(self, args, dataset, shape, num_classes, interp, device, log):
        self.args, self.shape, self.interp, self.device, self.log = args, shape, interp, device, log
        self.num_classes = num_classes if args.cond else None
        self.toy = args.dataset == 'toy'
        n = args.eval_samples
        if self.toy:
            self.ref, _ = toy_data(n, seed=4321)                # held-out real samples
        else:
            idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:n].tolist()
            self.ref = torch.stack([dataset[i][0] for i in idx])
        self.ref_stats = stats(self.ref if self.toy else F.avg_pool2d(self.ref, self.ref.shape[-1] // 8))
        self.inception, self.fid_ref = None, None
        if args.fid_samples and not self.toy:
            try:
                self.inception = fid.load_inception(args.fid_weights, device)
                cache = os.path.join(args.data_dir, 'fid_stats') if os.access(args.data_dir, os.W_OK) else args.out
                loader = torch.utils.data.DataLoader(dataset, batch_size=250, num_workers=args.workers)
                self.fid_ref = fid.dataset_stats(args.dataset, loader, cache, args.image_size, net=self.inception,
                                                 device=device)
            except fid.InceptionWeightsNotFound as e:
                log.line(f'FID disabled: {e}')

    def noise(self, n, g):
        labels = torch.arange(n, device=self.device) % self.num_classes if self.num_classes else None
        return self.interp.prior((n, *self.shape), self.device, g), labels

    @torch.no_grad()
    def sample(self, fn, n, seed, batch=500):
        g = torch.Generator(self.device).manual_seed(seed)
        out = [fn(*self.noise(min(batch, n - i), g)) for i in range(0, n, batch)]
        return torch.cat(out).float().cpu()

    @torch.no_grad()
    def __call__(self, name, fn, step):
        """fn(z, y) -> samples. Writes OUT/samples_{name}.png and returns {metric: value}."""
        args, path = self.args, os.path.join(self.args.out, f'samples_{name}.png')
        x = self.sample(fn, args.eval_samples, seed=1)
        labels = torch.arange(len(x)) % self.num_classes if self.num_classes else None
        if self.toy:
            scatter_png(x, labels, path)
            return dict(fd=fid.frechet_distance(*stats(x), *self.ref_stats),
                        swd=sliced_wasserstein(x.double(), self.ref.double()))
        rows = self.num_classes or 10                           # one row per class with --cond
        grid = x[:rows * 10] if not self.num_classes else torch.cat([x[c::self.num_classes][:10] for c in range(rows)])
        torchvision.utils.save_image(grid * 0.5 + 0.5, path, nrow=10)
        metrics = dict(fd_pix8=fid.frechet_distance(*stats(F.avg_pool2d(x, x.shape[-1] // 8)), *self.ref_stats))
        if self.fid_ref is not None:
            t0 = time.time()
            g = torch.Generator(self.device).manual_seed(2)
            mu, sigma = fid.generator_stats(lambda n, y: fn(self.interp.prior((n, *self.shape), self.device, g), y),
                                            args.fid_samples, 250, self.num_classes, self.inception, self.device)
            metrics['fid'] = fid.frechet_distance(mu, sigma, *self.fid_ref)
            self.log.line(f'FID of {name} over {args.fid_samples} samples took {time.time() - t0:.0f}s')
        return metrics


class Log:
    """Progress lines and OUT/metrics.jsonl, on rank 0 only."""
    def __init__(self, out, active):
        self.active, self.path = active, os.path.join(out, 'metrics.jsonl')

    def line(self, msg):
        if self.active:
            print(msg, flush=True)

    def record(self, **entry):
        if self.active:
            with open(self.path, 'a') as f:
                f.write(json.dumps(entry) + '\n')
            self.line(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in flat(entry).items()))


def flat(d, prefix=''):
    out = {}
    for k, v in d.items():
        out.update(flat(v, f'{prefix}{k}/') if isinstance(v, dict) else {f'{prefix}{k}': v})
    return out


class Progress:
    def __init__(self, total, every, log, start=0):
        self.total, self.every, self.log, self.start, self.t0, self.last = total, every, log, start, time.time(), 0

    def rate(self, step):
        return (step - self.start) / max(time.time() - self.t0, 1e-9)

    def __call__(self, phase, step, **values):
        if time.time() - self.last < self.every and step != self.total:
            return
        self.last, rate = time.time(), self.rate(step)
        eta = (self.total - step) / max(rate, 1e-9)
        vals = ' '.join(f'{k} {v:.4g}' for k, v in values.items())
        self.log.line(f'{phase} {step}/{self.total} | {vals} | {rate:.2f} it/s | ETA {eta / 60:.1f} min')


def check_finite(step, **named):
    for name, value in named.items():
        if not math.isfinite(value):
            raise FloatingPointError(f'non-finite {name} loss ({value}) at step {step}')


# ---------------------------------------------------------------------------------------------------- phases

def model_config(args, shape, num_classes):
    if args.dataset == 'toy':
        return dict(kind='mlp', dim=shape[0], hidden=args.hidden, num_layers=args.layers,
                    num_classes=num_classes if args.cond else None)
    heads = dict(num_head_channels=64) if args.channels >= 64 else dict(num_head_channels=-1, num_heads=4)
    return dict(kind='unet', dim=list(shape), num_channels=args.channels, num_res_blocks=args.res_blocks,
                channel_mult=list(args.channel_mult), attention_resolutions=args.attn, dropout=0.0,
                num_classes=num_classes if args.cond else None, **heads)


def wrap(net, args, rank_device, ddp):
    """Optionally compile, then DDP-wrap a network whose parameters train; returns the module to call."""
    if args.compile:
        net = torch.compile(net)
    if ddp:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[rank_device.index] if rank_device.type == 'cuda' else None)
    return net


def train_teacher(args, dataset, shape, num_classes, interp, device, ddp, rank, world, log):
    """Phase 1: minimize the UM loss (Def. 1) on real data; saves the EMA weights to OUT/teacher.pt."""
    config = model_config(args, shape, num_classes)
    net = models.build_model(config).to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    model = wrap(net, args, device, ddp)
    opt = torch.optim.Adam(net.parameters(), lr=args.teacher_lr)
    sched = warmup_schedule(opt, min(args.warmup, args.teacher_steps // 10))
    data = Batches(dataset, args.teacher_batch_size, args.seed + 1, rank, world, device,
                   flip=args.dataset == 'cifar10', workers=args.workers)
    progress = Progress(args.teacher_steps, args.log_every, log)
    for step in range(1, args.teacher_steps + 1):
        x, y = data.next()
        with autocast(args, device):
            loss = losses.um_loss(model, interp, x, y if args.cond else None)
        optimizer_step(loss, opt, sched, net.parameters(), args.clip)
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p, 1 - args.teacher_ema)
        check_finite(step, teacher=loss.item())
        progress('teacher', step, loss=loss.item())
    path = os.path.join(args.out, 'teacher.pt')
    if rank == 0:
        models.save_teacher(path, ema, config, extra=dict(config=dict(args=vars(args), steps=args.teacher_steps)))
    log.line(f'teacher: {args.teacher_steps} UM steps, saved to {path}')
    return path


class Distiller:
    """Algorithm 1's state and its two updates: generator (from the teacher), fake (random), EMAs, optimizers.

    fake_step: minimize RealUM (Def. 2) with the generator under no_grad and one fused fake forward on the
    generated + real batch. generator_step: minimize the theta-terms of eq. 17 with the fake's (and the
    teacher's) parameters frozen, so no gradient is accumulated for them.
    """
    def __init__(self, args, teacher, model_config, interp, shape, num_classes, device, ddp=False):
        self.args, self.interp, self.shape, self.device = args, interp, shape, device
        self.num_classes = num_classes if args.cond else None
        self.gen_raw = models.Generator(copy.deepcopy(teacher).requires_grad_(True).train(), interp)
        self.fake_raw = models.build_model(model_config).to(device)
        if args.finetune:                                       # App. D.2: generator from an EMA, fake from teacher
            state = torch.load(args.finetune, map_location='cpu', weights_only=True)
            if not state.get('emas'):
                die(f'{args.finetune} has no generator EMAs (expected a train.py ckpt.pt)')
            self.gen_raw.load_state_dict(state['emas'][max(state['emas'], key=float)])
            self.fake_raw.load_state_dict(teacher.state_dict())
        for m in (*self.gen_raw.modules(), *self.fake_raw.modules()):
            if isinstance(m, nn.Dropout):                       # App. D.1: no dropout in generator and fake
                m.p = 0.0
        if args.gan and ddp:
            die('--gan is not supported under torchrun (the discriminator reads the fake through a hook)')
        self.disc = Discriminator(self.fake_raw).to(device) if args.gan else None
        self.fake_side = nn.ModuleList([self.fake_raw] + ([self.disc.head] if self.disc else []))
        self.gen, self.fake = wrap(self.gen_raw, args, device, ddp), wrap(self.fake_raw, args, device, ddp)
        self.teacher = torch.compile(teacher) if args.compile else teacher
        self.emas = {d: copy.deepcopy(self.gen_raw).requires_grad_(False) for d in args.ema}
        adam = dict(lr=args.lr, betas=(0.0, 0.999))             # App. D.1: beta1 = 0 is crucial for the min-max
        self.opt_fake = torch.optim.Adam(self.fake_side.parameters(), **adam)
        self.opt_gen = torch.optim.Adam(self.gen_raw.parameters(), **adam)
        self.sched_fake = warmup_schedule(self.opt_fake, args.warmup)
        self.sched_gen = warmup_schedule(self.opt_gen, args.warmup)
        self.use_real = args.alpha < 1 or (args.gamma is not None and args.gamma < 1) or args.gan is not None

    def noise(self, n):
        y = class_labels(n, self.num_classes, self.device)
        return self.interp.prior((n, *self.shape), self.device), y

    def gan_noised(self, x):                                    # App. D.1: GAN on slightly noised data, t in [0, 0.2]
        t = 0.2 * torch.rand(len(x), device=x.device)
        return t, self.interp.sample(x, t=t)[1]

    def fake_step(self, n, x_real=None, y_real=None, nan=False):
        args = self.args
        z, y_gen = self.noise(n)
        with torch.no_grad(), autocast(args, self.device):
            x_gen = self.gen_raw(z, y_gen).float()
        y_real = y_real if args.cond else None
        with autocast(args, self.device):
            if args.gamma is None and args.param == 'standard':
                loss = losses.realum_loss(self.fake, self.interp, x_gen, x_real, args.alpha, args.beta, y_gen, y_real)
            else:                                               # Def. 3: the fake maximizes the General RealUID loss
                loss = -losses.general_realuid_loss(self.teacher, self.fake, self.interp, x_gen, x_real, args.alpha,
                                                    args.beta, args.gamma, args.param, y_gen, y_real)
            if self.disc:
                logits_real, logits_gen = self.disc(*self.gan_noised(x_real), y_real), self.disc(*self.gan_noised(x_gen), y_gen)
                loss = loss + args.gan[1] * losses.gan_discriminator_loss(logits_real, logits_gen)
        if nan:
            loss = loss * float('nan')
        optimizer_step(loss, self.opt_fake, self.sched_fake, self.fake_side.parameters(), args.clip)
        return loss.detach()

    def generator_step(self, n):
        args = self.args
        self.fake_side.requires_grad_(False)
        z, y_gen = self.noise(n)
        with autocast(args, self.device):
            x_gen = self.gen(z, y_gen).float()
            loss = losses.realuid_generator_loss(self.teacher, self.fake_raw, self.interp, x_gen, args.alpha, args.beta,
                                                 y_gen, sid_alpha=args.sid_alpha, gamma=args.gamma, param=args.param)
            if self.disc:
                loss = loss + args.gan[0] * losses.gan_generator_loss(self.disc(*self.gan_noised(x_gen), y_gen))
        grad_norm = optimizer_step(loss, self.opt_gen, self.sched_gen, self.gen_raw.parameters(), args.clip)
        self.fake_side.requires_grad_(True)
        with torch.no_grad():
            for decay, ema in self.emas.items():
                for p_ema, p in zip(ema.parameters(), self.gen_raw.parameters()):
                    p_ema.lerp_(p, 1 - decay)
        return loss.detach(), grad_norm.detach()

    STATE = ('gen_raw', 'fake_side', 'opt_fake', 'opt_gen', 'sched_fake', 'sched_gen')

    def state_dict(self):
        return {**{k: getattr(self, k).state_dict() for k in self.STATE},
                'emas': {str(d): m.state_dict() for d, m in self.emas.items()}}

    def load_state_dict(self, state):
        for k in self.STATE:
            getattr(self, k).load_state_dict(state[k])
        for d, m in self.emas.items():
            m.load_state_dict(state['emas'][str(d)])


def distill(args, teacher, teacher_info, dataset, shape, num_classes, interp, device, ddp, rank, world, log):
    """Phase 2 (Algorithm 1: K fake steps per generator step) and phase 3 (evaluation, checkpoints)."""
    ckpt_path = os.path.join(args.out, 'ckpt.pt')
    s = Distiller(args, teacher, teacher_info['config'], interp, shape, num_classes, device, ddp)
    data = Batches(dataset, args.batch_size, args.seed, rank, world, device, flip=args.dataset == 'cifar10',
                   workers=args.workers)
    local_batch, start = args.batch_size // world, 0
    # before the resume restores the RNG streams: the FID reference loader draws from them
    evaluator = Evaluator(args, dataset, shape, num_classes, interp, device, log) if rank == 0 else None
    if rank == 0 and not os.path.isfile(os.path.join(args.out, 'samples_teacher.png')):
        t0 = time.time()
        g = torch.Generator(device).manual_seed(3)             # the SDE sampler's noise (bridge) is seeded too
        sampler = lambda z, y: interp.generate(s.teacher, z, y, steps=args.nfe, generator=g)
        log.record(step=0, phase='teacher', metrics={f'teacher_nfe{args.nfe}': evaluator('teacher', sampler, 0)},
                   seconds=time.time() - t0)
    if args.resume and os.path.isfile(ckpt_path):
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        s.load_state_dict(ckpt['distiller'])
        data.load_state_dict(ckpt['data'][rank])
        set_rng_state(ckpt['rng'][rank])
        start = ckpt['step']
        log.line(f'resumed from {ckpt_path} at step {start}')
    elif args.resume:
        log.line(f'--resume: no {ckpt_path} yet, starting from step 0')

    def checkpoint(step):
        states = [dict(data=data.state_dict(), rng=rng_state(device))]
        if ddp:                                                 # every rank's data position and RNG streams
            states = [None] * world
            dist.all_gather_object(states, dict(data=data.state_dict(), rng=rng_state(device)))
        if rank == 0:
            save_atomic(dict(step=step, config=vars(args), model=teacher_info['config'], distiller=s.state_dict(),
                             data=[x['data'] for x in states], rng=[x['rng'] for x in states]), ckpt_path)

    def evaluate(step, running, rate):
        if rank == 0:                                           # at step 0 the EMAs equal the generator
            nets = {'generator': s.gen_raw, **({f'ema{d}': m for d, m in s.emas.items()} if step else {})}
            metrics = {name: evaluator(name, net.eval(), step) for name, net in nets.items()}
            s.gen_raw.train()
            log.record(step=step, phase='distill', losses=running, metrics=metrics, it_per_s=rate)

    if start == 0:
        evaluate(0, {}, 0.0)                                    # the generator at its initialisation
    progress, sums, count = Progress(args.steps, args.log_every, log, start), {}, 0
    for step in range(start + 1, args.steps + 1):
        for _ in range(args.k):
            x_real, y_real = data.next() if s.use_real else (None, None)
            loss_fake = s.fake_step(local_batch, x_real, y_real, nan=args.nan_at == step)
        loss_gen, grad_norm = s.generator_step(local_batch)
        values = dict(fake=loss_fake.item(), gen=loss_gen.item(), gen_grad=grad_norm.item())
        try:
            check_finite(step, **values)
        except FloatingPointError as e:
            kept = f'; the last good checkpoint is kept at {ckpt_path}' if os.path.isfile(ckpt_path) else ''
            die(f'{e}{kept}', code=3)
        sums, count = {k: sums.get(k, 0.0) + v for k, v in values.items()}, count + 1
        progress('distill', step, **values)
        if step % args.eval_every == 0 or step == args.steps:
            checkpoint(step)
            evaluate(step, {k: v / count for k, v in sums.items()}, progress.rate(step))
            sums, count = {}, 0
    if args.steps == start:
        checkpoint(start)
    return s


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
    torch.manual_seed(args.seed + rank)
    os.makedirs(args.out, exist_ok=True)
    log = Log(args.out, rank == 0)
    interp = make_interpolant(args.interpolant)
    dataset, shape, num_classes = make_dataset(args)
    log.line(f'{args.dataset}: {len(dataset)} items of shape {shape}, {num_classes} classes | alpha={args.alpha} '
             f'beta={args.beta} | {world} rank(s) on {device} | out {args.out}')

    teacher_path = args.teacher or os.path.join(args.out, 'teacher.pt')
    if not args.teacher and not os.path.isfile(teacher_path):
        try:
            train_teacher(args, dataset, shape, num_classes, interp, device, ddp, rank, world, log)
        except FloatingPointError as e:                         # nothing is saved: the teacher restarts next time
            die(f'teacher training: {e}', code=3)
        if ddp:
            dist.barrier()                                      # every rank then loads rank 0's file: one teacher
    try:
        teacher, info = models.load_teacher(teacher_path, device, ema_key=args.teacher_key)
    except ValueError as e:
        die(str(e))
    teacher_classes = getattr(getattr(teacher, 'net', teacher), 'num_classes', None)
    if args.cond and teacher_classes is None:
        die(f'--cond needs a class-conditional teacher; {teacher_path} is unconditional')
    if not args.cond and teacher_classes is not None:
        die(f'{teacher_path} is class-conditional ({teacher_classes} classes): pass --cond')
    log.line(f'teacher: {teacher_path} ({info["format"]}{", time-flipped" if info["flipped"] else ""})')
    distill(args, teacher, info, dataset, shape, num_classes, interp, device, ddp, rank, world, log)
    if ddp:
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
