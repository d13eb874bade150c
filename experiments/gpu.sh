#!/bin/bash
# The GPU checks behind README "Throughput", each one command that fits the 10 minutes a device call may run:
#   bash experiments/gpu.sh prepare          # here: 300 JPEGs per class from ../shared/data -> runs/gpu-data/
#   bash experiments/gpu.sh [LOGDIR]         # ~6.5 min on one H200: bench.py on the paper's U-Net and batch (fp32,
#                                            # then bf16 with a profile of one iteration), then train.py end to end
#                                            # on CUDA on 3000 CIFAR-10 test JPEGs: a 400-step teacher, 20
#                                            # distillation steps, --resume to 40, throughput in fp32 and bf16
#   bash experiments/gpu.sh compile [LOGDIR] # bf16 + --compile: a 50-step teacher, then 30 compiled steps (<= 9 min)
# runs/gpu-data/ must travel to the GPU machine (runs/ is git-ignored: name it in the device tool's carry).
set -o pipefail
cd "$(dirname "$0")/.."
DATA=runs/gpu-data
if [ "$1" = prepare ]; then
    tarball=../shared/data/cifar10-test-jpeg.tar.gz
    [ -f $tarball ] || { echo "gpu.sh: $tarball not found" >&2; exit 2; }
    tmp=$(mktemp -d) && tar -xzf $tarball -C "$tmp" || exit 2
    rm -rf $DATA
    for d in "$tmp"/test/*/; do
        mkdir -p $DATA/$(basename "$d") && ls "$d" | sort | head -300 | sed "s|^|$d|" | xargs cp -t $DATA/$(basename "$d")
    done
    rm -rf "$tmp"
    echo "wrote $(find $DATA -type f | wc -l) images to $DATA"
    exit
fi
[ -d $DATA ] || { echo "gpu.sh: $DATA missing: run 'bash experiments/gpu.sh prepare' first" >&2; exit 2; }
MODE=all
[ "$1" = compile ] && { MODE=compile; shift; }
PY=${PYTHON:-python3}
$PY -c "import torch; assert torch.cuda.is_available()" 2>/dev/null || { echo "gpu.sh: $PY sees no CUDA device" >&2; exit 2; }
LOG=${1:-runs/gpu}
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
R="$PY train.py --dataset folder --data-dir $DATA --cond --alpha 0.98 --beta 0.96 --fid-samples 0 --eval-samples 1000 --workers 8"
RUN=$(mktemp -d)
if [ $MODE = compile ]; then
    {
        echo "== a 50-step teacher, then bf16 + --compile (it_per_s of steps 16-30: compiled)"
        $R --teacher-steps 50 --steps 0 --nfe 0 --amp bf16 --out $RUN/teacher
        start=$SECONDS
        timeout 480 $R --teacher $RUN/teacher/teacher.pt --steps 30 --eval-every 15 --nfe 0 --amp bf16 --compile --out $RUN/compile
        echo "exit $? after $((SECONDS - start)) s"
    } 2>&1 | tee "$LOG/compile.txt"
    rm -rf "$RUN"
    exit
fi
$PY experiments/bench.py --device cuda --full --iters 10 --warm 2 2>&1 | tee "$LOG/bench_fp32.txt"
$PY experiments/bench.py --device cuda --full --iters 10 --warm 2 --amp bf16 --profile 25 2>&1 | tee "$LOG/bench_bf16.txt"
{
    echo "== teacher 400 steps + 20 distillation steps (bf16), then --resume to 40"
    timeout 200 $R --teacher-steps 400 --eval-every 200 --steps 20 --nfe 20 --amp bf16 --out $RUN/run
    timeout 120 $R --steps 40 --eval-every 20 --nfe 20 --amp bf16 --out $RUN/run --resume
    for amp in none bf16; do
        echo "== distillation throughput, amp $amp (it_per_s of steps 16-30)"
        timeout 120 $R --teacher $RUN/run/teacher.pt --steps 30 --eval-every 15 --nfe 0 --amp $amp --out $RUN/$amp
    done
} 2>&1 | tee "$LOG/train.txt"
cp $RUN/run/samples_teacher.png $RUN/run/samples_ema0.999.png "$LOG/" 2>/dev/null
rm -rf "$RUN"
