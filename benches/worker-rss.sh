#!/usr/bin/env bash
# Peak memory of the render worker on one big JPEG, as /usr/bin/time -v
# reports it ("Maximum resident set size"), on the embedded defaults.
#
#   benches/worker-rss.sh [IMAGE] [ROUNDS=3]
#
# IMAGE defaults to a 6000x6000 camera-like JPEG made from the Olympus
# fixture with ImageMagick (upscaled, grain added so it compresses like a
# photo: about 13 MB at quality 92). Each round: `easel serve --workers 0`
# queues an upload, then `/usr/bin/time -v easel worker` (the default
# worker: one loop, render threads = cores) renders it; the worker is
# stopped once the image is `finished`. EASEL_BASELINE=path/to/easel runs
# another binary too, interleaved round by round (build main's in a
# worktree of its own). Installs ImageMagick and GNU time when missing;
# reaches only loopback. Prints JSON; progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
rounds="${2:-3}"
log() { echo "worker-rss.sh: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

missing=()
[ -x /usr/bin/time ] || missing+=(time)
[ -x /usr/bin/convert ] && /usr/bin/convert -version 2>/dev/null | grep -q ImageMagick || missing+=(imagemagick)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

scripts/ensure-deps.sh >&2
cargo build --release --locked --quiet --bin easel
bins=("$root/target/release/easel")
[ -n "${EASEL_BASELINE:-}" ] && bins+=("$(realpath "$EASEL_BASELINE")")

work="$(mktemp -d "${TMPDIR:-/tmp}/easel-memory-bench.XXXXXX")"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

image="${1:-}"
if [ -z "$image" ]; then
    image="$work/camera_6000x6000.jpg"
    log "making $image"
    /usr/bin/convert fixtures/photo/olympus_e-p3_4032x3024.jpg -resize '6000x6000!' \
        -attenuate 0.6 +noise Gaussian -quality 92 -sampling-factor 2x2 "$image"
fi
size="$(stat -c %s "$image")"

# One round with one binary; prints a JSON object.
measure() { # bin tag
    local bin="$1" tag="$2" data="$work/data-$2" out key id status time_log
    rm -rf "$data"
    mkdir -p "$data"
    out="$work/serve-$tag.out"
    EASEL_DATA_DIR="$data" EASEL_WORKERS=0 EASEL_LISTEN=127.0.0.1:0 \
        "$bin" serve >"$out" 2>"$work/serve-$tag.log" &
    local serve_pid=$!
    pids+=("$serve_pid")
    for _ in $(seq 1 300); do
        grep -q 'listening on' "$out" 2>/dev/null && break
        sleep 0.1
    done
    local base
    base="$(sed -n 's/^easel: listening on //p' "$out")"
    [ -n "$base" ] || die "serve did not start: $(tail -n 5 "$work/serve-$tag.log")"
    key="$(EASEL_DATA_DIR="$data" "$bin" keys create --bucket default --scopes image:read,image:write 2>/dev/null)"
    id="$(curl -sSf -H "Authorization: Bearer $key" -H 'Content-Type: image/jpeg' \
        --data-binary @"$image" "$base/v1/images" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')"
    [ -n "$id" ] || die "upload failed"
    time_log="$work/time-$tag.txt"
    EASEL_DATA_DIR="$data" /usr/bin/time -v -o "$time_log" "$bin" worker >/dev/null 2>"$work/worker-$tag.log" &
    local worker_pid=$!
    pids+=("$worker_pid")
    status=ingesting
    for _ in $(seq 1 600); do
        status="$(curl -sSf -H "Authorization: Bearer $key" "$base/v1/images/$id" |
            sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')"
        [ "$status" = ingesting ] || break
        sleep 0.1
    done
    # `time` waits for the worker, which stops on SIGTERM.
    pkill -TERM -P "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
    local rss_kb wall
    rss_kb="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$time_log")"
    wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$time_log")"
    awk -v b="$bin" -v s="$status" -v k="${rss_kb:-0}" -v w="$wall" 'BEGIN {
        printf "{\"binary\": \"%s\", \"status\": \"%s\", \"max_rss_kb\": %d, \"max_rss_mib\": %.1f, \"worker_wall_clock\": \"%s\"}", b, s, k, k / 1024, w }'
}

results=()
for round in $(seq 1 "$rounds"); do
    for i in "${!bins[@]}"; do
        log "round $round: ${bins[$i]}"
        results+=("$(measure "${bins[$i]}" "$i-$round")")
    done
done

{
    echo "{\"image\": \"$image\", \"image_bytes\": $size, \"rounds\": ["
    (IFS=,; echo "${results[*]}")
    echo "]}"
} | python3 -c '
import json, sys
report = json.load(sys.stdin)
peaks = {}
for r in report["rounds"]:
    peaks.setdefault(r["binary"], []).append(r["max_rss_mib"])
report["peak_rss_mib"] = {b: max(v) for b, v in peaks.items()}
print(json.dumps(report, indent=2))
'
