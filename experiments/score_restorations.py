"""Score a toy restorer's samples (sample.py --inputs) against the exact posterior p(x0 | c), outside train.py:
couplings.posterior_sample draws K exact samples for each input; couplings.cswd, mode_tv and off_mode compare them.

    python experiments/score_restorations.py --write-inputs c.npz --coupling toy-noise0.5    # train.py's 32 inputs
    python sample.py runs/toy/ckpt.pt --inputs c.npz --per-input 500 --npz --seed 1 --out s/
    python experiments/score_restorations.py s/samples.npz        # the coupling from s/sample.json

Reads sample.py's samples.npz: arr_0 (N K, 2), sample i K + j restoring input i, and inputs (N, 2), the c of each
input. Prints one JSON line {"cswd", "mode_tv", "off_mode", "mode_tv_inside", "trails_to_light", "inputs": N,
"per_input": K, "coupling", "seed"} (the two in the middle: mode_error_split).

--write-inputs writes the held-out inputs train.py evaluates on (the toy data's held-out points, corrupted with its
seed, on the CPU) as arr_0, their clean points as x0. With them, sample.py's --seed 1 and --batch-size 500 (its
default) draw the sources train.py's evaluation draws and --seed 7 here (the default) its exact posterior samples:
the two numbers are then the ones OUT/metrics.jsonl holds for the same network (test_sample.py checks it). Other
seeds or inputs give other draws of the same quantities (the README's 1.3x and mode_tv bounds are about those).
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repo root
import cli                                                      # noqa: E402  (experiments/cli.py)
import couplings                                                # noqa: E402
import data                                                     # noqa: E402
import fid                                                      # noqa: E402

PROG = 'score_restorations.py'
TOY = sorted(name for name, coupling in couplings.COUPLINGS.items() if coupling.toy)
SEED = 7                                                        # train.py's evaluation: the exact samples' seed


def get_args(argv=None):
    p = cli.parser(PROG, __doc__.split('\n')[0])
    p.add_argument('samples', nargs='?', help="sample.py's OUT/samples.npz (arr_0 and inputs)")
    p.add_argument('--coupling', choices=TOY, default=None,
                   help='the toy coupling the inputs come from (default: the one sample.json beside SAMPLES records)')
    p.add_argument('--seed', type=cli.NONNEG, default=SEED, help='seed of the exact posterior samples (default 7: '
                   "train.py's evaluation)")
    p.add_argument('--write-inputs', default=None, metavar='PATH.npz',
                   help="instead of scoring: write train.py's held-out inputs of --coupling (arr_0 c, x0) to PATH.npz")
    args = p.parse_args(argv)
    if args.write_inputs:
        if args.samples:
            p.error('--write-inputs writes inputs instead of scoring: give no SAMPLES with it')
        if not args.coupling:
            p.error('--write-inputs needs --coupling (which corruption of the held-out points)')
        if os.path.lexists(args.write_inputs):
            p.error(f'--write-inputs {args.write_inputs} exists: choose another file')
        if not args.write_inputs.endswith('.npz') or fid.output_error(args.write_inputs):
            p.error(f'--write-inputs {args.write_inputs}: '
                    f'{fid.output_error(args.write_inputs) or "give a file name ending in .npz"}')
        return args, None
    if not args.samples:
        p.error("give sample.py's samples.npz to score (or --write-inputs PATH.npz to make the inputs)")
    if not os.path.isfile(args.samples):
        p.error(f'{args.samples} not found')
    recorded = recorded_coupling(p, args.samples)
    if args.coupling and recorded and args.coupling != recorded:
        p.error(f'--coupling {args.coupling}, but {args.samples} restores --coupling {recorded} (its sample.json)')
    args.coupling = args.coupling or recorded
    if args.coupling not in TOY:
        p.error(f'--coupling: give one of {", ".join(TOY)} (the exact posterior is known for the toy couplings)'
                if args.coupling is None else f'{args.samples} restores --coupling {args.coupling}; the exact '
                f'posterior is known for the toy couplings only ({", ".join(TOY)})')
    return args, read_samples(p, args.samples)


def recorded_coupling(p, path):
    """The coupling sample.json beside `path` records, or None when there is none."""
    record = os.path.join(os.path.dirname(os.path.abspath(path)), 'sample.json')
    if not os.path.isfile(record):
        return None
    try:
        with open(record) as f:
            return json.load(f).get('coupling')
    except (ValueError, OSError, AttributeError) as e:
        p.error(f'{record}: not a sample.py record ({type(e).__name__}); pass --coupling')


def read_samples(p, path):
    """samples.npz -> (c (N, 2), samples (N, K, 2)) float32, once its arrays are what sample.py writes."""
    try:
        arrays = fid.read_npz(path)
    except ValueError as e:
        p.error(str(e).strip().splitlines()[0])
    if 'arr_0' not in arrays or 'inputs' not in arrays:
        p.error(f'{path} holds {", ".join(arrays) or "nothing"}: sample.py --inputs writes arr_0 and inputs')
    x, c = arrays['arr_0'], arrays['inputs']
    if c.ndim != 2 or c.shape[1:] != (2,) or not len(c) or x.ndim != 2 or x.shape[1:] != (2,) or len(x) % len(c):
        p.error(f'{path}: arr_0 {x.shape} and inputs {c.shape} are not K samples (N K, 2) of N toy inputs (N, 2)')
    if not (np.isfinite(x).all() and np.isfinite(c).all()):
        p.error(f'{path} holds non-finite values')
    c = torch.from_numpy(c).float()
    return c, torch.from_numpy(x).float().view(len(c), len(x) // len(c), 2)    # row i K + j: input i, sample j


def held_out_inputs(coupling):
    """train.py's evaluation pairs (x0, c) on the toy (device cpu): data.hold_out's points, corrupted as it does."""
    dataset, _, _ = data.make_dataset('toy')
    return couplings.evaluation_pairs(coupling, data.hold_out(dataset, coupling.eval_pairs[0])[1])


def score(coupling, c, samples, seed=SEED):
    """cswd, mode_tv, off_mode of samples (N, K, 2) restoring c (N, 2), against K exact posterior samples per input."""
    return couplings.toy_metrics(coupling, c, samples, torch.Generator().manual_seed(seed))


def mode_error_split(coupling, c, samples):
    """Where mode_tv comes from, for samples (N, K, 2) restoring c (N, 2): `mode_tv_inside`, the mode_tv of the
    samples inside the posterior's components alone (each input's histogram over those), and `trails_to_light`, the
    fraction of all samples outside every component (couplings.outside: the trails between modes) whose nearest mode
    is not the input's heaviest. mode_tv's nearest-mode count hands those to the lighter modes."""
    off, nearest = couplings.outside(coupling, c, samples), couplings.nearest_mode(samples)      # (N, K) each
    weights = coupling.posterior(c)[0].exp()                                                      # (N, modes)
    inside = (torch.nn.functional.one_hot(nearest, weights.shape[1]) * ~off[..., None]).sum(1).to(weights.dtype)
    hist = inside / inside.sum(1, keepdim=True).clamp(min=1)
    light = off & (nearest != weights.argmax(1)[:, None])
    return dict(mode_tv_inside=float(0.5 * (hist - weights).abs().sum(-1).mean()),
                trails_to_light=float(light.to(weights.dtype).mean()))


def main(argv=None):
    args, read = get_args(argv)
    coupling = couplings.make_coupling(args.coupling)
    if args.write_inputs:
        x0, c = held_out_inputs(coupling)
        fid.write_atomic(args.write_inputs, lambda f: np.savez(f, arr_0=c.numpy(), x0=x0.numpy()))
        print(f'wrote {args.write_inputs}: arr_0 c {tuple(c.shape)} ({coupling.name}), x0 {tuple(x0.shape)}')
        return
    c, samples = read
    result = dict(score(coupling, c, samples, args.seed), **mode_error_split(coupling, c, samples))
    print(json.dumps(dict(result, inputs=len(c), per_input=samples.shape[1], coupling=coupling.name, seed=args.seed)))


if __name__ == '__main__':
    main()
