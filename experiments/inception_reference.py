"""Writes tests/data/inception_pool3_reference.npz: pool3 features of pytorch-fid's own Inception network for fixed
images under seeded random weights, so that the default `pytest` checks fid.FIDInceptionV3's numerics (resize,
input range, the TF pooling quirks) without the real weights and without pytorch-fid installed.

Run once, with pytorch-fid in a scratch environment (it is not a dependency of this repository):

    python3 -m venv --system-site-packages /tmp/fidref
    /tmp/fidref/bin/pip install --no-deps pytorch-fid        # 0.3.0 was used
    OMP_NUM_THREADS=1 /tmp/fidref/bin/python experiments/inception_reference.py

The file holds `images` (2, 32, 32, 3) uint8, drawn from torch.Generator().manual_seed(0), and `features`
(2, 2048) float32: pytorch_fid.inception.InceptionV3([3]) (resize to 299, then 2x - 1) on images / 255, with the
weights conftest.random_inception_weights(0, layout=its own state dict). It refuses to replace an existing file, and
writes the new one whole or not at all.
"""
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'experiments')]
import cli  # noqa: E402  (experiments/cli.py)
import fid  # noqa: E402  (fid.write_atomic)
from conftest import random_inception_weights  # noqa: E402  (the test suite's weights recipe)

PATH = os.path.join(ROOT, 'tests', 'data', 'inception_pool3_reference.npz')
INSTALL = ('python3 -m venv --system-site-packages /tmp/fidref && /tmp/fidref/bin/pip install --no-deps pytorch-fid, '
           'then run this script with /tmp/fidref/bin/python (see its docstring)')


def main(argv=None):
    p, args = cli.reference_args('inception_reference.py', __doc__.split('\n\n')[0], PATH, argv)
    inception = cli.require(p.prog, 'pytorch_fid.inception', INSTALL)
    built = {}
    build = inception._inception_v3

    def capture(*args, **kwargs):                   # the network fid_inception_v3 builds and then loads weights into
        built['net'] = build(*args, **kwargs)
        return built['net']

    def weights(*args, **kwargs):                   # instead of the download: random weights in its own layout
        return random_inception_weights(0, layout=built['net'].state_dict())

    inception._inception_v3, inception.load_state_dict_from_url = capture, weights
    net = inception.InceptionV3([3]).eval()         # block 3: pool3, 2048 features; resize_input, normalize_input
    images = torch.randint(0, 256, (2, 32, 32, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        features = net(images.permute(0, 3, 1, 2).float() / 255)[0].flatten(1)
    fid.write_atomic(args.out, lambda f: np.savez_compressed(f, images=images.numpy(), features=features.numpy()))
    print(f'{args.out}: features of shape {tuple(features.shape)}, mean |f| {features.abs().mean():.3f}')


if __name__ == '__main__':
    torch.set_num_threads(1)
    main()
