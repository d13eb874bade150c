"""Universal in practice: every interpolant family trains a teacher and distils it with the same command.

    python experiments/families.py --runs runs/families        # 5 runs of `python train.py ...`, ~3-5 min each

Runs, for each family, the toy command below (only --interpolant changes; a run whose metrics.jsonl is complete
is reused), then writes experiments/results/families.md (the table the README quotes, with every command and
its wall time) and experiments/results/families.png (one row per family: teacher with 100 NFE, the one-step
generator at initialisation, the generator and its EMA after 300 updates). Needs no matplotlib.
"""
import os
import shutil
import subprocess
import sys
import time

import torch
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import cli  # noqa: E402  (experiments/cli.py)
import fid  # noqa: E402
import models  # noqa: E402
import train  # noqa: E402  (train.read_records)
from interpolants import make_interpolant  # noqa: E402

FAMILIES = ['fm', 'vp', 've', 'bridge', 'si']
COMMAND = ('python train.py --dataset toy --cond --interpolant {family} --alpha 0.98 --beta 0.96 --steps 300 '
           '--ema 0.99 --lr 0.001 --lr-fake 0.001 --lr-decay none --out {out}')   # one constant lr: as measured


def finished(out):
    """True when out/metrics.jsonl holds the run's last evaluation (distillation step 300). A last line a kill cut
    is no entry (train.read_records), and a record with a line that is not JSON is no finished run either."""
    try:
        rows = train.read_records(os.path.join(out, 'metrics.jsonl'))
    except ValueError as e:
        print(f'families.py: {e}: that run is redone', flush=True)
        return False
    return any(r['phase'] == 'distill' and r['step'] == 300 for r in rows)


def run(family, out):
    """The README's command for one family, unless `out` already holds its finished run -> its wall seconds."""
    timing = os.path.join(out, 'wall_seconds.txt')
    if not finished(out):
        shutil.rmtree(out, ignore_errors=True)                  # an unfinished earlier run: start clean
        start = time.time()
        cmd = COMMAND.format(family=family, out=out).split()
        with open(out + '.log', 'w') as log:
            code = subprocess.run([sys.executable, *cmd[1:]], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, 'OMP_NUM_THREADS': '1'}).returncode
        if code:
            sys.exit(f'families.py: the {family} run failed (exit {code}), see {out}.log')
        seconds = f'{time.time() - start:.0f}\n'
        fid.write_atomic(timing, lambda f: f.write(seconds.encode()))
    return float(open(timing).read()) if os.path.isfile(timing) else None


def read(out):
    rows = train.read_records(os.path.join(out, 'metrics.jsonl'))
    teacher = next(r for r in rows if r['phase'] == 'teacher')['metrics']['teacher_nfe100']['swd']
    init = next(r for r in rows if r['phase'] == 'distill' and r['step'] == 0)['metrics']['generator']['swd']
    final = [r for r in rows if r['phase'] == 'distill' and r['step'] > 0]
    last = final[-1]['metrics']
    return dict(teacher=teacher, init=init, generator=last['generator']['swd'], ema=last['ema0.99']['swd'],
                grad_max=max(r['losses']['gen_grad_max'] for r in final))


@torch.no_grad()
def initial_generator_png(family, out, path, n=4000):
    """The one-step generator at initialisation (train.py builds it from the teacher), as train.py draws it."""
    interp, (teacher, _) = make_interpolant(family), models.load_teacher(os.path.join(out, 'teacher.pt'))
    generator = models.Generator(interp.precondition(teacher), interp)
    g, y = torch.Generator().manual_seed(1), torch.arange(n) % 8
    x = torch.cat([generator(interp.prior((500, 2), generator=g), y[i:i + 500]) for i in range(0, n, 500)])
    fid.save_scatter(x, y, path)


def figure(runs, path):
    columns = ['teacher, 100 NFE', 'generator at init', 'generator, 300 updates', 'EMA 0.99, 300 updates']
    size, head, side = 256, 24, 70
    sheet = Image.new('RGB', (side + 4 * size, head + len(FAMILIES) * size), 'white')
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(columns):
        draw.text((side + j * size + 8, 6), title, fill='black')
    for i, family in enumerate(FAMILIES):
        out = os.path.join(runs, family)
        initial_generator_png(family, out, os.path.join(out, 'samples_init.png'))
        draw.text((8, head + i * size + size // 2), family, fill='black')
        for j, name in enumerate(['teacher', 'init', 'generator', 'ema0.99']):
            with Image.open(os.path.join(out, f'samples_{name}.png')) as image:
                sheet.paste(image.convert('RGB'), (side + j * size, head + i * size))
    fid.write_atomic(path, lambda f: sheet.save(f, format='PNG'))


def main(argv=None):
    p = cli.parser('families.py', __doc__.split('\n')[0])
    p.add_argument('--runs', default='runs/families', help='one train.py OUT per family')
    args = p.parse_args(argv)
    cli.folder_for_output(p, '--runs', args.runs)
    os.makedirs(args.runs, exist_ok=True)
    seconds = {f: run(f, os.path.join(args.runs, f)) for f in FAMILIES}
    results = os.path.join(ROOT, 'experiments', 'results')
    os.makedirs(results, exist_ok=True)
    figure(args.runs, os.path.join(results, 'families.png'))
    lines = ['| family | teacher, 100 NFE | generator at init | generator, 300 updates | EMA 0.99, 300 updates | '
             'best one-step | largest generator grad norm |', '|---|---|---|---|---|---|---|']
    for f in FAMILIES:
        r = read(os.path.join(args.runs, f))
        lines.append(f"| `{f}` | {r['teacher']:.4f} | {r['init']:.4f} | {r['generator']:.4f} | {r['ema']:.4f} | "
                     f"**{min(r['generator'], r['ema']):.4f}** | {r['grad_max']:.1f} |")
    commands = [f"    {COMMAND.format(family=f, out=os.path.join(args.runs, f))}   # "
                + (f'{seconds[f] / 60:.1f} min' if seconds[f] else 'wall time not recorded') for f in FAMILIES]
    text = '\n'.join(['# Every family, one command (sliced Wasserstein distance to held-out data, lower is better)',
                      '', *lines, '', 'Commands (2 shared CPU cores, OMP_NUM_THREADS=1):', '', *commands, ''])
    fid.write_atomic(os.path.join(results, 'families.md'), lambda f: f.write(text.encode()))
    print(text)


if __name__ == '__main__':
    main()
