"""Training data for train.py: the 2-D toy, CIFAR-10 and image folders (CelebA) as map-style datasets of
(x in [-1, 1], label), and Batches, which serves them to the training loops, resumably, held on the device when
they fit. Imports torch, torchvision and fid (image files and CIFAR-10 on disk: read_image, image_files, cifar10).
Bad data raises DataError (a ValueError) with one line naming the file or folder.
"""
import math
import os

import torch
import torchvision

import fid


class DataError(ValueError):
    """Bad data on disk or a dataset that cannot serve a batch: one line, for a command's one-line error."""


def toy_data(n, seed, modes=8, radius=2.0, std=0.15, balanced=False):
    """8 Gaussians on a circle, label = mode -> x (n, 2), y (n,). balanced: labels 0..7 in turn, as evaluated."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % modes if balanced else torch.randint(modes, (n,), generator=g)
    angle = 2 * math.pi * y / modes
    return radius * torch.stack([angle.cos(), angle.sin()], 1) + std * torch.randn(n, 2, generator=g), y


def last_line(error):
    """fid.read_image's one line, also from a DataLoader worker's multi-line 'Caught ValueError ...' wrapper."""
    return str(error).strip().splitlines()[-1].removeprefix('ValueError: ')


def make_dataset(name, data_dir='./data', image_size=32, cond=False):
    """name: toy, cifar10, folder or celeba -> (map-style dataset of (x, y), x shape, num_classes). Images in
    [-1, 1]; flips happen in Batches. DataError in one line when the data is missing or unreadable."""
    if name == 'toy':
        x, y = toy_data(20_000, seed=1234)
        return torch.utils.data.TensorDataset(x, y), (2,), 8
    size, tf = image_size, torchvision.transforms
    transform = tf.Compose([tf.Resize(size), tf.CenterCrop(size), tf.ToTensor(), tf.Normalize([0.5] * 3, [0.5] * 3)])
    classes = name == 'folder' and os.path.isdir(data_dir) and any(d.is_dir() for d in os.scandir(data_dir))
    if cond and not classes and name != 'cifar10' and os.path.isdir(data_dir):
        raise DataError(f'--cond needs class subfolders in {data_dir}')
    try:                                                        # image_folder enters no linked folder: no loop
        data = fid.cifar10(data_dir, transform) if name == 'cifar10' else image_folder(data_dir, transform, classes)
    except ValueError as e:
        raise DataError(str(e)) from None
    return data, (3, size, size), len(data.classes)


def keep_fractions(dataset, fractions):
    """--teacher-keep: the first round(f n_c) items of each class c, in the dataset's order."""
    tensors = getattr(dataset, 'tensors', None)
    labels = torch.as_tensor(tensors[1] if tensors else dataset.targets)
    keep = torch.cat([i[:round(f * len(i))] for c, f in enumerate(fractions) for i in [(labels == c).nonzero()[:, 0]]])
    keep = keep.sort().values
    if tensors:
        return torch.utils.data.TensorDataset(*(t[keep] for t in tensors))
    return torch.utils.data.Subset(dataset, keep.tolist())


def hold_out(dataset, n, seed=0):
    """-> (the dataset without n items, those n items), the n from a fixed permutation: a coupled run's evaluation
    pairs, never trained on. TensorDatasets stay TensorDatasets (held on the device); a Subset keeps its targets."""
    if len(dataset) <= n:
        raise DataError(f'the dataset has {len(dataset)} items: too few to hold out {n} for evaluation')
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    parts = order[n:].sort().values, order[:n]
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return tuple(torch.utils.data.TensorDataset(*(t[i] for t in dataset.tensors)) for i in parts)
    subsets = tuple(torch.utils.data.Subset(dataset, i.tolist()) for i in parts)
    for subset in subsets if hasattr(dataset, 'targets') else ():
        subset.targets = [dataset.targets[i] for i in subset.indices]
    return subsets


class FlatFolder(torchvision.datasets.ImageFolder):
    """A folder of images without class subfolders (the official CelebA layout): one class, label 0."""
    def find_classes(self, directory):
        return [''], {'': 0}


def image_folder(root, transform=None, classes=True):
    """(image, label) dataset of root's class folders (classes), else of all its images as class 0, read by
    fid.read_image; only fid.image_files (linked folders are not entered). Its .loose: the images directly in root,
    in no class folder (not used). DataError in one line when root or its images are missing."""
    if not os.path.isdir(root):
        raise DataError(f'image folder {root} does not exist')
    folders = [d.path for d in os.scandir(root) if d.is_dir()] if classes else [root]
    files = {f for folder in folders for f in fid.image_files(folder)}
    try:
        data = (torchvision.datasets.ImageFolder if classes else FlatFolder)(root, transform, loader=fid.read_image,
                                                                              is_valid_file=files.__contains__)
    except (FileNotFoundError, RuntimeError):
        raise DataError(f'no images ({", ".join(sorted(fid.IMAGE_EXTENSIONS))}) found in '
                         f'{"the class folders of " * classes}{root}') from None
    data.loose = [f.name for f in os.scandir(root) if classes and f.is_file() and os.path.splitext(f.name)[1].lower()
                  in fid.IMAGE_EXTENSIONS]
    return data


PIXELS = (torch.arange(256.) / 255 - 0.5) / 0.5  # uint8 -> [-1, 1] bit for bit as ToTensor + Normalize(0.5, 0.5)


def decode_once(dataset, max_bytes, workers=0):
    """(x uint8 (N, C, H, W), y) of a dataset of (image in [-1, 1], label) in one pass, for a training loop to hold
    on its device and decode a batch as PIXELS[x[i].long()], bit for bit the dataset's values; None above max_bytes
    of pixels or when an image is not exactly PIXELS of a uint8 one (a transform other than ToTensor + Normalize)."""
    if len(dataset) * dataset[0][0].numel() > max_bytes:
        return None
    xs, ys = [], []
    for x, y in torch.utils.data.DataLoader(dataset, 500, num_workers=workers, generator=torch.Generator()):
        xs.append(((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
        if not torch.equal(PIXELS[xs[-1].long()], x):
            return None
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys)


class Batches:
    """Endless, resumable batches: an epoch-seeded permutation sharded over ranks, flips drawn here. The order
    depends only on (seed, epoch, position), so a resumed run sees exactly the same batches. A dataset of up to
    HOLD_BYTES is decoded once and held on the device, batches gathered there; a larger one streams through one
    DataLoader whose sampler runs over all epochs (its workers start once, not every epoch)."""
    HOLD_BYTES = 4 << 30    # uint8 pixels: CIFAR-10 150 MB, CelebA 64x64 2.5 GB (decode_once)

    def __init__(self, dataset, batch_size, seed, rank, world, device, flip, workers=0):
        if len(dataset) < batch_size:
            raise DataError(f'the dataset has {len(dataset)} items, fewer than one batch of {batch_size}')
        self.dataset, self.batch_size, self.seed, self.rank, self.world = dataset, batch_size, seed, rank, world
        self.device, self.flip, self.workers = device, flip, workers
        self.epoch, self.pos, self.iterator = 0, 0, None
        self.flip_rng = torch.Generator().manual_seed(seed * 1000 + rank)
        if not isinstance(dataset, torch.utils.data.TensorDataset) and not hasattr(dataset, 'held'):
            try:                                                # decoded once, for both phases
                dataset.held = decode_once(dataset, self.HOLD_BYTES, workers)
            except ValueError as e:
                raise DataError(last_line(e)) from None
        tensors = getattr(dataset, 'tensors', None) or dataset.held
        self.held = tensors and [t.to(device) for t in (*tensors, PIXELS)]

    def _iterate(self):                                         # this rank's index lists from (epoch, pos) on
        epoch, pos, local = self.epoch, self.pos, self.batch_size // self.world
        while True:
            order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + 7919 * epoch))
            starts = range(pos * self.batch_size, len(self.dataset) - self.batch_size + 1, self.batch_size)
            yield from (order[s + self.rank * local: s + (self.rank + 1) * local].tolist() for s in starts)
            epoch, pos = epoch + 1, 0

    def next(self):
        if self.iterator is None:   # generator=: the DataLoader draws its workers' seeds there, not from the global RNG
            self.iterator = self._iterate() if self.held else iter(torch.utils.data.DataLoader(
                self.dataset, batch_sampler=self._iterate(), num_workers=self.workers,
                pin_memory=self.device.type == 'cuda', generator=torch.Generator()))
        try:
            batch = next(self.iterator)
        except ValueError as e:
            raise DataError(last_line(e)) from None
        if self.held:                                           # gathered (and uint8 decoded) on the device
            x, y, pixels = self.held
            i = torch.tensor(batch).to(self.device, non_blocking=True)
            batch = (pixels[x[i].long()] if x.dtype == torch.uint8 else x[i]), y[i]
        (x, y), full = batch, (self.pos + 1) * self.batch_size <= len(self.dataset)   # else it opened a new epoch
        self.epoch, self.pos = (self.epoch, self.pos + 1) if full else (self.epoch + 1, 1)   # (a loader runs ahead)
        if self.flip:                                           # random horizontal flip (CIFAR-10 training)
            mask = (torch.rand(len(x), generator=self.flip_rng) < 0.5).to(x.device, non_blocking=True)
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x.to(self.device, non_blocking=True), torch.as_tensor(y).to(self.device, non_blocking=True)

    def state_dict(self):
        return dict(epoch=self.epoch, pos=self.pos, flip_rng=self.flip_rng.get_state())

    def load_state_dict(self, state):
        self.epoch, self.pos, self.iterator = state['epoch'], state['pos'], None
        self.flip_rng.set_state(state['flip_rng'])
