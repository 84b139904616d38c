#!/usr/bin/env bash
# The `easel` command, built on first use: `./easel.sh serve` starts the
# service on the embedded defaults (SQLite + local files under ./data,
# 127.0.0.1:8080); `./easel.sh keys create ...`, `./easel.sh render ...`
# and every other subcommand work the same way. It is
# `cargo run --release -- "$@"` from the repository's root, so ./data is
# the same folder whichever directory you call it from.
#
# EASEL_BIN=path/to/easel runs that binary instead (the README check in
# CI uses the debug build it already has).
set -euo pipefail
cd "$(dirname "$0")"
if [ -n "${EASEL_BIN:-}" ]; then
    exec "$EASEL_BIN" "$@"
fi
scripts/ensure-deps.sh
exec cargo run --release --locked --quiet -- "$@"
