"""Fixtures and the one copy of every helper that more than one test module uses.

Test modules import the helpers under the names they always had (`from conftest import write_images`). This is the
only conftest.py: a second one (e.g. in experiments/) would replace this module as `conftest` in sys.modules.
"""
import math
import os
import zlib

import numpy as np
import pytest
import torch
import torchvision

import fid


@pytest.fixture(scope='module')
def one_thread():
    """Small tensors: on 2 busy cores a second intra-op thread only spins against other jobs (measured 3-30x
    slower). Modules opt in with `pytestmark = pytest.mark.usefixtures('one_thread')`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------- closed forms

def sqnorm(v):                                  # (B, ...) -> (B,)
    return v.flatten(1).pow(2).sum(1)


def dot(u, v):                                  # (B, ...), (B, ...) -> (B,)
    return (u * v).flatten(1).sum(1)


def vp_alpha_sigma(t):
    """VP with a linear beta in [0.1, 20]: alpha = exp(-1/2 int_0^t beta) = exp(-(0.1 t + 9.95 t^2) / 2),
    sigma = sqrt(1 - alpha^2). t a float or a tensor."""
    log_alpha = -0.5 * (0.1 * t + 0.5 * (20.0 - 0.1) * t ** 2)
    alpha = torch.exp(log_alpha) if torch.is_tensor(log_alpha) else math.exp(log_alpha)
    return alpha, (1 - alpha ** 2) ** 0.5


def ve_sigma(t):
    """VE / EDM defaults: sigma geometric from sigma_min = 0.002 at t = 0 to sigma_max = 80 at t = 1."""
    return 0.002 ** (1 - t) * 80.0 ** t


def frechet_of_samples(x, mu, sigma):
    """Frechet distance between the Gaussian fit of samples x (n, d) and N(mu, sigma), written without fid.py.

    ||mean - mu||^2 + Tr S + Tr sigma - 2 Tr (S sigma)^1/2 with S = X^T X / (n - 1), X the centred samples. S sigma
    has the nonzero eigenvalues of X sigma X^T / (n - 1) (PSD, n x n), so the trace of the root is the sum of their
    square roots: well posed when n < d, where sqrtm of the d x d product is not. float64 numpy throughout.
    """
    x, mu, sigma = np.asarray(x, np.float64), np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    centred = x - x.mean(0)
    inner = centred @ sigma @ centred.T / (len(x) - 1)
    eigval = np.linalg.eigvalsh((inner + inner.T) / 2).clip(min=0)
    return float(((x.mean(0) - mu) ** 2).sum() + (centred ** 2).sum() / (len(x) - 1) + np.trace(sigma)
                 - 2 * np.sqrt(eigval).sum())


# ---------------------------------------------------------------------------------------------------- files

def write_images(root, classes=3, per_class=12, size=16):
    """root/class{c}/NN.png: each class has its own dominant colour channel, so the classes are distinguishable."""
    g = torch.Generator().manual_seed(0)
    for c in range(classes):
        os.makedirs(os.path.join(root, f'class{c}'))
        for i in range(per_class):
            image = 0.3 * torch.rand(3, size, size, generator=g)
            image[c % 3] += 0.6
            torchvision.utils.save_image(image, os.path.join(root, f'class{c}', f'{i:02d}.png'))


def snapshot(folder):
    """{path: (bytes, mtime)} of every file under folder: equal snapshots mean nothing was written, not even the
    same bytes again."""
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob('*')) if p.is_file()}


def uint8(x):
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8 numpy, the PNG pixels (round half to even, as fid.py)."""
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def exit_code(main):
    """A command's main(argv) -> a function of *argv (str()-ed) run in-process that returns its exit code (0 when
    main returns); the same code path as the script without a 5 s torch import per call."""
    def run(*argv):
        try:
            main([str(a) for a in argv])
        except SystemExit as e:
            return e.code
        return 0
    return run


# ---------------------------------------------------------------------------------------------------- Inception

def random_inception_weights(seed=0, layout=None):
    """Random weights for the TF-FID Inception, scaled so that pool3 features are O(1) and BN is not the identity.

    layout: a state dict giving names, shapes and the integer buffers (default: fid.FIDInceptionV3's; pytorch-fid's
    own network gives the same names and shapes). Each tensor is drawn from its own generator seeded by (seed, CRC-32
    of its name), so the weights do not depend on the order of the keys or on which network lists them.
    """
    layout = fid.FIDInceptionV3().state_dict() if layout is None else layout
    state = {}
    for key, value in layout.items():
        g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
        if not value.is_floating_point():                       # num_batches_tracked
            state[key] = value.clone()
        elif value.dim() == 4:                                  # conv: He init
            state[key] = torch.randn(value.shape, generator=g) * (2 / value[0].numel()) ** 0.5
        elif key.endswith(('bn.weight', 'running_var')):
            state[key] = 0.8 + 0.4 * torch.rand(value.shape, generator=g)
        elif key.endswith(('bn.bias', 'running_mean')):
            state[key] = 0.2 * torch.rand(value.shape, generator=g) - 0.1
        elif key.startswith('fc.'):
            state[key] = 0.01 * torch.randn(value.shape, generator=g)
        else:
            raise KeyError(f'random_inception_weights: no rule for {key}')
    return state


@pytest.fixture(scope='session')
def hub_home(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds random_inception_weights(0) under the real file name."""
    home = tmp_path_factory.mktemp('torch_home')
    os.makedirs(home / 'hub' / 'checkpoints')
    torch.save(random_inception_weights(0), home / 'hub' / 'checkpoints' / fid.WEIGHTS_NAME)
    return home


@pytest.fixture(scope='session')
def inception_weights(hub_home):
    """The weights file of hub_home, for --weights / --fid-weights."""
    return hub_home / 'hub' / 'checkpoints' / fid.WEIGHTS_NAME


# ---------------------------------------------------------------------------------------------------- U-Net

def random_unet_weights(layout, seed=0):
    """Random weights for the ADM U-Net (models.UNet and torchcfm's UNetModelWrapper share names and shapes), scaled
    so that activations stay O(1) through every block and no layer is zero (a fresh net's output conv, res-block
    output convs and attention projections are zero-initialised and would hide the layers before them).

    layout: a state dict giving names and shapes. As random_inception_weights: each tensor from its own generator
    seeded by (seed, CRC-32 of its name), independent of the order of the keys and of torch's init functions.
    """
    state = {}
    for key, value in layout.items():
        g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
        if key == 'label_emb.weight':                           # (classes, 4 C): O(1) next to the time embedding
            state[key] = 0.5 * torch.randn(value.shape, generator=g)
        elif value.dim() >= 2:                                  # conv, conv1d, linear: variance 1 / fan-in
            state[key] = torch.randn(value.shape, generator=g) / value[0].numel() ** 0.5
        elif key.endswith('weight'):                            # GroupNorm scale (every other weight is >= 2-d)
            state[key] = 1 + 0.1 * torch.randn(value.shape, generator=g)
        elif key.endswith('bias'):
            state[key] = 0.1 * torch.randn(value.shape, generator=g)
        else:
            raise KeyError(f'random_unet_weights: no rule for {key}')
    return state
