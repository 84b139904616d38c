#!/usr/bin/env bash
# Installs the system packages the build needs, only when they are missing:
# cmake and nasm build libjpeg-turbo 3 from source (the turbojpeg crate's
# `cmake` feature; Debian's libturbojpeg is too old to link against);
# libtiff-dev (4.5 or newer, found through pkg-config) decodes TIFF.
set -euo pipefail
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v nasm >/dev/null 2>&1 || missing+=(nasm)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --atleast-version=4.5 libtiff-4 2>/dev/null || missing+=(libtiff-dev)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "easel: installing ${missing[*]} (needed to build libjpeg-turbo and link libtiff)" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
