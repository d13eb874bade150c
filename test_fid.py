"""FID tests: the Frechet distance against closed forms and the sqrtm formula; the Inception layout against
pytorch-fid's weights file; the CLI and the statistics cache. Offline: weights are random, saved to a tmp hub cache."""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

import fid

HERE = os.path.dirname(os.path.abspath(__file__))


def sqrtm_frechet_distance(mu1, sigma1, mu2, sigma2):  # pytorch-fid's formula, the independent reference
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return ((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real


def random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.5 * np.eye(d)  # eigenvalues in about [0.5, 4.5]: condition number < 10


def random_inception_weights(seed=0):
    """A state dict with the layout of ours, random but scaled so that pool3 features are O(1), BN not the identity."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in fid.FIDInceptionV3().state_dict().items():
        rand = torch.rand(value.shape, generator=generator) if value.is_floating_point() else None
        if value.dim() == 4:  # conv: He init
            value = torch.randn(value.shape, generator=generator) * (2 / value[0].numel()) ** 0.5
        elif key.endswith(('bn.weight', 'running_var')):
            value = 0.8 + 0.4 * rand
        elif key.endswith(('bn.bias', 'running_mean')):
            value = 0.2 * rand - 0.1
        elif key.startswith('fc.'):
            value = 0.01 * torch.randn(value.shape, generator=generator)
        state[key] = value
    return state


@pytest.fixture(scope='session')
def hub_home(tmp_path_factory):  # a TORCH_HOME whose hub cache holds random weights under the real file name
    home = tmp_path_factory.mktemp('torch_home')
    os.makedirs(home / 'hub' / 'checkpoints')
    torch.save(random_inception_weights(), home / 'hub' / 'checkpoints' / fid.WEIGHTS_NAME)
    return home


@pytest.fixture
def offline(monkeypatch):  # any download attempt fails, as without internet
    def refuse(*args, **kwargs):
        raise OSError('no network in tests')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', refuse)


def write_pngs(folder, seed, count=4, size=32):
    rng = np.random.default_rng(seed)
    os.makedirs(folder)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f'{i}.png')
    return str(folder)


def run_cli(*args, torch_home):
    env = dict(os.environ, TORCH_HOME=str(torch_home))
    return subprocess.run([sys.executable, os.path.join(HERE, 'fid.py'), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


# --- Frechet distance ---

@pytest.mark.parametrize('seed', range(3))
def test_frechet_distance_matches_closed_form_for_commuting_covariances(seed):
    # Diagonal covariances commute: (S1 S2)^1/2 = diag(sqrt(a b)), so FID = ||mu1 - mu2||^2 + sum (sqrt a - sqrt b)^2.
    # rtol 1e-10: float64 eigh of a diagonal matrix is exact to a few ulps; 64 terms of O(1) leave ~1e-14.
    rng = np.random.default_rng(seed)
    mu1, mu2, a, b = rng.standard_normal(64), rng.standard_normal(64), rng.uniform(0.1, 3, 64), rng.uniform(0.1, 3, 64)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize('seed', range(5))
def test_frechet_distance_matches_sqrtm_formula(seed):
    # Both routes are exact in exact arithmetic; with condition number < 10 either loses at most ~1e-13 relative,
    # so 1e-8 leaves a wide margin yet catches any formula error (which would be O(1)).
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(64), rng.standard_normal(64)
    sigma1, sigma2 = random_spd(rng, 64), random_spd(rng, 64)
    expected = sqrtm_frechet_distance(mu1, sigma1, mu2, sigma2)
    assert fid.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_rank_deficient_is_finite_real_and_zero_on_itself():
    # 10 samples in 64 dims give covariances of rank 9; sqrtm of such products is ill-posed, the eigen route is not.
    rng = np.random.default_rng(0)
    mu1, sigma1 = fid.feature_stats(rng.standard_normal((10, 64)))
    mu2, sigma2 = fid.feature_stats(rng.standard_normal((10, 64)) + 1)
    distance = fid.frechet_distance(mu1, sigma1, mu2, sigma2)
    assert isinstance(distance, float) and np.isfinite(distance) and distance > 0
    # Identical statistics: the sub-rank eigenvalues are zeroed, so only float64 rounding of O(Tr S) terms remains.
    assert abs(fid.frechet_distance(mu1, sigma1, mu1, sigma1)) < 1e-12 * np.trace(sigma1)
    zero = np.zeros((64, 64))  # all-zero covariances: the distance of two point masses
    assert fid.frechet_distance(mu1, zero, mu2, zero) == pytest.approx(((mu1 - mu2) ** 2).sum(), rel=1e-12)
    assert fid.frechet_distance(mu1, zero, mu2, sigma2) == pytest.approx(((mu1 - mu2) ** 2).sum() + np.trace(sigma2))


def test_feature_stats_is_float64_mean_and_unbiased_covariance():
    features = np.random.default_rng(0).standard_normal((20, 5)).astype(np.float32)
    mu, sigma = fid.feature_stats(features)
    assert mu.dtype == sigma.dtype == np.float64
    # Same float32 inputs promoted to float64 by both sides: agreement to float64 rounding.
    np.testing.assert_allclose(sigma, np.cov(features.astype(np.float64).T, ddof=1), rtol=1e-12)


# --- Inception network and weights ---

# Names and shapes read from pytorch-fid's pt_inception-2015-12-05-6726825d.pth layout (fid_inception_v3()).
EXPECTED_SHAPES = {
    'Conv2d_1a_3x3.conv.weight': (32, 3, 3, 3),
    'Conv2d_1a_3x3.bn.num_batches_tracked': (),
    'Conv2d_4a_3x3.bn.running_var': (192,),
    'Mixed_5b.branch_pool.conv.weight': (32, 192, 1, 1),
    'Mixed_5d.branch5x5_2.conv.weight': (64, 48, 5, 5),
    'Mixed_6e.branch7x7dbl_5.conv.weight': (192, 192, 1, 7),
    'Mixed_7b.branch3x3dbl_3b.conv.weight': (384, 384, 3, 1),
    'Mixed_7c.branch_pool.conv.weight': (192, 2048, 1, 1),
    'fc.weight': (1008, 2048),
    'fc.bias': (1008,),
}


def test_load_inception_from_hub_cache_strict_with_pytorch_fid_layout(hub_home, monkeypatch, offline):
    monkeypatch.setenv('TORCH_HOME', str(hub_home))
    net = fid.load_inception()  # load_state_dict is strict: any missing or extra key raises
    state = net.state_dict()
    assert len(state) == 566 and sum(key.endswith('num_batches_tracked') for key in state) == 94
    assert {key: tuple(state[key].shape) for key in EXPECTED_SHAPES} == EXPECTED_SHAPES
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    features = net(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert features.shape == (1, 2048) and features.dtype == torch.float32 and features.isfinite().all()


def test_missing_weights_raise_with_expected_path(tmp_path, monkeypatch, offline):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    with pytest.raises(fid.InceptionWeightsNotFound) as error:
        fid.load_inception()
    expected_path = str(tmp_path / 'hub' / 'checkpoints' / fid.WEIGHTS_NAME)
    assert expected_path in str(error.value) and '\n' not in str(error.value)


def test_features_do_not_depend_on_batch_size(hub_home):
    # Eval mode (BN uses running stats), so batch size only changes CPU kernel blocking: float32 rounding, ~1e-6.
    net = fid.load_inception(hub_home / 'hub' / 'checkpoints' / fid.WEIGHTS_NAME)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    one_by_one = fid.inception_features(net, images.split(1))
    all_at_once = fid.inception_features(net, [images])
    assert np.abs(all_at_once).mean() > 0.1  # random weights still give O(1) features, so atol is meaningful
    np.testing.assert_allclose(one_by_one, all_at_once, atol=1e-5, rtol=1e-5)


def test_generator_stats_class_balanced_labels():
    seen = []

    def sample_fn(n_batch, labels):
        seen.append(labels)
        return torch.zeros(n_batch, 3, 8, 8)
    mu, sigma = fid.generator_stats(sample_fn, n=23, batch_size=10, num_classes=5, net=lambda x: x.flatten(1)[:, :4])
    assert [len(labels) for labels in seen] == [10, 10, 3] and mu.shape == (4,) and sigma.shape == (4, 4)
    assert torch.bincount(torch.cat(seen)).tolist() == [5, 5, 5, 4, 4]  # 23 // 5 each, remainder spread


def test_matches_pytorch_fid_features(monkeypatch):
    # Same random weights in both networks; theirs takes [0, 1], ours [-1, 1]. Same float32 ops in a different order
    # (resize before/after the affine map) give ~1e-6 differences on O(1) features, hence 1e-4.
    inception = pytest.importorskip('pytorch_fid.inception')
    state = random_inception_weights(seed=1)
    monkeypatch.setattr(inception, 'load_state_dict_from_url', lambda *args, **kwargs: state)
    theirs = inception.InceptionV3([3]).eval()
    ours = fid.FIDInceptionV3()
    ours.load_state_dict(state)
    ours.eval()
    for size in (32, 299):
        images = torch.rand(2, 3, size, size)
        with torch.no_grad():
            expected, got = theirs(images)[0].flatten(1), ours(images * 2 - 1)
        assert expected.abs().mean() > 0.1
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


# --- statistics cache and CLI ---

def test_dataset_stats_cached_once(tmp_path, monkeypatch):
    calls = []
    real_features = fid.inception_features

    def counted_features(*args):
        calls.append(args)
        return real_features(*args)
    monkeypatch.setattr(fid, 'inception_features', counted_features)
    dataset = torch.utils.data.TensorDataset(torch.randn(6, 3, 4, 4), torch.zeros(6))  # (image, label) pairs

    def net(x):  # a stand-in feature map: the cache logic does not need Inception
        return x.flatten(1)[:, :5]
    first = fid.dataset_stats('toy', dataset, tmp_path, resolution=4, split='train', batch_size=4, net=net)
    second = fid.dataset_stats('toy', dataset, tmp_path, resolution=4, split='train', batch_size=4, net=net)
    assert len(calls) == 1 and os.listdir(tmp_path) == ['toy-4-train.npz']  # no leftover tmp file
    with np.load(tmp_path / 'toy-4-train.npz') as cached:
        assert sorted(cached.files) == ['mu', 'sigma']
    for a, b in zip(first, second):  # the cache stores float64 exactly
        np.testing.assert_array_equal(a, b)


def test_cli_two_folders_then_saved_stats_against_same_folder_is_zero(tmp_path, hub_home):
    folder_a, folder_b = write_pngs(tmp_path / 'a', seed=0), write_pngs(tmp_path / 'b', seed=1)
    assert run_cli(folder_a, '--save-stats', tmp_path / 'a.npz', torch_home=hub_home).returncode == 0
    result = run_cli(folder_a, folder_b, '--batch-size', 3, torch_home=hub_home)
    assert result.returncode == 0, result.stderr
    distance = float(result.stdout.split('FID:')[1])
    assert np.isfinite(distance) and distance > 0
    # Saved stats of a folder against the folder itself: identical features (same batches, eval mode), and the
    # covariance of 4 samples has rank 3 in 2048 dims: the rank threshold leaves only float64 rounding of Tr S.
    result = run_cli(tmp_path / 'a.npz', folder_a, torch_home=hub_home)
    assert result.returncode == 0, result.stderr
    assert abs(float(result.stdout.split('FID:')[1])) < 1e-9 * distance


def test_cli_missing_folder_is_one_line_exit_2(tmp_path):
    result = run_cli(tmp_path / 'missing', tmp_path / 'missing', torch_home=tmp_path)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    expected = f'fid.py: error: {tmp_path / "missing"}: no such image folder or .npz file'
    assert result.stderr.strip().splitlines() == [expected]


@pytest.mark.parametrize('bad', ['empty_folder', 'npz_without_stats', 'missing_weights'])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, bad):  # in-process main(): same code path, no startup
    os.makedirs(tmp_path / 'empty_folder')
    np.savez(tmp_path / 'npz_without_stats.npz', x=np.zeros(3))
    images = write_pngs(tmp_path / 'images', seed=0, count=1)
    weights = tmp_path / 'missing.pth'  # an explicit --weights path is never downloaded to, so this stays offline
    path, named = {'empty_folder': (tmp_path / 'empty_folder',) * 2,
                   'npz_without_stats': (tmp_path / 'npz_without_stats.npz',) * 2,
                   'missing_weights': (images, weights)}[bad]
    with pytest.raises(SystemExit) as exit_:
        fid.main([str(path), str(path), '--weights', str(weights)])
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2 and len(stderr.strip().splitlines()) == 1 and str(named) in stderr
