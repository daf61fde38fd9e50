#!/usr/bin/env bash
# Trunk's post-build hook (www/Trunk.toml), so that every build of the page, `trunk build` or
# `trunk serve`, works offline the same way: names the service worker's cache after this build
# (its wasm's hash) and lists what it precaches (the page, its code and the default model; other
# models are cached when a visitor loads them).
set -euo pipefail
dir=${TRUNK_STAGING_DIR:?"run by trunk as a post_build hook (see www/Trunk.toml)"}
build=$(sha256sum "$dir"/*.wasm | cut -c1-16)
files=$(cd "$dir" && ls *.js *.wasm *.css | grep -vx sw.js | sed 's/.*/"&"/' | paste -sd, -)
sed -i -e "s/^const BUILD = .*/const BUILD = \"$build\";/" \
  -e "s|^const PRECACHE = .*|const PRECACHE = [\"./\", $files, \"models/quad-cm.bin\"];|" "$dir/sw.js"
