#!/usr/bin/env bash
# The GPU paths in one prepared run (issue 31), for a machine with a GPU and this checkout (no data
# needed: every input is synthetic). From the repository root, after `make setup`:
#
#     bash benchmarks/gpu.sh [OUT]          # OUT: scratch folder, default /tmp/xmodal-gpu
#
# 1. `speed --device cuda`: the matrix-product yardstick (fp32 and bf16), every model's batched
#    scoring, training steps with the trainer's bf16 autocast, and the field part (Flickr30K / COCO
#    sizes: step, epoch, 1K x 5K and 5K x 25K evaluation, peak GPU memory). Written to
#    benchmarks/results/speed/<GPU name>.md and SPEED.md, beside the CPU's section.
# 2. A synthetic COCO test split (5,000 images x 36 x 2048, float16) with 2,000 training images:
#    `dual` trained on the GPU (bf16 autocast), evaluated under --protocol coco-1k and coco-5k; then
#    the same training as 2-process DDP (NCCL) where the machine has two GPUs, or a line saying why not.
# 3. The exact search index on the GPU: 1,000,000 vectors in float32 / bfloat16 / float16, one query
#    and batches of 32 beside a bare product on the same GPU, recall against float32.
# Each step's output is kept in OUT; a failing step stops the script (set -e) with its message.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/xmodal-gpu}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

nvidia-smi -L | tee "$OUT/devices.txt"
GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')

echo "== 1. speed on the GPU"
"$PY" -m benchmarks speed --device cuda --parts matmul similarity training field 2>&1 | tee "$OUT/speed.log"

echo "== 2. training and COCO protocols on synthetic COCO-shaped data"
[ -f "$OUT/coco-test/testall_ims.npy" ] || "$PY" -m benchmarks synthetic "$OUT/coco-test" --preset coco-test
TRAIN=(train --config dual/emoji --path "$OUT/coco-test" --set data.dataset=scan-precomputed
       --set data.image_input=global --set data.text_input=tfidf --set train.epochs=3 --set train.device=cuda)
rm -rf "$OUT/dual-gpu"
/usr/bin/time -v "$PY" -m xmodal "${TRAIN[@]}" --out "$OUT/dual-gpu" 2>&1 | tee "$OUT/train-1gpu.log"
for protocol in coco-1k coco-5k; do
  "$PY" -m xmodal eval "$OUT/dual-gpu" --protocol "$protocol" --json | tee "$OUT/dual-gpu-$protocol.json"
done
if [ "$GPUS" -ge 2 ]; then
  rm -rf "$OUT/dual-ddp"
  "$PY" -m torch.distributed.run --nproc_per_node 2 -m xmodal "${TRAIN[@]}" --out "$OUT/dual-ddp" 2>&1 \
    | tee "$OUT/train-ddp.log"
  "$PY" -m xmodal eval "$OUT/dual-ddp" --protocol coco-1k --json | tee "$OUT/dual-ddp-coco-1k.json"
else
  echo "DDP not run: this machine has $GPUS GPU(s); the 2-process NCCL step needs two" | tee "$OUT/ddp.txt"
fi

echo "== 3. the exact index on the GPU"
"$PY" -m benchmarks search --parts scale --out "$OUT/search" --device cuda --fresh \
  --backends exact-float32 exact-bfloat16 exact-float16 2>&1 | tee "$OUT/search.log"
cp "$OUT/search/scale.json" "$OUT/search-scale-gpu.json"
git checkout -- benchmarks/results/search.md 2>/dev/null || true  # the GPU rows live in OUT, not over the CPU's
echo "done: $OUT"
