#!/usr/bin/env bash
# Fails when the generated code or CRDs in the tree differ from what hack/update-codegen.sh makes
# from the current API types. It regenerates in a scratch copy, so the working tree is untouched.
set -o errexit -o nounset -o pipefail

SCRIPT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRATCH=$(mktemp -d)
trap 'rm -rf "${SCRATCH}"' EXIT

# Copy the source tree (not build output or git metadata) and regenerate there. The top-level
# entries are named rather than archiving ".": builds running beside this script (CI builds the S3
# server and the CSI parts meanwhile) create _output, which changes "." and makes tar fail.
mapfile -t entries < <(find "${SCRIPT_ROOT}" -mindepth 1 -maxdepth 1 \
	! -name .git ! -name _output ! -name bin -printf '%P\n' | sort)
tar -C "${SCRIPT_ROOT}" -cf - -- "${entries[@]}" | tar -C "${SCRATCH}" -xf -
mkdir -p "${SCRATCH}/_output"
"${SCRATCH}/hack/update-codegen.sh" >"${SCRATCH}/_output/codegen.log" 2>&1 || {
	cat "${SCRATCH}/_output/codegen.log" >&2
	echo "hack/update-codegen.sh failed in a scratch copy; see the log above" >&2
	exit 1
}

status=0
for dir in pkg/apis pkg/generated manifests/crds; do
	if ! diff -Naupr "${SCRIPT_ROOT}/${dir}" "${SCRATCH}/${dir}"; then
		status=1
	fi
done
if [[ ${status} -ne 0 ]]; then
	echo >&2
	echo "Generated code or CRDs are out of date (diff above). Run 'make generate' and commit the result." >&2
	exit 1
fi
echo "Generated code and CRDs are up to date."
