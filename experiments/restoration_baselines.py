"""Classical baselines of the image couplings on train.py's held-out evaluation pairs (experiments/README.md 6b).

    python experiments/restoration_baselines.py --data-dir cifar10-test --image-size 16

sr2 / sr4: nearest upsampling (the input itself) and bicubic upsampling of the average-pooled image (clamped to
[-1, 1]); inpaint-center: the noise-filled input and the input with the hole set to 0. Scored with couplings.psnr and
couplings.consistency on the pairs train.make_coupled_evaluator uses: data.hold_out(dataset, inputs), corrupted with
seed 5 (on the CPU). One JSON line per baseline.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]
import cli  # noqa: E402  (experiments/cli.py)
import couplings  # noqa: E402
import data  # noqa: E402


def baselines(coupling, x0, c):
    """{name: restoration (N, ...)} of the classical baselines of an image coupling."""
    if isinstance(coupling, couplings.SuperResolution):
        low = F.avg_pool2d(x0, coupling.factor)
        return {'nearest (the input)': c,
                'bicubic': F.interpolate(low, scale_factor=coupling.factor, mode='bicubic').clamp(-1, 1)}
    if isinstance(coupling, couplings.InpaintCenter):
        return {'the input (noise in the hole)': c, 'hole set to 0': torch.where(coupling.mask(x0) > 0, 0.0, x0)}
    return {'the input': c}


def main(argv=None):
    p = cli.parser('restoration_baselines.py', __doc__.split('\n')[0])
    p.add_argument('--data-dir', required=True, help='an image folder (train.py --dataset folder --data-dir)')
    p.add_argument('--image-size', type=int, default=16)
    p.add_argument('--couplings', nargs='+', default=['sr2', 'inpaint-center'],
                   choices=[n for n, c in couplings.COUPLINGS.items() if not c.toy])
    args = p.parse_args(argv)
    cli.input_folder(p, '--data-dir', args.data_dir)
    try:
        dataset = data.make_dataset('folder', args.data_dir, args.image_size)[0]
        for name in args.couplings:
            coupling = couplings.make_coupling(name)
            x0, c = couplings.evaluation_pairs(coupling, data.hold_out(dataset, coupling.eval_pairs[0])[1])
            for what, x in baselines(coupling, x0, c).items():
                print(json.dumps(dict(coupling=name, baseline=what, inputs=len(x0),
                                      psnr=round(float(couplings.psnr(x, x0).mean()), 4),
                                      consistency=round(float(couplings.consistency(coupling, x, c).mean()), 4))))
    except data.DataError as e:
        p.error(str(e))


if __name__ == '__main__':
    main()
