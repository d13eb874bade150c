"""data.py: the toy set, CIFAR-10 and image folders as datasets, and Batches: the order a run sees (sharded over
ranks, resumable), the same whether the data is held on the device or streamed."""
import os

import pytest
import torch
import torchvision

import data
import fid
from conftest import write_images

pytestmark = pytest.mark.usefixtures('one_thread')


# ------------------------------------------------------------------------------------------------------------- toy data

def test_toy_reference_is_class_balanced_like_the_conditional_samples():
    # The conditional generator is evaluated on labels 0..7 in turn; an i.i.d. reference has multinomial class
    # counts, which alone put two *real* samples of 4 000 points 0.045-0.08 apart (the floor the README's toy
    # comparisons would sit on). With a balanced reference two real samples are near the sampling floor.
    balanced = [fid.sliced_wasserstein(data.toy_data(4000, s, balanced=True)[0].double(),
                                       data.toy_data(4000, 4321, balanced=True)[0].double()) for s in range(5)]
    iid = [fid.sliced_wasserstein(data.toy_data(4000, s)[0].double(), data.toy_data(4000, 4321)[0].double())
           for s in range(5)]
    assert max(balanced) < 0.03 and min(iid) > max(balanced), (balanced, iid)
    _, y = data.toy_data(4000, 0, balanced=True)
    assert torch.equal(torch.bincount(y), torch.full((8,), 500))


# ------------------------------------------------------------------------------------------- CIFAR-10 and image folders

def test_cifar10_loader_reads_torchvision_layout_into_minus_one_one(fake_cifar10):
    root, images, labels = fake_cifar10
    dataset, shape, num_classes = data.make_dataset('cifar10', str(root), image_size=32)
    assert shape == (3, 32, 32) and num_classes == 10 and len(dataset) == len(images) == 40
    for i in (0, 17, 39):
        x, y = dataset[i]
        expected = torch.from_numpy(images[i]).permute(2, 0, 1).float() / 255 * 2 - 1   # (3, 32, 32)
        assert x.shape == (3, 32, 32) and y == labels[i]
        # 1e-6: ToTensor's /255 then Normalize(0.5, 0.5) vs the same in another order, float32 rounding only
        assert torch.allclose(x, expected, atol=1e-6)
    x0 = dataset[0][0]
    assert x0[0, 0, 0] == -1 and x0[0, 0, 1] == 1 and x0.min() >= -1 and x0.max() <= 1


def test_linked_folders_in_an_image_folder_do_not_multiply_images(tmp_path):
    write_images(tmp_path / 'data', classes=2, per_class=6)
    os.symlink('..', tmp_path / 'data' / 'class0' / 'loop')         # 12 images became hundreds, class1's as class0
    write_images(tmp_path / 'elsewhere', classes=1, per_class=4)
    os.symlink(tmp_path / 'elsewhere' / 'class0', tmp_path / 'data' / 'class1' / 'outside')
    os.symlink(tmp_path / 'elsewhere' / 'class0' / '00.png', tmp_path / 'data' / 'class1' / 'linked.png')  # counts
    dataset, _, classes = data.make_dataset('folder', str(tmp_path / 'data'), image_size=32, cond=True)
    assert classes == 2 and len(dataset) == 13
    assert sorted(dataset.targets) == [0] * 6 + [1] * 7


# --------------------------------------------------------------------------------------------------- held on the device

def test_decode_once_holds_uint8_that_decode_to_the_datasets_exact_values():
    # what Batches holds on the device: PIXELS[u8] must be bit for bit what ToTensor + Normalize(0.5, 0.5)
    # returns for every 8-bit value, else resumed and held runs would differ from streamed ones
    u8 = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).repeat(6, 3, 1, 1)
    tf = torchvision.transforms.Normalize([0.5] * 3, [0.5] * 3)
    images = torch.stack([tf(u.float().div(255)) for u in u8])         # ToTensor's arithmetic, then Normalize
    dataset = torch.utils.data.TensorDataset(images, torch.arange(6) % 3)
    held = data.decode_once(dataset, max_bytes=10 ** 6)
    assert held is not None                                            # every value is an exact 8-bit one
    x, y = held
    assert x.dtype == torch.uint8 and torch.equal(x, u8) and torch.equal(y, torch.arange(6) % 3)
    assert torch.equal(data.PIXELS[x.long()], images)
    assert data.decode_once(dataset, max_bytes=6 * 3 * 256 - 1) is None   # does not fit: stream it instead
    blurred = torch.utils.data.TensorDataset(images * 0.999, torch.zeros(6))   # not 8-bit values: no exact uint8 form
    assert data.decode_once(blurred, max_bytes=10 ** 6) is None


# -------------------------------------------------------------------------------------------------------------- Batches

def test_batches_shard_the_global_batch_over_ranks():
    # DDP: --batch-size is global; rank r takes the r-th half of the same epoch permutation
    dataset = torch.utils.data.TensorDataset(torch.arange(100.)[:, None], torch.arange(100))
    whole = data.Batches(dataset, 16, 0, 0, 1, torch.device('cpu'), flip=False)
    halves = [data.Batches(dataset, 16, 0, rank, 2, torch.device('cpu'), flip=False) for rank in (0, 1)]
    for _ in range(8):                                              # 6 batches per epoch: crosses an epoch
        x, _ = whole.next()
        x0, _ = halves[0].next()
        x1, _ = halves[1].next()
        assert len(x0) == len(x1) == 8 and torch.equal(torch.cat([x0, x1]), x)


class OldBatches:
    """The reference order Batches must reproduce bit for bit, written the plain way: a new DataLoader each epoch,
    flips on the CPU, nothing held on the device."""
    def __init__(self, dataset, batch_size, seed, rank, world, device, flip, workers=0):
        self.dataset, self.batch_size, self.seed, self.rank, self.world = dataset, batch_size, seed, rank, world
        self.device, self.flip, self.workers = device, flip, workers
        self.epoch, self.pos, self.iterator = 0, 0, None
        self.flip_rng = torch.Generator().manual_seed(seed * 1000 + rank)

    def _iterate(self):
        local = self.batch_size // self.world
        while True:
            seed = self.seed + 7919 * self.epoch
            order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(seed))
            starts = range(self.pos * self.batch_size, len(self.dataset) - self.batch_size + 1, self.batch_size)
            batches = [order[s + self.rank * local: s + (self.rank + 1) * local].tolist() for s in starts]
            if isinstance(self.dataset, torch.utils.data.TensorDataset):
                yield from (tuple(t[i] for t in self.dataset.tensors) for i in batches)
            else:
                yield from torch.utils.data.DataLoader(self.dataset, batch_sampler=batches, num_workers=self.workers,
                                                       pin_memory=self.device.type == 'cuda',
                                                       generator=torch.Generator())
            self.epoch, self.pos = self.epoch + 1, 0

    def next(self):
        self.iterator = self.iterator or self._iterate()
        x, y = next(self.iterator)
        self.pos += 1
        if self.flip:
            mask = torch.rand(len(x), generator=self.flip_rng) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x.to(self.device, non_blocking=True), torch.as_tensor(y).to(self.device, non_blocking=True)

    def state_dict(self):
        return dict(epoch=self.epoch, pos=self.pos, flip_rng=self.flip_rng.get_state())


@pytest.mark.parametrize('hold', [True, False], ids=['held-on-device', 'one-persistent-loader'])
def test_batches_are_the_reference_order_across_epochs_ranks_and_resume(hold, tmp_path, monkeypatch):
    # 36 images in batches of 8: 4 batches an epoch (4 images left over), so 11 batches cross two epoch ends; the
    # state is saved and restored into a fresh object mid-epoch (after 2, 6) and at an epoch's end (after 8)
    write_images(tmp_path / 'images')
    monkeypatch.setattr(data.Batches, 'HOLD_BYTES', data.Batches.HOLD_BYTES if hold else 0)
    iterators = []
    real_iter = torch.utils.data.DataLoader.__iter__

    def counted_iter(loader):                                   # the new class's loaders (OldBatches' take lists)
        iterators.extend([] if isinstance(loader.batch_sampler, list) else [1])
        return real_iter(loader)
    monkeypatch.setattr(torch.utils.data.DataLoader, '__iter__', counted_iter)
    dataset = data.make_dataset('folder', str(tmp_path / 'images'), image_size=16)[0]
    for world, rank in [(1, 0), (2, 1)]:
        setup = (dataset, 8, 5, rank, world, torch.device('cpu'), True)
        old, new = OldBatches(*setup), data.Batches(*setup)
        assert (new.held is not None) == hold
        del iterators[:]
        for i in range(1, 12):
            (x_old, y_old), (x, y) = old.next(), new.next()
            assert x.dtype == x_old.dtype and torch.equal(x, x_old) and torch.equal(y, y_old), f'batch {i}'
            state = new.state_dict()
            assert state['epoch'] == old.state_dict()['epoch'] and state['pos'] == old.state_dict()['pos']
            assert torch.equal(state['flip_rng'], old.state_dict()['flip_rng'])
            if i in (2, 6, 8):                                  # as --resume does: a fresh object, the saved state
                new = data.Batches(*setup)
                new.load_state_dict(state)
        # held: no DataLoader after the one-time decode; streamed: one per resume (3) plus the first, not one an epoch
        assert len(iterators) == (0 if hold else 4)


def test_hold_out_splits_off_a_fixed_disjoint_part(tmp_path):
    # a coupled run's evaluation pairs: n items that neither phase trains on, the same ones every run
    x, y = data.toy_data(100, seed=0)
    rest, held = data.hold_out(torch.utils.data.TensorDataset(x, y), 10)
    assert isinstance(rest, torch.utils.data.TensorDataset) and len(rest) == 90 and len(held) == 10
    together = torch.cat([rest.tensors[0], held.tensors[0]])
    assert torch.equal(together.unique(dim=0), x.unique(dim=0))           # disjoint, and nothing lost
    again = data.hold_out(torch.utils.data.TensorDataset(x, y), 10)[1]
    assert torch.equal(again.tensors[0], held.tensors[0]) and not torch.equal(held.tensors[0], x[:10])
    write_images(tmp_path, classes=2, per_class=5, size=8)
    folder = data.image_folder(str(tmp_path))
    rest, held = data.hold_out(folder, 3)
    assert sorted(rest.indices + held.indices) == list(range(10))
    assert rest.targets == [folder.targets[i] for i in rest.indices]     # --teacher-keep reads them
    with pytest.raises(data.DataError, match='too few to hold out 10'):
        data.hold_out(held, 10)
