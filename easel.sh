#!/usr/bin/env bash
# Builds (once) and runs Easel: `./easel.sh serve` starts the service on the
# embedded defaults (SQLite + local files under ./data, 127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-deps.sh
exec cargo run --release --locked --quiet -- "$@"
