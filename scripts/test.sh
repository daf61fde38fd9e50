#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine (Mesa's lavapipe, so
# the wgpu device has a Vulkan adapter without a GPU; the web toolchain and Chromium; Slurm and
# munge, by scripts/slurm-test.sh), builds the web page, runs every test. A plain `cargo test --workspace` skips the tests whose requirements
# are missing and says so; here a skipped test fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || packages+=(mesa-vulkan-drivers)
ldconfig -p | grep -q 'libvulkan.so.1' || packages+=(libvulkan1)
if ((${#packages[@]})); then
  echo "installing ${packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

bash scripts/setup-web.sh --browser
bash scripts/build-web.sh
export INTERVENE_REQUIRE_ALL_TESTS=1
log=$(mktemp)
status=0
cargo test --release --locked --workspace --all-targets --no-fail-fast 2>&1 | tee "$log" || status=$?
# The experiment under a real scheduler (about a minute; needs root, as the installs above do).
if bash scripts/slurm-test.sh "${CARGO_TARGET_DIR:-target}/release/intervene" 2>&1 | tee -a "$log"; then
  echo "test result: ok. 1 passed; 0 failed (scripts/slurm-test.sh)" >>"$log"
else
  echo "test result: FAILED. 0 passed; 1 failed (scripts/slurm-test.sh)" >>"$log"
  status=1
fi
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
