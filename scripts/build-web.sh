#!/usr/bin/env bash
# Builds the page into www/dist (release wasm, wasm-opt -Oz) and prints its gzipped payload.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-web.sh
(cd www && trunk build --release --locked)
wasm=$(ls www/dist/*.wasm)
wasm_gz=$(gzip -9 -c "$wasm" | wc -c)
model_gz=$(gzip -9 -c www/dist/models/quad-cm.bin | wc -c)
js_gz=$(cat www/dist/*.js | gzip -9 | wc -c)
awk -v w="$wasm_gz" -v j="$js_gz" -v m="$model_gz" 'BEGIN {
  printf "page payload, gzipped: wasm %.2f MB + js %.0f kB + default model %.2f MB = %.2f MB\n", w / 1e6, j / 1e3, m / 1e6, (w + j + m) / 1e6 }'
