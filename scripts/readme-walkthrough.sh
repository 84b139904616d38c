#!/usr/bin/env bash
# Runs the README's walk-through block verbatim (bash -euo pipefail), as a
# new user pastes it, against a running server: the check that the first
# hour goes as the README says.
#
#   scripts/readme-walkthrough.sh BASE_URL EASEL_BINARY
#
# The server must use the data dir in $EASEL_DATA_DIR (the walk-through
# makes its key with `./easel.sh keys create`, which EASEL_BIN points at
# the given binary instead of a release build).
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 BASE_URL EASEL_BINARY" >&2; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
block="$(mktemp)"
trap 'rm -f "$block"' EXIT
# The first ```sh block after the "### Walk-through" heading.
awk '/^### Walk-through/ { section = 1 }
     section && /^```sh$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$root/README.md" >"$block"
[ -s "$block" ] || { echo "readme-walkthrough: no walk-through block in README.md" >&2; exit 2; }
rm -f "$root/out/itunes.jpg" "$root/out/feed.jpg"
(cd "$root" && EASEL_URL="$1" EASEL_BIN="$2" bash -euo pipefail "$block") >"$block.out" 2>&1 || {
    echo "readme-walkthrough: the README's walk-through failed:" >&2
    cat "$block.out" >&2
    exit 1
}
for f in itunes feed; do
    head -c 2 "$root/out/$f.jpg" | od -An -tx1 | grep -q 'ff d8' ||
        { echo "readme-walkthrough: out/$f.jpg is not a JPEG" >&2; exit 1; }
done
grep -q '"status":"finished"' "$block.out" ||
    { echo "readme-walkthrough: the uploaded image did not finish:" >&2; cat "$block.out" >&2; exit 1; }
rm -f "$block.out"
echo "readme-walkthrough: the README's walk-through ran as written" >&2
