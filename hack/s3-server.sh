#!/usr/bin/env bash
# The S3-compatible server the project tests against: versitygw (Apache-2.0,
# posix backend), built from the Go module proxy at a pinned version into
# _output/bin/versitygw. The S3 backend's unit tests start their own server
# from that binary, and hack/local-cluster.sh runs one on the local node.
#
# Usage: hack/s3-server.sh COMMAND
#   build     build versitygw into _output/bin/ (skipped when that binary is already the pinned version)
#   path      print the binary's path
#   version   print the pinned version
set -Eeuo pipefail

# versitygw's go.mod has no replace directives, so `go install module@version`
# builds it as released, outside this project's module graph.
VERSITYGW_MODULE="github.com/versity/versitygw"
VERSITYGW_VERSION="v1.7.0"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN_DIR="${REPO_ROOT}/_output/bin"
BINARY="${BIN_DIR}/versitygw"

log() { printf '==> %s\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

# built_version: the versitygw module version recorded in the binary's build
# information (what `go install module@version` stamps in; nothing to run).
built_version() {
  [[ -x "$BINARY" ]] || return 1
  go version -m "$BINARY" 2>/dev/null | awk -v m="$VERSITYGW_MODULE" '$1 == "mod" && $2 == m {print $3; found = 1} END {exit !found}'
}

cmd_build() {
  command -v go >/dev/null || die "go is not on PATH"
  local have
  if have="$(built_version)" && [[ "$have" == "$VERSITYGW_VERSION" ]]; then
    info "versitygw ${VERSITYGW_VERSION} is cached in ${BINARY}"
    return 0
  fi
  [[ -z "${have:-}" ]] || info "${BINARY} is versitygw ${have}; rebuilding ${VERSITYGW_VERSION}"
  log "Building versitygw ${VERSITYGW_VERSION} from the Go module proxy (first time: about 2 minutes)"
  local started=$SECONDS tmp
  mkdir -p "$BIN_DIR"
  # Built next to the target and moved into place, so a concurrent or
  # interrupted build never leaves a half-written binary at BINARY.
  tmp="$(mktemp -d "${BIN_DIR}/.versitygw-build.XXXXXX")"
  # shellcheck disable=SC2064 # expand tmp now
  trap "rm -rf '${tmp}'" EXIT
  # From a directory outside the project, with the project's own GOFLAGS and
  # workspace out of the way: they are not versitygw's. CGO off gives a
  # static binary that would also run in a minimal image. The version is set
  # the way versitygw's Makefile does, so `versitygw --version` names it.
  (
    cd "$tmp"
    GOBIN="$tmp" GOWORK=off GOFLAGS= CGO_ENABLED=0 \
      go install -trimpath -ldflags "-s -w -X main.Version=${VERSITYGW_VERSION}" \
      "${VERSITYGW_MODULE}/cmd/versitygw@${VERSITYGW_VERSION}"
  ) || die "building versitygw ${VERSITYGW_VERSION} failed (see the go output above)"
  mv -f "${tmp}/versitygw" "$BINARY"
  info "built ${BINARY} in $((SECONDS - started))s"
}

main() {
  case "${1:-}" in
    build) cmd_build ;;
    path) printf '%s\n' "$BINARY" ;;
    version) printf '%s\n' "$VERSITYGW_VERSION" ;;
    *)
      sed -n '/^# Usage:/,/^set -Eeuo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
}

main "$@"
