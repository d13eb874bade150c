"""Times frechet_distance (eigh route) against pytorch-fid's sqrtm formula at d = 2048, the Inception pool3 size."""
import statistics
import time

import numpy as np
import scipy.linalg

from fid import frechet_distance


def sqrtm_frechet_distance(mu1, sigma1, mu2, sigma2):  # pytorch-fid's formula
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return ((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, float(value)


if __name__ == '__main__':
    d, n, repeats = 2048, 4096, 3
    rng = np.random.default_rng(0)
    features_real = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d)
    features_gen = rng.standard_normal((n, d)) @ (np.eye(d) + 0.05 * rng.standard_normal((d, d))) + 0.1
    stats = [features_real.mean(0), np.cov(features_real, rowvar=False),
             features_gen.mean(0), np.cov(features_gen, rowvar=False)]
    times = {'eigh': [], 'sqrtm': []}
    for _ in range(repeats):  # interleaved, so load changes hit both
        t, ours = timed(frechet_distance, *stats)
        times['eigh'].append(t)
        t, reference = timed(sqrtm_frechet_distance, *stats)
        times['sqrtm'].append(t)
    eigh, sqrtm = statistics.median(times['eigh']), statistics.median(times['sqrtm'])
    print(f'd={d}, covariances from n={n} samples, median of {repeats} interleaved runs')
    print(f'eigh route:   {eigh:.2f} s  {[round(t, 2) for t in times["eigh"]]}  FID {ours:.10f}')
    print(f'sqrtm (ref):  {sqrtm:.2f} s  {[round(t, 2) for t in times["sqrtm"]]}  FID {reference:.10f}')
    print(f'speed-up:     {sqrtm / eigh:.1f}x')
    print(f'relative difference: {abs(ours - reference) / abs(reference):.2e}')
