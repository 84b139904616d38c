#!/usr/bin/env bash
# Every check CI runs: formatting, lints, then all tests (unit, engine,
# end-to-end against the real service) on PostgreSQL + S3 and again on the
# embedded defaults, then the IIIF validator and schemathesis against a
# running server, then the web console in headless Chromium. Installs what
# it needs first.
set -euo pipefail
cd "$(dirname "$0")"

# A user's clone has nothing beside it: whatever the tests, benches and
# scripts read must be in this repository (fixtures/ holds the images).
if outside=$(grep -rlE '\.\./(\.\./)*shared|shared/(fixtures|bench-anchors)' \
    --include='*.rs' --include='*.sh' --include='*.py' --include='*.toml' \
    src crates tests benches scripts fuzz test.sh easel.sh .ci); then
    echo "test.sh: these files read outside the repository (use fixtures/):" >&2
    echo "$outside" >&2
    exit 1
fi
scripts/ensure-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# Real PostgreSQL and S3-compatible (moto) servers on 127.0.0.1. Where they
# cannot be installed the tests that need them skip loudly; in CI they fail.
if scripts/ci-services.sh; then
    set -a
    # shellcheck disable=SC1091
    . target/ci-services.env
    set +a
elif [ "${CI:-}" = "true" ]; then
    echo "test.sh: PostgreSQL/S3 could not be started; CI must not skip them" >&2
    exit 1
else
    echo "test.sh: WARNING: no PostgreSQL/S3; their tests will be SKIPPED" >&2
fi

echo "test.sh: all tests, catalogue and end-to-end on PostgreSQL + S3" >&2
cargo test --workspace --locked "$@"
echo "test.sh: end-to-end again on the embedded defaults (SQLite + files)" >&2
env -u EASEL_TEST_DATABASE_URL -u EASEL_TEST_S3_URL \
    cargo test --locked --test e2e --test api --test iiif --test delivery "$@"
scripts/ci-live.sh target/debug/easel
echo "test.sh: the Easel Console in headless Chromium" >&2
scripts/console-browser.sh target/debug/easel
