"""Times frechet_distance (Cholesky route), the eigh route (its fallback) and pytorch-fid's sqrtm formula
at d = 2048, the Inception pool3 size, interleaved in one run; prints both speed ratios and the relative differences.
Usage: [OMP_NUM_THREADS=1] python experiments/bench_fid.py [--repeats 3]; torch and numpy's OpenBLAS both read
OMP_NUM_THREADS, and on a busy shared CPU one thread each avoids oversubscription stalls that make multi-threaded
timings erratic."""
import os
import statistics
import sys
import time

import numpy as np
import scipy.linalg
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repo root
import fid  # noqa: E402
import cli  # noqa: E402  (experiments/cli.py)


def sqrtm_frechet_distance(mu1, sigma1, mu2, sigma2):  # pytorch-fid's formula
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return ((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real


def relative(a, b):
    return f'{abs(a - b) / abs(b):.2e}'


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, float(value)


def main(argv=None):
    parser = cli.parser('bench_fid.py', __doc__.splitlines()[0])
    parser.add_argument('--repeats', type=cli.COUNT, default=3)
    args = parser.parse_args(argv)
    d, n = 2048, 4096
    rng = np.random.default_rng(0)
    features_real = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d)
    features_gen = rng.standard_normal((n, d)) @ (np.eye(d) + 0.05 * rng.standard_normal((d, d))) + 0.1
    stats = [*fid.feature_stats(features_real), *fid.feature_stats(features_gen)]
    assert torch.linalg.cholesky_ex(torch.as_tensor(stats[1]))[1] == 0  # sigma1 is positive definite: the fast route
    routes = {'cholesky (new)': fid.frechet_distance, 'eigh (previous)': fid._frechet_distance_eigh,
              'sqrtm (ref)': sqrtm_frechet_distance}
    times, values = {name: [] for name in routes}, {}
    for _ in range(args.repeats):  # interleaved, so load changes on a shared machine hit every route
        for name, fn in routes.items():
            t, values[name] = timed(fn, *stats)
            times[name].append(t)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    new, previous, reference = values['cholesky (new)'], values['eigh (previous)'], values['sqrtm (ref)']
    print(f'd={d}, covariances from n={n} samples, median of {args.repeats} interleaved runs, '
          f'{torch.get_num_threads()} torch threads, OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")}')
    for name in routes:
        print(f'{name:16s} {median[name]:6.2f} s  {[round(t, 2) for t in times[name]]}  FID {values[name]:.10f}')
    print(f'speed-up sqrtm/new:    {median["sqrtm (ref)"] / median["cholesky (new)"]:.1f}x')
    print(f'speed-up previous/new: {median["eigh (previous)"] / median["cholesky (new)"]:.2f}x')
    print(f'relative difference new vs sqrtm {relative(new, reference)}, previous vs sqrtm '
          f'{relative(previous, reference)}, new vs previous {relative(new, previous)}')


if __name__ == '__main__':
    main()
