#!/usr/bin/env bash
# Measure the GPU path on a GPU machine, in one short call:
# 1. `bench` on wgpu: training images/s at batch 64 and 512 with the model's patch-gather
#    convolutions and with burn's own layers, generation latency, and the loader's rate;
# 2. one paper-budget quad epoch (64 px, 50,000 images per context, batch 512, cm), its seconds
#    and data-wait share from the epoch line and metrics.csv;
# 3. a quick-preset quad cm run (seed 0) and its scores, to set beside flex's quick-run table.
# Each step has a time limit, so a slow adapter still reports what it managed.
#
#   bash scripts/gpu-epoch.sh [path/to/intervene] [out-dir]
#
# Run it on two builds to see SPIR-V's effect: the default one, and one made with
# `cargo build --release --bin intervene --features spirv,autotune-cache` (autotune's picks then
# carry over from `bench` to the training runs; `bench`'s first line names the build's features).
set -uo pipefail
bin=${1:-target/release/intervene}
out=${2:-runs/gpu-epoch}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
echo "CPU cores: $(nproc)"
timeout 150 "$bin" bench --device wgpu --steps 5
timeout 240 "$bin" train --preset paper --dataset quad-dependent --method cm --epochs 1 \
    --device wgpu --out "$out/paper"
echo "seconds per epoch (epoch, images/s, seconds):"
awk -F, 'NR > 1 { print $1, $6, $7 }' "$out/paper/metrics.csv"
timeout 150 "$bin" train --preset quick --dataset quad-dependent --method cm --seed 0 \
    --device wgpu --out "$out/quick" && timeout 60 "$bin" eval "$out/quick" --device wgpu
