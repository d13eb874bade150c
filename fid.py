"""FID (Heusel et al. 2017) with the TF-FID InceptionV3 as ported by pytorch-fid, so numbers match the literature.

Feature extraction and the Frechet distance are separate: images -> Inception pool3 features -> (mu, sigma) -> FID.
Usage: python fid.py PATH1 PATH2 [--batch-size N] [--device cpu|cuda] [--weights FILE] [--save-stats OUT.npz]
where each PATH is a folder of images, an .npz with the statistics `mu`, `sigma`, or an .npz of images `arr_0`
(uint8 (N, H, W, 3), as sample.py --npz and OpenAI's / EDM's evaluators write them); `--dataset cifar10
[--data-dir DIR]` stands for one PATH: torchvision's CIFAR-10 training set (downloaded there if absent), e.g.
    python fid.py --dataset cifar10 --save-stats cifar10-32-train.npz   # the reference statistics of the README
Every PATH is checked (statistics in full, images up to the first batch) before the network loads.
Also here, needing no download: pixel_stats (for 'fd_pix8'), gaussian_stats and sliced_wasserstein.
"""
import argparse
import functools
import itertools
import math
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.models.inception as tvi
from PIL import Image
from torchvision.transforms.functional import to_tensor

WEIGHTS_NAME = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_URL = f'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_NAME}'
IMAGE_EXTENSIONS = {'.png', '.jpg', '.jpeg', '.bmp', '.webp'}


# TF's Inception graph averages over valid pixels only at the borders (pytorch-fid's FIDInceptionA/C/E_1 patch).
def tf_avg_pool(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def tf_max_pool(x):  # Mixed_7c pools with max instead: a quirk of the TF graph, kept for comparable numbers
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class FIDInceptionA(tvi.InceptionA):  # Mixed_5b..5d
    def forward(self, x):
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(tf_avg_pool(x))], 1)


class FIDInceptionC(tvi.InceptionC):  # Mixed_6b..6e
    def forward(self, x):
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for i in range(1, 6):
            branch7x7dbl = getattr(self, f'branch7x7dbl_{i}')(branch7x7dbl)
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, self.branch_pool(tf_avg_pool(x))], 1)


class FIDInceptionE(tvi.InceptionE):  # Mixed_7b (tf_avg_pool) and Mixed_7c (tf_max_pool)
    def __init__(self, in_channels, pool=tf_avg_pool):
        super().__init__(in_channels)
        self.pool = pool  # a plain function: adds no state-dict keys

    def forward(self, x):
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(self.pool(x))], 1)


# TF-FID InceptionV3 (Heusel et al. 2017; pytorch-fid port): (B, 3, H, W) in [-1, 1] -> (B, 2048) pool3 features.
class FIDInceptionV3(tvi.Inception3):
    LAYERS = ('Conv2d_1a_3x3 Conv2d_2a_3x3 Conv2d_2b_3x3 maxpool1 Conv2d_3b_1x1 Conv2d_4a_3x3 maxpool2 '
              'Mixed_5b Mixed_5c Mixed_5d Mixed_6a Mixed_6b Mixed_6c Mixed_6d Mixed_6e Mixed_7a Mixed_7b Mixed_7c '
              'avgpool').split()

    def __init__(self):  # fc (1008 classes) is kept only so the weights file loads strictly; features skip it
        blocks = [tvi.BasicConv2d, FIDInceptionA, tvi.InceptionB, FIDInceptionC, tvi.InceptionD, FIDInceptionE,
                  tvi.InceptionAux]
        super().__init__(num_classes=1008, aux_logits=False, inception_blocks=blocks, init_weights=False)
        self.Mixed_7c = FIDInceptionE(2048, pool=tf_max_pool)

    def forward(self, x):
        x = F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False, antialias=False)
        for name in self.LAYERS:
            x = getattr(self, name)(x)
        return x.flatten(1)  # (B, 2048)


class InceptionWeightsNotFound(RuntimeError):
    pass


def load_inception(path=None, device='cpu'):
    """Explicit `path`, else the torch hub cache, else one download attempt into it (never at import)."""
    cached = os.path.join(torch.hub.get_dir(), 'checkpoints', WEIGHTS_NAME)
    if path is None and not os.path.isfile(cached):
        timeout = socket.getdefaulttimeout()
        try:
            socket.setdefaulttimeout(30)  # fail fast behind a firewall that drops packets
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            torch.hub.download_url_to_file(WEIGHTS_URL, cached, progress=False)
        except Exception:  # offline, no DNS, read-only cache: reported below
            pass
        finally:
            socket.setdefaulttimeout(timeout)
    path = path or cached
    if not os.path.isfile(path):
        raise InceptionWeightsNotFound(f'Inception weights not found: download {WEIGHTS_URL} to {path}')
    net = FIDInceptionV3()
    try:
        net.load_state_dict(torch.load(path, map_location='cpu', weights_only=True))
    except Exception as error:  # not a torch file, or another network's weights
        raise InceptionWeightsNotFound(f'{path} is not {WEIGHTS_NAME} ({type(error).__name__}): get {WEIGHTS_URL}')
    return net.eval().requires_grad_(False).to(device)


PSD_TOLERANCE = 1e-6  # relative: rounding leaves a covariance's eigenvalues >= -1e-12 * largest; -I is -1 * largest


def check_stats(mu, sigma, name='statistics'):
    """-> (mu, sigma) as float64 arrays, or ValueError naming `name` in one line, before anything slow: real numbers
    (not strings or objects), mu (d,) and sigma (d, d), all finite, sigma symmetric and positive semi-definite up to
    PSD_TOLERANCE (one Cholesky factorisation of sigma + tolerance * max|sigma| * I)."""
    for what, a in (('mu', mu), ('sigma', sigma)):
        if np.asarray(a).dtype.kind not in 'iuf':
            raise ValueError(f'{name}: {what} must hold real numbers, got dtype {np.asarray(a).dtype}')
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise ValueError(f'{name}: mu must be (d,) and sigma (d, d), got {mu.shape} and {sigma.shape}')
    for what, a in (('mu', mu), ('sigma', sigma)):
        if not np.isfinite(a).all():
            raise ValueError(f'{name}: {what} has {(~np.isfinite(a)).sum()} non-finite values (NaN or inf)')
    scale = np.abs(sigma).max(initial=0.0)
    if np.abs(sigma - sigma.T).max(initial=0.0) > PSD_TOLERANCE * scale:
        asymmetry = np.abs(sigma - sigma.T).max()
        raise ValueError(f'{name}: sigma is not symmetric (max |sigma - sigma.T| = {asymmetry:.3g})')
    shifted = torch.from_numpy(sigma) + PSD_TOLERANCE * scale * torch.eye(len(mu), dtype=torch.float64)
    if scale > 0 and torch.linalg.cholesky_ex(shifted).info.item() != 0:  # (all zeros: constant features, PSD)
        raise ValueError(f'{name}: sigma is not positive semi-definite (not a covariance)')
    return mu, sigma


# Frechet distance between Gaussians (Dowson & Landau 1982), the FID of Heusel et al. 2017:
# ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2). For any S1 = R R^T, the PSD matrix R^T S2 R has the eigenvalues of
# S1 S2 (similar matrices), so Tr (S1 S2)^1/2 = sum sqrt eigvalsh(R^T S2 R). R is the Cholesky factor when S1 is
# positive definite (cheap), else V sqrt(eigval) from eigh (fewer samples than dimensions, constant features).
def frechet_distance(mu1, sigma1, mu2, sigma2):  # float64 torch.linalg: its eigh stays fast on busy CPUs, numpy's not
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) as a float; arrays or tensors, any float dtype."""
    mu1, sigma1, mu2, sigma2 = (torch.as_tensor(a, dtype=torch.float64) for a in (mu1, sigma1, mu2, sigma2))
    for name, a in (('mu1', mu1), ('sigma1', sigma1), ('mu2', mu2), ('sigma2', sigma2)):
        if not torch.isfinite(a).all():  # LAPACK's eigensolvers can loop forever on NaN: refused, not computed
            raise ValueError(f'frechet_distance: {name} has non-finite values (NaN or inf)')
    chol, info = torch.linalg.cholesky_ex(sigma1)  # sigma1 = chol @ chol.T; info > 0: not positive definite
    if info.item() != 0:
        return _frechet_distance_eigh(mu1, sigma1, mu2, sigma2)
    trace_sqrt = _sum_sqrt_eigvals(chol.T @ sigma2 @ chol)
    return float((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt)


def _frechet_distance_eigh(mu1, sigma1, mu2, sigma2):  # any PSD sigma1; 2.3x slower than Cholesky at d=2048
    mu1, sigma1, mu2, sigma2 = (torch.as_tensor(a, dtype=torch.float64) for a in (mu1, sigma1, mu2, sigma2))
    eigval, eigvec = torch.linalg.eigh(sigma1)
    if eigval.min() < -PSD_TOLERANCE * eigval.abs().max():  # e.g. -I: clamping it to 0 gave a plausible FID
        raise ValueError(f'frechet_distance: sigma1 is not positive semi-definite (eigenvalue {eigval.min():.3g})')
    root = eigvec * eigval.clamp(min=0).sqrt()  # sigma1 = root @ root.T
    trace_sqrt = _sum_sqrt_eigvals(root.T @ sigma2 @ root)
    return float((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt)


def _sum_sqrt_eigvals(inner):  # Tr inner^1/2 of a PSD matrix known up to rounding
    eigval = torch.linalg.eigvalsh((inner + inner.T) / 2)
    if eigval.min() < -PSD_TOLERANCE * eigval.abs().max():  # R^T S2 R is PSD (congruence) whenever sigma2 is
        raise ValueError(f'frechet_distance: sigma2 is not positive semi-definite (eigenvalue {eigval.min():.3g} '
                         'of R^T sigma2 R)')
    eigval[eigval < len(eigval) * torch.finfo(torch.float64).eps * eigval.max()] = 0  # below numerical rank
    return eigval.sqrt().sum()


def feature_stats(features):
    """(N, D) features -> (mu (D,), sigma (D, D)) in float64, unbiased covariance."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) < 2:  # np.cov of one sample: NaN with RuntimeWarnings, then an obscure linalg error
        raise ValueError(f'statistics need at least 2 samples, got {len(features)}')
    return features.mean(axis=0), np.cov(features, rowvar=False)


# --- metrics that need no Inception: fd_pix8 = frechet_distance of pixel_stats, and the toy runs' swd ---

def gaussian_stats(x):
    """(N, ...) tensor or array -> (mu (D,), sigma (D, D)) float64 numpy, D the product of the non-batch dims."""
    return feature_stats(torch.as_tensor(x).detach().flatten(1).double().cpu().numpy())


def pixel_stats(images, size=8):
    """(N, C, H, W) images in [-1, 1] -> gaussian_stats of their average-pooled (N, C, size, size) pixels.

    Frechet distance of two such statistics is the 'fd_pix8' metric: a coarse FID stand-in that needs no download.
    When size divides H and W this is avg_pool2d with kernel H // size (same numbers); otherwise the pooling regions
    of adaptive_avg_pool2d overlap by up to one pixel.
    """
    return gaussian_stats(F.adaptive_avg_pool2d(torch.as_tensor(images), size))


def sliced_wasserstein(x, y, projections=256, seed=0):
    """Sliced 2-Wasserstein distance between equal-size point clouds x, y (N, ...) as a float (sensitive to lost modes).

    sqrt of the mean, over `projections` random unit directions theta (fixed by `seed`, drawn in x's dtype), of the
    1-D W2^2 between x theta and y theta; with equal sizes the optimal 1-D coupling pairs the sorted projections.
    """
    x = torch.as_tensor(x).flatten(1)
    y = torch.as_tensor(y, dtype=x.dtype, device=x.device).flatten(1)
    if x.shape != y.shape:
        raise ValueError(f'sliced_wasserstein needs equal-size point clouds, got {tuple(x.shape)} and {tuple(y.shape)}')
    theta = torch.randn(x.shape[1], projections, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    theta = (theta / theta.norm(dim=0)).to(x.device)  # (D, projections), unit columns
    x_proj, y_proj = (x @ theta).sort(0).values, (y @ theta).sort(0).values  # (N, projections)
    return float((x_proj - y_proj).square().mean().sqrt())


def images_to_uint8(images):
    """Images in [-1, 1], channels first (..., 3, H, W) -> uint8 channels last (..., H, W, 3), as PNGs store them."""
    return ((torch.as_tensor(images) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).movedim(-3, -1)


def uint8_to_images(pixels):
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1]: the values to_tensor(PNG) * 2 - 1 reads."""
    return torch.as_tensor(pixels).movedim(-1, -3).float() / 255 * 2 - 1


def save_grid(images, classes, path):
    """Images (N, 3, H, W) in [-1, 1] or uint8 (N, H, W, 3) as one PNG grid: with `classes` C, row c holds samples
    c, c + C, ... (label i mod C: class c), up to 10 a row; else the first 100 in rows of 10."""
    x = torch.as_tensor(images)
    x = uint8_to_images(x) if x.dtype == torch.uint8 else x.float()          # (N, 3, H, W)
    per_row = min(10, max(1, len(x) // classes)) if classes else 10
    if classes:
        x = torch.cat([x[c::classes][:per_row] for c in range(classes)])
    grid = torchvision.utils.make_grid(x[:100] if not classes else x, nrow=per_row, padding=2, pad_value=-1)
    image = Image.fromarray(images_to_uint8(grid).numpy())
    write_atomic(path, lambda f: image.save(f, format='PNG'))  # a kill never leaves half a picture


def save_scatter(x, y, path, extent=3.5, size=256):
    """2-D points (N, 2) as a size x size PNG without matplotlib: one colour per class y (N,) or None, on white;
    the square [-extent, extent]^2, y up. For looking at toy samples beside their swd."""
    palette = torch.tensor([[.9, .1, .1], [.1, .5, .9], [.1, .7, .2], [.9, .6, 0], [.6, .2, .8], [0, .7, .7],
                            [.5, .3, .1], [.9, .3, .6], [.3, .3, .3], [.6, .6, 0]])
    x = torch.as_tensor(x).float().cpu()
    y = torch.zeros(len(x), dtype=torch.long) if y is None else torch.as_tensor(y).long().cpu()
    image, ij = torch.ones(3, size, size), ((x + extent) / (2 * extent) * (size - 1)).round().long()  # (N, 2) pixels
    keep = ((ij >= 0) & (ij < size)).all(1)
    image[:, size - 1 - ij[keep, 1], ij[keep, 0]] = palette[y[keep] % len(palette)].T
    image = Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy())
    write_atomic(path, lambda f: image.save(f, format='PNG'))


class Progress:
    """Progress of a long phase as lines 'WHAT done/total | RATE UNIT/s | ETA', at most one every `every` seconds,
    and one at the end (with end=False only after a phase that took `every` or printed). RATE is an exponential moving
    average of the rates between lines (weight `smoothing` on the newest), so the ETA follows the recent speed (a
    machine that gets busy), not the average since the start."""

    def __init__(self, what, total, unit='it', log=functools.partial(print, flush=True), every=5.0, smoothing=0.3,
                 start=0, end=True):
        self.what, self.total, self.unit, self.log = what, total, unit, log
        self.every, self.smoothing = every, smoothing
        self.t0 = self.last = time.time()
        self.start = self.done = self.count = start
        self.rate, self.end = None, end

    def due(self, done):
        """Whether a call with `done` would print a line now (a training loop reads its losses only then)."""
        return self.log is not None and (time.time() - self.last >= self.every or done >= self.total and self.end)

    def __call__(self, done, **values):
        if not self.due(done):
            return
        now = time.time()
        rate = (done - self.done) / max(now - self.last, 1e-9)  # an interval without progress counts too, once started
        if done > self.done or self.rate is not None:
            self.rate = rate if self.rate is None else self.smoothing * rate + (1 - self.smoothing) * self.rate
        self.last, self.done, self.end = now, done, True
        average = (done - self.start) / max(now - self.t0, 1e-9)
        self.log(line(self.what, done, self.total, self.rate or 0.0, self.unit, **values) if done < self.total else
                 line(self.what, done, self.total, average, self.unit, **values).split(' | ETA')[0]
                 + f' | done in {now - self.t0:.0f}s')
        self.log = None if done >= self.total else self.log  # the end is said once

    def add(self, k=1, result=None):
        """Count k more (e.g. inside a network called many times a batch) -> result, so it can wrap a call."""
        self.count += k
        self(self.count)
        return result


def line(what, done, total, rate, unit='it', **values):
    """'WHAT done/total | k v ... | RATE UNIT/s | ETA m': Progress's line."""
    vals = ' '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in values.items())
    vals = f' | {vals}' if values else ''
    seconds = (total - done) / rate if rate > 0 else math.inf      # no rate yet, or none lately: '?'
    eta = '?' if seconds == math.inf else f'{seconds / 60:.1f} min' if seconds >= 60 else f'{seconds:.0f} s'
    return f'{what} {done}/{total}{vals} | {rate:.3g} {unit}/s | ETA {eta}'


@torch.no_grad()
def inception_features(net, batches, device='cpu', total=None, log=None):
    """Iterable of (B, 3, H, W) images in [-1, 1] (or (images, labels) pairs) -> (N, 2048) float32 numpy.
    With `total` (the number of images) and `log` (e.g. print): Progress lines."""
    features, bar = [], Progress('FID features', total, 'images', log) if total and log else None
    for images in batches:
        images = images[0] if isinstance(images, (tuple, list)) else images
        features.append(net(images.to(device, torch.float32)).cpu())
        if bar:
            bar(sum(len(f) for f in features))
    return torch.cat(features).numpy()


def generator_stats(sample_fn, n=50_000, batch_size=100, num_classes=None, net=None, device='cpu', to_uint8=True,
                    log=None):
    """FID statistics of n samples of sample_fn(n_batch, labels) -> (n_batch, 3, H, W) in [-1, 1].

    With num_classes, labels are class-balanced (n // num_classes each, the remainder spread over the first classes).
    to_uint8 rounds images to 8 bits first, so the statistics equal those of the samples saved as PNGs (as EDM does).
    log (e.g. print): Progress lines of sampling + features.
    """
    net = load_inception(device=device) if net is None else net
    labels = None if num_classes is None else torch.arange(n, device=device) % num_classes

    def batches():
        for start in range(0, n, batch_size):
            images = sample_fn(min(batch_size, n - start), None if labels is None else labels[start:start + batch_size])
            yield uint8_to_images(images_to_uint8(images)) if to_uint8 else images

    return feature_stats(inception_features(net, batches(), device, n, log))


def read_stats(path):
    """(mu, sigma) of an .npz of statistics, checked (check_stats), or ValueError naming the file in one line."""
    stats = read_npz(path)
    if 'mu' not in stats or 'sigma' not in stats:
        raise ValueError(f'{path}: .npz has no statistics mu and sigma (keys: {", ".join(stats)})')
    return check_stats(stats['mu'], stats['sigma'], path)


def dataset_stats(name, data, cache_dir, resolution, split='train', batch_size=100, net=None, device='cpu',
                  get_net=None, log=None):
    """(mu, sigma) of a Dataset or DataLoader of images in [-1, 1], cached as cache_dir/name-resolution-split.npz.
    A cached file is checked (read_stats) and no network is needed; else `net`, or get_net(), or load_inception()."""
    path = os.path.join(cache_dir, f'{name}-{resolution}-{split}.npz')
    if os.path.isfile(path):
        return read_stats(path)
    if isinstance(data, torch.utils.data.Dataset):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size)
    net = net if net is not None else get_net() if get_net else load_inception(device=device)
    mu, sigma = feature_stats(inception_features(net, data, device, len(data.dataset), log))
    os.makedirs(cache_dir, exist_ok=True)
    write_atomic(path, lambda f: np.savez(f, mu=mu, sigma=sigma))  # a concurrent reader never sees half a file
    return mu, sigma


class ImageFolder(torch.utils.data.Dataset):
    """Images under root (recursive) as RGB in [-1, 1], resized to 299x299 as the network would: any sizes mix."""

    def __init__(self, root):
        self.files = [Path(f) for f in image_files(root)]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        image = to_tensor(read_image(self.files[i])) * 2 - 1  # (3, H, W)
        return F.interpolate(image[None], size=(299, 299), mode='bilinear', align_corners=False, antialias=False)[0]


def cifar10(data_dir, transform=None, train=True):
    """torchvision's CIFAR-10 in data_dir, downloaded there if absent, or ValueError in one line saying what to do."""
    for download in (False, True):
        try:
            return torchvision.datasets.CIFAR10(data_dir, train, transform, download=download)
        except Exception:  # absent (RuntimeError), then offline, corrupt, read-only, ...
            pass
    raise ValueError(f'CIFAR-10 not found in {data_dir} and it cannot be downloaded: put the extracted '
                     'cifar-10-batches-py/ folder (from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) '
                     'there, or pass --data-dir')


def device_error(name, allowed=('cpu', 'cuda', 'mps')):
    """None if torch can run on device `name` here, else why not in words (for the commands' one-line errors)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        return f'{name} is not a torch device (e.g. cpu, cuda, cuda:1)'
    if device.type not in allowed:
        return f'{name}: runs on {", ".join(allowed[:-1])} or {allowed[-1]}'
    if device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
        return f'{name}: PyTorch sees {torch.cuda.device_count()} CUDA device(s) here'
    if device.type == 'mps' and not torch.backends.mps.is_available():
        return f'{name}: PyTorch sees no MPS device here'
    return None


def image_files(root):
    """Image files under root (recursive), sorted. Linked files count; linked folders are not entered: a loop, or a
    link out of the folder, would repeat images (another class's, in a class folder) without end."""
    return sorted(os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names
                  if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)


def read_image(path):
    """An image file as an RGB PIL image, or ValueError naming the file in one line (not an image, truncated, ...)."""
    try:
        with Image.open(path) as image:
            if image.mode in ('I', 'I;16', 'I;16B', 'I;16L'):  # 16-bit grayscale: convert('RGB') clips at 255
                pixels = np.asarray(image, dtype=np.float64)
                if pixels.min() < 0 or pixels.max() > 65535:
                    raise ValueError(f'mode {image.mode} values in [{pixels.min():g}, {pixels.max():g}], not 16 bits')
                return Image.fromarray((pixels / 257).round().astype(np.uint8)).convert('RGB')  # 65535 -> 255
            if image.mode == 'F':
                raise ValueError('32-bit float pixels: give 8- or 16-bit images')
            return image.convert('RGB')
    except Exception as error:
        reason = ' '.join(str(error).split()) or type(error).__name__
        raise ValueError(f'{path}: cannot read image ({reason})') from error


def read_npz(path):
    """The arrays of an .npz -> {name: array}; ValueError naming the file in one line (truncated, objects, ...)."""
    try:
        data = np.load(path)
        if not hasattr(data, 'files'):  # an .npy array (or pickle) renamed
            raise ValueError(f'a single {type(data).__name__}, not an archive of named arrays')
        with data:
            return {k: data[k] for k in data.files}
    except Exception as error:  # BadZipFile, pickled object arrays, OSError, an .npy file named .npz, ...
        reason = ' '.join(str(error).split()) or type(error).__name__
        raise ValueError(f'{path}: cannot read .npz ({reason})') from error


def write_atomic(path, write):
    """write(f) into a binary file beside path, then rename it to path: a reader never sees half a file, and a write
    that fails (an error, an interrupt) leaves the previous file and no temporary one (a kill leaves PATH.PID.tmp)."""
    tmp = f'{path}.{os.getpid()}.tmp'  # the process's own: two writers of one path never share a temporary file
    try:
        with open(tmp, 'wb') as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def output_error(path):
    """None if a file can be written at path (made, replaced or appended to), else why not, in words: for the
    commands to refuse before their work, not after it."""
    if os.path.isdir(path):
        return 'is a folder'
    if os.path.islink(path) and not os.path.exists(path):
        return f'is a link to {os.readlink(path)}, which does not exist'
    if os.path.exists(path) and not os.access(path, os.W_OK) or not os.access(os.path.dirname(path) or '.', os.W_OK):
        return 'is not writable'
    return None


def path_stats(path, get_net, batch_size=50, device='cpu', log=None):
    """(mu, sigma) of an .npz of statistics (mu, sigma) or of images (arr_0 uint8 (N, H, W, 3)), or of a folder of
    images; ValueError with one line on bad input (open_path, then its computation)."""
    return open_path(path, batch_size)(get_net, device, log)


def open_path(path, batch_size=50):
    """Check `path` now, before any network loads (statistics in full, images up to the first batch) -> a function
    (get_net, device, log) -> (mu, sigma); ValueError with one line on bad input."""
    if path.endswith('.npz') and os.path.isfile(path):
        stats = read_npz(path)
        if 'mu' in stats and 'sigma' in stats:
            mu, sigma = check_stats(stats['mu'], stats['sigma'], path)
            return lambda *_: (mu, sigma)
        if 'arr_0' not in stats:
            raise ValueError(f'{path}: .npz has neither mu and sigma nor images arr_0 (keys: {", ".join(stats)})')
        images = stats['arr_0']
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or len(images) == 0:
            raise ValueError(f'{path}: arr_0 must be uint8 images (N, H, W, 3), got {images.dtype} {images.shape}')
        if len(images) < 2:  # before the network loads
            raise ValueError(f'{path}: statistics need at least 2 samples, got 1 image')
        batches = (uint8_to_images(images[i:i + batch_size]) for i in range(0, len(images), batch_size))
        return lambda get_net, device, log: feature_stats(inception_features(get_net(), batches, device, len(images),
                                                                             log))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f'{path}: not a folder of images or an .npz file')
    if not os.path.isdir(path):
        raise ValueError(f'{path}: no such image folder or .npz file')
    dataset = ImageFolder(path)
    if len(dataset) == 0:
        raise ValueError(f'{path}: no images ({"/".join(sorted(IMAGE_EXTENSIONS))}) found')
    if len(dataset) < 2:  # before the network loads
        raise ValueError(f'{path}: statistics need at least 2 samples, got 1 image')
    # no workers: one line
    return open_loader(torch.utils.data.DataLoader(dataset, batch_size=batch_size), len(dataset))


def open_loader(loader, total):
    """Read the first batch of a DataLoader now (a bad image fails without a download) -> open_path's function."""
    batches = iter(loader)
    first = next(batches)
    chained = itertools.chain([first], batches)
    return lambda get_net, device, log: feature_stats(inception_features(get_net(), chained, device, total, log))


def open_cifar10(data_dir, batch_size=50):
    """torchvision's CIFAR-10 training set in data_dir (downloaded there if absent), as open_path's function: the
    same pixels as its 50 000 images written as PNGs and read back."""
    data = cifar10(data_dir, lambda image: to_tensor(image) * 2 - 1)
    return open_loader(torch.utils.data.DataLoader(data, batch_size=batch_size), len(data))


def main(argv=None):
    parser = argparse.ArgumentParser(description='FID between two image folders or .npz statistics (mu, sigma).')
    parser.error = error
    parser.add_argument('paths', nargs='*', metavar='PATH',
                        help='image folder, .npz with mu and sigma, or .npz of images arr_0')
    parser.add_argument('--dataset', choices=['cifar10'], help="one more PATH: torchvision's CIFAR-10 training set")
    parser.add_argument('--data-dir', default='./data', help='where --dataset is (or is downloaded to); default ./data')
    parser.add_argument('--batch-size', type=int, default=50)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--weights', help=f'{WEIGHTS_NAME} (default: torch hub cache, downloaded if absent)')
    parser.add_argument('--save-stats', metavar='OUT.npz', help='save the statistics of the one PATH and exit')
    args = parser.parse_args(argv)
    if len(args.paths) + bool(args.dataset) != (1 if args.save_stats else 2):
        error('give two PATHs, or one PATH with --save-stats (--dataset counts as a PATH)')
    if args.batch_size < 1:
        error(f'--batch-size must be >= 1, got {args.batch_size}')
    if args.save_stats:  # before any feature is computed; never replaces a file (e.g. the reference statistics)
        out, folder = args.save_stats, os.path.dirname(args.save_stats) or '.'
        if os.path.isdir(out) or not out.endswith('.npz'):
            error(f'--save-stats {out}: give a file name ending in .npz')
        if os.path.lexists(out):
            error(f'--save-stats {out} exists: remove it or choose another name')
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            error(f'--save-stats {out}: {folder} is not a writable folder')
    if device_error(args.device):
        error(f'--device {device_error(args.device)}')
    net = None

    def get_net():  # loaded only if a folder needs it
        nonlocal net
        net = load_inception(args.weights, args.device) if net is None else net
        return net

    try:  # every PATH is checked before the first feature: a bad reference fails before the other's minutes
        sources = [open_path(path, args.batch_size) for path in args.paths]
        sources += [open_cifar10(args.data_dir, args.batch_size)] if args.dataset else []
        stats = [source(get_net, args.device, functools.partial(print, flush=True)) for source in sources]
        if args.save_stats:  # a killed run leaves no half-written statistics
            write_atomic(args.save_stats, lambda f: np.savez(f, mu=stats[0][0], sigma=stats[0][1]))
            return
        (a, b), (mu_a, mu_b) = args.paths + ['cifar10'] * bool(args.dataset), (len(stats[0][0]), len(stats[1][0]))
        if mu_a != mu_b:
            error(f'the statistics have different dimensions: {mu_a} in {a}, {mu_b} in {b} (Inception features: 2048)')
        print(f'FID: {frechet_distance(*stats[0], *stats[1])}')
    except (OSError, ValueError, RuntimeError) as e:  # bad paths, images, weights: one line, no traceback
        error(str(e).strip().splitlines()[0])


def error(message):  # the command's bad input: one line on stderr, exit 2 (argparse would add its usage)
    print(f'fid.py: error: {message}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
    main()
