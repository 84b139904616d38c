#!/usr/bin/env bash
# Runs the IIIF Image API validator (level 2, version 3.0) against a running
# Easel server.
#
#   scripts/iiif-validate.sh [BASE_URL]      # default $EASEL_URL or http://127.0.0.1:8080
#
# Environment:
#   EASEL_URL        base URL of the server when no argument is given
#   EASEL_API_KEY    bearer key for the upload, if the server wants one
#   IIIF_FIXTURE     the validator's 1000x1000 test image
#                    (default: fixtures/iiif/<id>.png in this repository)
#   IIIF_LEVEL       compliance level to test (default 2)
#   IIIF_TIMEOUT     seconds to wait for the upload to finish (default 60)
#
# It installs `iiif-validator` (PyPI; it provides iiif-validate.py) when the
# script is missing, PUTs the test image under the identifier the validator
# expects, waits for the image to be `finished`, then runs every test of the
# level. Exit code: the validator's (the number of failed tests), or 2 when
# the set-up fails.
set -euo pipefail

ID=67352ccc-d1b0-11e1-89ae-279075081939
BASE="${1:-${EASEL_URL:-http://127.0.0.1:8080}}"
BASE="${BASE%/}"
LEVEL="${IIIF_LEVEL:-2}"
TIMEOUT="${IIIF_TIMEOUT:-60}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FIXTURE="${IIIF_FIXTURE:-$HERE/../fixtures/iiif/$ID.png}"

die() {
    echo "iiif-validate: $*" >&2
    exit 2
}

[[ -f "$FIXTURE" ]] || die "test image not found at $FIXTURE (set IIIF_FIXTURE)"
command -v curl >/dev/null || die "curl is required"

# The validator's host:port and path prefix, from the base URL.
case "$BASE" in
    http://*) SCHEME=http; REST="${BASE#http://}" ;;
    https://*) SCHEME=https; REST="${BASE#https://}" ;;
    *) die "base URL must start with http:// or https:// (got $BASE)" ;;
esac
SERVER="${REST%%/*}"
PATH_PREFIX=""
[[ "$REST" == */* ]] && PATH_PREFIX="${REST#*/}/"
PREFIX="${PATH_PREFIX}iiif/3"

# The validator: installed on demand, in a virtualenv of its own when pip
# refuses to touch the system Python (PEP 668).
VALIDATOR="$(command -v iiif-validate.py || true)"
if [[ -z "$VALIDATOR" ]]; then
    VENV="${IIIF_VENV:-${TMPDIR:-/tmp}/easel-iiif-validator}"
    if [[ ! -x "$VENV/bin/iiif-validate.py" ]]; then
        echo "installing iiif-validator into $VENV" >&2
        python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
        "$VENV/bin/pip" install --quiet iiif-validator || die "pip install iiif-validator failed"
    fi
    VALIDATOR="$VENV/bin/iiif-validate.py"
    PYTHON="$VENV/bin/python"
else
    PYTHON="$(head -n1 "$VALIDATOR" | sed -n 's/^#!//p' | awk '{print $NF}')"
    [[ -x "$PYTHON" ]] || PYTHON=python3
fi
# python-magic (imported by the validator's tests) needs libmagic.
"$PYTHON" -c 'import magic' 2>/dev/null ||
    die "python-magic cannot load libmagic (apt-get install libmagic1)"

AUTH=()
[[ -n "${EASEL_API_KEY:-}" ]] && AUTH=(-H "Authorization: Bearer $EASEL_API_KEY")

echo "uploading the test image as $ID to $BASE" >&2
response="$(mktemp)"
trap 'rm -f "$response"' EXIT
status="$(curl -sS -o "$response" -w '%{http_code}' -X PUT "${AUTH[@]}" \
    -H 'Content-Type: image/png' --data-binary "@$FIXTURE" \
    "$BASE/v1/images/$ID?wait=true")" || die "PUT $BASE/v1/images/$ID failed"
case "$status" in
    200 | 201 | 202 | 204) ;;
    *) die "PUT /v1/images/$ID answered $status: $(head -c 500 "$response")" ;;
esac

deadline=$((SECONDS + TIMEOUT))
while :; do
    body="$(curl -sS "${AUTH[@]}" "$BASE/v1/images/$ID" || true)"
    if grep -q '"status" *: *"finished"' <<<"$body"; then
        break
    fi
    if grep -q '"status" *: *"error"' <<<"$body"; then
        die "the test image failed to render: $body"
    fi
    ((SECONDS < deadline)) || die "the test image is not finished after ${TIMEOUT}s: $body"
    sleep 0.5
done

echo "validating $SCHEME://$SERVER/$PREFIX/$ID at level $LEVEL, version 3.0" >&2
set +e
"$PYTHON" "$VALIDATOR" --scheme="$SCHEME" -s "$SERVER" -p "$PREFIX" -i "$ID" \
    --version=3.0 --level="$LEVEL"
failures=$?
set -e
if ((failures != 0)); then
    echo "iiif-validate: $failures test(s) failed" >&2
fi
exit "$failures"
