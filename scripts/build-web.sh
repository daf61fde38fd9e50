#!/usr/bin/env bash
# Builds the page into www/dist (release wasm, stripped by Cargo.toml's web-release profile;
# wasm-opt is off: data-wasm-opt in www/index.html) and prints its gzipped payload.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-web.sh
(cd www && trunk build --release --locked)
# The service worker's cache is named after this build (its wasm's hash) and starts with the page,
# its code and the default model; other models are cached when a visitor loads them.
build=$(sha256sum www/dist/*.wasm | cut -c1-16)
files=$(cd www/dist && ls *.js *.wasm *.css | grep -vx sw.js | sed 's/.*/"&"/' | paste -sd, -)
sed -i -e "s/^const BUILD = .*/const BUILD = \"$build\";/" \
  -e "s|^const PRECACHE = .*|const PRECACHE = [\"./\", $files, \"models/quad-cm.bin\"];|" www/dist/sw.js
wasm=$(ls www/dist/*.wasm)
wasm_gz=$(gzip -9 -c "$wasm" | wc -c)
model_gz=$(gzip -9 -c www/dist/models/quad-cm.bin | wc -c)
js_gz=$(cat www/dist/*.js | gzip -9 | wc -c)
# A first visit must stay under 4 MB gzipped (encoder files are fetched only when editing opens).
awk -v w="$wasm_gz" -v j="$js_gz" -v m="$model_gz" 'BEGIN {
  printf "page payload, gzipped: wasm %.2f MB + js %.0f kB + default model %.2f MB = %.2f MB\n", w / 1e6, j / 1e3, m / 1e6, (w + j + m) / 1e6
  if (w + j + m > 4e6) { print "error: the first visit is over 4 MB gzipped"; exit 1 } }'
