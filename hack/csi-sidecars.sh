#!/usr/bin/env bash
# The CSI pieces of the local node (hack/local-cluster.sh): the upstream
# sidecars, built from the Go module proxy at pinned versions, the
# VolumeSnapshot CRDs of the same snapshotter release, and the project's own
# btrfs CSI driver (hack/csi-driver).
#
#   snapshot-controller, csi-snapshotter  github.com/kubernetes-csi/external-snapshotter/v8
#   csi-provisioner                       github.com/kubernetes-csi/external-provisioner/v5
#   csi-driver                            ./hack/csi-driver (this module)
#
# Usage: hack/csi-sidecars.sh COMMAND
#   build        build what is missing or stale into _output/bin/ and put the CRDs in crds-dir
#   path NAME    print the path of a binary (snapshot-controller, csi-snapshotter,
#                csi-provisioner, csi-driver)
#   crds-dir     print the directory that holds the VolumeSnapshot CRDs (after build)
#   versions     print the pinned versions
#
# Environment: CSI_SIDECARS_OUTPUT (default _output: binaries in its bin/, the
# throwaway modules and the CRDs in its csi-build/), CSI_SIDECARS_JOBS (2:
# build the snapshotter and the provisioner modules at the same time; 1: one
# after the other).
set -Eeuo pipefail

SNAPSHOTTER_MODULE="github.com/kubernetes-csi/external-snapshotter/v8"
SNAPSHOTTER_VERSION="v8.4.0"
# The snapshotter's go.mod replaces its client module with ./client (not in
# the module zip). Without a pin, the build takes the newest client (v8.7.0
# when checked), which does not compile against the client-go it replaces to.
SNAPSHOTTER_CLIENT_MODULE="github.com/kubernetes-csi/external-snapshotter/client/v8"
PROVISIONER_MODULE="github.com/kubernetes-csi/external-provisioner/v5"
PROVISIONER_VERSION="v5.3.0"
# The CRDs the snapshot controller serves (not the group snapshot ones: that
# feature gate is off by default).
CRD_FILES=(
  snapshot.storage.k8s.io_volumesnapshotclasses.yaml
  snapshot.storage.k8s.io_volumesnapshotcontents.yaml
  snapshot.storage.k8s.io_volumesnapshots.yaml
)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
OUTPUT="${CSI_SIDECARS_OUTPUT:-${REPO_ROOT}/_output}"
BIN_DIR="${OUTPUT}/bin"
BUILD_ROOT="${OUTPUT}/csi-build"
CRDS_DIR="${BUILD_ROOT}/crds/external-snapshotter-${SNAPSHOTTER_VERSION}"
JOBS="${CSI_SIDECARS_JOBS:-2}"

log() { printf '==> %s\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

# The Go environment of the throwaway modules: none of this project's
# workspace or flags, modules resolved as needed, static binaries.
go_env() { env GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 "$@"; }

# built_version BINARY MODULE: the version of MODULE that BINARY was built
# from, from its build information (nothing is run).
built_version() {
  [[ -x "$1" ]] || return 1
  go version -m "$1" 2>/dev/null | awk -v m="$2" '($1 == "dep" || $1 == "mod") && $2 == m {print $3; found = 1} END {exit !found}'
}

# current BINARY MODULE VERSION: BINARY exists and was built from MODULE@VERSION.
current() {
  local have
  have="$(built_version "$1" "$2")" && [[ "$have" == "$3" ]]
}

# upstream_replaces GOMOD: the replace directives of a go.mod that name a
# module version (single-line and block form), one "replace ..." per line;
# replacements by a local directory (not in the module zip) are left out.
upstream_replaces() {
  awk '
    /^replace[ \t]*\([ \t]*$/ {block = 1; next}
    block && /^[ \t]*\)/ {block = 0; next}
    {sub(/\/\/.*/, "")}
    block && NF {$0 = "replace " $0}
    $1 == "replace" {
      for (i = 2; i <= NF && $i != "=>"; i++) {}
      if (i < NF && $(i + 1) !~ /^[.\/]/) print
    }' "$1"
}

# build_module NAME MODULE VERSION EXTRA_REPLACE PACKAGE...: a throwaway module
# in BUILD_ROOT/NAME-VERSION that requires MODULE@VERSION with its own replace
# directives (and EXTRA_REPLACE, if not empty), built into its out/ and moved
# to BIN_DIR. Runs from its own directory, so the project's go.mod is not
# touched.
build_module() {
  local name="$1" module="$2" version="$3" extra="$4"
  shift 4
  local dir="${BUILD_ROOT}/${name}-${version}" started=$SECONDS gomod godirective pkg
  mkdir -p "$dir"
  cd "$dir"
  rm -rf out go.sum
  printf 'module local-csi-build/%s\n\ngo 1.24.0\n' "$name" >go.mod
  gomod="$(go_env go mod download -json "${module}@${version}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$gomod" ]] || die "could not download ${module}@${version} from the Go module proxy"
  godirective="$(awk '$1 == "go" {print $2; exit}' "$gomod")"
  {
    printf 'module local-csi-build/%s\n\ngo %s\n\nrequire %s %s\n\n' "$name" "${godirective:-1.24.0}" "$module" "$version"
    printf '// The replace directives of %s@%s:\n' "$module" "$version"
    upstream_replaces "$gomod"
    [[ -z "$extra" ]] || printf '\n%s\n' "$extra"
  } >go.mod
  info "${name}: throwaway module ${dir} ($(grep -c '^replace' go.mod) replace directives)"
  local -a targets=()
  for pkg in "$@"; do targets+=("${module}/cmd/${pkg}@${version}"); done
  # go get adds what the commands import, as go mod tidy would for them.
  go_env go get "${targets[@]}" >/dev/null 2>&1 || go_env go get "${targets[@]}" ||
    die "${name}: go get ${targets[*]} failed"
  local -a pkgs=()
  for pkg in "$@"; do pkgs+=("${module}/cmd/${pkg}"); done
  mkdir -p out
  # main.version as the upstream release builds set it (--version prints it).
  go_env go build -trimpath -ldflags "-s -w -X main.version=${version}" -o out/ "${pkgs[@]}" ||
    die "${name}: go build failed"
  mkdir -p "$BIN_DIR"
  for pkg in "$@"; do mv -f "out/${pkg}" "${BIN_DIR}/${pkg}"; done
  info "${name}: built $* (${module} ${version}) in $((SECONDS - started))s"
}

build_snapshotter() {
  build_module snapshotter "$SNAPSHOTTER_MODULE" "$SNAPSHOTTER_VERSION" \
    "replace ${SNAPSHOTTER_CLIENT_MODULE} => ${SNAPSHOTTER_CLIENT_MODULE} ${SNAPSHOTTER_VERSION}" \
    snapshot-controller csi-snapshotter
}

build_provisioner() {
  build_module provisioner "$PROVISIONER_MODULE" "$PROVISIONER_VERSION" "" csi-provisioner
}

snapshotter_current() {
  current "${BIN_DIR}/snapshot-controller" "$SNAPSHOTTER_MODULE" "$SNAPSHOTTER_VERSION" &&
    current "${BIN_DIR}/csi-snapshotter" "$SNAPSHOTTER_MODULE" "$SNAPSHOTTER_VERSION"
}

provisioner_current() {
  current "${BIN_DIR}/csi-provisioner" "$PROVISIONER_MODULE" "$PROVISIONER_VERSION"
}

# build_crds: the VolumeSnapshot CRDs of the snapshotter release, from its
# client module (the repository's client/config/crd/) in the module cache.
build_crds() {
  local f missing=""
  for f in "${CRD_FILES[@]}"; do [[ -s "${CRDS_DIR}/${f}" ]] || missing=1; done
  [[ -n "$missing" ]] || return 0
  local dir="${BUILD_ROOT}/crds-module" src
  mkdir -p "$dir"
  src="$(
    cd "$dir"
    printf 'module local-csi-build/crds\n\ngo 1.24.0\n' >go.mod
    go_env go mod download -json "${SNAPSHOTTER_CLIENT_MODULE}@${SNAPSHOTTER_VERSION}" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
  )" || true
  [[ -d "${src}/config/crd" ]] || die "could not download ${SNAPSHOTTER_CLIENT_MODULE}@${SNAPSHOTTER_VERSION} (its config/crd/ holds the CRDs)"
  mkdir -p "$CRDS_DIR"
  for f in "${CRD_FILES[@]}"; do
    install -m 0644 "${src}/config/crd/${f}" "${CRDS_DIR}/${f}" || die "no ${f} in ${src}/config/crd"
  done
  info "VolumeSnapshot CRDs (${SNAPSHOTTER_VERSION}) in ${CRDS_DIR}"
}

# build_driver: the project's CSI driver, rebuilt when a source file, go.mod
# or go.sum is newer than the binary. Built next to the target and moved into
# place: the running driver keeps its (old) file.
build_driver() {
  local bin="${BIN_DIR}/csi-driver" f stale=""
  if [[ -x "$bin" ]]; then
    for f in "${REPO_ROOT}"/hack/csi-driver/*.go "${REPO_ROOT}/go.mod" "${REPO_ROOT}/go.sum"; do
      [[ "$f" -nt "$bin" ]] && stale=1 && break
    done
  else
    stale=1
  fi
  if [[ -z "$stale" ]]; then
    info "csi-driver is current in ${bin}"
    return 0
  fi
  local started=$SECONDS
  mkdir -p "$BIN_DIR"
  (
    cd "$REPO_ROOT"
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=dev" -o "${bin}.tmp" ./hack/csi-driver
  ) || {
    rm -f "${bin}.tmp"
    die "building the CSI driver (./hack/csi-driver) failed"
  }
  mv -f "${bin}.tmp" "$bin"
  info "csi-driver: built ${bin} in $((SECONDS - started))s"
}

cmd_build() {
  command -v go >/dev/null || die "go is not on PATH"
  mkdir -p "$BUILD_ROOT"
  # One build at a time per output directory (CI's background build and a
  # cluster-up may meet).
  exec 8>"${BUILD_ROOT}/.lock"
  flock -w 3600 8 || die "another hack/csi-sidecars.sh build is still running"
  local started=$SECONDS
  local -a todo=()
  if snapshotter_current; then
    info "snapshot-controller and csi-snapshotter ${SNAPSHOTTER_VERSION} are cached in ${BIN_DIR}"
  else
    todo+=(snapshotter)
  fi
  if provisioner_current; then
    info "csi-provisioner ${PROVISIONER_VERSION} is cached in ${BIN_DIR}"
  else
    todo+=(provisioner)
  fi
  if ((${#todo[@]})); then
    log "Building the CSI sidecars (${todo[*]}) from the Go module proxy (cold: about 11 minutes on 2 cores)"
    if ((JOBS > 1 && ${#todo[@]} > 1)); then
      # Both modules at once, each with its own log; shown when it ends.
      local name rc=0
      local -A pids=()
      for name in "${todo[@]}"; do
        ("build_${name}") >"${BUILD_ROOT}/${name}.log" 2>&1 8>&- &
        pids[$name]=$!
      done
      for name in "${todo[@]}"; do
        if wait "${pids[$name]}"; then
          cat "${BUILD_ROOT}/${name}.log" >&2
        else
          rc=1
          printf -- '---- %s build log ----\n' "$name" >&2
          tail -n 60 "${BUILD_ROOT}/${name}.log" >&2
          printf -- '---- end of %s build log ----\n' "$name" >&2
        fi
      done
      ((rc == 0)) || die "building the CSI sidecars failed (logs in ${BUILD_ROOT}/*.log)"
    else
      for name in "${todo[@]}"; do ("build_${name}") || die "building ${name} failed"; done
    fi
  fi
  build_crds
  build_driver
  info "CSI binaries ready in ${BIN_DIR} ($((SECONDS - started))s)"
}

cmd_path() {
  (($# == 1)) || die "usage: $0 path NAME"
  case "$1" in
    snapshot-controller | csi-snapshotter | csi-provisioner | csi-driver) printf '%s\n' "${BIN_DIR}/$1" ;;
    *) die "unknown binary '$1' (snapshot-controller, csi-snapshotter, csi-provisioner, csi-driver)" ;;
  esac
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    build) cmd_build "$@" ;;
    path) cmd_path "$@" ;;
    crds-dir) printf '%s\n' "$CRDS_DIR" ;;
    versions)
      printf '%s %s\n%s %s\n' "$SNAPSHOTTER_MODULE" "$SNAPSHOTTER_VERSION" "$PROVISIONER_MODULE" "$PROVISIONER_VERSION"
      ;;
    *)
      sed -n '/^# Usage:/,/^set -Eeuo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
}

main "$@"
