#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ (cargo-afl, stable Rust) of every reader of outside input:
# weights files, checkpoints, share links, MNIST IDX files, datasets on disk (folders of every
# layout, npz archives, MNIST CSVs) and images given to `edit`. Each target starts from valid files
# written fresh by fuzz/src/bin/make_seeds.rs and runs for the given time, all at once (one per
# core). Findings land in fuzz/out/<target>/default/{crashes,hangs}; the run fails if any exist.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET (default 1800)] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-1800}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(weights checkpoint share_link mnist_idx image_folder npz csv edit_image)

command -v cargo-afl >/dev/null || cargo install cargo-afl --locked
cargo afl config --build >/dev/null 2>&1 || true # once per toolchain; says so when done already
cargo afl build --release --locked
./target/release/make_seeds

# As root on a machine whose core_pattern pipes to a handler, AFL++ asks for these.
# AFL_NO_AFFINITY: more targets than cores share them.
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
for target in "${targets[@]}"; do
  mkdir -p "out/$target"
  # -m: an allocation beyond 4 GiB is a crash (a size read from the input, trusted); -t: 5 s.
  cargo afl fuzz -i "out/seeds/$target" -o "out/$target" -m 4096 -t 5000 -V "$seconds" \
    "target/release/$target" >"out/$target/log.txt" 2>&1 &
done
echo "fuzzing ${targets[*]} for ${seconds}s each (logs in fuzz/out/<target>/log.txt)"
wait

status=0
printf '%-13s %12s %10s %8s %6s\n' target executions per_s crashes hangs
for target in "${targets[@]}"; do
  stats="out/$target/default/fuzzer_stats"
  value() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  printf '%-13s %12s %10s %8s %6s\n' "$target" "$(value execs_done)" "$(value execs_per_sec)" \
    "$(value saved_crashes)" "$(value saved_hangs)"
  if [[ "$(value saved_crashes)" != 0 || "$(value saved_hangs)" != 0 ]]; then status=1; fi
done
exit "$status"
