#!/usr/bin/env bash
# Builds the page into www/dist (release wasm, stripped by Cargo.toml's web-release profile; no
# wasm-opt, see there) and prints its gzipped payload. `scripts/serve-web.sh` serves the same build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-web.sh
(cd www && trunk build --release --locked)
grep -q "^const BUILD = \"[0-9a-f]\{16\}\";" www/dist/sw.js ||
  { echo "error: trunk's post_build hook (scripts/precache.sh) did not name the build in sw.js"; exit 1; }
wasm=$(ls www/dist/*.wasm)
wasm_gz=$(gzip -9 -c "$wasm" | wc -c)
model_gz=$(gzip -9 -c www/dist/models/quad-cm.bin | wc -c)
js_gz=$(cat www/dist/*.js | gzip -9 | wc -c)
# A first visit must stay under 4 MB gzipped (encoder files are fetched only when editing opens).
awk -v w="$wasm_gz" -v j="$js_gz" -v m="$model_gz" 'BEGIN {
  printf "page payload, gzipped: wasm %.2f MB + js %.0f kB + default model %.2f MB = %.2f MB\n", w / 1e6, j / 1e3, m / 1e6, (w + j + m) / 1e6
  if (w + j + m > 4e6) { print "error: the first visit is over 4 MB gzipped"; exit 1 } }'
