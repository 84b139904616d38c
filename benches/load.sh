#!/usr/bin/env bash
# Load benchmark for the service (loopback only, bounded in time and count).
#
#   benches/load.sh [UPLOADS] [SECONDS]
#
# 1. Uploads UPLOADS (default 30) copies of a 3000x3000 JPEG, 2 at a time,
#    and waits until every image is `finished`: uploads per minute end to end.
# 2. Hammers GET .../styles/thumb for SECONDS (default 10) with oha (or wrk),
#    then the same file served by nginx from disk, in the same run.
# Needs: curl, jq, oha or wrk, nginx (installed with apt-get when missing and root).
set -euo pipefail

UPLOADS=${1:-30}
SECONDS_PER_RUN=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FIXTURE="$ROOT/fixtures/photo/olympus_e-p3_4032x3024.jpg"
PORT=18080
NGINX_PORT=18081
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -qq "$2" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }
    fi
    command -v "$1" >/dev/null 2>&1
}
need curl curl && need jq jq || { echo "bench: needs curl and jq" >&2; exit 1; }
LOADGEN=""
if need oha oha; then LOADGEN=oha; elif need wrk wrk; then LOADGEN=wrk; fi
NGINX=""; need nginx nginx && NGINX=$(command -v nginx) || true

cargo build --release --quiet --bin easel --manifest-path "$ROOT/Cargo.toml"
EASEL="$ROOT/target/release/easel"

# A 3000x3000 JPEG: the square-3000 style of a real camera photo.
"$EASEL" render "$FIXTURE" --out "$WORK/styles" >/dev/null
SQUARE="$WORK/styles/square-3000.jpg"

EASEL_DATA_DIR="$WORK/data" EASEL_LISTEN="127.0.0.1:$PORT" RUST_LOG=warn "$EASEL" serve >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

echo "== uploads: $UPLOADS x 3000x3000 JPEG ($(stat -c %s "$SQUARE") bytes), 2 clients"
start=$(date +%s.%N)
seq "$UPLOADS" | xargs -P 2 -I{} curl -fs -o /dev/null -H 'content-type: image/jpeg' \
    --data-binary "@$SQUARE" "http://127.0.0.1:$PORT/v1/images?wait=true"
end=$(date +%s.%N)
echo "uploads per minute (to finished): $(echo "$UPLOADS * 60 / ($end - $start)" | bc -l | xargs printf '%.1f')"

ID=$(curl -fs -H 'content-type: image/jpeg' --data-binary "@$SQUARE" \
    "http://127.0.0.1:$PORT/v1/images?wait=true" | jq -r .id)
THUMB_URL="http://127.0.0.1:$PORT/v1/images/$ID/styles/thumb"

if [ -z "$LOADGEN" ]; then echo "bench: no oha or wrk; skipping request rates" >&2; exit 0; fi
rate() { # url -> requests per second
    if [ "$LOADGEN" = oha ]; then
        oha -z "${SECONDS_PER_RUN}s" -c 32 --no-tui --json "$1" | jq -r '.summary.requestsPerSec'
    else
        wrk -t2 -c32 -d"${SECONDS_PER_RUN}s" "$1" | awk '/Requests\/sec/ {print $2}'
    fi
}
echo "== GET styles/thumb for ${SECONDS_PER_RUN}s, 32 connections ($LOADGEN)"
echo "easel: $(rate "$THUMB_URL") req/s"

if [ -n "$NGINX" ]; then
    mkdir -p "$WORK/www"
    curl -fs -o "$WORK/www/thumb.jpg" "$THUMB_URL"
    cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/www;
        location / { add_header Cache-Control "public, max-age=31536000, immutable"; }
    }
}
CONF
    "$NGINX" -c "$WORK/nginx.conf" -p "$WORK"
    sleep 0.3
    echo "nginx: $(rate "http://127.0.0.1:$NGINX_PORT/thumb.jpg") req/s"
else
    echo "bench: nginx not available; no comparison" >&2
fi
