#!/usr/bin/env bash
# One prepared check of a GPU machine, under 8 minutes on one GPU: the CUDA tests, the demo's
# --quick on CUDA, and the cost of DiffKD, FitNet and PKD on COCO-size inputs (RetinaNet R101 ->
# R50 and Faster R-CNN R101 -> R50, 800x1333, batch 2, fp32 and fp16), measured in one run each;
# then one table (printed, and written to OUT_DIR/device_check.md).
#
#   bash tools/device_check.sh [OUT_DIR]             # on a machine with a CUDA device
#   bash tools/device_check.sh --no-cuda [OUT_DIR]   # the same steps on the CPU, small and quick
#
# --no-cuda runs every step on the CPU at a small size (128x128, one timed iteration, fp32 and
# bf16), so that the script itself is tested where there is no GPU. Each step's full output is
# in OUT_DIR (default work_dirs/device_check/<time>); the script goes on after a failed step and
# exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
# The project's environment (tools/setup_env.sh) unless PYTHON names another interpreter.
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python; fi
if ! "$PY" -c 'import diffkd_mm' 2>/dev/null; then
  echo "[device-check] $PY cannot import diffkd_mm: run bash tools/setup_env.sh, or set PYTHON" >&2
  exit 2
fi
NO_CUDA=0
if [ "${1:-}" = "--no-cuda" ]; then NO_CUDA=1; shift; fi
OUT=${1:-work_dirs/device_check/$(date +%Y%m%d_%H%M%S)}
mkdir -p "$OUT"
FAILED=0
step() { echo "[device-check] $1"; }

if [ "$NO_CUDA" = 1 ]; then
  DEVICE=cpu; SIZE=128; WIDTH=128; ITERS=1; WARMUP=1; PRECISIONS="fp32 bf16"
  VARIANTS="fitnet pkd diffkd"; GRAPH_VARIANTS=""
  export CUDA_VISIBLE_DEVICES=
else
  if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "[device-check] no CUDA device is visible; on a CPU machine run: bash $0 --no-cuda" >&2
    exit 2
  fi
  # Three untimed iterations: the graph-mode variants capture in the first, record their CUDA
  # graphs in the next ones and replay them when timed.
  DEVICE=cuda; SIZE=800; WIDTH=1333; ITERS=5; WARMUP=3; PRECISIONS="fp32 fp16"
  VARIANTS="fitnet pkd diffkd"
  # DiffKD's graph mode on RetinaNet only: each capture compiles, which takes time.
  GRAPH_VARIANTS="diffkd_graph diffkd_cudagraphs"
fi

step "CUDA tests -> $OUT/cuda_tests.log"
"$PY" -m pytest tests/test_cuda.py -q -rs -p no:cacheprovider > "$OUT/cuda_tests.log" 2>&1 || FAILED=1
tail -n 1 "$OUT/cuda_tests.log"

step "the demo, --quick, on $DEVICE -> $OUT/demo.log"
START=$SECONDS
"$PY" tools/run_demo.py --quick --device "$DEVICE" --work-dir "$OUT/demo" > "$OUT/demo.log" 2>&1
CODE=$?
[ "$CODE" = 0 ] || FAILED=1
echo "$CODE $((SECONDS - START))" > "$OUT/demo.status"

for PAIR in retinanet faster_rcnn; do
  for PRECISION in $PRECISIONS; do
    AMP=""; [ "$PRECISION" = fp32 ] || AMP="--amp"
    if [ "$PAIR" = faster_rcnn ] && [ "$PRECISION" = bf16 ]; then
      # Under CPU bf16 autocast the RPN's proposals reach mmcv's nms in bf16, which its CPU
      # kernel refuses ("expected scalar type Float but found BFloat16").
      step "cost: $PAIR, $PRECISION: skipped (mmcv's CPU nms takes no bf16)"
      echo "mmcv's CPU nms takes no bf16" > "$OUT/bench_${PAIR}_${PRECISION}.skipped"
      continue
    fi
    TIMED="$VARIANTS"; [ "$PAIR" = retinanet ] && TIMED="$VARIANTS $GRAPH_VARIANTS"
    step "cost: $PAIR, ${SIZE}x${WIDTH}, $PRECISION -> $OUT/bench_${PAIR}_${PRECISION}/"
    "$PY" tools/analysis_tools/benchmark_train_step.py --pair "$PAIR" --size "$SIZE" \
      --width "$WIDTH" --batch 2 --iters "$ITERS" --warmup "$WARMUP" --variants $TIMED \
      --no-scaling $AMP --out-dir "$OUT/bench_${PAIR}_${PRECISION}" \
      > "$OUT/bench_${PAIR}_${PRECISION}.log" 2>&1 || FAILED=1
  done
done

"$PY" - "$OUT" "$DEVICE" <<'PYEOF' || FAILED=1
import sys
import os.path as osp
import torch
from diffkd_mm.benchmark.device_check import device_check_table
from diffkd_mm.fileio import atomic_write_text
out, device = sys.argv[1:3]
name = torch.cuda.get_device_name() if device == 'cuda' else 'CPU (--no-cuda)'
lines = device_check_table(out, name)
atomic_write_text(osp.join(out, 'device_check.md'), '\n'.join(lines) + '\n')
print('\n'.join(lines))
PYEOF
echo "[device-check] table: $OUT/device_check.md"
exit $FAILED
