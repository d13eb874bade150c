#!/bin/bash
# The GPU measurements behind README "Throughput", in one command that fits the 10 minutes a device call may run:
#   bash experiments/gpu.sh prepare          # here: 300 JPEGs per class from ../shared/data -> runs/gpu-data/
#   bash experiments/gpu.sh [LOGDIR]         # on the GPU machine, <= 9.5 min, stages in order of importance:
#     1 bench.py --full bf16 --compile        s/iter, TFLOP/s, % of peak, peak memory, host syncs, profile (target 0.55)
#     2 bench.py --mode teacher bf16 --compile   teacher steps/s at batch 128, data on the device (target 40)
#     3 bench.py --full fp32 --compile        (target 0.9 s/iter)
#     4 bench.py --full bf16, eager           what the kernels alone give (fused attention, bf16 GroupNorm)
#     5 bench.py --mode teacher fp32 and bf16, eager
#     6 train.py end to end on 3000 CIFAR-10 test JPEGs (bf16 --compile): a 200-step teacher, 20 distillation
#       steps, --resume to 40; it prints its compile time and it/s
#   Each stage gets a timeout within what is left of the 570 s; a stage that would get under 45 s is skipped,
#   said in its log. Compiled stages share inductor's cache (/tmp/torchinductor_*): stage 6 reuses stage 1's graphs.
#   bash experiments/gpu.sh STAGE [LOGDIR]   # one stage alone (1-6)
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
        mkdir -p $DATA/$(basename "$d") \
            && ls "$d" | sort | head -300 | sed "s|^|$d|" | xargs cp -t $DATA/$(basename "$d")
    done
    rm -rf "$tmp"
    echo "wrote $(find $DATA -type f | wc -l) images to $DATA"
    exit
fi
ONLY=
case "$1" in [1-6]) ONLY=$1; shift;; esac
PY=${PYTHON:-python3}
$PY -c "import torch; assert torch.cuda.is_available()" 2>/dev/null \
    || { echo "gpu.sh: $PY sees no CUDA device" >&2; exit 2; }
LOG=${1:-runs/gpu}
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOG/device.txt"
$PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
    | tee -a "$LOG/device.txt"
BUDGET=570
stage() {   # stage N NAME LIMIT command...: run it under min(LIMIT, what is left), log to LOG/NAME.txt
    local n=$1 name=$2 limit=$3; shift 3
    [ -n "$ONLY" ] && [ "$ONLY" != "$n" ] && return
    local left=$((BUDGET - SECONDS))
    [ -n "$ONLY" ] && left=$limit
    if [ $left -lt 45 ]; then
        echo "== stage $n $name: skipped, ${left}s left of ${BUDGET}s" | tee "$LOG/$name.txt"; return
    fi
    [ $limit -gt $left ] && limit=$left
    local start=$SECONDS
    {
        echo "== stage $n $name (timeout ${limit}s): $*"
        timeout $limit "$@"
        echo "== exit $? after $((SECONDS - start)) s"
    } 2>&1 | tee "$LOG/$name.txt"
}
B="$PY experiments/bench.py --device cuda --full --iters 5 --warm 1"
stage 1 bench_bf16_compile 300 $B --amp bf16 --compile --profile 15
stage 2 teacher_bf16_compile 150 $B --mode teacher --amp bf16 --compile
stage 3 bench_fp32_compile 150 $B --compile
stage 4 bench_bf16_eager 60 $B --amp bf16
stage 5 teacher_eager 50 bash -c "$B --mode teacher && $B --mode teacher --amp bf16"
if [ -n "$ONLY" ] && [ "$ONLY" != 6 ]; then
    :
elif [ -d $DATA ]; then
    RUN=$(mktemp -d)
    R="$PY train.py --dataset folder --data-dir $DATA --cond --alpha 0.98 --beta 0.96 --fid-samples 0"
    R="$R --eval-samples 1000 --workers 8 --amp bf16 --compile"
    stage 6 train 240 bash -c "$R --teacher-steps 200 --eval-every 200 --steps 20 --nfe 20 --out $RUN/run \
        && $R --steps 40 --eval-every 20 --nfe 20 --out $RUN/run --resume"
    cp $RUN/run/samples_teacher.png $RUN/run/samples_ema0.999.png "$LOG/" 2>/dev/null
    rm -rf "$RUN"
else
    echo "== stage 6 train: skipped, $DATA missing (bash experiments/gpu.sh prepare, and carry it)" \
        | tee "$LOG/train.txt"
fi
echo "gpu.sh: $SECONDS s in all; logs in $LOG"
