#!/usr/bin/env bash
# Peak memory, measured: `easel render` of single images (peak RSS from
# /usr/bin/time) beside the engine's estimate from the header (what a
# service reserves from --render-memory-bytes), then `easel serve` with two
# worker loops rendering the 100 MP 16-bit RGBA PNG twice at once (its
# VmHWM once both are finished).
#
# usage: benches/memory.sh [FILE...]   prints JSON. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; }
scripts/ensure-deps.sh
cargo build --release --locked --quiet --bin easel
EASEL=target/release/easel
WIDE=fixtures/png/rgba16_10000x10000.png
FILES=("$@")
[ ${#FILES[@]} -gt 0 ] || FILES=("$WIDE" fixtures/photo/olympus_e-p3_4032x3024.jpg fixtures/orientation/Landscape_6.jpg)
OUT=$(mktemp -d)
trap 'kill "${SERVE:-0}" 2>/dev/null || true; rm -rf "$OUT"' EXIT

echo '{"renders": ['
sep=""
for f in "${FILES[@]}"; do
  rss_kib=$(/usr/bin/time -f %M "$EASEL" render "$f" --out "$OUT/render" 2>&1 >/dev/null | tail -1)
  estimate=$("$EASEL" bench --json --runs 1 "$f" | python3 -c 'import json,sys; print(json.load(sys.stdin)["files"][0]["memory_estimate_bytes"])')
  printf '%s  {"file": "%s", "peak_rss_bytes": %d, "estimate_bytes": %d}' "$sep" "$f" $((rss_kib * 1024)) "$estimate"
  sep=$',\n'
done
echo
echo '  ],'

DATA="$OUT/data"
KEY=$(EASEL_DATA_DIR="$DATA" "$EASEL" keys create --bucket default --scopes image:read,image:write)
EASEL_DATA_DIR="$DATA" EASEL_LISTEN=127.0.0.1:0 EASEL_WORKERS=2 RUST_LOG=warn \
  "$EASEL" serve >"$OUT/serve.out" 2>"$OUT/serve.log" &
SERVE=$!
for _ in $(seq 100); do grep -q listening "$OUT/serve.out" 2>/dev/null && break; sleep 0.1; done
BASE=$(sed -n 's/^easel: listening on //p' "$OUT/serve.out")
ids=()
for _ in 1 2; do
  ids+=("$(curl -sSf -H "Authorization: Bearer $KEY" -H 'Content-Type: image/png' --data-binary @"$WIDE" \
    "$BASE/v1/images" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')")
done
for id in "${ids[@]}"; do
  until curl -sSf -H "Authorization: Bearer $KEY" "$BASE/v1/images/$id" | grep -q '"status":"finished"'; do sleep 0.5; done
done
hwm_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVE/status")
printf '  "serve_two_workers_two_100mp_16bit_pngs": {"peak_rss_bytes": %d, "render_memory_bytes": %d}\n}\n' \
  $((hwm_kib * 1024)) 1073741824
