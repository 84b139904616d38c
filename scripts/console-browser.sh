#!/usr/bin/env bash
# The Easel Console's end-to-end test in a real browser: Debian's headless
# Chromium driven by puppeteer-core (pinned in tests/browser/package.json;
# it downloads no browser). The test starts `easel serve` itself on a free
# port with a fresh data dir and makes its keys with the CLI. Installs what
# it needs when missing: chromium and a font (apt), Node.js and npm (apt),
# puppeteer-core (npm ci). Screenshots go to target/console-screenshots/.
#
#   scripts/console-browser.sh [path/to/easel]      # default target/debug/easel
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
easel="${1:-$root/target/debug/easel}"
[ -x "$easel" ] || { echo "console-browser: $easel not built (cargo build)" >&2; exit 1; }

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
# Text in the screenshots needs a font; Chromium does not pull one in.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    echo "console-browser: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
        { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

cd "$root/tests/browser"
# `npm ci` only when the lock file changed since the last install.
if ! cmp -s package-lock.json node_modules/.easel-installed-lock 2>/dev/null; then
    echo "console-browser: npm ci (puppeteer-core)" >&2
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.easel-installed-lock
fi

echo "console-browser: $(/usr/bin/chromium --version 2>/dev/null), node $(node --version)" >&2
# Pictures of failures are from this run only.
rm -f "$root"/target/console-screenshots/failed-*.png
started=$(date +%s)
status=0
EASEL_BIN="$easel" CHROMIUM=/usr/bin/chromium SCREENSHOTS="$root/target/console-screenshots" \
    node --test --test-reporter=spec console.test.mjs || status=$?
echo "console-browser: finished in $(($(date +%s) - started)) s; screenshots in target/console-screenshots/" >&2
exit "$status"
