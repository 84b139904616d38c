#!/usr/bin/env bash
# Generates a Python client from a running server's /openapi.json with
# openapi-python-client (what a user of the API would do), then uses it:
# uploads a fixture, fetches a style and a IIIF image, and checks that the
# calls return the files' bytes (not an UnexpectedStatus on a 200).
#
#   scripts/openapi-client.sh BASE_URL KEY
#
#   KEY  a bearer key with image:read,image:write for bucket "default"
#
# Environment:
#   OPC_VENV     virtualenv for the generator (default ~/.cache/easel/openapi-client-venv)
#   OPC_VERSION  pip requirement (default "openapi-python-client>=0.29,<0.30")
set -euo pipefail

die() {
    echo "openapi-client: $*" >&2
    exit 2
}
[[ $# -eq 2 ]] || die "usage: $0 BASE_URL KEY"
BASE="${1%/}"
KEY="$2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OPC_VENV:-$HOME/.cache/easel/openapi-client-venv}"
REQ="${OPC_VERSION:-openapi-python-client>=0.29,<0.30}"

if [ ! -x "$VENV/bin/openapi-python-client" ]; then
    echo "openapi-client: installing $REQ into $VENV" >&2
    python3 -m venv "$VENV" || die "cannot make a venv (python3-venv missing?)"
    "$VENV/bin/pip" install -q "$REQ" || die "cannot install $REQ"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl -sSf "$BASE/openapi.json" -o "$work/openapi.json" || die "cannot fetch $BASE/openapi.json"
# Request bodies of image/* types are not among the generator's content
# types (it warns and keeps octet-stream and multipart, which the upload
# takes), so its warnings are not failures; a missing module is.
(cd "$work" && "$VENV/bin/openapi-python-client" generate --path openapi.json --meta none \
    --output-path easel_client >"$work/generate.log" 2>&1) ||
    { cat "$work/generate.log" >&2; die "the generator failed"; }

PYTHONPATH="$work" "$VENV/bin/python" - "$BASE" "$KEY" "$ROOT/fixtures/jpeg/exif_iptc_nokia.jpg" <<'PY'
import hashlib
import io
import struct
import sys

from easel_client import AuthenticatedClient, Client
from easel_client.api.iiif import iiif_image
from easel_client.api.images import list_image_assets, upload_image
from easel_client.api.styles import get_image_style
from easel_client.models import ImageView
from easel_client.types import File

base, key, fixture = sys.argv[1:]


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from a JPEG's SOF segment."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    i = 2
    while i < len(data):
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    raise AssertionError("no SOF segment")


keyed = AuthenticatedClient(base_url=base, token=key)
anonymous = Client(base_url=base)

with open(fixture, "rb") as f:
    original = f.read()
uploaded = upload_image.sync(
    client=keyed,
    body=File(payload=io.BytesIO(original), file_name="cover.jpg", mime_type="image/jpeg"),
    name="generated client",
    wait=True,
)
assert isinstance(uploaded, ImageView), f"upload answered {uploaded!r}"
assert uploaded.status == "finished", f"upload ended {uploaded.status}"
image_id = uploaded.id

assets = list_image_assets.sync(image_id, client=keyed)
itunes = next(a for a in assets.data if a.style == "itunes")

response = get_image_style.sync_detailed(image_id, "itunes", client=anonymous)
assert response.status_code == 200, response.status_code
file = response.parsed
assert isinstance(file, File), f"get_image_style gave {type(file).__name__}, not a File"
data = file.payload.read()
assert hashlib.sha256(data).hexdigest() == itunes.sha256, "the bytes are not the itunes file"
assert jpeg_size(data) == (1400, 1400), jpeg_size(data)

response = iiif_image.sync_detailed(image_id, "full", "120,", "0", "default.jpg", client=anonymous)
assert response.status_code == 200, response.status_code
assert isinstance(response.parsed, File), type(response.parsed).__name__
tile = response.parsed.payload.read()
assert jpeg_size(tile)[0] == 120, jpeg_size(tile)

print(f"openapi-client: generated client fetched itunes ({len(data)} bytes, sha256 ok) "
      f"and a IIIF image ({len(tile)} bytes, 120 px wide) of {image_id}", file=sys.stderr)
PY
