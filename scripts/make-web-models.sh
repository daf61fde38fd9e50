#!/usr/bin/env bash
# Trains, scores and exports the models shipped in www/models (what the page's picker offers):
# decoder only, 8-bit matrices (`--precision q8`), each with its encoder file (`<id>.encoder.bin`),
# which the page fetches only when a visitor edits an image.
# The shipped models were trained on the 2-core CPU VM (`DEVICE=flex`, 2026-12-07; training is
# not bit-reproducible across builds, and an encoder file fits only its own model file): cm's 40
# epochs took 94 min (sharing the cores with other work), base's about 9; the best epochs were
# 39 for both. MNIST and scenes are the quick preset's (minutes each).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-auto}
cargo build --release --locked --bin intervene
bin=target/release/intervene
for method in cm base; do
  run=runs/web-quad-$method-64
  $bin train --preset quick --dataset quad-dependent --method $method --image-size 64 \
    --per-context 5000 --epochs 40 --patience 6 --device "$DEVICE" --out $run
  $bin eval $run --device "$DEVICE"
  $bin export $run --decoder-only --precision q8 --out www/models/quad-$method.bin \
    --encoder-out www/models/quad-$method.encoder.bin
done
$bin train --preset quick --dataset mnist --method cm --device "$DEVICE" --out runs/m-cm
$bin eval runs/m-cm --device "$DEVICE"
$bin export runs/m-cm --decoder-only --precision q8 --out www/models/mnist-cm.bin \
  --encoder-out www/models/mnist-cm.encoder.bin
$bin train --preset quick --dataset scenes --method cm --device "$DEVICE" --out runs/web-scenes-cm
$bin eval runs/web-scenes-cm --device "$DEVICE"
$bin export runs/web-scenes-cm --decoder-only --precision q8 --out www/models/scenes-cm.bin \
  --encoder-out www/models/scenes-cm.encoder.bin
