#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine (Mesa's lavapipe, so
# the wgpu device has a Vulkan adapter without a GPU), builds the CLI, runs every test.
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

cargo build --release --locked --bin intervene
cargo test --release --locked --workspace --no-fail-fast
