"""FID tests: the Frechet distance against closed forms and the sqrtm formula; the Inception layout against
pytorch-fid's weights file; the CLI and the statistics cache. Offline: weights are random, saved to a tmp hub cache."""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import torch
import torchvision
from PIL import Image

import fid
from conftest import frechet_of_samples, random_inception_weights

HERE = os.path.dirname(os.path.abspath(__file__))
# pool3 features of pytorch-fid's own network for fixed images under random_inception_weights(0): see the test below
REFERENCE = os.path.join(HERE, 'tests', 'data', 'inception_pool3_reference.npz')


def sqrtm_frechet_distance(mu1, sigma1, mu2, sigma2):  # pytorch-fid's formula, the independent reference
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return ((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real


def random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.5 * np.eye(d)  # eigenvalues in about [0.5, 4.5]: condition number < 10


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


def run_cli(*args, torch_home):  # one thread: on a busy shared CPU, multi-threaded eigh/conv stall (measured 2x slower)
    env = dict(os.environ, TORCH_HOME=str(torch_home), OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, os.path.join(HERE, 'fid.py'), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


# --- Frechet distance ---

@pytest.fixture
def eigh_fallback_calls(monkeypatch):  # records each call of the eigh route that frechet_distance falls back to
    calls, fallback = [], fid._frechet_distance_eigh

    def spy(*args):
        calls.append(args)
        return fallback(*args)
    monkeypatch.setattr(fid, '_frechet_distance_eigh', spy)
    return calls


@pytest.mark.parametrize('seed', range(3))
def test_frechet_distance_matches_closed_form_for_commuting_covariances(seed, eigh_fallback_calls):
    # Diagonal covariances commute: (S1 S2)^1/2 = diag(sqrt(a b)), so FID = ||mu1 - mu2||^2 + sum (sqrt a - sqrt b)^2.
    # rtol 1e-10: float64 Cholesky and eigvalsh of diagonal matrices are exact to a few ulps; 64 O(1) terms: ~1e-14.
    rng = np.random.default_rng(seed)
    mu1, mu2, a, b = rng.standard_normal(64), rng.standard_normal(64), rng.uniform(0.1, 3, 64), rng.uniform(0.1, 3, 64)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    assert eigh_fallback_calls == []  # positive definite sigma1: the Cholesky route


@pytest.mark.parametrize('route', ['cholesky', 'eigh_fallback'])
@pytest.mark.parametrize('seed', range(5))
def test_frechet_distance_matches_sqrtm_formula(seed, route, eigh_fallback_calls):
    # All routes are exact in exact arithmetic; with condition number < 10 each loses ~1e-15 relative (measured
    # < 3e-15 against sqrtm), so 1e-10 has a wide margin yet catches any formula error (which would be O(1)).
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(64), rng.standard_normal(64)
    sigma1, sigma2 = random_spd(rng, 64), random_spd(rng, 64)
    expected = sqrtm_frechet_distance(mu1, sigma1, mu2, sigma2)
    distance = {'cholesky': fid.frechet_distance, 'eigh_fallback': fid._frechet_distance_eigh}[route]
    assert distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-10)
    assert len(eigh_fallback_calls) == (route == 'eigh_fallback')


def reference_on_range(mu1, sigma1, mu2, sigma2, basis):
    """sqrtm formula restricted to the range of a singular sigma1 (orthonormal columns `basis` = U): S1 = U A U^T, so
    S1 S2 has the nonzero eigenvalues of A (U^T S2 U), a well-posed r x r product whose sqrtm gives Tr (S1 S2)^1/2."""
    a, b = basis.T @ sigma1 @ basis, basis.T @ sigma2 @ basis
    trace_sqrt = np.trace(scipy.linalg.sqrtm(a @ b)).real
    return ((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt


@pytest.mark.parametrize('case', ['fewer_samples_than_dims', 'constant_feature'])
def test_frechet_distance_singular_sigma1_falls_back_to_eigh_and_matches_reference_on_range(case, eigh_fallback_calls):
    rng = np.random.default_rng(0)
    d = 16
    if case == 'fewer_samples_than_dims':  # 10 samples in 16 dims: rank 9, range = span of the centred samples
        features = rng.standard_normal((10, d))
        basis = np.linalg.svd(features - features.mean(0))[2][:9].T  # (d, 9); SVD, independent of torch's eigh
    else:  # feature 3 is the constant 0.5 (exact in binary), so its row and column of sigma1 are exactly 0
        features = rng.standard_normal((200, d)) @ (np.eye(d) + 0.3 * rng.standard_normal((d, d)))
        features[:, 3] = 0.5
        basis = np.delete(np.eye(d), 3, axis=1)  # (d, 15): every axis but the constant one
    mu1, sigma1 = fid.feature_stats(features)
    mu2, sigma2 = fid.feature_stats(rng.standard_normal((200, d)) * rng.uniform(0.5, 2, d) + 0.3)
    assert torch.linalg.cholesky_ex(torch.as_tensor(sigma1))[1] > 0  # the premise: Cholesky of sigma1 fails
    distance = fid.frechet_distance(mu1, sigma1, mu2, sigma2)
    assert len(eigh_fallback_calls) == 1
    assert isinstance(distance, float) and np.isfinite(distance)
    # Both sides are well conditioned on the range (measured 2e-15 relative). Sub-rank eigenvalues of ~1e-16 that
    # escaped the rank threshold would add ~sqrt(1e-16) each (measured 2e-9 to 8e-9), so 1e-10 also checks it.
    assert distance == pytest.approx(reference_on_range(mu1, sigma1, mu2, sigma2, basis), rel=1e-10)


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


# --- metrics without Inception: sliced Wasserstein, pixel statistics ---

def test_sliced_wasserstein_in_1d_is_w2_of_the_optimal_assignment():
    # In 1-D every unit direction is +-1, so the sliced distance is W2 itself, here computed independently as the
    # cheapest pairing under squared cost (Hungarian algorithm, no sorting). float64 sums of 40 terms: rel 1e-12.
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 1)), rng.exponential(size=(40, 1))
    rows, cols = scipy.optimize.linear_sum_assignment((x - y.T) ** 2)
    expected = np.sqrt(((x[rows, 0] - y[cols, 0]) ** 2).mean())
    got = fid.sliced_wasserstein(torch.from_numpy(x), torch.from_numpy(y), projections=8)
    assert isinstance(got, float) and got == pytest.approx(expected, rel=1e-12)


def test_sliced_wasserstein_of_shifted_copy_is_shift_norm_over_sqrt_d():
    # y = x + s shifts every projection by theta.s, so sorted projections differ by exactly theta.s and SW^2 is the
    # mean of (theta.s)^2 over the directions, whose expectation over uniform unit theta is |s|^2 / d. Per direction
    # (theta.s)^2 / (|s|^2 / d) has relative std sqrt(2 (d - 1) / (d + 2)) (a Beta(1/2, (d-1)/2) variable), so with P
    # directions SW has relative std sqrt(2 (d - 1) / (d + 2) / P) / 2: tolerance 5 of those (2% at d=8, P=20000).
    d, projections = 8, 20_000
    rng = np.random.default_rng(0)
    x, shift = torch.from_numpy(rng.standard_normal((64, d))), torch.from_numpy(rng.standard_normal(d))
    tolerance = 5 * np.sqrt(2 * (d - 1) / (d + 2) / projections) / 2
    expected = float(shift.norm()) / np.sqrt(d)
    assert fid.sliced_wasserstein(x, x + shift, projections) == pytest.approx(expected, rel=tolerance)


def test_sliced_wasserstein_is_zero_on_itself_symmetric_and_ignores_sample_order():
    rng = np.random.default_rng(0)
    x, y = torch.from_numpy(rng.standard_normal((50, 3))), torch.from_numpy(rng.standard_normal((50, 3)) + 1)
    distance = fid.sliced_wasserstein(x, y)
    assert distance > 0.5 and fid.sliced_wasserstein(x, x) == 0  # sorting pairs equal values: exactly 0
    assert fid.sliced_wasserstein(y, x) == distance  # same squared differences, same sum order: exact
    assert fid.sliced_wasserstein(x[rng.permutation(50)], y) == distance  # sorting erases the order: exact
    assert fid.sliced_wasserstein(x, y, seed=1) != distance  # the seed picks the directions
    with pytest.raises(ValueError, match='equal-size'):
        fid.sliced_wasserstein(x, y[:49])


def test_pixel_stats_of_constant_images_is_that_constant_with_zero_covariance():
    channel_values = torch.tensor([-0.5, 0.25, 1.0], dtype=torch.float32)  # exact in binary: every mean is exact
    images = channel_values.view(1, 3, 1, 1).expand(20, 3, 32, 32)
    mu, sigma = fid.pixel_stats(images)
    assert mu.dtype == sigma.dtype == np.float64 and mu.shape == (192,) and sigma.shape == (192, 192)
    np.testing.assert_array_equal(mu, np.repeat(channel_values.numpy(), 64))  # flattened (C, 8, 8): channel-major
    np.testing.assert_array_equal(sigma, 0)


@pytest.mark.parametrize('image_size, size', [(32, 8), (64, 8), (16, 4)])
def test_pixel_stats_is_gaussian_stats_of_block_means(image_size, size):
    # Independent pooling: numpy block means over (image_size / size)^2 pixels. float64 sums of <= 64 terms in another
    # order differ by ~1e-16 relative, so rel 1e-12 is rounding only.
    images = torch.rand(30, 3, image_size, image_size, dtype=torch.float64) * 2 - 1
    k = image_size // size
    pooled = images.numpy().reshape(30, 3, size, k, size, k).mean(axis=(3, 5)).reshape(30, -1)
    mu, sigma = fid.pixel_stats(images, size)
    np.testing.assert_allclose(mu, pooled.mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sigma, np.cov(pooled, rowvar=False), rtol=1e-12, atol=1e-15)


def test_gaussian_stats_flattens_non_batch_dims_in_float64():
    x = torch.randn(20, 2, 3, dtype=torch.float32)
    mu, sigma = fid.gaussian_stats(x)
    assert mu.dtype == sigma.dtype == np.float64 and mu.shape == (6,) and sigma.shape == (6, 6)
    flat = x.numpy().reshape(20, 6).astype(np.float64)  # float32 -> float64 is exact: same numbers on both sides
    np.testing.assert_array_equal(mu, flat.mean(0))
    np.testing.assert_array_equal(sigma, np.cov(flat, rowvar=False))


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
    with np.load(REFERENCE) as reference:  # the hub cache holds random_inception_weights(0), as the reference used
        features = net(fid.uint8_to_images(reference['images'][:1]))
        assert features.shape == (1, 2048) and features.dtype == torch.float32
        torch.testing.assert_close(features, torch.from_numpy(reference['features'][:1]), atol=1e-4, rtol=1e-4)


def test_pool3_features_equal_pytorch_fids_network_on_the_committed_reference(inception_weights):
    """Our network's numerics in every default run, without pytorch-fid or the real weights: pool3 features of two
    fixed 32x32 uint8 images under random weights, against tests/data/inception_pool3_reference.npz, which pytorch-fid's
    own network computed once (experiments/inception_reference.py: pytorch-fid 0.3.0, InceptionV3([3]) on images / 255,
    weights conftest.random_inception_weights(0) in its layout; the same weights are in the `inception_weights` file).

    Tolerance atol = rtol = 1e-4 on features of mean |f| 0.43: the same float32 operations in another order (their
    resize comes before the map to [-1, 1], ours after) and other CPU kernels differ by ~1e-6. Resizing with
    align_corners=True, without the bilinear resize, or mapping to [-1, 1] twice moves the features by 1e-2 to 1.
    """
    net = fid.load_inception(inception_weights)
    with np.load(REFERENCE) as reference:
        images, expected = reference['images'], torch.from_numpy(reference['features'])
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8 and expected.shape == (2, 2048)
    with torch.no_grad():
        got = net(fid.uint8_to_images(images))
    assert expected.abs().mean() > 0.1  # O(1) features: atol 1e-4 is a relative statement
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


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
    assert torch.equal(torch.cat(seen), torch.arange(23) % 5)  # 23 // 5 each, the remainder on the first classes


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


def test_cli_two_folders_then_saved_stats_against_same_folder_is_zero(tmp_path, hub_home, monkeypatch, capsys):
    # fid.main in this process (the subprocess route and its one-line errors: the tests below), weights from the hub
    def cli(*args):
        fid.main([str(a) for a in args])
        return capsys.readouterr().out
    monkeypatch.setenv('TORCH_HOME', str(hub_home))
    folder_a, folder_b = write_pngs(tmp_path / 'a', seed=0), write_pngs(tmp_path / 'b', seed=1)
    cli(folder_a, '--save-stats', tmp_path / 'a.npz')
    assert sorted(os.listdir(tmp_path)) == ['a', 'a.npz', 'b']                 # no temporary file left
    distance = float(cli(folder_a, folder_b, '--batch-size', 3).split('FID:')[1])
    # the value, independently: PNGs read here to [-1, 1] (the network itself is checked against pytorch-fid's above),
    # numpy statistics and the n x n eigenvalue form of the trace term (conftest.frechet_of_samples)
    net = fid.load_inception(hub_home / 'hub' / 'checkpoints' / fid.WEIGHTS_NAME)

    def features(folder):
        pixels = np.stack([np.asarray(Image.open(os.path.join(folder, f'{i}.png'))) for i in range(4)])
        with torch.no_grad():
            return net(torch.from_numpy(pixels).permute(0, 3, 1, 2).double().div(127.5).sub(1).float()).double().numpy()
    features_b = features(folder_b)
    expected = frechet_of_samples(features(folder_a), features_b.mean(0), np.cov(features_b, rowvar=False))
    # float32 features from batches of 3 (the CLI) and of 4 (here) differ in rounding; measured 1.5e-6 relative
    assert expected > 1 and distance == pytest.approx(expected, rel=1e-4)
    # Saved stats of a folder against the folder itself: identical features (same batches, eval mode), and the
    # covariance of 4 samples has rank 3 in 2048 dims: the rank threshold leaves only float64 rounding of Tr S.
    assert abs(float(cli(tmp_path / 'a.npz', folder_a).split('FID:')[1])) < 1e-9 * distance


def test_cli_missing_folder_is_one_line_exit_2(tmp_path):
    result = run_cli(tmp_path / 'missing', tmp_path / 'missing', torch_home=tmp_path)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    expected = f'fid.py: error: {tmp_path / "missing"}: no such image folder or .npz file'
    assert result.stderr.strip().splitlines() == [expected]


def write_unreadable_image(folder, kind):  # a file with an image extension that PIL cannot decode
    if kind == 'truncated_png':
        data = (folder / '0.png').read_bytes()
        path = folder / 'truncated.png'
        path.write_bytes(data[:len(data) // 2])  # valid header, half the pixel data
    else:
        path = folder / 'text.png'
        path.write_text('not an image\n')
    return path


@pytest.mark.parametrize('kind', ['truncated_png', 'text_named_png'])
def test_image_folder_names_the_unreadable_file(tmp_path, kind):
    folder = write_pngs(tmp_path / 'images', seed=0, count=1)
    bad = write_unreadable_image(tmp_path / 'images', kind)
    dataset = fid.ImageFolder(folder)
    assert dataset.files == sorted([tmp_path / 'images' / '0.png', bad]) and dataset[0].shape == (3, 299, 299)
    with pytest.raises(ValueError) as error:
        dataset[dataset.files.index(bad)]
    message = str(error.value)
    assert message.startswith(f'{bad}: cannot read image (') and message.endswith(')') and '\n' not in message
    with pytest.raises(ValueError, match='cannot read image'):  # path_stats reads in-process: the same ValueError
        fid.path_stats(folder, get_net=lambda: (lambda images: images.flatten(1)[:, :4]))


def test_cli_unreadable_image_is_one_line_exit_2(tmp_path):
    # The first batch is read before the network loads, so the image error comes first; --weights names a missing
    # file (never downloaded to), so a regression in that order would show as the weights error, offline.
    folder = write_pngs(tmp_path / 'images', seed=0, count=1)
    bad = write_unreadable_image(tmp_path / 'images', 'text_named_png')
    result = run_cli(folder, folder, '--weights', tmp_path / 'missing.pth', torch_home=tmp_path)
    assert result.returncode == 2 and 'Traceback' not in result.stderr and result.stdout == ''
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f'fid.py: error: {bad}: cannot read image (')


BAD_INPUT = {  # name -> (PATH, phrase of the one line), files written by the test below; missing weights throughout
    'empty_folder': ('empty_folder', 'empty_folder: no images'),
    'npz_without_stats': ('npz_without_stats.npz', 'npz_without_stats.npz: .npz has neither mu and sigma'),
    'missing_weights': ('images', 'missing.pth'),
    'truncated_npz': ('truncated.npz', 'truncated.npz: cannot read .npz (File is not a zip file)'),
    'object_npz': ('object.npz', 'object.npz: cannot read .npz (Object arrays cannot be loaded'),
    'npy_named_npz': ('npy.npz', 'npy.npz: cannot read .npz (a single ndarray, not an archive of named arrays)'),
    'plain_file': ('notes.txt', 'notes.txt: not a folder of images or an .npz file'),
    'one_image': ('one_image', 'one_image: statistics need at least 2 samples, got 1 image'),
    'one_image_npz': ('one_image.npz', 'one_image.npz: statistics need at least 2 samples, got 1 image'),
}


@pytest.mark.parametrize('bad', BAD_INPUT)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, bad):  # in-process main(): same code path, no startup
    os.makedirs(tmp_path / 'empty_folder')
    np.savez(tmp_path / 'npz_without_stats.npz', x=np.zeros(3))
    write_pngs(tmp_path / 'images', seed=0, count=2)
    write_pngs(tmp_path / 'one_image', seed=0, count=1)
    np.savez(tmp_path / 'images.npz', arr_0=np.zeros((8, 32, 32, 3), np.uint8))
    (tmp_path / 'truncated.npz').write_bytes((tmp_path / 'images.npz').read_bytes()[:5000])   # a killed writer's
    np.savez(tmp_path / 'object.npz', mu=np.array([None, 1]), sigma=np.eye(2))
    np.save(tmp_path / 'npy.npy', np.zeros(3))
    os.rename(tmp_path / 'npy.npy', tmp_path / 'npy.npz')
    np.savez(tmp_path / 'one_image.npz', arr_0=np.zeros((1, 32, 32, 3), np.uint8))
    (tmp_path / 'notes.txt').write_text('not images\n')
    weights = tmp_path / 'missing.pth'  # an explicit --weights path is never downloaded to, so this stays offline
    name, says = BAD_INPUT[bad]
    with pytest.raises(SystemExit) as exit_:
        fid.main([str(tmp_path / name), str(tmp_path / name), '--weights', str(weights)])
    [line] = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and line.startswith('fid.py: error: ') and says in line, line


def test_feature_stats_refuses_a_single_sample():  # np.cov of one row is NaN, with warnings
    with pytest.raises(ValueError, match='statistics need at least 2 samples, got 1'):
        fid.feature_stats(np.ones((1, 5)))


@pytest.mark.parametrize('argv, says', [([], 'give two PATHs, or one PATH with --save-stats'),
                                        (['TRUNC', '--save-stats', 'S'], 'S.npz exists: remove it or choose another'),
                                        (['S', '--save-stats', '{tmp}'], 'give a file name ending in .npz'),
                                        (['S', '--save-stats', '{tmp}/out'], 'give a file name ending in .npz'),
                                        (['S', '--save-stats', '{tmp}/no/s.npz'], '{tmp}/no is not a writable folder'),
                                        (['S'], 'give two PATHs, or one PATH with --save-stats'),
                                        (['S', 'S', '--batch-size', '0'], '--batch-size must be >= 1, got 0'),
                                        (['S', 'S', '--batch-size', 'x'], "invalid int value: 'x'"),
                                        (['S', 'S', '--device', 'foo'], '--device foo is not a torch device'),
                                        (['S', 'S', '--unknown'], 'unrecognized arguments: --unknown'),
                                        (['S', 'S8'], 'the statistics have different dimensions: 2 in'),
                                        (['S', 'BAD'], 'mu must be (d,) and sigma (d, d), got (2,) and (3, 3)')])
def test_cli_bad_flags_are_one_line_exit_2(tmp_path, capsys, argv, says):
    files = dict(S=(2, 2), S8=(8, 8), BAD=(2, 3))                         # mu (d,), sigma (d', d')
    for name, (d, d2) in files.items():
        np.savez(tmp_path / f'{name}.npz', mu=np.zeros(d), sigma=np.eye(d2))
    (tmp_path / 'TRUNC.npz').write_bytes(b'PK\x03\x04 truncated')         # --save-stats is checked before reading
    before = {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)}
    with pytest.raises(SystemExit) as exit_:
        fid.main([str(tmp_path / f'{a}.npz') if a in [*files, 'TRUNC'] else a.format(tmp=tmp_path) for a in argv])
    [line] = capsys.readouterr().err.strip().splitlines()                   # no usage block: one line
    assert exit_.value.code == 2 and line.startswith('fid.py: error: ') and says.format(tmp=tmp_path) in line, line
    assert {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)} == before   # nothing written or replaced


def test_save_stats_writes_the_file_whole_or_not_at_all(tmp_path, capsys, monkeypatch):
    np.savez(tmp_path / 'S.npz', mu=np.zeros(2), sigma=np.eye(2))
    savez = np.savez

    def full_disk(file, **arrays):  # writes a little, then fails as a full disk (or a kill) would
        file.write(b'PK\x03\x04')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(np, 'savez', full_disk)
    with pytest.raises(SystemExit) as exit_:
        fid.main([str(tmp_path / 'S.npz'), '--save-stats', str(tmp_path / 'out.npz')])
    assert exit_.value.code == 2 and 'No space left on device' in capsys.readouterr().err
    assert os.listdir(tmp_path) == ['S.npz']                                  # no half file, no temporary left
    monkeypatch.setattr(np, 'savez', savez)
    fid.main([str(tmp_path / 'S.npz'), '--save-stats', str(tmp_path / 'out.npz')])
    assert sorted(os.listdir(tmp_path)) == ['S.npz', 'out.npz']
    assert np.array_equal(fid.path_stats(str(tmp_path / 'out.npz'), None)[1], np.eye(2))


def test_save_scatter_puts_each_point_at_its_pixel_in_its_class_colour(tmp_path):
    # extent 1, 11 px: pixel (i, j) holds x = -1 + 0.2 j, y = 1 - 0.2 i; outside points are dropped, not clipped
    x = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [5.0, 0.0]])
    fid.save_scatter(x, torch.tensor([0, 1, 2, 0]), tmp_path / 'p.png', extent=1.0, size=11)
    image = np.asarray(Image.open(tmp_path / 'p.png'))                       # (H, W, 3) uint8
    assert image.shape == (11, 11, 3)
    coloured = {tuple(ij) for ij in np.argwhere((image != 255).any(-1))}
    assert coloured == {(10, 0), (0, 10), (5, 5)}
    red, blue, green = image[10, 0], image[0, 10], image[5, 5]              # palette 0, 1, 2
    assert red[0] > 200 > red[2] and blue[2] > 200 > blue[0] and green[1] > 150 > green[0]


def test_save_grid_puts_class_c_in_row_c_for_float_and_uint8_images(tmp_path):
    # 3 classes, sample i has label i % 3 and is a flat image of grey level i: row c must hold c, c + 3, c + 6, ...
    n, classes = 12, 3
    uint8 = torch.arange(n, dtype=torch.uint8)[:, None, None, None].mul(20).expand(n, 4, 4, 3).contiguous()   # NHWC
    floats = uint8.permute(0, 3, 1, 2).float() / 127.5 - 1
    fid.save_grid(uint8, classes, tmp_path / 'u.png')
    fid.save_grid(floats, classes, tmp_path / 'f.png')
    u, f = np.asarray(Image.open(tmp_path / 'u.png')), np.asarray(Image.open(tmp_path / 'f.png'))
    assert np.array_equal(u, f) and u.shape == (3 * 6 + 2, 4 * 6 + 2, 3)                  # 4 a row, 2 px padding
    cell = lambda r, c: int(u[2 + 6 * r + 1, 2 + 6 * c + 1, 0])
    expected = [[20 * (r + 3 * c) for c in range(4)] for r in range(3)]
    assert [[cell(r, c) for c in range(4)] for r in range(3)] == expected


# -------------------------------------------------------------------------------- statistics checked before the network

def no_network(*args, **kwargs):  # statistics are judged before any network loads
    raise AssertionError('the Inception network was loaded before the input was checked')


@pytest.mark.parametrize('name, mu, sigma, says', [
    ('nan_sigma', np.zeros(3), np.diag([1.0, np.nan, 1.0]), 'sigma has 1 non-finite values'),
    ('inf_mu', np.array([0.0, np.inf, 0.0]), np.eye(3), 'mu has 1 non-finite values'),
    ('minus_identity', np.zeros(3), -np.eye(3), 'sigma is not positive semi-definite'),
    ('indefinite', np.zeros(3), np.diag([1.0, 1.0, -1e-3]), 'sigma is not positive semi-definite'),
    ('asymmetric', np.zeros(3), np.eye(3) + np.triu(np.ones((3, 3)), 1), 'sigma is not symmetric'),
    ('strings', np.array(['a', 'b', 'c']), np.eye(3), 'mu must hold real numbers, got dtype <U1'),
    ('bools', np.zeros(3), np.eye(3, dtype=bool), 'sigma must hold real numbers, got dtype bool')])
@pytest.mark.parametrize('first', [True, False])
def test_invalid_statistics_are_one_line_before_the_network(tmp_path, capsys, monkeypatch, name, mu, sigma, says,
                                                            first):
    # a NaN in the first file's sigma hung for 15 minutes (Cholesky fails on NaN, LAPACK's eigh then never returns)
    np.savez(tmp_path / 'bad.npz', mu=mu, sigma=sigma)
    write_pngs(tmp_path / 'folder', seed=0)
    monkeypatch.setattr(fid, 'load_inception', no_network)
    paths = [str(tmp_path / 'bad.npz'), str(tmp_path / 'folder')]
    with pytest.raises(SystemExit) as exit_:
        fid.main(paths if first else paths[::-1])
    [line] = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and str(tmp_path / 'bad.npz') in line and says in line, line


def test_valid_statistics_pass_the_check_including_singular_ones():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 8))                                 # 5 samples in 8 dimensions: singular, PSD by rounding
    mu, sigma = fid.check_stats(*fid.feature_stats(x), 'x')
    assert mu.dtype == sigma.dtype == np.float64 and np.linalg.matrix_rank(sigma) == 4
    fid.check_stats(np.zeros(3, np.float32), np.zeros((3, 3), np.float32))  # constant features: zero covariance


@pytest.mark.parametrize('which', ['mu1', 'sigma1', 'mu2', 'sigma2'])
def test_frechet_distance_refuses_non_finite_input_instead_of_hanging(which):
    args = dict(mu1=np.zeros(64), sigma1=np.eye(64), mu2=np.zeros(64), sigma2=np.eye(64))
    args[which] = args[which].copy()
    args[which].flat[0] = np.nan
    with pytest.raises(ValueError, match=f'{which} has non-finite values'):
        fid.frechet_distance(**args)


@pytest.mark.parametrize('which', ['sigma1', 'sigma2'])
def test_frechet_distance_refuses_a_covariance_that_is_not_psd(which):
    # -I on either side: the eigh route clamped sigma1's eigenvalues to 0 and returned a plausible FID (6.0 here)
    args = dict(mu1=np.zeros(3), sigma1=np.eye(3), mu2=np.zeros(3), sigma2=np.eye(3))
    args[which] = -np.eye(3)
    with pytest.raises(ValueError, match=f'{which} is not positive semi-definite'):
        fid.frechet_distance(**args)


# ------------------------------------------------------------------------------------------------------- reading images

def test_sixteen_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    # Pillow opens 16-bit grayscale as mode I;16, and convert('RGB') clipped every value above 255 to white
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(4, 0)
    Image.fromarray(values).save(tmp_path / 'g16.png')
    assert Image.open(tmp_path / 'g16.png').mode.startswith('I')
    pixels = np.asarray(fid.read_image(tmp_path / 'g16.png'))
    assert pixels.shape == (4, 4, 3) and pixels[0, :, 0].tolist() == [0, 1, 128, 255]
    assert np.array_equal(pixels[..., 0], pixels[..., 2])


def test_float_image_is_refused_in_one_line(tmp_path):
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(tmp_path / 'f.tiff')
    os.rename(tmp_path / 'f.tiff', tmp_path / 'f.png')         # a float TIFF named .png: PIL opens it as mode F
    with pytest.raises(ValueError, match='f.png: cannot read image'):
        fid.read_image(tmp_path / 'f.png')


def test_image_files_enter_no_linked_folder_but_keep_linked_files(tmp_path):
    write_pngs(tmp_path / 'a', seed=0, count=2)
    write_pngs(tmp_path / 'elsewhere', seed=1, count=3)
    os.symlink('..', tmp_path / 'a' / 'loop')                   # a loop: the root again, and every class below it
    os.symlink(tmp_path / 'elsewhere', tmp_path / 'a' / 'outside')
    os.symlink(tmp_path / 'elsewhere' / '0.png', tmp_path / 'a' / 'linked.png')
    files = fid.image_files(tmp_path / 'a')
    assert [os.path.basename(f) for f in files] == ['0.png', '1.png', 'linked.png']
    assert len(fid.ImageFolder(tmp_path / 'a')) == 3


class FakeCIFAR10(torch.utils.data.Dataset):  # torchvision.datasets.CIFAR10's interface, 12 random PIL images
    classes = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']

    def __init__(self, root, train=True, transform=None, download=False):
        rng = np.random.default_rng(0 if train else 1)
        self.images, self.targets = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), list(range(10)) + [0, 1]
        self.transform, self.root = transform, root

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = Image.fromarray(self.images[i])
        return (self.transform(image) if self.transform else image), self.targets[i]


def tiny_net(images):  # a stand-in for FIDInceptionV3: its resize to 299, then pooled pixels as features
    images = torch.nn.functional.interpolate(images, size=(299, 299), mode='bilinear', align_corners=False)
    return torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1)


# ---------------------------------------------------------------------------------------------------- --dataset cifar10

def test_dataset_cifar10_save_stats_equals_the_stats_of_its_pngs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fid.torchvision.datasets, 'CIFAR10', FakeCIFAR10)
    monkeypatch.setattr(fid, 'load_inception', lambda *args, **kwargs: tiny_net)
    fid.main(['--dataset', 'cifar10', '--data-dir', str(tmp_path / 'data'), '--save-stats', str(tmp_path / 'c.npz')])
    for i, (image, label) in enumerate(FakeCIFAR10('.')):       # what the README's export command writes
        os.makedirs(tmp_path / 'png' / str(label), exist_ok=True)
        image.save(tmp_path / 'png' / str(label) / f'{i:05d}.png')
    stats = fid.read_stats(str(tmp_path / 'c.npz'))
    expected = fid.path_stats(str(tmp_path / 'png'), lambda: tiny_net)
    assert np.allclose(stats[0], expected[0], atol=1e-6) and np.allclose(stats[1], expected[1], atol=1e-6)
    fid.main([str(tmp_path / 'png'), '--dataset', 'cifar10', '--data-dir', str(tmp_path / 'data')])
    assert float(capsys.readouterr().out.strip().splitlines()[-1].removeprefix('FID: ')) < 1e-6


def test_dataset_cifar10_that_cannot_be_had_is_one_line(tmp_path, capsys, monkeypatch):
    def offline_cifar(*args, **kwargs):
        raise RuntimeError('Dataset not found or corrupted. You can use download=True to download it')
    monkeypatch.setattr(fid.torchvision.datasets, 'CIFAR10', offline_cifar)
    monkeypatch.setattr(fid, 'load_inception', no_network)
    with pytest.raises(SystemExit) as exit_:
        fid.main(['--dataset', 'cifar10', '--data-dir', str(tmp_path), '--save-stats', str(tmp_path / 'c.npz')])
    [line] = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and f'CIFAR-10 not found in {tmp_path}' in line and os.listdir(tmp_path) == []


def test_readme_cifar10_export_command_writes_class_folders(tmp_path, monkeypatch):
    # the README's one-liner, run as written (its torchvision CIFAR10 replaced: no download in tests)
    with open(os.path.join(HERE, 'README.md')) as f:
        [command] = [line for line in f if line.startswith('python -c "import os, torchvision')]
    code = command.split('"')[1]
    monkeypatch.setattr(torchvision_datasets(), 'CIFAR10', FakeCIFAR10)
    monkeypatch.chdir(tmp_path)
    exec(code, {})
    [folder] = [d for d in os.listdir(tmp_path) if d != 'data']
    assert sorted(os.listdir(tmp_path / folder)) == sorted(FakeCIFAR10.classes)
    assert len(fid.ImageFolder(tmp_path / folder)) == 12
    assert sorted(os.listdir(tmp_path / folder / 'airplane')) == ['00000.png', '00010.png']


def torchvision_datasets():
    import torchvision.datasets
    return torchvision.datasets


def test_a_bad_reference_is_reported_before_the_other_path_is_computed(tmp_path, capsys, monkeypatch):
    # fid.py samples/ ref.npz: ref.npz is checked before samples/ loads the network (it was found after the weights)
    write_pngs(tmp_path / 'samples', seed=0)
    monkeypatch.setattr(fid, 'load_inception', no_network)
    with pytest.raises(SystemExit):
        fid.main([str(tmp_path / 'samples'), str(tmp_path / 'missing.npz')])
    assert 'missing.npz: no such image folder or .npz file' in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------- progress lines

def test_progress_rate_follows_the_recent_speed(monkeypatch):
    # 10 items/s for 60 s, then 1 item/s: the ETA must follow the slowdown, an average since the start would not
    clock, lines = [0.0], []
    monkeypatch.setattr(fid.time, 'time', lambda: clock[0])
    bar = fid.Progress('work', 10_000, 'items', lines.append, every=5.0)
    done = 0
    for second in range(1, 121):
        clock[0], done = float(second), done + (10 if second <= 60 else 1)
        bar(done)
    assert len(lines) == 24                                     # one line every 5 s, no more
    rate = float(lines[-1].split(' | ')[1].split()[0])
    assert 0.9 < rate < 1.2, lines[-1]                          # the recent 1 item/s (the mean since start: 5.5)
    eta = float(lines[-1].split('ETA ')[1].removesuffix(' min'))
    assert eta == pytest.approx((10_000 - done) / rate / 60, rel=0.01), lines[-1]   # rate is printed to 3 digits
    clock[0] += 1
    bar(10_000)
    assert lines[-1].startswith('work 10000/10000 | ') and 'done in 121s' in lines[-1]


def test_progress_of_a_fast_phase_is_silent_with_end_false(monkeypatch):
    lines = []
    bar = fid.Progress('fast', 3, log=lines.append, every=5.0, end=False)
    for i in range(1, 4):
        bar(i)
    assert lines == [] and fid.line('x', 0, 5, 0.0).endswith('| ETA ?')     # no rate yet: no number


# -------------------------------------------------------------------------------------------------------- atomic writes

@pytest.mark.parametrize('failure', [OSError, KeyboardInterrupt])
def test_write_atomic_keeps_the_old_file_and_no_temporary_when_writing_fails(failure, tmp_path):
    # train.py's checkpoints and teacher.pt, sample.py's samples.npz, fid.py's statistics all go through it
    path = str(tmp_path / 'ckpt.pt')
    fid.write_atomic(path, lambda f: torch.save(dict(step=1, w=torch.ones(3)), f))

    def half_written(f):                                        # writes a truncated file, then fails
        torch.save(dict(step=2, w=torch.zeros(3)), f)
        f.truncate(10)
        raise failure('No space left on device')

    with pytest.raises(failure):
        fid.write_atomic(path, half_written)
    old = torch.load(path, weights_only=True)
    assert old['step'] == 1 and torch.equal(old['w'], torch.ones(3))
    assert os.listdir(tmp_path) == ['ckpt.pt']                  # the temporary file went with the failure
