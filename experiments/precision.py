"""The bf16 error of the U-Net against fp64, with models.GroupNorm (statistics in fp32, bf16 in and out) and with
the GroupNorm that autocast gives on CUDA (group_norm on autocast's fp32 list: a bf16 -> fp32 copy in, fp32 out).

    python experiments/precision.py            # the paper's U-Net (models.CIFAR10_UNET), batch 4, 1 CPU thread: ~20 s
    python experiments/precision.py --channels 32 --batch 2    # a small one, seconds

Same weights (torchcfm's init with the zero-initialised layers drawn N(0, 0.02), a stand-in for trained ones), same
inputs (x_t of flow matching at random t, random labels). Relative l2 error against the fp64 network of the output
f(t, x, y) and of the parameter gradient of a fixed random projection of it, for: fp32; bf16 autocast with ours;
bf16 autocast with CUDA autocast's GroupNorm. On the CPU autocast leaves group_norm in bf16, so the CUDA policy is
written out here (`cuda_policy_group_norm`): measured on the CPU, the same arithmetic as on the GPU up to kernels.
"""
import contextlib
import copy
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repo root
import models                                                   # noqa: E402
import cli                                                      # noqa: E402  (experiments/cli.py)


def cuda_policy_group_norm(self, x):
    # what torch.autocast('cuda', torch.bfloat16) does to nn.GroupNorm: input cast to fp32, output left fp32
    return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps)


def run(net, t, x, y, w, dtype, amp):
    """-> (output, parameter gradient of <output, w>) as float64."""
    net = copy.deepcopy(net).to(dtype)
    with torch.autocast('cpu', torch.bfloat16) if amp else contextlib.nullcontext():
        out = net(t.to(dtype), x.to(dtype), y)
    (out.double() * w).sum().backward()
    return out.detach().double(), torch.cat([p.grad.double().flatten() for p in net.parameters()])


def main(argv=None):
    p = cli.parser('precision.py', __doc__.split('\n')[0])
    p.add_argument('--channels', type=cli.COUNT, default=128,
                   help='128: the paper U-Net; less: the same layout, narrower')
    p.add_argument('--batch', type=cli.COUNT, default=4)
    p.add_argument('--seed', type=cli.NONNEG, default=0)
    p.add_argument('--threads', type=cli.COUNT, default=1)
    args = p.parse_args(argv)
    config = dict(models.CIFAR10_UNET, num_channels=args.channels, num_classes=10)
    if args.channels < 64:
        config.update(num_head_channels=-1, num_heads=4)
    try:                                                        # builds, before any compute (meta: no weights)
        with torch.device('meta'):
            models.build_model(config)
    except ValueError as e:
        p.error(f'--channels {args.channels}: {e}')
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    net = models.build_model(config)
    with torch.no_grad():
        for q in net.parameters():
            if not q.any():
                q.normal_(0, 0.02)
    t, x0, x1 = torch.rand(args.batch), torch.randn(args.batch, 3, 32, 32), torch.randn(args.batch, 3, 32, 32)
    x, y = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * x1, torch.randint(10, (args.batch,))
    w = torch.randn(args.batch, 3, 32, 32, dtype=torch.float64)
    ref_out, ref_grad = run(net, t, x, y, w, torch.float64, False)
    rel = lambda a, b: float((a - b).norm() / b.norm())
    print(f'precision.py: U-Net {args.channels} channels ({sum(q.numel() for q in net.parameters()) / 1e6:.2f}M '
          f'parameters), batch {args.batch}, relative l2 error against fp64')
    print(f'  {"":50s} {"output":>8s} {"gradient":>9s}')
    ours = models.GroupNorm.forward
    for name, dtype, amp, group_norm in [('fp32', torch.float32, False, ours),
                                         ('bf16 autocast, models.GroupNorm (now)', torch.float32, True, ours),
                                         ("bf16 autocast, CUDA autocast's GroupNorm (before)", torch.float32, True,
                                          cuda_policy_group_norm)]:
        models.GroupNorm.forward = group_norm
        try:
            out, grad = run(net, t, x, y, w, dtype, amp)
        finally:
            models.GroupNorm.forward = ours
        print(f'  {name:50s} {rel(out, ref_out):8.2e} {rel(grad, ref_grad):9.2e}')


if __name__ == '__main__':
    main()
