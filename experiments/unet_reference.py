"""Writes tests/data/unet_reference.npz: outputs of torchcfm's own U-Net (UNetModelWrapper) for seeded inputs under
seeded random weights, so that the default `pytest` checks models.UNet's function (time embedding, res blocks,
attention, down/up sampling, label embedding) without torchcfm installed. Every torchcfm and official RealUID
checkpoint a user loads relies on that function.

Run once, with torchcfm in a scratch environment (it is not a dependency of this repository):

    python3 -m venv --system-site-packages /tmp/cfmenv
    /tmp/cfmenv/bin/pip install torchcfm                     # 1.0.7 was used
    OMP_NUM_THREADS=1 /tmp/cfmenv/bin/python experiments/unet_reference.py

For each of two configs, 'uncond' and 'cond' (128 channels, where torchcfm's GroupNorm(32, ch) and ours agree), the
file holds `{name}/config` (our model config as JSON), `{name}/layout` (torchcfm's state-dict keys and shapes in
order, JSON), `{name}/t` (4,) with 0 and 1 among them, `{name}/x` (4, 3, 16, 16) float32, `{name}/y` (cond only)
and `{name}/out` (4, 3, 16, 16) float32: torchcfm's net in eval mode with the weights
conftest.random_unet_weights(0, layout=its own state dict). It also prints how far models.UNet is from it in float32,
and how far torchcfm's float32 output is from ours in float64 (the tolerance of test_models.py comes from these
numbers). It refuses to replace an existing file, and writes the new one whole or not at all.
"""
import json
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'experiments')]
import cli  # noqa: E402  (experiments/cli.py)
import fid  # noqa: E402  (fid.write_atomic)
from conftest import random_unet_weights  # noqa: E402  (the test suite's weights recipe)
from models import build_model  # noqa: E402

PATH = os.path.join(ROOT, 'tests', 'data', 'unet_reference.npz')
BASE = dict(kind='unet', dim=[3, 16, 16], num_channels=128, dropout=0.0)
CONFIGS = {  # both exercise res blocks with and without a skip conv, attention, Downsample and Upsample
    'uncond': dict(BASE, num_res_blocks=1, channel_mult=[1, 2, 2], attention_resolutions='16,8', num_heads=4,
                   num_head_channels=64, num_classes=None),         # 16, 8, 4 pixels; 2 and 4 heads of 64 channels
    'cond': dict(BASE, num_res_blocks=2, channel_mult=[1, 2], attention_resolutions='8', num_heads=2,
                 num_head_channels=-1, num_classes=10)}             # 16, 8 pixels; 2 heads of 128 channels
T = [0.0, 0.3, 0.85, 1.0]
INSTALL = ('python3 -m venv --system-site-packages /tmp/cfmenv && /tmp/cfmenv/bin/pip install torchcfm, then run '
           'this script with /tmp/cfmenv/bin/python (see its docstring)')


def torchcfm_unet(config):
    from torchcfm.models.unet.unet import UNetModelWrapper       # main() checked that it imports
    kwargs = {k: v for k, v in config.items() if k not in ('kind', 'num_classes')}
    return UNetModelWrapper(**kwargs, class_cond=config['num_classes'] is not None,
                            num_classes=config['num_classes'] or 1000)


def reference(name, config, seed):
    net = torchcfm_unet(config).eval()
    net.load_state_dict(random_unet_weights(net.state_dict(), 0), strict=True)
    g = torch.Generator().manual_seed(seed)
    t, x = torch.tensor(T), torch.randn(len(T), *config['dim'], generator=g)
    y = torch.randint(0, config['num_classes'], (len(T),), generator=g) if config['num_classes'] else None
    with torch.no_grad():
        out = net(t, x, y)
        ours = build_model(config).eval()
        ours.load_state_dict(net.state_dict(), strict=True)        # our keys are torchcfm's: a strict load
        error = (ours(t, x, y) - out).abs().max().item()
        exact = ours.double()(t.double(), x.double(), y)            # torchcfm embeds t in float32 only
        error64 = (exact - out).abs().max().item()
    print(f'{name}: {sum(p.numel() for p in net.parameters()) / 1e6:.1f}M parameters, mean |out| '
          f'{out.abs().mean():.3f}, max |out| {out.abs().max():.3f}; max |models.UNet - torchcfm| {error:.2e}, '
          f'max |torchcfm - models.UNet in float64| {error64:.2e} (torchcfm\'s own float32 rounding)')
    layout = [[k, list(v.shape)] for k, v in net.state_dict().items()]        # the keys checkpoints are saved under
    arrays = {f'{name}/config': np.array(json.dumps(config)), f'{name}/layout': np.array(json.dumps(layout)),
              f'{name}/t': t.numpy(), f'{name}/x': x.numpy(),
              f'{name}/out': out.numpy()}
    if y is not None:
        arrays[f'{name}/y'] = y.numpy()
    return arrays


def main(argv=None):
    p, args = cli.reference_args('unet_reference.py', __doc__.split('\n\n')[0], PATH, argv)
    cli.require(p.prog, 'torchcfm.models.unet.unet', INSTALL)
    arrays = {}
    for seed, (name, config) in enumerate(CONFIGS.items()):
        arrays.update(reference(name, config, seed))
    fid.write_atomic(args.out, lambda f: np.savez_compressed(f, **arrays))     # whole or not at all
    print(f'{args.out}: {os.path.getsize(args.out) / 1e3:.0f} kB')


if __name__ == '__main__':
    torch.set_num_threads(1)
    main()
