#!/usr/bin/env bash
# Easel against libvips, ImageMagick and Pillow on the same photo, in one
# run on this machine: the full style set, one thread and two threads.
#
# usage: benches/compare.sh [RUNS] [IMAGE]
# Prints a table and the ratio Easel/libvips; raw JSON stays in $OUT.
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
OUT=$(mktemp -d)
mkdir -p "$OUT"/{easel1,easel2,vips,vipsonce,pillow,magick}

# The anchors write squares at Q85; Easel is given the same quality.
for t in 1 2; do
  "$EASEL" bench --json --threads "$t" --runs "$RUNS" --quality 85 "$IMG" >"$OUT/engine-t$t.json"
done

hyperfine -N -w 1 -r "$RUNS" --export-json "$OUT/processes.json" \
  -n "easel t1" "$EASEL render $IMG --out $OUT/easel1 --threads 1 --quality 85" \
  -n "easel t2" "$EASEL render $IMG --out $OUT/easel2 --threads 2 --quality 85" \
  -n "pyvips t1" "env VIPS_CONCURRENCY=1 $PY $ANCHORS/variants_pyvips.py $IMG $OUT/vips" \
  -n "pyvips t2" "env VIPS_CONCURRENCY=2 $PY $ANCHORS/variants_pyvips.py $IMG $OUT/vips" \
  -n "pyvips-once t1" "env VIPS_CONCURRENCY=1 $PY $ANCHORS/variants_pyvips_once.py $IMG $OUT/vipsonce" \
  -n "pillow" "$PY $ANCHORS/variants_pillow.py $IMG $OUT/pillow" \
  -n "magick t1" "env MAGICK_THREAD_LIMIT=1 $ANCHORS/variants_magick.sh $IMG $OUT/magick" \
  -n "python startup+import pyvips" "$PY -c 'import pyvips'" \
  -n "djpeg full decode" "djpeg -outfile /dev/null $IMG" >/dev/null

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
print(f"\nraw JSON in {out}")
PY
