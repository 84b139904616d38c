#!/usr/bin/env bash
# Checks a running `easel serve` from the outside, with the tools users
# judge it by: the official IIIF validator (level 2, Image API 3.0),
# schemathesis against /openapi.json, and a client generated from that
# document by openapi-python-client. Starts the server itself on a free
# port with a fresh data dir and a new key, and stops it afterwards.
#
#   scripts/ci-live.sh [path/to/easel]      # default target/debug/easel
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
easel="${1:-$root/target/debug/easel}"
[ -x "$easel" ] || { echo "ci-live: $easel not built (cargo build)" >&2; exit 1; }

# The validator's python-magic needs libmagic; venvs need python3-venv.
missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1' || missing+=(libmagic1)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    echo "ci-live: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

data="$(mktemp -d)"
log="$data/serve.log"
export EASEL_DATA_DIR="$data"
# The embedded defaults, whatever the caller's environment says.
unset EASEL_DATABASE_URL EASEL_STORE_URL
key="$("$easel" keys create --bucket default --scopes image:read,image:write,image:delete 2>/dev/null)"
# schemathesis PUTs origins on the internet (unreachable here: the worker
# retries them with backoff) with ?wait=true, some seventy times: each such
# request waits out the whole wait timeout, so a short one keeps the run
# minutes shorter (10 s took 6 minutes) and checks the same answers.
EASEL_LISTEN=127.0.0.1:0 EASEL_WAIT_TIMEOUT_SECS=3 EASEL_ORIGIN_TIMEOUT_SECS=5 "$easel" serve >"$data/stdout" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    grep -q 'listening on' "$data/stdout" 2>/dev/null && break
    sleep 0.1
done
base="$(sed -n 's/^easel: listening on //p' "$data/stdout" | head -n1)"
[ -n "$base" ] || { echo "ci-live: the server did not start:" >&2; cat "$log" >&2; exit 1; }
echo "ci-live: easel at $base" >&2

status=0
EASEL_API_KEY="$key" "$root/scripts/iiif-validate.sh" "$base" || status=$?
if [ "$status" -ne 0 ]; then
    echo "ci-live: IIIF validator failed ($status)" >&2
    exit 1
fi
"$root/scripts/schemathesis.sh" "$base" "$key" || { echo "ci-live: schemathesis failed" >&2; exit 1; }
"$root/scripts/openapi-client.sh" "$base" "$key" || { echo "ci-live: the generated Python client failed" >&2; exit 1; }
"$root/scripts/readme-walkthrough.sh" "$base" "$easel" || { echo "ci-live: the README walk-through failed" >&2; exit 1; }
if grep -q 'panicked' "$log"; then
    echo "ci-live: the server panicked:" >&2
    grep -A5 panicked "$log" >&2
    exit 1
fi
echo "ci-live: IIIF validator, schemathesis, generated client and README walk-through passed" >&2
