#!/usr/bin/env bash
# Scale-out throughput on PostgreSQL + S3 (the running ci-services):
#
#   1. images per minute for 3000x3000 JPEGs (distinct, cut from the olympus
#      fixture) with 1, 2 and 3 `easel worker` processes, each with the
#      binary's default worker loops (SCALE_LOOPS=N sets them; until issue
#      14's third round every process ran one loop): the uploads are
#      queued first (serve with EASEL_WORKERS=0), then the clock runs from
#      starting the workers until no image is `ingesting`;
#   2. re-render throughput of RERENDER stored (already rendered) small
#      images with `easel rerender --all --concurrency C`;
#   3. peak RSS (VmHWM) of each worker process.
#
#   benches/scale.sh [IMAGES_PER_RUN=60] [RERENDER=1000] [CONCURRENCY=3]
#
# Needs scripts/ci-services.sh to have run (target/ci-services.env), python3
# (Pillow is installed into a venv when missing), curl, psql. Uses $EASEL_BIN, else
# target/release/easel when it is newer than the sources, else
# target/debug/easel (dependencies are built at opt-level 3 and easel-render
# at 2 even in the dev profile, so render speed is close to release; our
# service crates are unoptimised). Prints a JSON summary on stdout; progress
# on stderr.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
images="${1:-60}"
rerender_count="${2:-1000}"
concurrency="${3:-3}"
env_file="$root/target/ci-services.env"
log() { echo "scale.sh: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

[ -f "$env_file" ] || die "no $env_file: run scripts/ci-services.sh first"
set -a
# shellcheck disable=SC1090
. "$env_file"
set +a

if [ -n "${EASEL_BIN:-}" ]; then
    bin="$EASEL_BIN"
elif [ -x "$root/target/release/easel" ] &&
    [ -z "$(find "$root/src" "$root/crates" -name '*.rs' -newer "$root/target/release/easel" -print -quit)" ]; then
    bin="$root/target/release/easel"
else
    bin="$root/target/debug/easel"
    [ -x "$bin" ] || (cd "$root" && cargo build -p easel >&2)
fi
profile="$(basename "$(dirname "$bin")")"
log "binary: $bin ($profile)"

pgbin="${EASEL_TEST_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
psql_bin="$pgbin/psql"
[ -x "$psql_bin" ] || psql_bin="$(command -v psql)" || die "no psql"
admin="$EASEL_TEST_DATABASE_URL"

work="$(mktemp -d "${TMPDIR:-/tmp}/easel-scale-bench.XXXXXX")"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# --- inputs -----------------------------------------------------------------
photo="$root/fixtures/photo/olympus_e-p3_4032x3024.jpg"
[ -f "$photo" ] || die "missing $photo"
mkdir -p "$work/big" "$work/small"
log "making $images distinct 3000x3000 JPEGs and $rerender_count small ones"
# Pillow draws the inputs; installed into a venv of ours when missing.
py=python3
if ! python3 -c 'import PIL' 2>/dev/null; then
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/easel/bench-venv"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import PIL' 2>/dev/null; then
        log "installing Pillow into $venv"
        python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check pillow ||
            log "could not install Pillow; trying ImageMagick"
    fi
    "$venv/bin/python" -c 'import PIL' 2>/dev/null && py="$venv/bin/python"
fi
if "$py" -c 'import PIL' 2>/dev/null; then
    "$py" - "$photo" "$work" "$images" "$rerender_count" <<'EOF'
import sys
from PIL import Image, ImageDraw
photo, work, n, m = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base = Image.open(photo).convert("RGB")
w, h = base.size
base = base.crop(((w - 3000) // 2, (h - 3000) // 2, (w + 3000) // 2, (h + 3000) // 2))
for i in range(n):
    im = base.copy()
    # A mark per copy: distinct originals, distinct renders.
    ImageDraw.Draw(im).rectangle((40 * (i % 60), 40 * (i // 60), 40 * (i % 60) + 120, 40 * (i // 60) + 120),
                                 fill=((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
    im.save(f"{work}/big/{i:05}.jpg", quality=90)
small = base.resize((320, 320))
for i in range(m):
    im = small.copy()
    ImageDraw.Draw(im).rectangle((i % 300, (i // 300) * 20, i % 300 + 20, (i // 300) * 20 + 20),
                                 fill=((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
    im.save(f"{work}/small/{i:05}.jpg", quality=85)
EOF
elif command -v convert >/dev/null 2>&1; then
    convert "$photo" -gravity center -crop 3000x3000+0+0 +repage "$work/base.png"
    for i in $(seq 0 $((images - 1))); do
        convert "$work/base.png" -fill "rgb($((i * 37 % 256)),$((i * 91 % 256)),$((i * 53 % 256)))" \
            -draw "rectangle $((40 * (i % 60))),$((40 * (i / 60))) $((40 * (i % 60) + 120)),$((40 * (i / 60) + 120))" \
            -quality 90 "$work/big/$(printf %05d "$i").jpg"
    done
    convert "$work/base.png" -resize 320x320 "$work/small.png"
    for i in $(seq 0 $((rerender_count - 1))); do
        convert "$work/small.png" -fill "rgb($((i * 37 % 256)),$((i * 91 % 256)),$((i * 53 % 256)))" \
            -draw "rectangle $((i % 300)),$((i / 300 * 20)) $((i % 300 + 20)),$((i / 300 * 20 + 20))" \
            -quality 85 "$work/small/$(printf %05d "$i").jpg"
    done
else
    die "need python3 with PIL, or ImageMagick convert"
fi

# --- helpers ----------------------------------------------------------------
now() { date +%s.%N; }

# A fresh database and S3 prefix; sets db_url, store_url, data.
fresh() {
    local name="easel_bench_$1_$$"
    "$psql_bin" -q "$admin" -c "CREATE DATABASE $name" >/dev/null
    db_url="${admin%/*}/$name"
    store_url="$EASEL_TEST_S3_URL/easel-bench/$name"
    data="$work/data-$1"
    mkdir -p "$data"
}

# Always run in a subshell (`&` or `$(...)`): it execs, so `$!` is easel's pid.
run_easel() { # name args... (env from db_url/store_url/data + caller's)
    local name="$1"
    shift
    EASEL_DATA_DIR="$data" EASEL_DATABASE_URL="$db_url" EASEL_STORE_URL="$store_url" \
        exec "$bin" "$@" 2>>"$work/$name.log"
}

# Starts `easel serve` without workers; sets base and key.
serve() {
    local out="$work/serve-$1.out"
    EASEL_WORKERS=0 EASEL_LISTEN=127.0.0.1:0 run_easel "serve-$1" serve >"$out" &
    pids+=($!)
    serve_pid=$!
    for _ in $(seq 1 300); do
        grep -q 'listening on' "$out" 2>/dev/null && break
        sleep 0.1
    done
    base="$(sed -n 's/^easel: listening on //p' "$out")"
    [ -n "$base" ] || die "serve did not start: $(tail -n 5 "$work/serve-$1.log")"
    key="$(run_easel "keys-$1" keys create --bucket default --scopes image:read,image:write,image:delete)"
}

upload_dir() { # dir
    find "$1" -name '*.jpg' | sort | xargs -P 4 -I{} \
        curl -sf -o /dev/null -H "Authorization: Bearer $key" -H 'content-type: image/jpeg' \
        --data-binary @{} "$base/v1/images"
}

sql() { "$psql_bin" -qtA "$db_url" -c "$1"; }

wait_rendered() {
    while [ "$(sql "SELECT COUNT(*) FROM images WHERE status = 'ingesting'")" != 0 ]; do
        sleep 0.2
    done
}

hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

stop() { # pids...
    local pid
    for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
    for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# --- 1. 3000x3000 images per minute with 1, 2, 3 worker processes ------------
runs_json=""
for workers in 1 2 3; do
    fresh "w$workers"
    serve "w$workers"
    log "$workers worker(s): uploading $images images"
    upload_dir "$work/big"
    [ "$(sql 'SELECT COUNT(*) FROM images')" = "$images" ] || die "not every upload was accepted"
    started="$(now)"
    worker_pids=()
    for i in $(seq 1 "$workers"); do
        if [ -n "${SCALE_LOOPS:-}" ]; then
            EASEL_WORKERS="$SCALE_LOOPS" run_easel "worker-w$workers-$i" worker &
        else
            run_easel "worker-w$workers-$i" worker &
        fi
        worker_pids+=($!)
        pids+=($!)
    done
    wait_rendered
    ended="$(now)"
    rss=0
    for pid in "${worker_pids[@]}"; do
        kb="$(hwm_kb "$pid")"
        if [ "${kb:-0}" -gt "$rss" ]; then rss="$kb"; fi
    done
    stop "${worker_pids[@]}" "$serve_pid"
    finished="$(sql "SELECT COUNT(*) FROM images WHERE status = 'finished'")"
    twice="$(sql "SELECT COUNT(*) FROM jobs WHERE attempts <> 1")"
    run="$(awk -v w="$workers" -v n="$images" -v a="$started" -v b="$ended" -v r="$rss" -v f="$finished" -v t="$twice" \
        'BEGIN { s = b - a; printf "{\"workers\": %d, \"images\": %d, \"finished\": %d, \"jobs_claimed_more_than_once\": %d, \"seconds\": %.2f, \"images_per_minute\": %.1f, \"peak_worker_rss_mib\": %.0f}", w, n, f, t, s, n * 60 / s, r / 1024 }')"
    log "$run"
    runs_json="${runs_json:+$runs_json, }$run"
done

# --- 2. re-render of stored images -------------------------------------------
fresh rerender
serve rerender
log "re-render: uploading $rerender_count small images and rendering them once"
upload_dir "$work/small"
EASEL_WORKERS=2 run_easel first-pass worker &
first_pid=$!
pids+=($first_pid)
first_started="$(now)"
wait_rendered
first_ended="$(now)"
stop "$first_pid" "$serve_pid"
stored="$(sql "SELECT COUNT(*) FROM images WHERE status = 'finished'")"
log "re-render: $stored stored images; easel rerender --all --concurrency $concurrency"
run_easel rerender rerender --all --concurrency "$concurrency" >"$work/rerender.out" &
rerender_pid=$!
pids+=($rerender_pid)
rerender_started="$(now)"
rerender_rss=0
while kill -0 "$rerender_pid" 2>/dev/null; do
    kb="$(hwm_kb "$rerender_pid")"
    if [ "${kb:-0}" -gt "$rerender_rss" ]; then rerender_rss="$kb"; fi
    sleep 0.2
done
wait "$rerender_pid" || die "easel rerender failed: $(tail -n 5 "$work/rerender.log")"
rerender_ended="$(now)"
log "$(cat "$work/rerender.out")"
done_jobs="$(sql "SELECT COUNT(*) FROM jobs WHERE batch_id IS NOT NULL AND status = 'done'")"
rerender_json="$(awk -v n="$stored" -v d="$done_jobs" -v c="$concurrency" -v a="$first_started" -v b="$first_ended" \
    -v x="$rerender_started" -v y="$rerender_ended" -v r="$rerender_rss" \
    'BEGIN { printf "{\"images\": %d, \"re_rendered\": %d, \"concurrency\": %d, \"first_render_seconds\": %.2f, \"seconds\": %.2f, \"images_per_minute\": %.1f, \"peak_rss_mib\": %.0f}", n, d, c, b - a, y - x, d * 60 / (y - x), r / 1024 }')"

cat <<EOF
{
  "binary": "$profile",
  "cores": $(nproc),
  "backends": "postgres+s3 (moto)",
  "image": "3000x3000 JPEG q90 (olympus_e-p3 centre crop, distinct per upload)",
  "threads_per_worker_process": "one per core (EASEL_THREADS=0)",
  "loops_per_worker_process": "${SCALE_LOOPS:-default}",
  "workers": [$runs_json],
  "rerender": $rerender_json,
  "rerender_image": "320x320 JPEG q85, distinct, already rendered once"
}
EOF
