#!/usr/bin/env bash
# Builds the page as scripts/build-web.sh does (same profile, same service-worker precache) and
# serves it at http://127.0.0.1:8080 (Ctrl-C stops). Needs only the web toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-web.sh
cd www && exec trunk serve --release --locked --no-autoreload
