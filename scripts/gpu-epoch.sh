#!/usr/bin/env bash
# Time a paper-budget quad training on a GPU: the paper preset (64 px, 50,000 images per
# context, batch 512) for two epochs through wgpu, then the seconds of each epoch from the run's
# metrics.csv. The second epoch is the steady figure (the first includes shader compilation).
#
#   bash scripts/gpu-epoch.sh [path/to/intervene] [out-dir]
set -euo pipefail
bin=${1:-target/release/intervene}
out=${2:-runs/gpu-epoch}
"$bin" bench --device wgpu --steps 10
"$bin" train --preset paper --dataset quad-dependent --method cm --epochs 2 --device wgpu --out "$out"
echo "seconds per epoch (epoch, images/s, seconds):"
awk -F, 'NR > 1 { print $1, $6, $7 }' "$out/metrics.csv"
