"""Fixtures and the one copy of every helper that more than one test module uses.

Test modules import the helpers under the names they always had (`from conftest import write_images`). This is the
only conftest.py: a second one (e.g. in experiments/) would replace this module as `conftest` in sys.modules.
"""
import math
import os
import pickle
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

import fid
from interpolants import make_interpolant


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


# ------------------------------------------------------------------------- float64 cases of the losses and interpolants

DTYPE = torch.float64
FAMILIES = ['fm', 'vp', 've', 'bridge', 'si']                   # 'vp' is the default v-prediction
CASES = ['fm', 'vp', 'vp-eps', 'vp-score', 've', 'bridge', 'si']  # + vp's other predictions, for interpolant tests
SHAPES = [(2,), (3, 8, 8)]
N_CLASSES = 3
# Same algebra, different summation order, float64 (eps 2.2e-16): observed agreement is <= 1e-13 relative.
# 1e-9 leaves room for cancellation between terms up to ~1e5 times larger than their difference (the ve
# weight w(t) reaches ~2e5 near t=0) while still failing on any real formula error (O(1) relative).
RTOL = 1e-9


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def make_case(case):
    """'vp-eps' -> make_interpolant('vp', prediction='eps'); a plain family name -> its defaults."""
    name, _, prediction = case.partition('-')
    return make_interpolant(name, **({'prediction': prediction} if prediction else {}))


class TinyNet(torch.nn.Module):
    """Random two-layer tanh MLP f(t, x, y) on (x, t, onehot(y)); output shaped like x (labels optional)."""

    def __init__(self, shape, seed, hidden=16):
        super().__init__()
        g, d = _gen(seed), math.prod(shape)
        self.w1 = torch.nn.Parameter(torch.randn(d + 1 + N_CLASSES, hidden, generator=g, dtype=DTYPE) / math.sqrt(d))
        self.b1 = torch.nn.Parameter(0.1 * torch.randn(hidden, generator=g, dtype=DTYPE))
        self.w2 = torch.nn.Parameter(torch.randn(hidden, d, generator=g, dtype=DTYPE) / math.sqrt(hidden))

    def forward(self, t, x, y=None):
        h = x.flatten(1)
        h = h / (1 + h.pow(2).mean(1, keepdim=True)).sqrt()        # keeps tanh out of saturation for ve's sigma=80
        onehot = torch.zeros(len(x), N_CLASSES, dtype=DTYPE) if y is None else F.one_hot(y, N_CLASSES).to(DTYPE)
        h = torch.cat([h, t[:, None], onehot], 1)
        return (torch.tanh(h @ self.w1 + self.b1) @ self.w2).view_as(x)


class LinearGenerator(torch.nn.Module):
    """G_theta(z) = z W + b, reshaped to (B, *shape)."""

    def __init__(self, shape, seed, z_dim=4):
        super().__init__()
        g, self.shape = _gen(seed), shape
        self.w = torch.nn.Parameter(torch.randn(z_dim, math.prod(shape), generator=g, dtype=DTYPE) / math.sqrt(z_dim))
        self.b = torch.nn.Parameter(0.3 * torch.randn(math.prod(shape), generator=g, dtype=DTYPE))

    def forward(self, z):
        return (z @ self.w + self.b).view(len(z), *self.shape)


class Setup:
    """Teacher (frozen), fake, generator, latent z, real data and one explicit draw (t, x1, eps)."""

    def __init__(self, name, shape, batch=6, batch_real=None, seed=0):
        g = _gen(seed)
        batch_real = batch if batch_real is None else batch_real
        self.name, self.shape, self.interp = name, shape, make_case(name)
        self.teacher = TinyNet(shape, seed + 1).requires_grad_(False)
        self.fake = TinyNet(shape, seed + 2)
        self.generator = LinearGenerator(shape, seed + 3)
        self.z = torch.randn(batch, 4, generator=g, dtype=DTYPE)
        self.x_real = 0.5 + torch.randn(batch_real, *shape, generator=g, dtype=DTYPE)
        t_min = self.interp.t_min
        self.t = t_min + (1 - t_min) * torch.rand(batch, generator=g, dtype=DTYPE)
        self.x1 = torch.randn(batch, *shape, generator=g, dtype=DTYPE)
        self.eps = torch.randn(batch, *shape, generator=g, dtype=DTYPE)
        self.y_gen = torch.randint(0, N_CLASSES, (batch,), generator=g)
        self.y_real = torch.randint(0, N_CLASSES, (batch_real,), generator=g)

    def x_gen(self):
        return self.generator(self.z)

    def draws(self):                                        # keyword arguments of the two-batch losses
        return dict(t=self.t, x1_gen=self.x1, eps=self.eps)

    def gen_draws(self):                                    # keyword arguments of the generator losses
        return dict(t=self.t, x1=self.x1, eps=self.eps)

    @property
    def theta(self):
        return list(self.generator.parameters())

    @property
    def phi(self):
        return list(self.fake.parameters())


def reference_path(name, t, x0, x1, eps):
    """(x_t, T, w(t)) of each family (or CASES entry), written from its paper independently of interpolants.py
    (defaults: vp beta in [0.1, 20] with v-prediction, 'vp-eps'/'vp-score' the other two, ve EDM sigma in
    [0.002, 80] and sigma_data=0.5, bridge and si with sigma=1)."""
    tb = t.view(-1, *[1] * (x0.dim() - 1))
    one = torch.ones_like(t)
    if name == 'fm':                                        # rectified flow: x_t = (1-t) x0 + t x1, T = x1 - x0
        return (1 - tb) * x0 + tb * x1, x1 - x0, one
    if name.startswith('vp'):                               # x_t = alpha x0 + sigma x1
        a, s = vp_alpha_sigma(tb)
        xt = a * x0 + s * x1
        if name == 'vp':                                    # Salimans & Ho 2022: v = alpha eps - sigma x0
            return xt, a * x1 - s * x0, one
        if name == 'vp-eps':
            return xt, x1, one
        if name == 'vp-score':                              # DSM: score target -eps/sigma, weight sigma^2
            return xt, -x1 / s, s.flatten() ** 2
    if name == 've':                                        # x_t = x0 + sigma x1, denoiser target, EDM lambda
        s = ve_sigma(t)
        return x0 + s.view_as(tb) * x1, x0, (s ** 2 + 0.25) / (0.5 * s) ** 2
    if name == 'bridge':                                    # Brownian bridge, drift toward x0
        xt = (1 - tb) * x0 + tb * x1 + (tb * (1 - tb)).sqrt() * eps
        return xt, (xt - x0) / tb, one
    if name == 'si':                                        # gamma(t) = t(1-t), T = dI/dt + gamma'(t) eps
        return (1 - tb) * x0 + tb * x1 + tb * (1 - tb) * eps, x1 - x0 + (1 - 2 * tb) * eps, one
    raise KeyError(name)


def flat(v):
    return torch.cat([u.reshape(-1) for u in v]) if isinstance(v, (list, tuple)) else v.reshape(-1)


def assert_close(actual, expected, rtol=RTOL):
    """Norm-relative agreement of tensors or of gradient lists."""
    a, b = flat(actual).detach(), flat(expected).detach()
    err, scale = (a - b).norm().item(), b.norm().item()
    assert err <= rtol * scale, f'|actual - expected| = {err:.3e} > {rtol:.0e} * {scale:.3e}'


def grad(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True)


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


def write_fake_cifar10(root, per_batch=8, seed=0):
    """cifar-10-batches-py/ in torchvision's layout -> (train images uint8 (N, 32, 32, 3), train labels).

    Real CIFAR-10 pickles are Python 2 dicts with str keys ('data', 'labels', 'label_names'); torchvision loads
    them with encoding='latin1' and indexes with str keys, so a Python 3 pickle must use str keys (bytes keys
    b'data' would stay bytes and fail with KeyError).
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, 'cifar-10-batches-py')
    os.makedirs(folder)
    images, labels = [], []
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)   # (N, 3 * 32 * 32), channel-major rows
        # first red pixels: the extremes, and one between
        data[0, :3] = [0, 255, 128]
        y = rng.integers(0, 10, per_batch).tolist()
        with open(os.path.join(folder, name), 'wb') as f:
            pickle.dump({'batch_label': name, 'data': data, 'labels': y}, f)
        if name != 'test_batch':
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels += y
    with open(os.path.join(folder, 'batches.meta'), 'wb') as f:
        pickle.dump({'label_names': ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
                                     'truck'], 'num_cases_per_batch': per_batch, 'num_vis': 3072}, f)
    return np.concatenate(images), labels


@pytest.fixture
def fake_cifar10(tmp_path, monkeypatch):
    # the files are ours, so their md5s are not CIFAR-10's: check existence only (both the data files and the
    # meta file go through torchvision.datasets.cifar.check_integrity); and never download
    monkeypatch.setattr(torchvision.datasets.cifar, 'check_integrity', lambda path, md5=None: os.path.isfile(path))
    monkeypatch.setattr(torchvision.datasets.CIFAR10, 'download', no_download)
    root = tmp_path / 'cifar'
    images, labels = write_fake_cifar10(root)
    return root, images, labels


def no_download(self):
    raise OSError('network access is disabled in the tests')


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
