#!/usr/bin/env bash
# Checks for what building and testing need besides Go: gcc, and libzstd's header
# and static library (Debian's libzstd-dev), which the backup agent compresses
# with through cgo (pkg/archive/zstdenc.go). As root on Debian it installs what
# is missing; otherwise it says what to install and fails.
set -euo pipefail

missing=()
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
have_zstd() {
	command -v gcc >/dev/null 2>&1 &&
		echo '#include <zstd.h>' | gcc -E -x c - >/dev/null 2>&1 &&
		[[ "$(gcc -print-file-name=libzstd.a)" == /* ]]
}
have_zstd || missing+=(libzstd-dev)
((${#missing[@]})) || exit 0

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
	echo "ERROR: building needs ${missing[*]} (gcc, zstd.h and libzstd.a): install them, e.g. apt-get install ${missing[*]}" >&2
	exit 1
fi
echo "==> Installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
	{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
have_zstd || { echo "ERROR: ${missing[*]} installed, but gcc still finds no zstd.h or libzstd.a" >&2; exit 1; }
