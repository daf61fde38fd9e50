#!/usr/bin/env bash
# Builds the page and serves it at http://127.0.0.1:8080 (Ctrl-C stops).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-web.sh
cd www && exec trunk serve --release --locked
