#!/usr/bin/env bash
# Easel against libvips, ImageMagick and Pillow on the same photo, in one
# run on this machine: the full style set, one thread and two threads; and
# against the floor (benches/floor.rs: libjpeg-turbo decoding only the
# crop's pixels, encoding every style's pixels, and the cascade's resizes,
# with no engine around them), in process and as a whole process.
#
# usage: benches/compare.sh [RUNS] [IMAGE]
# Prints a table, the ratio Easel/libvips and the ratio Easel/floor; raw
# JSON stays in $OUT. EASEL_BASELINE=path/to/another/easel adds whole
# processes timed round by round, interleaved (`floor --once`, this
# `easel render --threads 1`, the other's), ROUNDS rounds (default 20):
# a loaded machine slows all three alike.
# Not part of CI: numbers, not assertions.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
IMG=${2:-fixtures/photo/olympus_e-p3_4032x3024.jpg}
ANCHORS=benches/anchors
PY=${PY:-$(python3 -c "import sys; print(sys.executable)")}

# The anchors' tools, installed only when missing.
missing=()
command -v vips >/dev/null 2>&1 || missing+=(libvips-tools)
[ -x /usr/bin/convert ] && /usr/bin/convert -version 2>/dev/null | grep -q ImageMagick || missing+=(imagemagick)
command -v hyperfine >/dev/null 2>&1 || missing+=(hyperfine)
command -v djpeg >/dev/null 2>&1 || missing+=(libjpeg-turbo-progs)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
"$PY" -c "import pyvips, PIL" 2>/dev/null || "$PY" -m pip install -q pyvips pillow

scripts/ensure-deps.sh
cargo build --release --locked --quiet --bin easel
EASEL=target/release/easel
FLOOR=$(cargo bench --locked --bench floor --no-run 2>&1 | sed -n 's/.*(\(.*deps\/floor-[0-9a-f]*\)).*/\1/p' | tail -1)
[ -x "$FLOOR" ] || { echo "compare.sh: cannot find the floor bench's executable" >&2; exit 1; }
OUT=$(mktemp -d)
mkdir -p "$OUT"/{easel1,easel2,vips,vipsonce,pillow,magick}

# The anchors write squares at Q85; Easel is given the same quality.
for t in 1 2; do
  "$EASEL" bench --json --threads "$t" --runs "$RUNS" --quality 85 "$IMG" >"$OUT/engine-t$t.json"
done
"$FLOOR" "$IMG" "$RUNS" 85 >"$OUT/floor.json"

hyperfine -N -w 1 -r "$RUNS" --export-json "$OUT/processes.json" \
  -n "easel t1" "$EASEL render $IMG --out $OUT/easel1 --threads 1 --quality 85" \
  -n "easel t2" "$EASEL render $IMG --out $OUT/easel2 --threads 2 --quality 85" \
  -n "pyvips t1" "env VIPS_CONCURRENCY=1 $PY $ANCHORS/variants_pyvips.py $IMG $OUT/vips" \
  -n "pyvips t2" "env VIPS_CONCURRENCY=2 $PY $ANCHORS/variants_pyvips.py $IMG $OUT/vips" \
  -n "pyvips-once t1" "env VIPS_CONCURRENCY=1 $PY $ANCHORS/variants_pyvips_once.py $IMG $OUT/vipsonce" \
  -n "pillow" "$PY $ANCHORS/variants_pillow.py $IMG $OUT/pillow" \
  -n "magick t1" "env MAGICK_THREAD_LIMIT=1 $ANCHORS/variants_magick.sh $IMG $OUT/magick" \
  -n "python startup+import pyvips" "$PY -c 'import pyvips'" \
  -n "floor" "$FLOOR --once $IMG 85" \
  -n "djpeg full decode" "djpeg -outfile /dev/null $IMG" >/dev/null

if [ -n "${EASEL_BASELINE:-}" ]; then
  mkdir -p "$OUT/baseline1"
  "$PY" - "$OUT" "${ROUNDS:-20}" "$IMG" "$FLOOR" "$EASEL" "$(realpath "$EASEL_BASELINE")" <<'PY'
import json, subprocess, sys, time
out, rounds, img, floor, easel, baseline = sys.argv[1:]
commands = {
    "floor --once": [floor, "--once", img, "85"],
    "easel t1": [easel, "render", img, "--out", f"{out}/easel1", "--threads", "1", "--quality", "85"],
    "baseline t1": [baseline, "render", img, "--out", f"{out}/baseline1", "--threads", "1", "--quality", "85"],
}
times = {name: [] for name in commands}
for _ in range(int(rounds)):
    for name, command in commands.items():
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times[name].append(time.perf_counter() - start)
json.dump(times, open(f"{out}/interleaved.json", "w"))
PY
fi

"$PY" - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
procs = {r["command"]: r["times"] for r in json.load(open(f"{out}/processes.json"))["results"]}
print(f"{'whole process (hyperfine)':<32} {'min ms':>9} {'median ms':>10}")
for name, times in procs.items():
    print(f"{name:<32} {min(times)*1e3:9.1f} {statistics.median(times)*1e3:10.1f}")
print()
startup = min(procs["python startup+import pyvips"])
for t in (1, 2):
    engine = json.load(open(f"{out}/engine-t{t}.json"))["files"][0]
    vips = min(procs[f"pyvips t{t}"])
    easel = min(procs[f"easel t{t}"])
    print(f"threads {t}: easel engine {engine['total_min_ms']:.1f} ms in-process "
          f"(decode {engine['decode_ms']:.1f}, resize {engine['resize_ms']:.1f}, encode {engine['encode_ms']:.1f})")
    print(f"  whole process: easel {easel*1e3:.1f} ms vs libvips {vips*1e3:.1f} ms "
          f"-> easel/libvips = {easel/vips:.3f} ({vips/easel:.1f}x faster)")
    print(f"  libvips minus python start-up {(vips-startup)*1e3:.1f} ms "
          f"-> engine/libvips = {engine['total_min_ms']/((vips-startup)*1e3):.3f}")
floor = json.load(open(f"{out}/floor.json"))
engine = json.load(open(f"{out}/engine-t1.json"))["files"][0]
floor_process = min(procs["floor"])
easel1 = min(procs["easel t1"])
print(f"floor (one thread): {floor['floor_ms']['min']:.1f} ms in-process "
      f"(decode {floor['decode_ms']['min']:.1f}, resize {floor['resize_ms']['min']:.1f}, "
      f"encode {floor['encode_ms']['min']:.1f}), {floor_process*1e3:.1f} ms as a process")
print(f"  easel t1 / floor: in-process {engine['total_min_ms']/floor['floor_ms']['min']:.3f}, "
      f"whole process {easel1/floor_process:.3f}")
try:
    rounds = json.load(open(f"{out}/interleaved.json"))
except FileNotFoundError:
    rounds = None
if rounds:
    print(f"\ninterleaved whole processes, {len(rounds['easel t1'])} rounds:")
    for name, times in rounds.items():
        print(f"  {name:<14} min {min(times)*1e3:7.1f} ms  median {statistics.median(times)*1e3:7.1f} ms")
    for name in ("easel t1", "baseline t1"):
        print(f"  {name} / floor: min {min(rounds[name])/min(rounds['floor --once']):.3f}, "
              f"median {statistics.median(rounds[name])/statistics.median(rounds['floor --once']):.3f}")
print(f"\nraw JSON in {out}")
PY
