#!/usr/bin/env bash
# The GPU checks of the paper profile as one prepared script, for a short device window (about
# 12 minutes on an NVIDIA H200; each step writes its CSV as soon as it is done, so a run stopped at a
# time limit keeps what it finished). From the repository root, on a CUDA machine with torch:
#
#   mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/   # 30 MB
#   bash benchmarks/gpu_session.sh [OUT]        # OUT: where the CSVs and the log go (default results/gpu)
#
# 1. the CUDA tests (training with bf16 autocast, every detector and eliminator on the device);
# 2. training throughput at CIFAR-10 shape (random uint8 tensors, PreAct-ResNet-18 width 64, batch
#    128, the paper recipe), eager and with torch.compile: images/s beside the plain DataLoader loop;
# 3. the paper recipe on the full 60,000 Fashion-MNIST images: models, fig3, table3, table2.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-results/gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 BENIFUL_DATA="${BENIFUL_DATA:-$PWD/data}"
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
"$PY" -m pytest tests/test_gpu.py -q 2>&1 | tee "$OUT/test_gpu.log"
"$PY" benchmarks/bench_training.py --synthetic cifar10 --device cuda --epochs 3 --results-dir "$OUT" 2>&1 | tee "$OUT/bench_training.log"
"$PY" benchmarks/bench_training.py --synthetic cifar10 --device cuda --epochs 3 --compile --paths fast \
  --results-dir "$OUT" 2>&1 | tee "$OUT/bench_training_compile.log"
timeout 420 "$PY" benchmarks/gpu_check.py --dataset fashion-mnist --out "$OUT/paper-fashion-mnist" 2>&1 \
  | tee "$OUT/gpu_check.log" || echo "gpu_check stopped (time limit): its finished tables are in $OUT/paper-fashion-mnist"
