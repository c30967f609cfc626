#!/usr/bin/env bash
# One training stage on a lent GPU, in one `device` call, sized to end inside the call's limit.
#
# The GPU machine gets the checkout and at most 64 MiB in all, so the data travels as a pack
# (tools/pack_for_device.py, an ignored folder named in the call's `carry`) and the result comes back
# under $OUT. Call it from the device tool, in the repo root there:
#
#   run(command="PACK=.devpack INIT=stages/<stage>.safetensors BUDGET_S=420 bash tools/device_stage.sh",
#       carry=[".devpack"], timeout_s=560)
#
# A short probe (two epochs of PROBE_PAIRS pairs; the first holds CUDA's start and cuDNN's tuning, so the
# second's speed is the steady one) sizes the stage: as many whole epochs of the full pack as fit in BUDGET_S seconds of training, on one
# cosine cycle, so the stage always ends annealed and its last.safetensors is the one to keep. Copy
# $OUT/stage back into /work/runs and score it here with `csnet evaluate` on the held-out split (never
# packed): the device keeps nothing.
set -euo pipefail
: "${OUT:?run this through the device tool, which sets OUT}"
PACK=${PACK:-.devpack}
INIT=${INIT:-}                       # a stage to warm-start from; empty: csnet_l_x2 from its initialisation
BUDGET_S=${BUDGET_S:-420}            # seconds of training after the probe
BATCH=${BATCH:-32}
LR=${LR:-1e-3}
PROBE_PAIRS=${PROBE_PAIRS:-2048}
DEVICE=${DEVICE:-cuda}               # cpu only to try the script itself on a tiny pack
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1

# every list file of the pack, ground truth and teacher maps alike (a teacher's list marks itself)
DATA=$(ls "$PACK"/*.txt | paste -sd, -)
common=(--device "$DEVICE" --amp bf16 --cache memory --workers 0 --size "${SIZE:-224}" --batch-size "$BATCH"
        --lr "$LR" --lr-schedule cosine --lr-schedule-unit iteration --warmup-epochs 0 --loss bce+iou
        --weight-decay-mode standard --weight-decay 1e-4 --ema-decay 0.999 --soft-masks --data "$DATA"
        --no-progress --no-tensorboard --log-every 50)
if [ "$DEVICE" = cuda ]; then common+=(--channels-last --gpu-augment); fi
if [ -n "$INIT" ]; then common+=(--init "$INIT"); else common+=(--model csnet_l_x2); fi

if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; fi
runs=$(mktemp -d)
start=$(date +%s)
python3 -m csnet.cli.main train --out $runs/probe --epochs 2 --limit "$PROBE_PAIRS" "${common[@]}"
probe_s=$(( $(date +%s) - start ))
pairs=$(python3 -c "import json; print(sum(s['packed'] for s in json.load(open('$PACK/pack.json'))['sources']))")
rate=$(python3 -c "import csv; print(list(csv.DictReader(open('$runs/probe/metrics.csv')))[-1]['images_per_s'])")
epochs=$(python3 -c "print(max(1, int($BUDGET_S * float('$rate') / $pairs)))")
echo "probe: ${probe_s} s in all, ${rate} images/s in its second epoch; ${pairs} pairs -> ${epochs} epochs"

mkdir -p "$OUT/stage"
python3 -m csnet.cli.main train --out $runs/stage --epochs "$epochs" "${common[@]}" 2>&1 | tee "$OUT/stage/log.txt"
cp $runs/stage/last.safetensors $runs/stage/metrics.csv $runs/stage/config.json "$OUT/stage/"
echo "stage: ${epochs} epochs in $(( $(date +%s) - start - probe_s )) s"
