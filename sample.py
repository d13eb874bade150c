"""Sample a distilled one-step generator or a multi-step teacher to files, for FID and for looking at.

    python sample.py runs/x/ckpt.pt --n 50000 --out samples/                 # EMA generator -> 000000.png ...
    python sample.py runs/x/ckpt.pt --n 50000 --out s/ --npz --fid cifar10-32-train.npz
    python sample.py runs/x/teacher.pt --nfe 100 --n 100 --out teacher_grid/ --npz --grid
    python sample.py cifar10_weights_step_400000.pt --nfe 100 --out cfm/     # torchcfm / official RealUID teacher
    python fid.py samples/ cifar10-32-train.npz                               # FID of the PNGs (or of s/samples.npz)

The checkpoint is train.py's OUT/ckpt.pt (the one-step generator G(z, y), EMA `--ema` or `raw`), or anything
models.load_teacher reads: our OUT/teacher.pt, torchcfm and official RealUID teachers (sampled by the interpolant's
teacher sampler with --nfe steps), and official RealUID distillation checkpoints ('gen', 'ema_gens': one step).
Labels are class-balanced (sample i has label i % num_classes); one torch.Generator seeded with --seed draws z
(and the SDE noise of bridge teachers), so the same --seed, --batch-size and device give the same samples.

Written to --out (absent or empty; --overwrite replaces a previous sample.py output: a folder with its sample.json):
  always   sample.json: the command line and its arguments (checkpoint, n, seed, ...), written before any sample
  images   000000.png ... (uint8 RGB; labels.txt: line i is the label of sample i, conditional models only)
           or with --npz one samples.npz: arr_0 uint8 (N, H, W, 3), labels (N,) if conditional (OpenAI/EDM layout)
  2-D toy  samples.npz always: arr_0 float32 (N, 2), labels (N,) if conditional
  --grid   grid.png: one row of 10 per class (conditional), else 10x10, with --npz only (FID tools would read it
           among the PNGs); a scatter plot for the toy

Restoration (App. C): a checkpoint trained with `train.py --coupling NAME` restores corrupted inputs c. Each input
gets --per-input K samples (default 1): the generator's G(c + s zeta, c), a teacher's sampler (--nfe steps) from
c + s zeta conditioned on c, s the run's --source-noise. --n is then N inputs x K, and --fid is refused: a restorer
is scored against each input's ground truth (couplings.restoration_metrics; the toy: experiments/score_restorations.py).

    python sample.py runs/sr2/ckpt.pt --inputs lowres/ --per-input 4 --npz --grid --out restored/   # 8x8 -> 16x16
    python sample.py runs/toy/ckpt.pt --inputs c.npz --per-input 500 --out s/      # toy: arr_0 float (N, 2)

  --inputs a folder of images (recursively, in sorted path order; sr2/sr4: the low-resolution images themselves,
           nearest-upsampled to the model's size), one image file, or an .npz whose arr_0 holds the inputs: the toy
           float (N, 2); images uint8 (N, h, w, 3) (as sample.py writes them) or float (N, 3, h, w) in the data's
           units, [-1, 1] (couplings.corrupt's c as it is: noise beyond [-1, 1] kept)
  samples  sample i*K + j restores input i (the K samples of an input are contiguous); samples.npz gets `inputs`,
           the inputs as read (an .npz's arr_0 unchanged, a folder's pixels uint8 (N, h, w, 3)); PNG output gets
           inputs.npz with them as arr_0 (never an image among the samples: --inputs OUT/inputs.npz reads it back)
  --grid   rows of input | up to 9 of its samples for the first 10 inputs (images: with --npz, as above); toy: the
           samples of the first 8 inputs, a colour each
"""
import argparse
import json
import os
import re
import shutil
import sys

import numpy as np
import torch
from PIL import Image

import couplings
import fid
import models
from interpolants import INTERPOLANTS, make_interpolant

MARKER = 'sample.json'                                      # in every --out sample.py fills: --overwrite's licence
OWN_FILES = re.compile(r'\d{6,}\.png|(labels\.txt|samples\.npz|inputs\.npz|grid\.png)(\.\d+\.tmp)?|sample\.json')  # all
LOG_EVERY = 5.0                                                            # seconds between progress lines
FID_BATCH = 100
N_DEFAULT = 50_000                                          # the FID protocol's sample count (EDM, the paper)
GRID_INPUTS, GRID_SAMPLES = 10, 9                           # --grid with --inputs: rows, samples after each input


def die(msg, code=2):
    print(f'sample.py: error: {msg}', file=sys.stderr)
    sys.exit(code)


def count(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be an integer >= 1, got {text}')
    return value


def seed(text):
    value = int(text)
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f'must be an integer in [0, 2**32), got {text}')
    return value


count.__name__ = seed.__name__ = 'int'                          # "invalid int value: 'x'" for unparsable text


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.error = die                                               # one line on stderr, exit 2, no usage dump
    a = p.add_argument
    a('checkpoint', help="train.py's OUT/ckpt.pt (generator), or a teacher: OUT/teacher.pt, torchcfm, official")
    a('--out', required=True, help='output folder: absent or empty (or a previous sample.py output with --overwrite)')
    a('--n', type=count, default=None, help=f'samples, class-balanced if conditional (default {N_DEFAULT}); with '
      '--inputs: N inputs x --per-input, not set here')
    a('--ema', default=None, help="generator EMA decay, or 'raw' (default: the largest decay in the checkpoint)")
    a('--nfe', type=count, default=None, help='teacher sampler steps (default 100); teachers only')
    a('--teacher-key', default=None, help="EMA decay of an official teacher's ema_models (default: the largest)")
    a('--interpolant', choices=sorted(INTERPOLANTS), default=None,
      help='only for checkpoints that do not record it (default fm: torchcfm, official RealUID)')
    a('--inputs', default=None, metavar='PATH',
      help='restore these corrupted inputs (a --coupling checkpoint): a folder of images (sorted; sr2/sr4: the '
      'low-resolution ones), an image, or an .npz with arr_0 (toy float (N, 2); images uint8 (N, h, w, 3) or float '
      '(N, 3, h, w) in [-1, 1])')
    a('--per-input', type=count, default=None, metavar='K', help='samples per input, rows i*K..i*K+K-1 (default 1)')
    a('--npz', action='store_true',
      help='one samples.npz (arr_0 uint8 (N, H, W, 3), labels or with --inputs inputs) instead of PNGs')
    a('--grid', action='store_true',
      help='also grid.png: a row of 10 per class (conditional), else 10x10, with --inputs rows of input | samples '
      '(images: with --npz); toy: a scatter')
    a('--batch-size', type=count, default=500, help='samples per forward (default %(default)s)')
    a('--seed', type=seed, default=0, help='seeds z (with --inputs: zeta) and the SDE noise (default %(default)s)')
    a('--device', default='cuda' if torch.cuda.is_available() else 'cpu', help='default %(default)s')
    a('--fid', default=None, metavar='STATS.npz', help='reference (mu, sigma), or anything fid.py reads: print the FID')
    a('--fid-weights', default=None, metavar='FILE', help=f'{fid.WEIGHTS_NAME} (default: torch hub cache)')
    a('--overwrite', action='store_true',
      help=f'replace a previous sample.py output in --out (a folder with its {MARKER}; only its own files)')
    args = p.parse_args(argv)
    if fid.device_error(args.device):                          # meta, or mps/cuda this machine lacks
        p.error(f'--device {fid.device_error(args.device)}')
    device = torch.device(args.device)
    if not os.path.isfile(args.checkpoint):
        p.error(f'checkpoint {args.checkpoint} not found')
    if args.per_input and not args.inputs:
        p.error('--per-input K is the number of samples drawn for each input: it needs --inputs')
    if args.inputs and args.n:
        p.error(f'--n is set by --inputs: N inputs x --per-input K samples (got --n {args.n})')
    if args.inputs and args.fid:                                # a restorer is scored against each input's truth
        p.error('--fid compares unconditional samples with a dataset; restorations of --inputs are scored against '
                'their ground truth (couplings.restoration_metrics; the toy: experiments/score_restorations.py)')
    if args.inputs and not os.path.exists(args.inputs):
        p.error(f'--inputs {args.inputs} not found')
    args.n = args.n or (None if args.inputs else N_DEFAULT)
    if args.fid and not os.path.exists(args.fid):
        p.error(f'--fid {args.fid} not found')
    if args.fid and args.n < 2:
        p.error(f'--fid needs --n >= 2 (a covariance of samples), got {args.n}')
    return args, device


def files_to_replace(out, overwrite):
    """Refuse an --out that would mix two runs' samples -> the previous sample.py files to remove (--overwrite)."""
    if os.path.exists(out) and not os.path.isdir(out):
        die(f'--out {out} is a file, not a folder')
    target = out if os.path.exists(out) else os.path.dirname(os.path.abspath(out))
    if os.path.isdir(target) and not os.access(target, os.W_OK):   # before loading (root passes: writes are guarded)
        die(f'--out {out}: {target} is not writable')
    entries = sorted(os.listdir(out)) if os.path.isdir(out) else []
    if entries and not overwrite:
        die(f'--out {out} is not empty (it holds {entries[0]}{", ..." * (len(entries) > 1)}): choose another folder, '
            'or pass --overwrite to replace a previous sample.py output')
    foreign = [e for e in entries if not (OWN_FILES.fullmatch(e) and os.path.isfile(os.path.join(out, e)))]
    if foreign:
        die(f'--out {out} holds files sample.py does not write (e.g. {foreign[0]}); --overwrite '
            'replaces only a previous sample.py output: choose another folder')
    if entries and MARKER not in entries:                       # e.g. the user's own 000000.png ...
        die(f'--out {out} has no {MARKER}, so it is not a sample.py output; --overwrite replaces only those: '
            'choose another folder')
    return [os.path.join(out, e) for e in sorted(entries, key=lambda e: e == MARKER)]   # the marker last


def interpolant(args, recorded):
    if recorded and args.interpolant and args.interpolant != recorded:
        die(f'{args.checkpoint} was trained with --interpolant {recorded}, not {args.interpolant}')
    try:
        return make_interpolant(recorded or args.interpolant or 'fm')
    except ValueError as e:
        die(f'{args.checkpoint}: {e}')


def load_ours(args, ckpt):
    """train.py's ckpt.pt -> (its Generator with the --ema weights, model config, interpolant, words)."""
    emas = ckpt.get('emas') or {}
    key = args.ema or (max(emas, key=float) if emas else 'raw')
    if key != 'raw':                                            # '0.99990' finds '0.9999'
        key = next((k for k in emas if models.same_decay(k, key)), None)
    if key is None or (key == 'raw' and 'generator' not in ckpt):
        has = ', '.join([*sorted(emas, key=float), 'raw'] if 'generator' in ckpt else sorted(emas, key=float))
        die(f'{args.checkpoint} has no generator --ema {args.ema} (it has: {has})')
    interp = interpolant(args, (ckpt.get('args') or {}).get('interpolant'))
    try:
        generator = models.Generator(interp.precondition(models.build_model(ckpt['model'])), interp)
        generator.load_state_dict(ckpt['generator'] if key == 'raw' else emas[key])
    except (ValueError, RuntimeError, TypeError) as e:
        die(f'{args.checkpoint}: generator weights do not fit its model config ({str(e).strip().splitlines()[0]})')
    what = f'{"raw" if key == "raw" else f"EMA {key}"} generator, step {ckpt.get("step")}'
    return generator, ckpt['model'], interp, what, ckpt.get('args') or {}


def load(args, device):
    """-> (sample(z, y, g) -> x, model config, interpolant, what is sampled in words, the training arguments it
    records ({} if none)). train.py's ckpt.pt: its Generator; else models.load_teacher: official generators ('gen',
    'ema_gens') in one step, teachers with --nfe."""
    try:
        ckpt = torch.load(args.checkpoint, map_location='cpu', weights_only=False)
    except Exception as e:
        die(f'{args.checkpoint} is not a readable PyTorch checkpoint ({type(e).__name__})')
    if isinstance(ckpt, dict) and 'model' in ckpt and ('emas' in ckpt or 'generator' in ckpt):
        if args.nfe or args.teacher_key:
            die(f'{args.checkpoint} is a one-step generator: --nfe and --teacher-key are for teachers (use --ema)')
        generator, config, interp, what, trained = load_ours(args, ckpt)
    else:
        generators = isinstance(ckpt, dict) and ('gen' in ckpt or 'ema_gens' in ckpt)   # official distillation
        del ckpt                                                # models.load_teacher reads the file itself
        if args.ema and not generators:
            die(f'{args.checkpoint} is a teacher: --ema is for generators (--teacher-key picks its EMA)')
        ema_key = args.teacher_key or (args.ema if generators else None)    # 'raw': the official raw 'gen'
        try:
            net, info = models.load_teacher(args.checkpoint, 'cpu', ema_key=ema_key)
        except ValueError as e:
            die(str(e))
        one_step = info['key'] == 'gen' or str(info['key']).startswith('ema_gens/')  # what load_teacher took
        if one_step and (args.nfe or args.teacher_key):
            die(f'{args.checkpoint} holds a one-step generator ({info["key"]}): --nfe and --teacher-key are for '
                'teachers (use --ema)')
        if not one_step and args.ema:
            die(f'{args.checkpoint} is a teacher: --ema is for generators (--teacher-key picks its EMA)')
        interp, config, trained = interpolant(args, info['trained'].get('interpolant')), info['config'], info['trained']
        source = 'ours' if info['format'] == 'ours' else f"{info['format']} {info['key']}"
        if not one_step:
            teacher, nfe = interp.precondition(net).to(device).eval(), args.nfe or 100
            sample = lambda z, y, g: interp.generate(teacher, z, y, steps=nfe, generator=g)
            return sample, config, interp, f'{source} teacher, {nfe} NFE', trained
        generator, what = models.Generator(interp.precondition(net), interp), f'{source} one-step generator'
    generator = generator.to(device).eval().requires_grad_(False)
    return (lambda z, y, g: generator(z, y)), config, interp, what, trained


def coupling_of(args, trained, config, shape):
    """The coupling a checkpoint restores and its source noise s (None, None: a plain generative model), once it is
    known that --inputs is given exactly when the checkpoint needs it."""
    name = trained.get('coupling')
    if name is None:
        if args.inputs:
            kind = 'class-conditional' if config.get('num_classes') else 'unconditional'
            die(f'--inputs needs a restorer (a checkpoint trained with train.py --coupling); {args.checkpoint} is '
                f'{kind}: sample it without --inputs')
        return None, None
    try:
        coupling = couplings.make_coupling(name)
        coupling.input_shape(shape)
    except ValueError as e:
        die(f'{args.checkpoint} was trained with --coupling {name}: {e}')
    if trained.get('source_noise') is None or not (config.get('cond_dim') or config.get('cond_channels')):
        die(f'{args.checkpoint} records --coupling {name} but not its --source-noise and conditioned network')
    if not args.inputs:
        die(f'{args.checkpoint} restores inputs corrupted by --coupling {name}: pass --inputs, '
            f'{wanted(coupling, shape)}')
    return coupling, float(trained['source_noise'])


def wanted(coupling, shape):
    """What --inputs must hold for `coupling` on data of `shape`, in words."""
    if coupling.toy:
        return 'an .npz whose arr_0 holds the corrupted points, float (N, 2)'
    _, h, w = coupling.input_shape(shape)
    low = f' (the low-resolution images of {shape[1]}x{shape[2]} ones)' if (h, w) != tuple(shape[1:]) else ''
    return (f'a folder of {h}x{w} images{low} or an .npz whose arr_0 holds them: uint8 (N, {h}, {w}, 3) or float '
            f'(N, 3, {h}, {w}) in [-1, 1]')


def read_inputs(path, coupling, shape):
    """--inputs -> (the inputs as read: an .npz's arr_0 unchanged, images uint8 (N, h, w, 3); c (N, *shape) float32,
    what the networks get in their y slot). Dies in one line on inputs that do not fit the checkpoint."""
    expected, fits = coupling.input_shape(shape), f'{coupling.name} on data of shape {tuple(shape)} takes '
    pictures = os.path.isdir(path) or os.path.splitext(path)[1].lower() in fid.IMAGE_EXTENSIONS
    if pictures and coupling.toy:
        die(f'--inputs {path} is images; {fits}{wanted(coupling, shape)}')
    if pictures:
        files = fid.image_files(path) if os.path.isdir(path) else [path]
        if not files:
            die(f'--inputs {path}: no images ({"/".join(sorted(fid.IMAGE_EXTENSIONS))}) found')
        pixels = []
        for file in files:
            try:
                pixels.append(np.asarray(fid.read_image(file)))         # uint8 (h, w, 3): RGB, as fid.py reads it
            except ValueError as e:
                die(f'--inputs: {e}')
            if pixels[-1].shape[:2] != expected[1:]:
                height, width = pixels[-1].shape[:2]
                die(f'--inputs {file} is {height}x{width} pixels; {fits}{wanted(coupling, shape)}')
        inputs = np.stack(pixels)
    else:
        if not path.lower().endswith('.npz'):
            die(f'--inputs {path} is not a folder of images, an image ({"/".join(sorted(fid.IMAGE_EXTENSIONS))}) or '
                'an .npz')
        try:
            arrays = fid.read_npz(path)
        except ValueError as e:
            die(f'--inputs {str(e).strip().splitlines()[0]}')
        if 'arr_0' not in arrays:
            die(f'--inputs {path} has no arr_0 (it holds: {", ".join(arrays) or "nothing"}); {fits}'
                f'{wanted(coupling, shape)}')
        inputs = arrays['arr_0']
        if inputs.ndim == 0 or len(inputs) == 0:
            die(f'--inputs {path}: arr_0 holds no inputs (shape {inputs.shape})')
        floats = np.issubdtype(inputs.dtype, np.floating)
        if not floats and not (inputs.dtype == np.uint8 and not coupling.toy):
            die(f'--inputs {path}: arr_0 is {inputs.dtype} {inputs.shape}; {fits}{wanted(coupling, shape)}')
        if floats and not np.isfinite(inputs).all():
            die(f'--inputs {path}: arr_0 holds non-finite values (nan or inf)')
        if not floats and (inputs.ndim != 4 or inputs.shape[1:] != (*expected[1:], 3)):
            die(f'--inputs {path}: arr_0 is uint8 {inputs.shape}; {fits}{wanted(coupling, shape)}')
    x = fid.uint8_to_images(inputs) if inputs.dtype == np.uint8 else torch.from_numpy(inputs).float()
    try:
        return inputs, coupling.lift(x, shape)
    except ValueError as e:                                     # a float arr_0 of another shape, a toy-proj c_2 != 0
        die(f'--inputs {path}: {e}')


def save_restoration_grid(samples, inputs, c, per_input, path):
    """grid.png with --inputs: images, a row per input (the first GRID_INPUTS): the input as the network sees it (c,
    the low-resolution image lifted), then up to GRID_SAMPLES of its samples; the toy: the samples of the first 8
    inputs, a colour each (train.py's samples_*.png)."""
    if samples.ndim == 2:
        rows = min(8, len(inputs))
        fid.save_scatter(torch.from_numpy(samples[:rows * per_input]),
                         torch.arange(rows).repeat_interleave(per_input), path)
        return
    rows, columns = min(GRID_INPUTS, len(inputs)), min(GRID_SAMPLES, per_input)
    tiles = [fid.images_to_uint8(c[:rows]).numpy(), *(samples[j::per_input][:rows] for j in range(columns))]
    fid.save_grid(np.concatenate(tiles), rows, path)            # column-major: save_grid's row r is tiles r, r + rows..


def main(argv=None):
    args, device = get_args(argv)
    command = ['sample.py', *(sys.argv[1:] if argv is None else argv)]
    stale = files_to_replace(args.out, args.overwrite)
    sample, config, interp, what, trained = load(args, device)
    shape = tuple(config['dim']) if isinstance(config['dim'], (list, tuple)) else (config['dim'],)
    classes, image = config.get('num_classes'), len(shape) == 3
    if image and shape[0] != 3:
        die(f'{args.checkpoint} makes {shape[0]}-channel images; sample.py writes RGB (3, H, W)')
    coupling, s = coupling_of(args, trained, config, shape)
    if coupling:                                                # read before anything is removed: OUT/inputs.npz too
        inputs, c = read_inputs(args.inputs, coupling, shape)
        args.per_input = args.per_input or 1
        args.n = len(c) * args.per_input
    if not image and args.fid:
        die(f'--fid needs images; {args.checkpoint} is a {shape[0]}-D model (its train.py metrics are fd and swd)')
    if image and args.grid and not args.npz:                   # fid.py, pytorch-fid, clean-fid read every image there
        die('--grid would put grid.png among the sample PNGs that FID tools read: add --npz (samples.npz and grid.png; '
            'python fid.py OUT/samples.npz STATS reads it), or sample the grid into another --out')
    if args.fid:                                                # before sampling: weights and reference must load
        inception = None

        def get_net():                                          # loaded once, when first needed
            nonlocal inception
            inception = fid.load_inception(args.fid_weights, device) if inception is None else inception
            return inception

        try:
            reference = fid.path_stats(args.fid, get_net, FID_BATCH, device)
            if len(reference[0]) != 2048:
                die(f'--fid {args.fid}: statistics of dimension {len(reference[0])}, not the 2048 Inception features')
            inception = get_net()
        except (fid.InceptionWeightsNotFound, ValueError, OSError) as e:
            die(f'--fid: {str(e).strip().splitlines()[0]}')
    for path in stale:
        os.remove(path)
    created = None if os.path.exists(args.out) else os.path.abspath(args.out)  # the first folder it makes, if any
    while created and not os.path.exists(os.path.dirname(created)):
        created = os.path.dirname(created)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        die(f'--out {args.out}: cannot create that folder ({e.strerror})')
    pngs = image and not args.npz
    what_for = (f'--coupling {coupling.name}, source c + {s} zeta | {len(c)} inputs x {args.per_input} ='
                if coupling else f'{classes or "no"} classes |')
    print(f'{args.checkpoint}: {what} | {interp.name} | {what_for} {args.n} samples of shape {shape} on {device} -> '
          f'{args.out}', flush=True)
    restores = dict(coupling=coupling.name, source_noise=s) if coupling else {}
    try:
        with open(os.path.join(args.out, MARKER), 'w') as f:   # first: a killed run's folder is still ours
            json.dump(dict(command=command, sampled=what, **restores, **vars(args)), f, indent=1)
    except OSError as e:                                        # e.g. PermissionError: leave nothing behind
        if created:
            shutil.rmtree(created, ignore_errors=True)
        die(f'--out {args.out}: cannot write there ({e.strerror})')

    g = torch.Generator(device).manual_seed(args.seed)          # z, and the SDE noise of the bridge sampler
    labels = torch.arange(args.n) % classes if classes else None
    chunks, bar = [], fid.Progress('sampled', args.n, 'samples', every=LOG_EVERY)
    with torch.no_grad():
        for start in range(0, args.n, args.batch_size):
            m = min(args.batch_size, args.n - start)
            if coupling:                                        # sample i*K + j restores input i; App. C.3's source
                y = c[torch.arange(start, start + m) // args.per_input].to(device)
                z = couplings.source(y, s, g)
            else:
                y = None if labels is None else labels[start:start + m].to(device)
                z = interp.prior((m, *shape), device, g)        # (m, *shape)
            x = sample(z, y, g).float().cpu()
            if not torch.isfinite(x).all():
                die(f'the model produced non-finite values in samples {start}..{start + m - 1}', code=3)
            x = fid.images_to_uint8(x).numpy() if image else x.numpy()   # (m, H, W, 3) uint8 or (m, 2) float32
            for i in range(m) if pngs else ():
                Image.fromarray(x[i]).save(os.path.join(args.out, f'{start + i:06d}.png'))
            chunks.append(x)
            bar(start + m)
    samples = np.concatenate(chunks)

    if pngs:
        if classes:
            text = ''.join(f'{int(c)}\n' for c in labels).encode()
            fid.write_atomic(os.path.join(args.out, 'labels.txt'), lambda f: f.write(text))
        if coupling:                                            # not a PNG: FID tools read every image there
            fid.write_atomic(os.path.join(args.out, 'inputs.npz'), lambda f: np.savez(f, arr_0=inputs))
        print(f'wrote {args.n} PNGs 000000.png..{args.n - 1:06d}.png{" and labels.txt" if classes else ""}'
              f'{f" and inputs.npz: arr_0 {inputs.dtype} {inputs.shape}" if coupling else ""}')
    else:
        extra = {} if labels is None else dict(labels=labels.numpy())
        extra.update(dict(inputs=inputs) if coupling else {})
        fid.write_atomic(os.path.join(args.out, 'samples.npz'), lambda f: np.savez(f, arr_0=samples, **extra))
        print(f'wrote samples.npz: arr_0 {samples.dtype} {samples.shape}{", labels" if classes else ""}'
              f'{f", inputs {inputs.dtype} {inputs.shape}" if coupling else ""}'
              f'{"" if image or args.npz else " (2-D points: an .npz, not PNGs)"}')
    if coupling:
        print(f'sample i*{args.per_input} + j (j < {args.per_input}) restores input i (i < {len(c)})')
    if args.grid:
        path = os.path.join(args.out, 'grid.png')
        if coupling:
            save_restoration_grid(samples, inputs, c, args.per_input, path)
        elif image:
            fid.save_grid(samples, classes, path)
        else:
            fid.save_scatter(torch.from_numpy(samples), labels, path)
        print('wrote grid.png')
    if args.fid:
        batches = (fid.uint8_to_images(samples[i:i + FID_BATCH]) for i in range(0, len(samples), FID_BATCH))
        mu, sigma = fid.feature_stats(fid.inception_features(inception, batches, device, len(samples),
                                                            lambda line: print(line, flush=True)))
        print(f'FID: {fid.frechet_distance(*reference, mu, sigma)}')    # reference first: its Cholesky route


if __name__ == '__main__':
    main()
