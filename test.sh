#!/usr/bin/env bash
# Every check CI runs: formatting, lints, then all tests (unit, engine,
# end-to-end against the real service). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
