#!/usr/bin/env bash
# Regenerates everything derived from the API types in pkg/apis:
#   - deepcopy functions (zz_generated.deepcopy.go),
#   - the typed clientset, listers and informers in pkg/generated/,
#   - the CRD manifests in manifests/crds/.
# The generators are the versions go.mod pins: code-generator's kube_codegen.sh from the module
# cache, controller-gen as a Go tool of this module.
set -o errexit -o nounset -o pipefail

SCRIPT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${SCRIPT_ROOT}"

THIS_PKG=platform.example.com/backup-operator
CODEGEN_PKG=$(go list -m -f '{{.Dir}}' k8s.io/code-generator)
if [[ -z "${CODEGEN_PKG}" || ! -f "${CODEGEN_PKG}/kube_codegen.sh" ]]; then
	go mod download k8s.io/code-generator
	CODEGEN_PKG=$(go list -m -f '{{.Dir}}' k8s.io/code-generator)
fi
# kube_codegen.sh installs its generators into GOBIN; keep them inside the project's output
# directory so that a run never overwrites binaries of another project.
export GOBIN="${SCRIPT_ROOT}/_output/codegen-bin"

# shellcheck source=/dev/null
source "${CODEGEN_PKG}/kube_codegen.sh"

kube::codegen::gen_helpers \
	--boilerplate "${SCRIPT_ROOT}/hack/boilerplate.go.txt" \
	"${SCRIPT_ROOT}/pkg/apis"

kube::codegen::gen_client \
	--with-watch \
	--output-dir "${SCRIPT_ROOT}/pkg/generated" \
	--output-pkg "${THIS_PKG}/pkg/generated" \
	--boilerplate "${SCRIPT_ROOT}/hack/boilerplate.go.txt" \
	"${SCRIPT_ROOT}/pkg/apis"

# CRDs: remove the old ones first so that a kind removed from the API does not leave a stale file.
rm -f manifests/crds/platform.example.com_*.yaml
go tool controller-gen crd:crdVersions=v1 \
	paths=./pkg/apis/... \
	output:crd:artifacts:config=manifests/crds
