#!/usr/bin/env bash
# Writes a podcast feed for an image with feedgen, a widely used Python feed
# library, the way a host's feed generator would: it reads the image's
# `/podcast` document, hands `itunes_image.href` to feedgen's podcast
# extension (which drops a channel image whose URL does not end in .jpg or
# .png, and refuses one for an episode), and parses the document's `xml`
# with lxml. Prints a JSON report on stdout (see scripts/feed_check.py).
# Installs feedgen into a venv of its own under target/ when missing.
#
#   scripts/feed-check.sh PODCAST_DOCUMENT_URL [API_KEY]
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 PODCAST_DOCUMENT_URL [API_KEY]" >&2; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/feed-venv"
if ! "$venv/bin/python" -c 'import feedgen, lxml' 2>/dev/null; then
    echo "feed-check: installing feedgen into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check 'feedgen==1.0.0' >&2
fi
exec "$venv/bin/python" "$root/scripts/feed_check.py" "$@"
