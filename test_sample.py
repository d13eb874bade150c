"""sample.py as a user meets it: what it writes for a toy and an image model, that the samples are the generator's
(or the teacher sampler's) own outputs recomputed here by hand, seeding, FID through the written files, official /
torchcfm checkpoints, and one-line errors that leave the disk as it was. Also fid.path_stats on an .npz of images.

Models are tiny and trained in-process by train.main (seconds); sample.main runs in-process too (same code path as
the script, no 5 s torch import), except one test that checks a real process's stderr and exit code.

Restoration (--inputs): the samples of a coupled checkpoint recomputed by hand, input i's K samples in rows
i*K..i*K+K-1, the inputs written beside them, the refusals, and experiments/score_restorations.py reproducing the
numbers train.py's evaluation records for the same network and inputs.
"""
import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import couplings
import fid
import models
import sample
import train
from conftest import exit_code, frechet_of_samples, snapshot, uint8, write_images
from interpolants import make_interpolant

HERE = os.path.dirname(os.path.abspath(__file__))
TOY = ['--dataset', 'toy', '--cond', '--teacher-steps', 50, '--hidden', 32, '--steps', 2, '--k', 1, '--batch-size', 32,
       '--eval-samples', 64, '--nfe', 2]
IMAGES = ['--dataset', 'folder', '--cond', '--image-size', 16, '--channels', 16, '--channel-mult', 1, 2,
          '--res-blocks', 1, '--attn', 8, '--teacher-steps', 2, '--teacher-batch-size', 8, '--batch-size', 8,
          '--steps', 1, '--k', 1, '--eval-samples', 30, '--fid-samples', 0, '--workers', 0, '--nfe', 2]

pytestmark = pytest.mark.usefixtures('one_thread')


run = exit_code(sample.main)   # sample.main in-process: run(*argv) -> its exit code (0 when it returns)


def read_pngs(folder):
    names = sorted(f for f in os.listdir(folder) if f.endswith('.png') and f != 'grid.png')
    return names, np.stack([np.asarray(Image.open(os.path.join(folder, f))) for f in names])


def npz(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def noise(shape, seed=0):
    # what sample.py feeds the model in its first batch: fm's prior, b(1) = 1 times N(0, I) from a seeded generator
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def raw_net(state, config):
    # the bare network inside a saved Generator (fm: precondition is the identity, so its keys are 'net.*')
    net = models.build_model(config)
    net.load_state_dict({k.removeprefix('net.'): v for k, v in state.items()})
    return net.eval()


# ---------------------------------------------------------------------------------------------------- shared runs

@pytest.fixture(scope='module')
def toy_run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp('toy_run')
    assert train.main([str(a) for a in [*TOY, '--out', out]]) is None
    return out


@pytest.fixture(scope='module')
def image_run(tmp_path_factory, one_thread):
    data, out = tmp_path_factory.mktemp('images'), tmp_path_factory.mktemp('image_run')
    write_images(data)                                          # 3 colour classes of 12 16x16 images
    assert train.main([str(a) for a in [*IMAGES, '--data-dir', data, '--out', out]]) is None
    return out


@pytest.fixture(scope='module')
def toy_samples(toy_run, tmp_path_factory):
    out = tmp_path_factory.mktemp('toy_samples') / 's'
    assert run(toy_run / 'ckpt.pt', '--n', 100, '--npz', '--grid', '--out', out) == 0
    return out


@pytest.fixture(scope='module')
def image_pngs(image_run, tmp_path_factory):
    out = tmp_path_factory.mktemp('image_pngs') / 's'
    assert run(image_run / 'ckpt.pt', '--n', 30, '--out', out) == 0
    return out


@pytest.fixture(scope='module')
def image_npz(image_run, tmp_path_factory):
    out = tmp_path_factory.mktemp('image_npz') / 's'
    assert run(image_run / 'ckpt.pt', '--n', 30, '--npz', '--grid', '--out', out) == 0
    return out


# ---------------------------------------------------------------------------------------------------- toy

def test_toy_npz_has_exactly_n_points_with_labels_i_mod_classes(toy_samples):
    data = npz(toy_samples / 'samples.npz')
    assert data['arr_0'].shape == (100, 2) and data['arr_0'].dtype == np.float32
    assert np.isfinite(data['arr_0']).all()
    assert (data['labels'] == np.arange(100) % 8).all()         # the 8 modes of the toy
    counts = np.bincount(data['labels'], minlength=8)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 100


def test_toy_grid_is_the_scatter_plot_of_the_written_points(toy_samples, tmp_path):
    data = npz(toy_samples / 'samples.npz')
    fid.save_scatter(torch.from_numpy(data['arr_0']), torch.from_numpy(data['labels']), tmp_path / 'expected.png')
    expected = np.asarray(Image.open(tmp_path / 'expected.png'))
    assert np.array_equal(np.asarray(Image.open(toy_samples / 'grid.png')), expected)


def test_toy_without_npz_still_writes_the_npz_and_says_so(toy_run, tmp_path, capsys):
    assert run(toy_run / 'ckpt.pt', '--n', 10, '--out', tmp_path / 's') == 0
    assert sorted(os.listdir(tmp_path / 's')) == ['sample.json', 'samples.npz']
    assert npz(tmp_path / 's' / 'samples.npz')['arr_0'].shape == (10, 2)
    out = capsys.readouterr().out
    assert 'not PNGs' in out and 'sampled 10/10 | ' in out and ' samples/s' in out   # the progress line


def test_one_step_samples_are_z_minus_net_at_t1_of_the_chosen_ema(toy_run, toy_samples, tmp_path):
    # fm: G(z, y) = z - net(1, z, y) (App. D.1), recomputed here from the checkpoint's raw state dicts
    ckpt = torch.load(toy_run / 'ckpt.pt', map_location='cpu', weights_only=False)
    z, y = noise((100, 2)), torch.arange(100) % 8               # --batch-size 500 >= n: one batch, one draw of z

    def by_hand(state):
        with torch.no_grad():
            return (z - raw_net(state, ckpt['model'])(torch.ones(100), z, y)).numpy()
    largest = max(ckpt['emas'], key=float)                      # the default is the largest decay
    assert largest == '0.999'                                   # train.py's toy EMAs: 0.99 0.995 0.999
    assert np.allclose(npz(toy_samples / 'samples.npz')['arr_0'], by_hand(ckpt['emas'][largest]), rtol=0, atol=1e-6)
    assert run(toy_run / 'ckpt.pt', '--n', 100, '--ema', 'raw', '--out', tmp_path / 'raw') == 0
    raw = npz(tmp_path / 'raw' / 'samples.npz')['arr_0']
    assert np.allclose(raw, by_hand(ckpt['generator']), rtol=0, atol=1e-6)
    # two updates at lr 1e-3 move the raw generator ~1e-3 from its EMA 0.999: told apart at this tolerance
    assert np.abs(raw - by_hand(ckpt['emas'][largest])).max() > 1e-5


def test_teacher_samples_are_nfe_euler_steps_from_t1_to_t0(toy_run, tmp_path):
    # fm teacher sampler with 2 NFE: x <- x - 1/2 f(1, x); x <- x - 1/2 f(1/2, x) (Euler on dx/dt = f)
    assert run(toy_run / 'teacher.pt', '--nfe', 2, '--n', 50, '--out', tmp_path / 's') == 0
    f, _ = models.load_teacher(str(toy_run / 'teacher.pt'))
    x, y = noise((50, 2)), torch.arange(50) % 8
    with torch.no_grad():
        for t in (1.0, 0.5):
            x = x - 0.5 * f(torch.full((50,), t), x, y)
    assert np.allclose(npz(tmp_path / 's' / 'samples.npz')['arr_0'], x.numpy(), rtol=0, atol=1e-5)


def test_bridge_teacher_sde_noise_comes_from_the_seed(tmp_path):
    # the Euler-Maruyama noise is drawn from --seed's generator, not the global RNG: reseeding it changes nothing
    config = dict(kind='mlp', dim=2, hidden=16, num_layers=2, num_classes=None)
    torch.manual_seed(0)
    models.save_teacher(str(tmp_path / 'bridge.pt'), models.build_model(config), config,
                        extra=dict(config=dict(args=dict(interpolant='bridge'))))
    arrays = {}
    for name, seed, global_seed in (('a', 0, 1), ('b', 0, 2), ('c', 1, 1)):
        torch.manual_seed(global_seed)
        assert run(tmp_path / 'bridge.pt', '--nfe', 3, '--n', 20, '--seed', seed, '--out', tmp_path / name) == 0
        arrays[name] = npz(tmp_path / name / 'samples.npz')['arr_0']
    assert np.array_equal(arrays['a'], arrays['b']) and not np.allclose(arrays['a'], arrays['c'])
    # and it is the noise, not only z, that is seeded: the same z with other SDE noise gives other samples
    f, _ = models.load_teacher(str(tmp_path / 'bridge.pt'))
    g = torch.Generator().manual_seed(0)
    z = make_interpolant('bridge').prior((20, 2), None, g)
    other_noise = make_interpolant('bridge').generate(f, z, None, steps=3, generator=torch.Generator().manual_seed(9))
    same_noise = make_interpolant('bridge').generate(f, z, None, steps=3, generator=g)
    assert np.allclose(arrays['a'], same_noise.numpy(), atol=1e-6) and not np.allclose(arrays['a'], other_noise.numpy())


# ---------------------------------------------------------------------------------------------------- images

def test_image_pngs_are_exactly_n_uint8_files_and_their_labels(image_pngs):
    # the folder holds the samples, labels.txt and sample.json only: fid.py, pytorch-fid, clean-fid read every image
    names, pixels = read_pngs(image_pngs)
    assert names == [f'{i:06d}.png' for i in range(30)]
    assert sorted(os.listdir(image_pngs)) == [*names, 'labels.txt', 'sample.json']
    assert pixels.shape == (30, 16, 16, 3) and pixels.dtype == np.uint8
    with open(image_pngs / 'labels.txt') as f:
        assert [int(line) for line in f] == [i % 3 for i in range(30)]


def test_image_npz_is_the_generator_output_and_equals_the_pngs(image_run, image_npz, image_pngs):
    data = npz(image_npz / 'samples.npz')
    assert sorted(os.listdir(image_npz)) == ['grid.png', 'sample.json', 'samples.npz']
    assert data['arr_0'].shape == (30, 16, 16, 3) and data['arr_0'].dtype == np.uint8
    assert (data['labels'] == np.arange(30) % 3).all()
    assert np.array_equal(data['arr_0'], read_pngs(image_pngs)[1])   # the same seed, written either way
    ckpt = torch.load(image_run / 'ckpt.pt', map_location='cpu', weights_only=False)
    z, y = noise((30, 3, 16, 16)), torch.arange(30) % 3
    with torch.no_grad():
        expected = uint8(z - raw_net(ckpt['emas']['0.9999'], ckpt['model'])(torch.ones(30), z, y))
    assert np.array_equal(data['arr_0'], expected)


def test_image_grid_has_one_row_of_ten_per_class(image_npz):
    pixels, grid = npz(image_npz / 'samples.npz')['arr_0'], np.asarray(Image.open(image_npz / 'grid.png'))
    assert grid.shape == (2 + 3 * 18, 2 + 10 * 18, 3)           # 3 class rows of 10 tiles, make_grid's 2-pixel padding
    for row in range(3):
        for col in range(10):                                   # tile (row, col) is the col-th sample of class row
            tile = grid[2 + 18 * row: 18 * (row + 1), 2 + 18 * col: 18 * (col + 1)]
            assert np.array_equal(tile, pixels[3 * col + row])


def test_fid_path_stats_reads_an_npz_of_images_like_the_png_folder(image_npz, image_pngs):
    # fid.py's .npz route (python fid.py samples.npz stats.npz) against its folder route on the same pixels; a cheap
    # stand-in for the Inception (both routes hand it the same [-1, 1] tensors, which it resizes to 299 itself)
    def net():
        return lambda x: torch.nn.functional.adaptive_avg_pool2d(
            torch.nn.functional.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False), 4).flatten(1)
    mu, sigma = fid.path_stats(str(image_npz / 'samples.npz'), net, batch_size=7)
    mu_png, sigma_png = fid.path_stats(str(image_pngs), net, batch_size=7)
    assert mu.shape == (48,) and np.array_equal(mu, mu_png) and np.array_equal(sigma, sigma_png)


def test_same_seed_same_samples_other_seed_other_samples(image_run, image_npz, tmp_path):
    for seed in (0, 1):
        assert run(image_run / 'ckpt.pt', '--n', 30, '--npz', '--seed', seed, '--out', tmp_path / str(seed)) == 0
    first = npz(image_npz / 'samples.npz')['arr_0']
    assert np.array_equal(npz(tmp_path / '0' / 'samples.npz')['arr_0'], first)
    assert not np.array_equal(npz(tmp_path / '1' / 'samples.npz')['arr_0'], first)


def test_overwrite_replaces_a_previous_output_entirely(image_run, tmp_path):
    out = tmp_path / 's'
    assert run(image_run / 'ckpt.pt', '--n', 12, '--out', out) == 0
    assert run(image_run / 'ckpt.pt', '--n', 5, '--npz', '--out', out, '--overwrite') == 0
    assert sorted(os.listdir(out)) == ['sample.json', 'samples.npz']   # no PNG or labels.txt of the first run left


def test_sample_json_records_the_command(image_run, tmp_path):
    argv = [str(image_run / 'ckpt.pt'), '--n', '3', '--seed', '7', '--npz', '--out', str(tmp_path / 's')]
    assert run(*argv) == 0
    with open(tmp_path / 's' / 'sample.json') as f:
        record = json.load(f)
    assert record['command'] == ['sample.py', *argv] and record['sampled'].startswith('EMA 0.9999 generator')
    assert (record['checkpoint'], record['n'], record['seed'], record['npz']) == (argv[0], 3, 7, True)


def test_samples_npz_is_written_whole_or_not_at_all_and_overwrite_clears_the_leftover(image_run, tmp_path,
                                                                                      monkeypatch):
    savez, out = np.savez, tmp_path / 's'

    def killed(file, **arrays):  # writes half a file, then the run dies (a kill, a full disk)
        file.write(b'PK\x03\x04 half')
        raise KeyboardInterrupt
    monkeypatch.setattr(np, 'savez', killed)
    with pytest.raises(KeyboardInterrupt):
        run(image_run / 'ckpt.pt', '--n', 3, '--npz', '--out', out)
    assert sorted(os.listdir(out)) == ['sample.json']           # no truncated samples.npz, no temporary file
    (out / 'samples.npz.4242.tmp').write_bytes(b'PK\x03\x04 half')  # what a kill -9 leaves (the writer's pid)
    monkeypatch.setattr(np, 'savez', savez)
    assert run(image_run / 'ckpt.pt', '--n', 3, '--npz', '--out', out, '--overwrite') == 0
    assert sorted(os.listdir(out)) == ['sample.json', 'samples.npz'] and npz(out / 'samples.npz')['arr_0'].shape[0] == 3


def test_fid_printed_is_the_frechet_distance_of_the_written_images(image_run, inception_weights, tmp_path, capsys):
    # inception_weights: conftest's random weights, with which fid.FIDInceptionV3 matches pytorch-fid's network
    # (test_fid.py); the rest is recomputed here: the written PNGs read with PIL, numpy statistics, the trace term
    # in its n x n eigenvalue form (conftest.frechet_of_samples), not fid.path_stats / fid.frechet_distance
    rng = np.random.default_rng(0)                              # any reference statistics will do
    mu_ref, a = rng.standard_normal(2048) * 0.1, rng.standard_normal((2048, 64)) * 0.01
    sigma_ref = a @ a.T + 1e-3 * np.eye(2048)
    np.savez(tmp_path / 'ref.npz', mu=mu_ref, sigma=sigma_ref)
    assert run(image_run / 'ckpt.pt', '--n', 4, '--out', tmp_path / 's', '--fid', tmp_path / 'ref.npz',
               '--fid-weights', inception_weights) == 0
    printed = float(capsys.readouterr().out.strip().splitlines()[-1].removeprefix('FID: '))
    net = fid.FIDInceptionV3()
    net.load_state_dict(torch.load(inception_weights, weights_only=True))
    _, pixels = read_pngs(tmp_path / 's')
    assert pixels.shape == (4, 16, 16, 3)
    with torch.no_grad():
        features = net.eval()(torch.from_numpy(pixels).permute(0, 3, 1, 2).double().div(127.5).sub(1).float())
    expected = frechet_of_samples(features.double().numpy(), mu_ref, sigma_ref)
    # float32 features of the same pixels (batched alike), float64 statistics by two routes: measured 5e-8 relative
    assert expected > 1 and printed == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------------------- foreign formats

TINY_UNET = dict(models.CIFAR10_UNET, dim=[3, 8, 8], num_channels=16, num_res_blocks=1, channel_mult=[1, 2],
                 attention_resolutions='4', num_head_channels=-1, num_heads=2)


def official_unet(seed):
    # a flipped-time network (torchcfm / official RealUID convention), random small weights: outputs are not zero
    torch.manual_seed(seed)
    net = models.build_model(dict(TINY_UNET, num_classes=3))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return net.eval()


@pytest.fixture
def tiny_cifar_config(monkeypatch):  # models.load_teacher assumes the CIFAR-10 U-Net for foreign checkpoints
    monkeypatch.setattr(models, 'CIFAR10_UNET', TINY_UNET)


def test_official_generator_checkpoint_is_one_step_z_plus_g_at_time_0(tiny_cifar_config, tmp_path):
    # official generate.py: G(z) = z + gen(0, z, y) in their time; 'gen' raw, 'ema_gens' by decay (largest default)
    nets = {key: official_unet(seed) for seed, key in enumerate(['gen', '0.999', '0.9999'])}
    torch.save(dict(gen=nets['gen'].state_dict(), ema_gens={k: nets[k].state_dict() for k in ('0.999', '0.9999')},
                    u=nets['gen'].state_dict(), step=7), tmp_path / 'official.pt')
    z, y = noise((6, 3, 8, 8)), torch.arange(6) % 3
    for flags, key in (([], '0.9999'), (['--ema', '0.999'], '0.999')):
        assert run(tmp_path / 'official.pt', '--n', 6, '--npz', *flags, '--out', tmp_path / key) == 0
        with torch.no_grad():
            expected = uint8(z + nets[key](torch.zeros(6), z, y))
        assert np.array_equal(npz(tmp_path / key / 'samples.npz')['arr_0'], expected)


def test_torchcfm_teacher_is_euler_in_its_own_time(tiny_cifar_config, tmp_path):
    # torchcfm: dx/ds = v(s, x) from noise at s=0 to data at s=1; 2 Euler steps of 1/2 (its ema_model preferred)
    v = official_unet(0)
    torch.save(dict(ema_model=v.state_dict(), net_model=official_unet(1).state_dict()), tmp_path / 'cfm.pt')
    assert run(tmp_path / 'cfm.pt', '--nfe', 2, '--n', 6, '--npz', '--out', tmp_path / 's') == 0
    x, y = noise((6, 3, 8, 8)), torch.arange(6) % 3
    with torch.no_grad():
        for s in (0.0, 0.5):
            x = x + 0.5 * v(torch.full((6,), s), x, y)
    assert np.array_equal(npz(tmp_path / 's' / 'samples.npz')['arr_0'], uint8(x))


# ---------------------------------------------------------------------------------------------------- bad input

BAD = {  # name -> (argv with {toy}/{image}/{tmp} placeholders, phrase of the one line)
    'missing_checkpoint': (['{tmp}/missing.pt'], 'checkpoint {tmp}/missing.pt not found'),
    'not_a_checkpoint': (['{tmp}/notes.txt'], 'not a readable PyTorch checkpoint'),
    'dict_of_something_else': (['{tmp}/other.pt'], 'unrecognised checkpoint'),
    'n_zero': (['{toy}/ckpt.pt', '--n', 0], 'argument --n: must be an integer >= 1, got 0'),
    'n_negative': (['{toy}/ckpt.pt', '--n', -5], 'argument --n: must be an integer >= 1, got -5'),
    'unknown_ema': (['{toy}/ckpt.pt', '--ema', 0.5], 'no generator --ema 0.5 (it has: 0.99, 0.995, 0.999, raw)'),
    'nfe_zero': (['{toy}/teacher.pt', '--nfe', 0], 'argument --nfe: must be an integer >= 1, got 0'),
    'nfe_for_a_generator': (['{toy}/ckpt.pt', '--nfe', 4], 'is a one-step generator'),
    'ema_for_a_teacher': (['{toy}/teacher.pt', '--ema', 0.999], 'is a teacher'),
    'contradicting_interpolant': (['{toy}/teacher.pt', '--interpolant', 'vp'], 'trained with --interpolant fm, not vp'),
    'fid_missing_weights': (['{image}/ckpt.pt', '--fid', '{tmp}/ref.npz', '--fid-weights', '{tmp}/none.pth'],
                            'Inception weights not found'),
    'fid_reference_not_inception': (['{image}/ckpt.pt', '--fid', '{tmp}/small.npz'], 'statistics of dimension 2, not'),
    'fid_for_the_toy': (['{toy}/ckpt.pt', '--fid', '{tmp}/ref.npz'], '--fid needs images'),
    'grid_among_pngs': (['{image}/ckpt.pt', '--grid'], '--grid would put grid.png among the sample PNGs'),
    'out_not_empty': (['{toy}/ckpt.pt', '--out', '{tmp}/full'], 'is not empty (it holds keep.txt)'),
    'out_is_a_file': (['{toy}/ckpt.pt', '--out', '{tmp}/notes.txt'], '--out {tmp}/notes.txt is a file, not a folder'),
    'out_under_a_file': (['{toy}/ckpt.pt', '--out', '{tmp}/notes.txt/s'],
                         'cannot create that folder (Not a directory)'),
    'overwrite_of_other_files': (['{toy}/ckpt.pt', '--out', '{tmp}/full', '--overwrite'],
                                 'holds files sample.py does not write (e.g. keep.txt)'),
    'overwrite_of_pngs_not_ours': (['{image}/ckpt.pt', '--n', 2, '--npz', '--out', '{tmp}/pngs', '--overwrite'],
                                   '--out {tmp}/pngs has no sample.json, so it is not a sample.py output'),
    'seed_too_large': (['{toy}/ckpt.pt', '--seed', 99999999999999999999999],
                       'argument --seed: must be an integer in [0, 2**32), got 99999999999999999999999'),
    'seed_2_to_the_32': (['{toy}/ckpt.pt', '--seed', 2 ** 32], 'must be an integer in [0, 2**32), got 4294967296'),
    'seed_negative': (['{toy}/ckpt.pt', '--seed', -1], 'argument --seed: must be an integer in [0, 2**32), got -1'),
    'fid_of_one_sample': (['{image}/ckpt.pt', '--n', 1, '--fid', '{tmp}/ref.npz', '--fid-weights', '{tmp}/none.pth'],
                          '--fid needs --n >= 2 (a covariance of samples), got 1'),
    'fid_truncated_reference': (['{image}/ckpt.pt', '--fid', '{tmp}/truncated.npz'],
                                '--fid: {tmp}/truncated.npz: cannot read .npz (File is not a zip file)'),
}


@pytest.mark.parametrize('name', BAD)
def test_bad_input_is_one_line_exit_2_and_leaves_the_disk_as_it_was(name, toy_run, image_run, tmp_path, capsys):
    (tmp_path / 'notes.txt').write_text('not a checkpoint\n')
    torch.save({'weights': [1, 2]}, tmp_path / 'other.pt')
    np.savez(tmp_path / 'ref.npz', mu=np.zeros(2048), sigma=np.eye(2048))
    np.savez(tmp_path / 'small.npz', mu=np.zeros(2), sigma=np.eye(2))
    os.makedirs(tmp_path / 'full')
    (tmp_path / 'full' / 'keep.txt').write_text('keep me\n')
    os.makedirs(tmp_path / 'pngs')                              # the user's own images, named as sample.py names its
    Image.new('RGB', (16, 16)).save(tmp_path / 'pngs' / '000000.png')
    (tmp_path / 'truncated.npz').write_bytes((tmp_path / 'ref.npz').read_bytes()[:5000])
    argv, phrase = BAD[name]
    argv = [str(a).format(toy=toy_run, image=image_run, tmp=tmp_path) for a in argv]
    argv += [] if '--out' in argv else ['--out', str(tmp_path / 'new')]
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = run(*argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and 'Traceback' not in err, err
    assert err.startswith('sample.py: error: ') and phrase.format(tmp=tmp_path) in err, err
    assert snapshot(tmp_path) == before and not os.path.exists(tmp_path / 'new')   # nothing sampled or removed


def test_bad_input_in_a_real_process_is_one_stderr_line(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, 'sample.py', str(tmp_path / 'missing.pt'), '--out', str(tmp_path / 's')],
                            cwd=HERE, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ''
    assert result.stderr.splitlines() == [f'sample.py: error: checkpoint {tmp_path / "missing.pt"} not found']


# ------------------------------------------------------------------------------------ devices and folders it cannot use

@pytest.mark.parametrize('device, says', [('meta', '--device meta: runs on cpu, cuda or mps'),
                                          ('mps', '--device mps: PyTorch sees no MPS device here')])
def test_a_device_this_machine_cannot_sample_on_is_one_line(device, says, toy_run, tmp_path, capsys):
    if device == 'mps' and torch.backends.mps.is_available():
        pytest.skip('this machine has MPS')
    assert run(toy_run / 'ckpt.pt', '--n', 4, '--device', device, '--out', tmp_path / 's') == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f'sample.py: error: {says}' and not os.path.exists(tmp_path / 's')


def test_an_out_it_may_not_write_is_one_line_and_leaves_nothing(toy_run, tmp_path, capsys, monkeypatch):
    # as root, chmod does not stop a write: a folder it may not write into is os.access's answer, and a write that
    # fails anyway (PermissionError) is caught the same way
    (tmp_path / 'locked').mkdir()
    real_access = os.access
    monkeypatch.setattr(os, 'access', lambda path, mode: False if 'locked' in str(path) else real_access(path, mode))
    assert run(toy_run / 'ckpt.pt', '--n', 4, '--out', tmp_path / 'locked' / 's') == 2
    assert 'locked is not writable' in capsys.readouterr().err and os.listdir(tmp_path / 'locked') == []
    monkeypatch.setattr(os, 'access', real_access)
    real_open = open

    def denied(path, *args, **kwargs):
        if str(path).endswith(sample.MARKER):
            raise PermissionError(13, 'Permission denied', str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr('builtins.open', denied)
    assert run(toy_run / 'ckpt.pt', '--n', 4, '--out', tmp_path / 'denied' / 'a' / 's') == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f'sample.py: error: --out {tmp_path / "denied" / "a" / "s"}: cannot write there (Permission denied)'
    assert not os.path.exists(tmp_path / 'denied')               # the folders it had created are gone again


# --------------------------------------------------------------------------------------- official generators: --ema raw

def test_ema_raw_takes_the_official_raw_gen_network(tiny_cifar_config, tmp_path):
    # official generate_samples.py --mode one_step without --ema_decay: model.load_state_dict(checkpoint['gen'])
    nets = {key: official_unet(seed) for seed, key in enumerate(['gen', '0.999'])}
    torch.save(dict(gen=nets['gen'].state_dict(), ema_gens={'0.999': nets['0.999'].state_dict()},
                    u=nets['0.999'].state_dict(), step=7), tmp_path / 'official.pt')
    assert run(tmp_path / 'official.pt', '--n', 6, '--npz', '--ema', 'raw', '--out', tmp_path / 'raw') == 0
    z, y = noise((6, 3, 8, 8)), torch.arange(6) % 3
    with torch.no_grad():
        expected = uint8(z + nets['gen'](torch.zeros(6), z, y))
    assert np.array_equal(npz(tmp_path / 'raw' / 'samples.npz')['arr_0'], expected)
    torch.save(dict(ema_gens={'0.999': nets['0.999'].state_dict()}), tmp_path / 'ema_only.pt')
    assert run(tmp_path / 'ema_only.pt', '--n', 6, '--npz', '--ema', 'raw', '--out', tmp_path / 'none') == 2


def test_teacher_key_and_ema_naming_no_network_are_one_line_listing_the_keys(toy_run, tiny_cifar_config, tmp_path,
                                                                             capsys):
    # --teacher-key raw on our teacher.pt (one network: the EMA of --teacher-ema 0.999) sampled that EMA silently
    nets = {key: official_unet(seed) for seed, key in enumerate(['0.999', '0.9999'])}
    torch.save(dict(ema_gens={k: net.state_dict() for k, net in nets.items()}), tmp_path / 'official.pt')
    for argv, phrase in [([toy_run / 'teacher.pt', '--teacher-key', 'raw'], 'no network for ema_key raw (keys it '
                          'has: 0.999)'),
                         ([toy_run / 'teacher.pt', '--teacher-key', 0.99], 'ema_key 0.99 (keys it has: 0.999)'),
                         ([tmp_path / 'official.pt', '--ema', 'raw'], 'ema_key raw (keys it has: 0.999, 0.9999)')]:
        capsys.readouterr()
        assert run(*argv, '--n', 4, '--out', tmp_path / 's') == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith('sample.py: error: ') and phrase in err, err
        assert not os.path.exists(tmp_path / 's')
    assert run(toy_run / 'teacher.pt', '--teacher-key', '0.9990', '--n', 4, '--npz', '--out', tmp_path / 'a') == 0
    assert run(toy_run / 'teacher.pt', '--n', 4, '--npz', '--out', tmp_path / 'b') == 0
    assert np.array_equal(npz(tmp_path / 'a' / 'samples.npz')['arr_0'], npz(tmp_path / 'b' / 'samples.npz')['arr_0'])


# ---------------------------------------------------------------------------------------------------- restoration

# a coupled toy run (App. C): its source noise is not 1, so a sampler that ignores s gives other numbers
COUPLED_TOY = ['--dataset', 'toy', '--coupling', 'toy-noise0.5', '--source-noise', 0.5, '--alpha', 0.98, '--beta', 0.96,
               '--teacher-steps', 300, '--hidden', 64, '--steps', 2, '--k', 1, '--batch-size', 64, '--eval-every', 2,
               '--nfe', 2]
S = 0.5
# train.model_config for --coupling sr2 --image-size 16 --channels 16 --channel-mult 1 2 --res-blocks 1 --attn 8
SR2_UNET = dict(kind='unet', dim=[3, 16, 16], num_channels=16, num_res_blocks=1, channel_mult=[1, 2],
                attention_resolutions=['8'], dropout=0.0, num_classes=None, num_head_channels=-1, num_heads=4,
                cond_channels=3)
LOW_NAMES = ['d.png', 'b.png', 'sub/a.png', 'a.png', 'c.png']   # written in this order; read in sorted path order
SORTED = [3, 1, 4, 0, 2]                                        # a.png b.png c.png d.png sub/a.png


def score_restorations(monkeypatch):
    # experiments/score_restorations.py, loaded from its file (experiments/ is not a package; it imports cli from there)
    monkeypatch.syspath_prepend(os.path.join(HERE, 'experiments'))
    spec = importlib.util.spec_from_file_location('score_restorations',
                                                  os.path.join(HERE, 'experiments', 'score_restorations.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def coupled_toy(tmp_path_factory, one_thread):
    """-> (OUT, [(c, samples (N, K, 2), metrics)]): what train.py's evaluation scored, call by call (the teacher
    first, then the networks at each evaluation: generator, ema0.99, ema0.995, ema0.999)."""
    out, calls, metrics = tmp_path_factory.mktemp('coupled_toy'), [], couplings.restoration_metrics

    def recording(coupling, x0, c, samples, generator=None):
        result = metrics(coupling, x0, c, samples, generator)
        calls.append((c.clone(), samples.clone(), result))
        return result
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(couplings, 'restoration_metrics', recording)
        assert train.main([str(a) for a in [*COUPLED_TOY, '--out', out]]) is None
    return out, calls


@pytest.fixture(scope='module')
def sr2(tmp_path_factory):
    """-> (folder with ckpt.pt and low/, the bare network, the low-resolution pixels in sorted file order): a
    restorer saved as train.py saves one (model, emas, args), random weights, so outputs depend on z and c."""
    root = tmp_path_factory.mktemp('sr2')
    torch.manual_seed(0)
    net = models.build_model(SR2_UNET)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    interp = make_interpolant('fm')
    generator = models.Generator(interp.precondition(net), interp)
    torch.save(dict(model=SR2_UNET, emas={'0.9999': generator.state_dict()}, step=3,
                    args=dict(interpolant='fm', coupling='sr2', source_noise=S)), root / 'ckpt.pt')
    pixels = torch.randint(256, (5, 8, 8, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8).numpy()
    os.makedirs(root / 'low' / 'sub')
    for name, image in zip(LOW_NAMES, pixels):
        Image.fromarray(image).save(root / 'low' / name)
    return root, net.eval(), pixels[SORTED]


def by_hand(net, z, c):
    # fm: G(z, c) = z - net(1, z, c) (App. D.1, with c in the label slot)
    with torch.no_grad():
        return z - net(torch.ones(len(z)), z, c)


def test_restorations_are_g_of_c_plus_s_zeta_and_input_i_owns_rows_ik_to_ik_plus_k(coupled_toy, tmp_path):
    # 5 inputs x 3 samples in batches of 4: batches cut inputs in two, each batch draws its own zeta from --seed
    out, _ = coupled_toy
    c = 2 * torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    np.savez(tmp_path / 'c.npz', arr_0=c.numpy())
    assert run(out / 'ckpt.pt', '--inputs', tmp_path / 'c.npz', '--per-input', 3, '--batch-size', 4, '--seed', 2,
               '--out', tmp_path / 's') == 0
    ckpt = torch.load(out / 'ckpt.pt', map_location='cpu', weights_only=False)
    g, rows = torch.Generator().manual_seed(2), c.repeat_interleave(3, 0)   # row i*3 + j: input i
    zeta = torch.cat([torch.randn(len(rows[i:i + 4]), 2, generator=g) for i in range(0, 15, 4)])
    expected = by_hand(raw_net(ckpt['emas']['0.999'], ckpt['model']), rows + S * zeta, rows)
    data = npz(tmp_path / 's' / 'samples.npz')
    assert sorted(data) == ['arr_0', 'inputs'] and data['arr_0'].shape == (15, 2)
    assert np.allclose(data['arr_0'], expected.numpy(), rtol=0, atol=1e-6)
    assert data['inputs'].dtype == np.float32 and np.array_equal(data['inputs'], c.numpy())   # the inputs, as given
    with open(tmp_path / 's' / 'sample.json') as f:
        record = json.load(f)
    assert (record['coupling'], record['source_noise'], record['per_input'], record['n']) == ('toy-noise0.5', S, 3, 15)


def test_teacher_restorations_are_its_sampler_from_c_plus_s_zeta_given_c(coupled_toy, tmp_path):
    # fm with --nfe 2: x <- x - 1/2 f(1, x, c); x <- x - 1/2 f(1/2, x, c), from x = c + s zeta
    out, _ = coupled_toy
    c = 2 * torch.randn(4, 2, generator=torch.Generator().manual_seed(3))
    np.savez(tmp_path / 'c.npz', arr_0=c.numpy().astype(np.float64))        # float64 inputs: the networks get float32
    assert run(out / 'teacher.pt', '--nfe', 2, '--inputs', tmp_path / 'c.npz', '--per-input', 2, '--seed', 5,
               '--out', tmp_path / 's') == 0
    f, _ = models.load_teacher(str(out / 'teacher.pt'))
    rows = c.repeat_interleave(2, 0)
    x = rows + S * torch.randn(8, 2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for t in (1.0, 0.5):
            x = x - 0.5 * f(torch.full((8,), t), x, rows)
    data = npz(tmp_path / 's' / 'samples.npz')
    assert np.allclose(data['arr_0'], x.numpy(), rtol=0, atol=1e-5)
    assert data['inputs'].dtype == np.float64 and np.array_equal(data['inputs'], c.numpy().astype(np.float64))


def test_samples_of_input_i_follow_the_posterior_of_input_i(coupled_toy, tmp_path):
    # inputs on 4 modes, 2.8 apart: each block of K rows sits on its own input's exact posterior (measured: mean
    # 0.02-0.11 from the posterior mean, cswd 0.14, mode_tv 0.03; blocks of another input: 2.7+ and 2.0, 1.0)
    out, _ = coupled_toy
    angle = torch.arange(4) * math.pi / 2
    c = 2 * torch.stack([angle.cos(), angle.sin()], 1)
    np.savez(tmp_path / 'c.npz', arr_0=c.numpy())
    assert run(out / 'ckpt.pt', '--inputs', tmp_path / 'c.npz', '--per-input', 200, '--grid',
               '--out', tmp_path / 's') == 0
    x = torch.from_numpy(npz(tmp_path / 's' / 'samples.npz')['arr_0']).view(4, 200, 2)
    coupling = couplings.make_coupling('toy-noise0.5')
    log_weights, means, _ = coupling.posterior(c)
    posterior_mean = (log_weights.exp()[..., None] * means).sum(1)
    assert (x.mean(1) - posterior_mean).norm(dim=1).max() < 0.3
    exact = coupling.posterior_sample(c, 200, torch.Generator().manual_seed(0))
    assert couplings.cswd(x, exact) < 0.3 and couplings.mode_tv(coupling, c, x) < 0.1
    # --grid: the samples of the first 8 inputs (here 4), a colour each, as train.py's samples_*.png
    fid.save_scatter(x.flatten(0, 1), torch.arange(4).repeat_interleave(200), tmp_path / 'expected.png')
    assert np.array_equal(np.asarray(Image.open(tmp_path / 's' / 'grid.png')),
                          np.asarray(Image.open(tmp_path / 'expected.png')))


def test_scored_restorations_of_train_pys_inputs_are_the_numbers_train_py_records(coupled_toy, tmp_path, capsys,
                                                                                    monkeypatch):
    # the acceptance route: score_restorations.py --write-inputs -> sample.py --per-input 500 --seed 1 (train.py's
    # evaluation draws its sources from seed 1 in chunks of 500) -> score_restorations.py (exact samples from seed 7)
    out, calls = coupled_toy
    score = score_restorations(monkeypatch)
    assert exit_code(score.main)('--write-inputs', tmp_path / 'c.npz', '--coupling', 'toy-noise0.5') == 0
    c = npz(tmp_path / 'c.npz')['arr_0']
    assert c.shape == (32, 2) and np.array_equal(c, calls[0][0].numpy())   # train.py's held-out inputs
    with open(out / 'metrics.jsonl') as f:
        records = [json.loads(line) for line in f]
    teacher, ema = records[0]['metrics']['teacher_nfe2'], records[-1]['metrics']['ema0.999']
    assert ema == calls[-1][2] and teacher == calls[0][2]          # the last call scored ema0.999, the first teacher
    for checkpoint, flags, (_, samples, recorded) in (('ckpt.pt', [], calls[-1]),
                                                      ('teacher.pt', ['--nfe', 2], calls[0])):
        assert run(out / checkpoint, *flags, '--inputs', tmp_path / 'c.npz', '--per-input', 500, '--seed', 1,
                   '--npz', '--out', tmp_path / checkpoint) == 0
        assert np.allclose(npz(tmp_path / checkpoint / 'samples.npz')['arr_0'], samples.flatten(0, 1).numpy(), rtol=0,
                           atol=1e-6)                               # train.py's rows i*500 + j, in sample.py's order
        capsys.readouterr()
        assert exit_code(score.main)(tmp_path / checkpoint / 'samples.npz') == 0   # the coupling from sample.json
        printed = json.loads(capsys.readouterr().out)
        assert (printed['inputs'], printed['per_input'], printed['coupling']) == (32, 500, 'toy-noise0.5')
        assert printed['cswd'] == pytest.approx(recorded['cswd'], rel=1e-6)
        assert printed['mode_tv'] == pytest.approx(recorded['mode_tv'], rel=1e-6)
        assert printed['off_mode'] == pytest.approx(recorded['off_mode'], abs=1 / 16000)   # one sample of 32 x 500
    assert teacher['cswd'] < 0.9 * ema['cswd']                      # two networks told apart: not one number twice


def test_sr2_restores_a_folder_of_low_resolution_images_in_sorted_order(sr2, tmp_path):
    root, net, pixels = sr2
    assert run(root / 'ckpt.pt', '--inputs', root / 'low', '--per-input', 2, '--seed', 4, '--npz', '--grid',
               '--out', tmp_path / 's') == 0
    low = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 * 2 - 1                   # PNG -> [-1, 1]
    c = low.repeat_interleave(2, 2).repeat_interleave(2, 3)                                    # nearest up to 16x16
    rows = c.repeat_interleave(2, 0)
    z = rows + S * torch.randn(10, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    data = npz(tmp_path / 's' / 'samples.npz')
    assert sorted(os.listdir(tmp_path / 's')) == ['grid.png', 'sample.json', 'samples.npz']
    assert np.array_equal(data['arr_0'], uint8(by_hand(net, z, rows)))
    assert data['inputs'].shape == (5, 8, 8, 3) and np.array_equal(data['inputs'], pixels)   # as read, uint8
    grid = np.asarray(Image.open(tmp_path / 's' / 'grid.png'))
    assert grid.shape == (2 + 5 * 18, 2 + 3 * 18, 3)               # a row per input: input | 2 samples
    for i in range(5):
        tiles = [grid[2 + 18 * i: 18 * (i + 1), 2 + 18 * col: 18 * (col + 1)] for col in range(3)]
        assert np.array_equal(tiles[0], uint8(c[i:i + 1])[0])       # the input, as the networks see it
        assert all(np.array_equal(tiles[1 + j], data['arr_0'][2 * i + j]) for j in range(2))


def test_sr2_pngs_come_with_inputs_npz_and_every_input_format_gives_the_same_samples(sr2, tmp_path):
    root, net, pixels = sr2
    assert run(root / 'ckpt.pt', '--inputs', root / 'low', '--per-input', 2, '--out', tmp_path / 'p') == 0
    names, pngs = read_pngs(tmp_path / 'p')
    assert sorted(os.listdir(tmp_path / 'p')) == [*names, 'inputs.npz', 'sample.json'] and len(names) == 10
    assert np.array_equal(npz(tmp_path / 'p' / 'inputs.npz')['arr_0'], pixels)     # not an image among the samples
    np.savez(tmp_path / 'float.npz', arr_0=fid.uint8_to_images(pixels).numpy())     # float (N, 3, 8, 8) in [-1, 1]
    for inputs in (tmp_path / 'p' / 'inputs.npz', tmp_path / 'float.npz'):       # the first read before replaced
        assert run(root / 'ckpt.pt', '--inputs', inputs, '--per-input', 2, '--npz', '--out', tmp_path / 'p',
                   '--overwrite') == 0
        assert sorted(os.listdir(tmp_path / 'p')) == ['sample.json', 'samples.npz']   # no PNG or inputs.npz left
        assert np.array_equal(npz(tmp_path / 'p' / 'samples.npz')['arr_0'], pngs)
    one = root / 'low' / 'b.png'                                    # one image file: it is the one input
    assert run(root / 'ckpt.pt', '--inputs', one, '--per-input', 2, '--npz', '--out', tmp_path / 'one') == 0
    c = fid.uint8_to_images(pixels[1:2]).repeat_interleave(2, 2).repeat_interleave(2, 3).expand(2, -1, -1, -1)
    z = c + S * torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(npz(tmp_path / 'one' / 'samples.npz')['arr_0'], uint8(by_hand(net, z, c)))


RESTORE_BAD = {  # name -> (argv with {coupled}/{sr2}/{toy}/{tmp} placeholders, phrase of the one line)
    'inputs_for_an_unconditional_checkpoint': (['{tmp}/uncond.pt', '--inputs', '{tmp}/c.npz'],
                                               'a checkpoint trained with train.py --coupling); {tmp}/uncond.pt is '
                                               'unconditional: sample it without --inputs'),
    'inputs_for_a_class_conditional_checkpoint': (['{toy}/ckpt.pt', '--inputs', '{tmp}/c.npz'],
                                                  'is class-conditional: sample it without --inputs'),
    'coupled_generator_without_inputs': (['{coupled}/ckpt.pt'], 'restores inputs corrupted by --coupling '
                                         'toy-noise0.5: pass --inputs, an .npz whose arr_0 holds the corrupted points, '
                                         'float (N, 2)'),
    'coupled_teacher_without_inputs': (['{coupled}/teacher.pt'], 'teacher.pt restores inputs corrupted by --coupling'),
    'sr2_without_inputs': (['{sr2}/ckpt.pt'], 'pass --inputs, a folder of 8x8 images (the low-resolution images of '
                           '16x16 ones) or an .npz whose arr_0 holds them: uint8 (N, 8, 8, 3) or float (N, 3, 8, 8)'),
    'per_input_without_inputs': (['{coupled}/ckpt.pt', '--per-input', 3], '--per-input K is the number of samples '
                                 'drawn for each input: it needs --inputs'),
    'per_input_zero': (['{coupled}/ckpt.pt', '--inputs', '{tmp}/c.npz', '--per-input', 0],
                       'argument --per-input: must be an integer >= 1, got 0'),
    'n_with_inputs': (['{coupled}/ckpt.pt', '--inputs', '{tmp}/c.npz', '--n', 8], '--n is set by --inputs'),
    'fid_with_inputs': (['{sr2}/ckpt.pt', '--inputs', '{sr2}/low', '--fid', '{tmp}/c.npz'],
                        '--fid compares unconditional samples with a dataset; restorations of --inputs are scored'),
    'inputs_not_found': (['{coupled}/ckpt.pt', '--inputs', '{tmp}/absent.npz'], '--inputs {tmp}/absent.npz not found'),
    'npz_without_arr_0': (['{coupled}/ckpt.pt', '--inputs', '{tmp}/noarr.npz'], 'has no arr_0 (it holds: x);'),
    'npz_of_no_inputs': (['{coupled}/ckpt.pt', '--inputs', '{tmp}/empty.npz'], 'arr_0 holds no inputs (shape (0, 2))'),
    'toy_points_of_3_coordinates': (['{coupled}/ckpt.pt', '--inputs', '{tmp}/c3.npz'],
                                    'toy-noise0.5 inputs must be (N, 2) for data of shape (2,), got (4, 3)'),
    'toy_integers': (['{coupled}/ckpt.pt', '--inputs', '{tmp}/int.npz'], 'arr_0 is int64 (4, 2); toy-noise0.5'),
    'toy_nan': (['{coupled}/ckpt.pt', '--inputs', '{tmp}/nan.npz'], 'arr_0 holds non-finite values'),
    'toy_given_images': (['{coupled}/ckpt.pt', '--inputs', '{sr2}/low'], 'is images; toy-noise0.5 on data of shape '
                         '(2,) takes an .npz'),
    'image_of_the_output_size': (['{sr2}/ckpt.pt', '--inputs', '{tmp}/mixed'], '--inputs {tmp}/mixed/b.png is 16x16 '
                                 'pixels; sr2 on data of shape (3, 16, 16) takes a folder of 8x8 images'),
    'uint8_npz_of_the_output_size': (['{sr2}/ckpt.pt', '--inputs', '{tmp}/big.npz'], 'arr_0 is uint8 (2, 16, 16, 3);'),
    'uint8_npz_of_4_channels': (['{sr2}/ckpt.pt', '--inputs', '{tmp}/rgba.npz'], 'arr_0 is uint8 (2, 8, 8, 4);'),
    'float_npz_of_1_channel': (['{sr2}/ckpt.pt', '--inputs', '{tmp}/gray.npz'],
                               'sr2 inputs must be (N, 3, 8, 8) for data of shape (3, 16, 16), got (2, 1, 8, 8)'),
    'image_model_given_toy_points': (['{sr2}/ckpt.pt', '--inputs', '{tmp}/c.npz'], 'got (4, 2)'),
    'empty_folder': (['{sr2}/ckpt.pt', '--inputs', '{tmp}/emptydir'], '--inputs {tmp}/emptydir: no images (.bmp/'),
    'unreadable_image': (['{sr2}/ckpt.pt', '--inputs', '{tmp}/broken'], '{tmp}/broken/x.png: cannot read image'),
    'neither_images_nor_npz': (['{coupled}/ckpt.pt', '--inputs', '{tmp}/notes.txt'],
                               'is not a folder of images, an image (.bmp/.jpeg/.jpg/.png/.webp) or an .npz'),
    'truncated_npz': (['{coupled}/ckpt.pt', '--inputs', '{tmp}/truncated.npz'], 'cannot read .npz'),
    'grid_among_restored_pngs': (['{sr2}/ckpt.pt', '--inputs', '{sr2}/low', '--grid'],
                                 '--grid would put grid.png among the sample PNGs'),
}


@pytest.mark.parametrize('name', RESTORE_BAD)
def test_bad_restoration_input_is_one_line_exit_2_and_leaves_the_disk_as_it_was(name, coupled_toy, sr2, toy_run,
                                                                                 tmp_path, capsys):
    arrays = dict(c=np.ones((4, 2), np.float32), c3=np.ones((4, 3), np.float32), int=np.ones((4, 2), np.int64),
                  nan=np.array([[np.nan, 0]] * 4, np.float32), empty=np.zeros((0, 2), np.float32),
                  big=np.zeros((2, 16, 16, 3), np.uint8), rgba=np.zeros((2, 8, 8, 4), np.uint8),
                  gray=np.zeros((2, 1, 8, 8), np.float32))
    for key, array in arrays.items():
        np.savez(tmp_path / f'{key}.npz', arr_0=array)
    np.savez(tmp_path / 'noarr.npz', x=np.ones((4, 2), np.float32))
    (tmp_path / 'truncated.npz').write_bytes((tmp_path / 'c.npz').read_bytes()[:100])
    (tmp_path / 'notes.txt').write_text('not inputs\n')
    for folder in ('emptydir', 'mixed', 'broken'):
        os.makedirs(tmp_path / folder)
    Image.new('RGB', (8, 8)).save(tmp_path / 'mixed' / 'a.png')
    Image.new('RGB', (16, 16)).save(tmp_path / 'mixed' / 'b.png')
    (tmp_path / 'broken' / 'x.png').write_bytes(b'\x89PNG not really')
    config = dict(kind='mlp', dim=2, hidden=16, num_layers=2, num_classes=None)
    models.save_teacher(str(tmp_path / 'uncond.pt'), models.build_model(config), config,
                        extra=dict(config=dict(args=dict(interpolant='fm'))))
    argv, phrase = RESTORE_BAD[name]
    argv = [str(a).format(coupled=coupled_toy[0], sr2=sr2[0], toy=toy_run, tmp=tmp_path) for a in argv]
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = run(*argv, '--out', tmp_path / 'new')
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and 'Traceback' not in err, err
    assert err.startswith('sample.py: error: ') and phrase.format(tmp=tmp_path) in err, err
    assert snapshot(tmp_path) == before and not os.path.exists(tmp_path / 'new')   # nothing sampled or removed
