#!/usr/bin/env bash
# Time a paper-budget quad training on a GPU: the paper preset (64 px, 50,000 images per
# context, batch 512, cm) for one epoch through wgpu, after `bench` on the same device. The
# epoch's seconds come from the run's metrics.csv. On the H200 the whole script takes about
# 7 minutes. Each step has a time limit, so a slow adapter still reports what it managed.
#
#   bash scripts/gpu-epoch.sh [path/to/intervene] [out-dir]
set -uo pipefail
bin=${1:-target/release/intervene}
out=${2:-runs/gpu-epoch}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
echo "CPU cores: $(nproc)"
timeout 100 "$bin" bench --device wgpu --steps 5
timeout 460 "$bin" train --preset paper --dataset quad-dependent --method cm --epochs 1 \
    --device wgpu --out "$out"
echo "seconds per epoch (epoch, images/s, seconds):"
awk -F, 'NR > 1 { print $1, $6, $7 }' "$out/metrics.csv"
