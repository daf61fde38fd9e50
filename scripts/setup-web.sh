#!/usr/bin/env bash
# Installs what the web page needs to build, skipping what is already there: the wasm32 target,
# trunk 0.21 and the wasm-bindgen CLI matching Cargo.lock (from crates.io). With --browser, also
# what the browser tests drive: Debian's Chromium and chromedriver.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
if [[ ${1:-} == --browser ]]; then
  [ -x /usr/bin/chromium ] || packages+=(chromium)
  [ -x /usr/bin/chromedriver ] || packages+=(chromium-driver)
fi
if ((${#packages[@]})); then
  echo "installing ${packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

trunk_version=0.21.14
if ! trunk --version 2>/dev/null | grep -q " $trunk_version"; then
  cargo install --locked trunk --version "$trunk_version"
fi

# The CLI must be exactly the wasm-bindgen version the page is built with.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $bindgen_version"; then
  # Not --locked: its lock file pins a crate release that crates.io has since yanked.
  cargo install wasm-bindgen-cli --version "=$bindgen_version"
fi
grep -q "wasm_bindgen = \"$bindgen_version\"" www/Trunk.toml ||
  { echo "www/Trunk.toml must pin wasm_bindgen = \"$bindgen_version\" (Cargo.lock's version)"; exit 1; }
