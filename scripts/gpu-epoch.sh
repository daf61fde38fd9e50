#!/usr/bin/env bash
# Measure the GPU path on a GPU machine, in one short call:
# 1. `bench` on wgpu: training images/s at batch 64 and 512 with the model's patch-gather
#    convolutions and with burn's own layers, generation latency, and the loader's rate;
# 2. one paper-budget quad epoch (64 px, 50,000 images per context, batch 512, cm), its seconds
#    and data-wait share from the epoch line and metrics.csv;
# 3. a quick-preset quad cm run (seed 0) and its scores, to set beside flex's quick-run table;
# 4. a kernel profile of one training step at batch 64 and at 512: `bench` again, with cubecl's
#    profiler logging every kernel's device time (`kernels/kernels.log`), summed up per kernel
#    family against the step's unprofiled time from step 1 (docs/performance.md#kernel-profile);
# 5. the GPU's utilisation and memory through each step, sampled by `nvidia-smi` once a second
#    (`utilisation.csv`, summed up per step at the end).
# Each step has a time limit, so a slow adapter still reports what it managed. burn's CUDA
# backend does not build on these machines (docs/performance.md#gpu), so wgpu is the only one.
#
#   bash scripts/gpu-epoch.sh [path/to/intervene] [out-dir]
#
# Run it on two builds to see SPIR-V's effect: the default one, and one made with
# `cargo build --release --bin intervene --features spirv,autotune-cache` (autotune's picks then
# carry over from `bench` to the training runs; `bench`'s first line names the build's features).
set -uo pipefail
bin=${1:-target/release/intervene}
out=${2:-runs/gpu-epoch}
mkdir -p "$out"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
here=$(cd "$(dirname "$0")" && pwd)
# The training batch sizes timed, and profiled, in order.
batches="64 512"
echo "CPU cores: $(nproc)"

# The sampler labels each sample with the step named in $step_file.
step_file="$out/step"
echo setup >"$step_file"
sampler=
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  echo "step,gpu_percent,memory_percent,memory_mib" >"$out/utilisation.csv"
  (
    while sleep 1; do
      sample=$(nvidia-smi --query-gpu=utilization.gpu,utilization.memory,memory.used \
        --format=csv,noheader,nounits | head -n 1 | tr -d ' ')
      echo "$(cat "$step_file"),$sample"
    done
  ) >>"$out/utilisation.csv" &
  sampler=$!
fi
step() { echo "$1" >"$step_file"; echo "== $1"; }

step bench
timeout 150 "$bin" bench --device wgpu --steps 5 --batch-sizes "${batches// /,}" 2>&1 | tee "$out/bench.txt"
step paper-epoch
timeout 240 "$bin" train --preset paper --dataset quad-dependent --method cm --epochs 1 \
    --device wgpu --out "$out/paper"
echo "seconds per epoch (epoch, images/s, seconds):"
awk -F, 'NR > 1 { print $1, $6, $7 }' "$out/paper/metrics.csv"
step quick-train
timeout 150 "$bin" train --preset quick --dataset quad-dependent --method cm --seed 0 \
    --device wgpu --out "$out/quick" &&
  { step quick-eval; timeout 60 "$bin" eval "$out/quick" --device wgpu; }

step kernels
# cubecl reads `cubecl.toml` from the working directory; `bench` runs its synced steps last, so
# the log's last summary tables are one step at each batch size.
mkdir -p "$out/kernels"
printf '[profiling.logger]\nlevel = "basic"\nfile = "kernels.log"\nappend = false\n' \
  >"$out/kernels/cubecl.toml"
(cd "$out/kernels" && timeout 120 "$bin" bench --device wgpu --steps 1 --layers model \
  --batch-sizes "${batches// /,}" >bench.txt 2>&1)
wall=$(awk '/one training step between syncs/ { printf "%s ", $(NF - 1) }' "$out/bench.txt")
echo "kernels per training step (device time per kernel family; busy: kernel time / step time):"
awk -v batches="$batches" -v wall="$wall" -f "$here/kernel-profile.awk" "$out/kernels/kernels.log"

if [[ -n $sampler ]]; then
  kill "$sampler" 2>/dev/null
  wait "$sampler" 2>/dev/null
  echo "GPU utilisation per step (samples once a second; mean and peak GPU %, peak memory MiB):"
  awk -F, 'NR > 1 && $2 != "" {
      n[$1]++; sum[$1] += $2; if ($2 > peak[$1]) peak[$1] = $2; if ($4 > mem[$1]) mem[$1] = $4
      if (!(seen[$1]++)) order[++k] = $1 }
    END { for (i = 1; i <= k; i++) { s = order[i]
      printf "  %-12s %4d s  mean %5.1f%%  peak %3d%%  memory %6d MiB\n", s, n[s], sum[s] / n[s], peak[s], mem[s] } }' \
    "$out/utilisation.csv"
fi
