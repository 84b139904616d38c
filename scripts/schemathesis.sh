#!/usr/bin/env bash
# Runs schemathesis (property-based API testing) against a running Easel
# server, using the OpenAPI document the server itself serves.
#
#   scripts/schemathesis.sh BASE_URL KEY
#
#   BASE_URL  e.g. http://127.0.0.1:8080 (the document is BASE_URL/openapi.json)
#   KEY       a bearer API key with image:read,image:write,image:delete, made
#             with `easel keys create --bucket default --scopes ...`
#
# Checks: no 5xx (not_a_server_error), every status documented
# (status_code_conformance), response bodies and content types as documented
# (response_schema_conformance, content_type_conformance).
#
# Environment:
#   ST_VENV          virtualenv for schemathesis
#                    (default ~/.cache/easel/schemathesis-venv)
#   ST_VERSION       pip requirement for schemathesis (default ">=4,<5")
#   ST_MAX_EXAMPLES  test cases per operation (default 30)
#   ST_WORKERS       concurrent workers (default 1: with 2, hypothesis has
#                    crashed once on a thread race inside schemathesis)
#   ST_SEED          random seed, for a reproducible run (default: random)
#   ST_REPORT_DIR    where the JUnit report goes (default: a temporary dir)
#
# Exit code: schemathesis's (non-zero on any failure), or 2 when set-up fails.
set -euo pipefail

die() {
    echo "schemathesis.sh: $*" >&2
    exit 2
}

[[ $# -eq 2 ]] || die "usage: $0 BASE_URL KEY"
BASE="${1%/}"
KEY="$2"
VENV="${ST_VENV:-$HOME/.cache/easel/schemathesis-venv}"
VERSION="${ST_VERSION:->=4,<5}"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-30}"
WORKERS="${ST_WORKERS:-1}"

# python3 -m venv needs ensurepip, which Debian ships in python3-venv.
if [[ ! -x "$VENV/bin/st" ]]; then
    command -v python3 >/dev/null || die "python3 is required"
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        echo "installing python3-venv" >&2
        SUDO=()
        [[ "$(id -u)" -ne 0 ]] && SUDO=(sudo)
        "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv ||
            die "apt-get install python3-venv failed"
    fi
    echo "installing schemathesis into $VENV" >&2
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
    "$VENV/bin/pip" install --quiet "schemathesis$VERSION" || die "pip install schemathesis failed"
fi
"$VENV/bin/st" --version

command -v curl >/dev/null || die "curl is required"
curl -fsS -o /dev/null "$BASE/openapi.json" || die "no OpenAPI document at $BASE/openapi.json"

REPORT_DIR="${ST_REPORT_DIR:-}"
if [[ -n "$REPORT_DIR" ]]; then
    mkdir -p "$REPORT_DIR"
    REPORT_DIR="$(cd "$REPORT_DIR" && pwd)"
else
    REPORT_DIR="$(mktemp -d)"
    trap 'rm -rf "$REPORT_DIR"' EXIT
fi

SEED=()
[[ -n "${ST_SEED:-}" ]] && SEED=(--seed "$ST_SEED")

# A real image, so the IIIF and style operations get past 404: a 64x48 PNG
# made here (no fixture file needed), PUT under a fixed id and rendered.
FIXTURE_ID=schemathesis-fixture
python3 - "$REPORT_DIR/fixture.png" <<'PY' || die "could not write the fixture PNG"
import struct, sys, zlib
w, h = 64, 48
rows = b"".join(b"\0" + b"".join(bytes((x * 4, y * 5, 128)) for x in range(w)) for y in range(h))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
code="$(curl -sS -o "$REPORT_DIR/fixture.json" -w '%{http_code}' -X PUT \
    -H "Authorization: Bearer $KEY" -H 'Content-Type: image/png' \
    --data-binary "@$REPORT_DIR/fixture.png" "$BASE/v1/images/$FIXTURE_ID?wait=true")" ||
    die "PUT $BASE/v1/images/$FIXTURE_ID failed"
case "$code" in
    200 | 201) ;;
    *) die "PUT /v1/images/$FIXTURE_ID answered $code: $(head -c 300 "$REPORT_DIR/fixture.json")" ;;
esac
# Read-only operations that need an existing image use the fixture's id.
cat >"$REPORT_DIR/schemathesis.toml" <<TOML
[[operations]]
include-path-regex = "^/iiif/|/styles/"
parameters = { "path.id" = "$FIXTURE_ID" }
TOML

# schemathesis keeps a cache under ./.schemathesis: keep it out of the checkout.
cd "$REPORT_DIR"
started=$SECONDS
status=0
"$VENV/bin/st" --config-file "$REPORT_DIR/schemathesis.toml" run "$BASE/openapi.json" \
    --url "$BASE" \
    --header "Authorization: Bearer $KEY" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" \
    --workers "$WORKERS" \
    --request-timeout 30 \
    --phases examples,coverage,fuzzing \
    --suppress-health-check all \
    --report junit --report-dir "$REPORT_DIR" \
    "${SEED[@]}" || status=$?
echo "schemathesis.sh: finished in $((SECONDS - started)) s with exit code $status" >&2
exit "$status"
