#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for trying the operator
# and for the e2e tests: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and the kubelet (built from the Go module proxy), containerd and
# runc (from the distribution), a bridge CNI network that stays on the machine,
# static hostPath PersistentVolumes, an S3 server (versitygw, built by
# hack/s3-server.sh) with two buckets as the backups' object storage, and CSI
# dynamic provisioning and VolumeSnapshots: the project's btrfs CSI driver
# (hack/csi-driver) on a loop-mounted btrfs file, with the upstream
# csi-provisioner, csi-snapshotter and snapshot-controller (built by
# hack/csi-sidecars.sh) as host processes.
#
# Usage: hack/local-cluster.sh COMMAND [ARGS]
#   up                       build what is missing, start the cluster (no-op if it runs)
#   down                     stop everything and remove the cluster's state (idempotent)
#   status                   show the components; exit 0 only if the cluster is healthy
#   pvc NAMESPACE NAME SIZE  create a hostPath PV and a PVC bound to it (e.g. 1Gi)
#   hostpath NAMESPACE NAME  print the host directory behind a PVC made by `pvc`
#   import-image TARBALL     import a docker-archive tarball into the node's containerd
#   kubeconfig               print the admin kubeconfig path
#   kubectl ARGS...          run the cluster's kubectl with the admin kubeconfig
#   apiserver-address        print the running API server's HOST:PORT (what pods use)
#   s3-env                   print `export` lines for the S3 server: S3_ENDPOINT, S3_CA_FILE,
#                            AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, S3_BUCKET,
#                            S3_LOCKED_BUCKET, S3_REGION (eval "$(hack/local-cluster.sh s3-env)")
#   restart-apiserver        stop the API server and start it again (an outage, for tests)
#   bindir                   print the directory of the built binaries (kubectl too)
#   build                    only build (or reuse) the Kubernetes binaries
#
# Must run as root. See docs/local-cluster.md for how it works and troubleshooting.
set -Eeuo pipefail

# ---------------------------------------------------------------------------
# Settings (environment overrides in LOCAL_CLUSTER_*).
K8S_VERSION="${LOCAL_CLUSTER_K8S_VERSION:-v1.34.4}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
OUT="${LOCAL_CLUSTER_OUTPUT:-${REPO_ROOT}/_output/local-cluster}"
BIN_DIR="${OUT}/bin/${K8S_VERSION}"
BUILD_DIR="${OUT}/build/${K8S_VERSION}"
IMAGE_DIR="${OUT}/images"
STATE_DIR="${OUT}/state"
ADMIN_KUBECONFIG="${OUT}/admin.kubeconfig"
# Machine-wide: the runtime's sockets and state, the recorded PIDs and the record
# of which state directory the running (or last killed) cluster used. It is fixed
# so that a later `up` from any checkout finds what an earlier run left behind.
RUN_DIR="${LOCAL_CLUSTER_RUN_DIR:-/run/backup-operator-local-cluster}"
PID_DIR="${RUN_DIR}/pids"
CONTAINERD_SOCK="${RUN_DIR}/containerd.sock"

NODE_NAME="${LOCAL_CLUSTER_NODE_NAME:-local-node}"
API_PORT="${LOCAL_CLUSTER_API_PORT:-6443}"
ETCD_PORT=2379
ETCD_PEER_PORT=2380
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248
KCM_PORT=10257
SCHEDULER_PORT=10259
SERVICE_CIDR="10.96.0.0/24"
SERVICE_IP="10.96.0.1"
POD_SUBNET="${LOCAL_CLUSTER_POD_SUBNET:-10.217.0.0/24}"
# The pods' bridge. `up` creates it with the pod subnet's gateway address (its
# first host), and the API server listens on that address only: the host and the
# pods on the bridge reach it; it is not bound to the machine's external address.
BRIDGE="bkop-local0"
API_HOST="" # the gateway of POD_SUBNET; set by `up`
CNI_NETWORK="backup-operator-local"
CNI_BIN_DIR="/usr/lib/cni"
STORAGE_CLASS="local-hostpath"
PAUSE_IMAGE="backup-operator-pause:dev"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
# Start order; `down` stops them in reverse.
SERVICES=(etcd kube-apiserver kube-controller-manager kube-scheduler versitygw containerd kubelet
  csi-driver snapshot-controller csi-snapshotter csi-provisioner)
READY_TIMEOUT="${LOCAL_CLUSTER_READY_TIMEOUT:-120}"

# The S3 server (versitygw, posix backend): on API_HOST like the API server, so
# the pods on the bridge and the host reach it at the same address, and on
# loopback. TLS with its own CA; one fixed access key and a secret generated
# per cluster state. Everything it stores is under S3_DIR.
S3_PORT="${LOCAL_CLUSTER_S3_PORT:-7070}"
S3_DIR="${STATE_DIR}/s3"
S3_ACCESS_KEY="backup-operator-local"
S3_REGION="us-east-1"
S3_BUCKET="backups"
S3_LOCKED_BUCKET="backups-locked"
S3_SERVER="${REPO_ROOT}/hack/s3-server.sh"

# The kubelet's root directory. Under RUN_DIR rather than the state directory
# because unix socket paths are limited to 107 bytes and the kubelet dials the
# plugin registration sockets under it (plugins_registry/): a checkout's path
# must not decide whether the CSI driver can register.
KUBELET_DIR="${RUN_DIR}/kubelet"

# CSI: the project's driver (hack/csi-driver) keeps volumes as btrfs
# subvolumes and snapshots as read-only btrfs snapshots on a btrfs file system
# in a sparse file under the state directory, loop-mounted at CSI_MOUNT. It
# serves CSI on CSI_SOCK and registers itself with the kubelet through a
# socket in the kubelet's plugins_registry directory. The upstream sidecars
# (hack/csi-sidecars.sh) run as host processes against the API server.
CSI_SIDECARS="${REPO_ROOT}/hack/csi-sidecars.sh"
CSI_DRIVER="btrfs.csi.platform.example.com"
CSI_STORAGE_CLASS="local-csi"
CSI_SNAPSHOT_CLASS="local-csi-snapshots"
CSI_DIR="${STATE_DIR}/csi"
CSI_IMAGE="${CSI_DIR}/btrfs.img"
CSI_MOUNT="${CSI_DIR}/btrfs"
CSI_FS_SIZE="${LOCAL_CLUSTER_CSI_SIZE:-20G}"
CSI_SOCK="${KUBELET_DIR}/plugins/${CSI_DRIVER}/csi.sock"
CSI_REGISTRATION_DIR="${KUBELET_DIR}/plugins_registry"
CSI_SNAPSHOT_CRDS=(volumesnapshotclasses volumesnapshotcontents volumesnapshots)

# ---------------------------------------------------------------------------
# Output helpers.
log() { printf '==> %s\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

# show_log NAME: print the tail of a component's log.
show_log() {
  local f="${STATE_DIR}/logs/$1.log"
  if [[ -s "$f" ]]; then
    printf -- '---- last 40 lines of %s ----\n' "$f" >&2
    tail -n 40 "$f" >&2
    printf -- '---- end of %s ----\n' "$1" >&2
  fi
}

need_root() {
  [[ "$(id -u)" -eq 0 ]] || die "this needs root (it runs a kubelet and a container runtime); run it as root"
}

kctl() { "${BIN_DIR}/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

# ---------------------------------------------------------------------------
# Process bookkeeping: each service is recorded as "PID STARTTIME" so that a
# recycled PID is never mistaken for ours.
proc_starttime() { awk '{sub(/^.*\) /, ""); print $20}' "/proc/$1/stat" 2>/dev/null; }
# proc_running PID: the process exists and is not a zombie waiting to be reaped.
proc_running() {
  local state
  state="$(awk '{sub(/^.*\) /, ""); print $1}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# pid_of NAME [PIDDIR]: print the recorded PID if that process still runs.
pid_of() {
  local f="${2:-$PID_DIR}/$1.pid" pid start
  [[ -f "$f" ]] || return 1
  read -r pid start <"$f" || return 1
  [[ -n "${pid:-}" ]] && proc_running "$pid" || return 1
  [[ "$(proc_starttime "$pid")" == "$start" ]] || return 1
  printf '%s\n' "$pid"
}

# start_service NAME BINARY ARGS...: start in its own session, log to a file.
start_service() {
  local name="$1"
  shift
  mkdir -p "$PID_DIR" "${STATE_DIR}/logs"
  setsid "$@" >"${STATE_DIR}/logs/${name}.log" 2>&1 </dev/null 9<&- &
  local pid=$!
  local start=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    start="$(proc_starttime "$pid")" && [[ -n "$start" ]] && break
    sleep 0.1
  done
  [[ -n "$start" ]] || {
    show_log "$name"
    die "$name exited immediately"
  }
  printf '%s %s\n' "$pid" "$start" >"${PID_DIR}/${name}.pid"
  info "started ${name} (pid ${pid}, log ${STATE_DIR}/logs/${name}.log)"
}

# stop_pid NAME PID [TIMEOUT]: SIGTERM, then SIGKILL after TIMEOUT seconds.
stop_pid() {
  local name="$1" pid="$2" timeout="${3:-15}" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < timeout * 10; i++)); do
    proc_running "$pid" || {
      info "stopped ${name} (pid ${pid})"
      return 0
    }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.2
  info "killed ${name} (pid ${pid}) after ${timeout}s"
}

# wait_for DESCRIPTION NAME TIMEOUT COMMAND...: poll COMMAND until it succeeds;
# on timeout (or if service NAME died) print NAME's log tail and fail.
wait_for() {
  local what="$1" name="$2" timeout="$3" deadline
  shift 3
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -n "$name" ]] && ! pid_of "$name" >/dev/null; then
      show_log "$name"
      die "${name} exited while waiting for ${what}"
    fi
    if ((SECONDS >= deadline)); then
      [[ -n "$name" ]] && show_log "$name"
      die "timed out after ${timeout}s waiting for ${what}"
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------
# Building the Kubernetes components from the Go module proxy.
#
# `go install k8s.io/kubernetes/cmd/...@version` is refused because that module's
# go.mod has replace directives for its staging modules, so a throwaway module
# requires k8s.io/kubernetes and replaces every staging module with its
# published v0.<minor>.<patch> version. etcd is built from the same module graph
# at the version Kubernetes itself requires.
components_built() {
  local c
  [[ -f "${BIN_DIR}/.complete" ]] || return 1
  for c in "${COMPONENTS[@]}"; do [[ -x "${BIN_DIR}/${c}" ]] || return 1; done
}

build_components() {
  if components_built; then
    info "Kubernetes ${K8S_VERSION} binaries are cached in ${BIN_DIR}"
    return 0
  fi
  command -v go >/dev/null || die "go is not on PATH"
  log "Building Kubernetes ${K8S_VERSION} components from the Go module proxy (first time: several minutes)"
  local started=$SECONDS
  mkdir -p "$BUILD_DIR"
  (
    cd "$BUILD_DIR"
    export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
    printf 'module local-cluster-components\n\ngo 1.24.0\n' >go.mod
    rm -f go.sum
    local gomod
    gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -f "$gomod" ]] || die "could not download k8s.io/kubernetes@${K8S_VERSION}"
    local staging_version="v0.${K8S_VERSION#v1.}"
    local etcd_version
    etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$gomod")"
    [[ -n "$etcd_version" ]] || die "k8s.io/kubernetes@${K8S_VERSION} does not name an etcd server version"
    {
      printf 'module local-cluster-components\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
      awk -v v="$staging_version" '$2 == "=>" && $3 ~ /^\.\/staging\// {printf "\t%s => %s %s\n", $1, $1, v}' "$gomod"
      printf ')\n'
    } >go.mod
    info "throwaway module ${BUILD_DIR}: k8s.io/kubernetes ${K8S_VERSION}, staging modules ${staging_version}, etcd ${etcd_version}"
    go get "k8s.io/kubernetes@${K8S_VERSION}" "go.etcd.io/etcd/server/v3@${etcd_version}" >/dev/null 2>&1 ||
      go get "k8s.io/kubernetes@${K8S_VERSION}" "go.etcd.io/etcd/server/v3@${etcd_version}"
    local minor="${K8S_VERSION#v1.}"
    minor="${minor%%.*}"
    local ldflags="-s -w" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
      ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    done
    rm -rf "${BUILD_DIR}/out"
    mkdir -p "${BUILD_DIR}/out"
    info "go build etcd ${etcd_version}"
    go build -trimpath -ldflags "-s -w" -o "${BUILD_DIR}/out/etcd" go.etcd.io/etcd/server/v3
    info "go build kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl"
    go build -trimpath -ldflags "$ldflags" -o "${BUILD_DIR}/out/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl
  ) || die "building the Kubernetes components failed (see the go output above)"
  rm -rf "$BIN_DIR"
  mkdir -p "$(dirname "$BIN_DIR")"
  mv "${BUILD_DIR}/out" "$BIN_DIR"
  touch "${BIN_DIR}/.complete"
  info "built in $((SECONDS - started))s: $("${BIN_DIR}/kube-apiserver" --version 2>/dev/null)"
}

# ---------------------------------------------------------------------------
# Host packages.
ensure_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v ctr >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x "${CNI_BIN_DIR}/bridge" && -x "${CNI_BIN_DIR}/host-local" && -x "${CNI_BIN_DIR}/loopback" ]] ||
    missing+=(containernetworking-plugins)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v ss >/dev/null || missing+=(iproute2)
  command -v mkfs.btrfs >/dev/null || missing+=(btrfs-progs)
  command -v btrfs >/dev/null || missing+=(btrfs-progs)
  command -v losetup >/dev/null || missing+=(mount)
  ((${#missing[@]} == 0)) && return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "Installing ${missing[*]} from the distribution"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

# ---------------------------------------------------------------------------
# Images built without a container engine (hack/image, hack/pause).
build_pause_image() {
  local tar="${IMAGE_DIR}/pause.tar"
  [[ -s "$tar" && "$tar" -nt "${REPO_ROOT}/hack/pause/main.go" && "$tar" -nt "${REPO_ROOT}/hack/image/main.go" ]] && return 0
  log "Building the pod sandbox image ${PAUSE_IMAGE}"
  mkdir -p "$IMAGE_DIR" "${REPO_ROOT}/_output/bin"
  (
    cd "$REPO_ROOT"
    CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o _output/bin/pause ./hack/pause
    go run ./hack/image -binary _output/bin/pause -path /pause -tag "$PAUSE_IMAGE" -out "$tar" >/dev/null
  ) || die "building the sandbox image failed"
}

import_image() {
  local tar="$1"
  [[ -s "$tar" ]] || die "no image tarball at ${tar}"
  pid_of containerd >/dev/null || die "the local cluster is not running (hack/local-cluster.sh up)"
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$tar" >/dev/null 2>"${STATE_DIR}/logs/ctr-import.log" || {
    cat "${STATE_DIR}/logs/ctr-import.log" >&2
    die "ctr images import ${tar} failed"
  }
  info "imported ${tar}"
}

# ---------------------------------------------------------------------------
# Configuration: certificates, credentials, component configs.
node_ip() {
  if [[ -n "${LOCAL_CLUSTER_NODE_IP:-}" ]]; then
    [[ "$LOCAL_CLUSTER_NODE_IP" != 127.* ]] ||
      die "LOCAL_CLUSTER_NODE_IP must not be a loopback address: the kubelet then reports no node address"
    printf '%s\n' "$LOCAL_CLUSTER_NODE_IP"
    return
  fi
  local ip
  ip="$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") {print $(i + 1); exit}}')"
  [[ -n "$ip" ]] || ip="$(ip -4 -o addr show scope global | awk '{sub(/\/.*/, "", $4); print $4; exit}')"
  [[ -n "$ip" ]] || die "no non-loopback IPv4 address found; set LOCAL_CLUSTER_NODE_IP"
  printf '%s\n' "$ip"
}

# pod_gateway: the first host of POD_SUBNET (10.217.0.1 for 10.217.0.0/24): the
# bridge's address, the pods' on-link gateway (host-local's default, and named
# in the CNI config) and the address the API server binds to.
pod_gateway() {
  local o='(0|[1-9][0-9]{0,2})' a b c d len n mask
  [[ "$POD_SUBNET" =~ ^$o\.$o\.$o\.$o/([0-9]{1,2})$ ]] ||
    die "LOCAL_CLUSTER_POD_SUBNET must be an IPv4 subnet such as 10.217.0.0/24, not '${POD_SUBNET}'"
  a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} c=${BASH_REMATCH[3]} d=${BASH_REMATCH[4]} len=$((10#${BASH_REMATCH[5]}))
  ((a <= 255 && b <= 255 && c <= 255 && d <= 255 && len >= 8 && len <= 28 && a != 127)) ||
    die "LOCAL_CLUSTER_POD_SUBNET '${POD_SUBNET}' is not a usable pod subnet (IPv4, not loopback, /8 to /28)"
  n=$((a << 24 | b << 16 | c << 8 | d))
  mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
  # host-local refuses a subnet with host bits set.
  ((n == (n & mask))) || {
    n=$((n & mask))
    die "LOCAL_CLUSTER_POD_SUBNET '${POD_SUBNET}' has host bits set; the subnet is $((n >> 24)).$((n >> 16 & 255)).$((n >> 8 & 255)).$((n & 255))/${len}"
  }
  n=$((n + 1))
  printf '%d.%d.%d.%d\n' $((n >> 24)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255))
}

# ensure_bridge GATEWAY: the pods' bridge, up, with GATEWAY/prefix of the pod
# subnet, made before the API server binds to GATEWAY (an empty bridge has no
# carrier, but an address on it is local and answers from the host). An
# existing bridge is reused. The CNI bridge plugin (isGateway) finds the bridge
# and the address and keeps both.
ensure_bridge() {
  local cidr="${1}/${POD_SUBNET#*/}" other
  other="$(ip -4 -o addr show to "$POD_SUBNET" | awk -v br="$BRIDGE" '$2 != br {print $2 " " $4}')"
  [[ -z "$other" ]] || die "the pod subnet ${POD_SUBNET} overlaps an address of this machine (${other}); set LOCAL_CLUSTER_POD_SUBNET"
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip -d link show "$BRIDGE" | grep -qw bridge || die "${BRIDGE} exists and is not a bridge"
    info "reusing the bridge ${BRIDGE}"
  else
    ip link add name "$BRIDGE" type bridge || die "could not create the bridge ${BRIDGE}"
  fi
  # Exactly the gateway address: the bridge plugin refuses a bridge that has
  # a different IPv4 address.
  if ! ip -4 -o addr show dev "$BRIDGE" | awk '{print $4}' | grep -qx "$cidr"; then
    ip -4 addr flush dev "$BRIDGE"
    ip addr add "$cidr" dev "$BRIDGE" || die "could not add ${cidr} to ${BRIDGE}"
  fi
  ip link set "$BRIDGE" up || die "could not set ${BRIDGE} up"
  info "bridge ${BRIDGE} with ${cidr}"
}

# apiserver_address: HOST:PORT of the cluster this checkout runs, as its admin
# kubeconfig names it (so it follows the settings of the `up` that made it).
apiserver_address() {
  [[ -f "$ADMIN_KUBECONFIG" ]] || return 1
  sed -n 's|^[[:space:]]*server: https://\([^/]*\)$|\1|p' "$ADMIN_KUBECONFIG" | head -n 1 | grep .
}

# sign NAME SUBJECT EXTENSIONS: a key and a certificate signed by the cluster CA.
sign() {
  local pki="${STATE_DIR}/pki" name="$1" subj="$2" ext="$3"
  openssl req -new -newkey rsa:2048 -nodes -keyout "${pki}/${name}.key" -subj "$subj" \
    -out "${pki}/${name}.csr" 2>/dev/null
  printf '%s\n' "$ext" >"${pki}/${name}.ext"
  openssl x509 -req -in "${pki}/${name}.csr" -CA "${pki}/ca.crt" -CAkey "${pki}/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "${pki}/${name}.ext" -out "${pki}/${name}.crt" 2>/dev/null
  rm -f "${pki}/${name}.csr" "${pki}/${name}.ext"
}

# write_kubeconfig FILE USER TOKEN: a kubeconfig for the API server on the
# bridge's gateway address (API_HOST).
write_kubeconfig() {
  local file="$1" user="$2" token="$3" ca
  ca="$(base64 -w0 <"${STATE_DIR}/pki/ca.crt")"
  umask 077
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://${API_HOST}:${API_PORT}
    certificate-authority-data: ${ca}
users:
- name: ${user}
  user:
    token: ${token}
contexts:
- name: local
  context: {cluster: local, user: ${user}}
current-context: local
EOF
  umask 022
}

generate_config() {
  local ip="$1" pki="${STATE_DIR}/pki"
  log "Generating certificates, credentials and configuration in ${STATE_DIR}"
  mkdir -p "$pki" "${STATE_DIR}/kubeconfigs" "${STATE_DIR}/volumes" "${STATE_DIR}/cni/net.d" \
    "${STATE_DIR}/kubelet" "${STATE_DIR}/pod-logs" "${STATE_DIR}/containerd" "${RUN_DIR}" "$KUBELET_DIR" "$CSI_DIR"
  chmod 700 "$pki" "${STATE_DIR}/kubeconfigs"
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "${pki}/ca.key" -out "${pki}/ca.crt" -days 365 \
    -subj "/CN=backup-operator-local-cluster-ca" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:${API_HOST},IP:${SERVICE_IP},DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  sign kubelet "/CN=${NODE_NAME}" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:${ip},IP:127.0.0.1,DNS:${NODE_NAME},DNS:localhost"
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  openssl genrsa -out "${pki}/sa.key" 2048 2>/dev/null
  openssl rsa -in "${pki}/sa.key" -pubout -out "${pki}/sa.pub" 2>/dev/null

  local admin_token kubelet_token kcm_token sched_token
  admin_token="$(openssl rand -hex 24)"
  kubelet_token="$(openssl rand -hex 24)"
  kcm_token="$(openssl rand -hex 24)"
  sched_token="$(openssl rand -hex 24)"
  (
    umask 077
    cat >"${pki}/tokens.csv" <<EOF
${admin_token},local-admin,local-admin,"system:masters"
${kubelet_token},system:node:${NODE_NAME},system:node:${NODE_NAME},"system:nodes"
${kcm_token},system:kube-controller-manager,system:kube-controller-manager
${sched_token},system:kube-scheduler,system:kube-scheduler
EOF
  )
  write_kubeconfig "${STATE_DIR}/kubeconfigs/kubelet.kubeconfig" "system:node:${NODE_NAME}" "$kubelet_token"
  write_kubeconfig "${STATE_DIR}/kubeconfigs/controller-manager.kubeconfig" system:kube-controller-manager "$kcm_token"
  write_kubeconfig "${STATE_DIR}/kubeconfigs/scheduler.kubeconfig" system:kube-scheduler "$sched_token"
  write_kubeconfig "${STATE_DIR}/kubeconfigs/admin.kubeconfig" local-admin "$admin_token"

  # containerd: its own socket, root and state; CRI with a local sandbox image,
  # the runc wrapper (see hack/cluster/runc-wrapper) and the bridge network.
  mkdir -p "${STATE_DIR}/bin"
  install -m 0755 "${REPO_ROOT}/hack/cluster/runc-wrapper" "${STATE_DIR}/bin/runc-wrapper"
  sed -e "s|@STATE_DIR@|${STATE_DIR}|g" -e "s|@RUN_DIR@|${RUN_DIR}|g" -e "s|@SOCK@|${CONTAINERD_SOCK}|g" \
    -e "s|@PAUSE_IMAGE@|${PAUSE_IMAGE}|g" -e "s|@CNI_BIN_DIR@|${CNI_BIN_DIR}|g" \
    "${REPO_ROOT}/hack/cluster/containerd.toml" >"${STATE_DIR}/containerd/config.toml"
  sed -e "s|@STATE_DIR@|${STATE_DIR}|g" -e "s|@BRIDGE@|${BRIDGE}|g" -e "s|@NETWORK@|${CNI_NETWORK}|g" \
    -e "s|@POD_SUBNET@|${POD_SUBNET}|g" -e "s|@POD_GATEWAY@|${API_HOST}|g" \
    "${REPO_ROOT}/hack/cluster/cni.conflist" >"${STATE_DIR}/cni/net.d/10-${CNI_NETWORK}.conflist"
  sed -e "s|@STATE_DIR@|${STATE_DIR}|g" -e "s|@NODE_IP@|${ip}|g" -e "s|@SOCK@|${CONTAINERD_SOCK}|g" \
    -e "s|@KUBELET_PORT@|${KUBELET_PORT}|g" -e "s|@KUBELET_HEALTHZ_PORT@|${KUBELET_HEALTHZ_PORT}|g" \
    "${REPO_ROOT}/hack/cluster/kubelet-config.yaml" >"${STATE_DIR}/kubelet-config.yaml"

  generate_s3_config
}

# generate_s3_config: the S3 server's CA and certificate, its secret, and the
# s3.env that `s3-env` prints. A CA of its own rather than the cluster's: the
# file handed to S3 clients (and to pods, in a Secret or ConfigMap) then
# trusts the S3 server and nothing else.
generate_s3_config() {
  local pki="${S3_DIR}/pki"
  mkdir -p "$pki" "${S3_DIR}/data" "${S3_DIR}/versioning"
  chmod 700 "$pki"
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "${pki}/ca.key" -out "${S3_DIR}/ca.crt" -days 365 \
    -subj "/CN=backup-operator-local-s3-ca" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -keyout "${pki}/server.key" -subj "/CN=backup-operator-local-s3" \
    -out "${pki}/server.csr" 2>/dev/null
  # API_HOST for the pods and the host, loopback for host tools that prefer it.
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:${API_HOST},IP:127.0.0.1,DNS:localhost" >"${pki}/server.ext"
  openssl x509 -req -in "${pki}/server.csr" -CA "${S3_DIR}/ca.crt" -CAkey "${pki}/ca.key" \
    -CAserial "${pki}/ca.srl" -CAcreateserial -days 365 -sha256 -extfile "${pki}/server.ext" -out "${pki}/server.crt" 2>/dev/null
  rm -f "${pki}/server.csr" "${pki}/server.ext"
  chmod 644 "${S3_DIR}/ca.crt"
  (
    umask 077
    openssl rand -hex 20 >"${pki}/secret"
    cat >"${S3_DIR}/s3.env" <<EOF
export S3_ENDPOINT=https://${API_HOST}:${S3_PORT}
export S3_CA_FILE=${S3_DIR}/ca.crt
export AWS_ACCESS_KEY_ID=${S3_ACCESS_KEY}
export AWS_SECRET_ACCESS_KEY=$(cat "${pki}/secret")
export S3_BUCKET=${S3_BUCKET}
export S3_LOCKED_BUCKET=${S3_LOCKED_BUCKET}
export S3_REGION=${S3_REGION}
EOF
  )
}

# ---------------------------------------------------------------------------
# Cleanup of a cluster, running or left behind by a killed run.
#
# cleanup STATE: stop the recorded processes, kill the containers and shims the
# runtime recorded under RUN_DIR, unmount everything under the state and run
# directories (and the pods' network namespaces), delete the bridge, the pods'
# cgroups and the CNI cache, restore ip_forward, remove the directories.
cleanup() {
  local state="$1" name pid i
  local task_root="${RUN_DIR}/containerd/io.containerd.runtime.v2.task"
  # Everything below removes directories: only ever a cluster's state directory.
  [[ "$state" == /?*/state && "$state" != *..* ]] || die "refusing to clean up unexpected state directory '${state}'"

  # The pods' network namespaces, read from the bundles before they go away,
  # and the sandboxes' IDs.
  local -a netns=() sandboxes=()
  local id
  if [[ -d "${RUN_DIR}/containerd/io.containerd.grpc.v1.cri/sandboxes" ]]; then
    mapfile -t sandboxes < <(ls -1 "${RUN_DIR}/containerd/io.containerd.grpc.v1.cri/sandboxes")
  fi
  if [[ -d "$task_root" ]]; then
    mapfile -t netns < <(find "$task_root" -mindepth 3 -maxdepth 3 -name config.json -print0 2>/dev/null |
      xargs -0 -r grep -ho '"path":"/[^"]*/netns/[^"]*"' 2>/dev/null | sed 's/^"path":"//; s/"$//' | sort -u)
  fi

  # The CSI sidecars (clients of the API server and the driver), the node (so
  # that nothing restarts containers), then its containers.
  for name in csi-provisioner csi-snapshotter snapshot-controller kubelet containerd; do
    if pid="$(pid_of "$name")"; then stop_pid "$name" "$pid" 15; fi
  done

  # Containers and their shims, by the PIDs the runtime recorded: each
  # container's init.pid, and the shims whose working directory is a bundle.
  if [[ -d "$task_root" ]]; then
    local f comm
    while IFS= read -r -d '' f; do
      pid="$(cat "$f" 2>/dev/null)" || continue
      [[ "$pid" =~ ^[0-9]+$ && -d "/proc/${pid}" ]] || continue
      # Only processes in this node's pod cgroups.
      if grep -q ':/kubepods' "/proc/${pid}/cgroup" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    done < <(find "$task_root" -mindepth 3 -maxdepth 3 -name init.pid -print0 2>/dev/null)
    # A shim runs in its bundle directory: its working directory is the record.
    local cwd
    for f in /proc/[0-9]*; do
      cwd="$(readlink "${f}/cwd" 2>/dev/null)" || continue
      [[ "$cwd" == "${task_root}/"* ]] || continue
      comm="$(tr '\0' ' ' <"${f}/cmdline" 2>/dev/null)"
      if [[ "$comm" == *containerd-shim* && "$comm" == *"-address ${CONTAINERD_SOCK}"* ]]; then
        kill -KILL "${f#/proc/}" 2>/dev/null || true
      fi
    done
    # The shims' sockets (outside our directories, named in each bundle).
    while IFS= read -r -d '' f; do
      local addr
      addr="$(sed 's|^unix://||' "$f" 2>/dev/null)"
      if [[ "$addr" == /run/containerd/s/* && -S "$addr" ]]; then rm -f "$addr"; fi
    done < <(find "$task_root" -mindepth 3 -maxdepth 3 -name address -print0 2>/dev/null)
    sleep 0.5
  fi

  # Then the CSI driver (the kubelet that used it is gone), the S3 server and
  # the control plane, whose clients (the operator and its agents) are gone by now.
  for name in csi-driver versitygw kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if pid="$(pid_of "$name")"; then stop_pid "$name" "$pid" 20; fi
  done

  # Mounts under our directories and the pods' network namespaces, deepest first.
  local mp
  for ((i = 0; i < 3; i++)); do
    local -a mounts=()
    mapfile -t mounts < <(awk -v s="${state}/" -v r="${RUN_DIR}/" \
      'index($5, s) == 1 || index($5, r) == 1 || $5 == substr(s, 1, length(s) - 1) {print $5}' /proc/self/mountinfo |
      awk '{print length($0) " " $0}' | sort -rn | cut -d' ' -f2-)
    for n in "${netns[@]}"; do
      mp="$(realpath -m "$n")"
      grep -q " ${mp} " /proc/self/mountinfo && mounts+=("$mp")
    done
    ((${#mounts[@]} == 0)) && break
    for mp in "${mounts[@]}"; do
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done
  done
  for n in "${netns[@]}"; do rm -f "$n"; done
  # The CSI driver's btrfs file: its loop device goes with the unmount (mount
  # -o loop sets autoclear); detach one that a failed mount left behind.
  local img="${state}/csi/btrfs.img" dev
  if [[ -f "$img" ]] && command -v losetup >/dev/null; then
    while read -r dev; do
      if [[ -n "$dev" ]] && losetup -d "$dev" 2>/dev/null; then info "detached ${dev} (${img})"; fi
    done < <(losetup -n -O NAME -j "$img" 2>/dev/null)
  fi

  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link delete "$BRIDGE" && info "deleted bridge ${BRIDGE}"
  fi

  # The iptables chains the kubelet creates when iptables is installed (and the
  # jumps to them), unless they existed before this cluster started.
  local ipt table chain rule
  local -a parts
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter mangle nat; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        grep -qx "${ipt} ${table} ${chain}" "${RUN_DIR}/iptables.before" 2>/dev/null && continue
        "$ipt" -w -t "$table" -S "$chain" >/dev/null 2>&1 || continue
        while IFS= read -r rule; do
          read -ra parts <<<"$rule"
          parts[0]=-D
          "$ipt" -w -t "$table" "${parts[@]}" 2>/dev/null || true
        done < <("$ipt" -w -t "$table" -S 2>/dev/null | grep -E -- "^-A [A-Z0-9_-]+ -j ${chain}\$")
        "$ipt" -w -t "$table" -F "$chain" 2>/dev/null || true
        "$ipt" -w -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done

  # The pods' cgroups (the kubelet's cgroupfs driver puts them under /kubepods).
  local cg
  for cg in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
    [[ -d "$cg" ]] || continue
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done

  # The CNI result cache of our pod sandboxes.
  rm -f /var/lib/cni/results/"${CNI_NETWORK}"-* 2>/dev/null || true
  for id in "${sandboxes[@]}"; do rm -f "/var/lib/cni/results/cni-loopback-${id}-lo"; done
  # Directories the runtime and CNI create outside ours, when left empty.
  rmdir /var/lib/cni/results /var/lib/cni /run/containerd/s /run/containerd /run/netns 2>/dev/null || true
  if [[ -f "${RUN_DIR}/ip_forward.orig" ]]; then
    cat "${RUN_DIR}/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
  fi

  if awk -v s="${state}/" -v r="${RUN_DIR}/" 'index($5, s) == 1 || index($5, r) == 1 {found = 1} END {exit !found}' /proc/self/mountinfo; then
    warn "some mounts under ${state} or ${RUN_DIR} could not be removed; leaving the directories in place"
    return 1
  fi
  rm -rf --one-file-system "$state" "$RUN_DIR"
  rm -f "$(dirname "$state")/admin.kubeconfig"
}

# record_iptables_chains: the kubelet's chains that exist already (not ours).
record_iptables_chains() {
  local ipt table chain
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter mangle nat; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        if "$ipt" -w -t "$table" -S "$chain" >/dev/null 2>&1; then printf '%s %s %s\n' "$ipt" "$table" "$chain"; fi
      done
    done
  done
}

# any_service_alive: true if any recorded process of the current record runs.
any_service_alive() {
  local name
  for name in "${SERVICES[@]}"; do pid_of "$name" >/dev/null && return 0; done
  return 1
}

all_services_alive() {
  local name
  for name in "${SERVICES[@]}"; do pid_of "$name" >/dev/null || return 1; done
}

recorded_state_dir() { cat "${RUN_DIR}/instance" 2>/dev/null; }

# ---------------------------------------------------------------------------
# Commands.
cmd_build() { build_components; }

# start_apiserver: start kube-apiserver on API_HOST, with the configuration in STATE_DIR.
start_apiserver() {
  local pki="${STATE_DIR}/pki"
  # On the bridge's gateway address only: reachable from the host and from pods
  # on the bridge (whose in-cluster config names it, see hack/cluster/stamp-overlay.sh),
  # not on the machine's external address; it is also the `kubernetes` Service's endpoint.
  log "Starting kube-apiserver on ${API_HOST}:${API_PORT}"
  start_service kube-apiserver "${BIN_DIR}/kube-apiserver" \
    --bind-address="$API_HOST" --secure-port="${API_PORT}" --advertise-address="$API_HOST" \
    --etcd-servers="http://127.0.0.1:${ETCD_PORT}" \
    --tls-cert-file="${pki}/apiserver.crt" --tls-private-key-file="${pki}/apiserver.key" \
    --client-ca-file="${pki}/ca.crt" --token-auth-file="${pki}/tokens.csv" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="${pki}/sa.pub" --service-account-signing-key-file="${pki}/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --kubelet-client-certificate="${pki}/apiserver-kubelet-client.crt" \
    --kubelet-client-key="${pki}/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="${pki}/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --allow-privileged=true --profiling=false
}

# restart-apiserver: stop the running API server and start it again with the same
# configuration, as an upgrade or a crash would; the e2e tests check that the
# operator rides it out without a restart.
cmd_restart_apiserver() {
  need_root
  local pid started=$SECONDS address
  pid="$(pid_of kube-apiserver)" || die "the local cluster's API server is not running (hack/local-cluster.sh up)"
  address="$(apiserver_address)" || die "the local cluster is not running (hack/local-cluster.sh up)"
  API_HOST="${address%:*}"
  log "Restarting kube-apiserver"
  stop_pid kube-apiserver "$pid"
  start_apiserver
  wait_for "kube-apiserver to be ready" kube-apiserver "$READY_TIMEOUT" kctl get --raw /readyz
  log "kube-apiserver is back after $((SECONDS - started))s"
}

# s3_env_value NAME: a value from the s3.env of this checkout's cluster (so it
# follows the settings of the `up` that made it).
s3_env_value() { sed -n "s|^export ${1}=||p" "${S3_DIR}/s3.env" 2>/dev/null | grep .; }
s3_endpoint() { s3_env_value S3_ENDPOINT; }

# s3_healthy: the S3 server of this checkout's cluster answers its health
# check over TLS at the endpoint `s3-env` prints.
s3_healthy() {
  [[ -f "${S3_DIR}/s3.env" ]] || return 1
  (
    # shellcheck source=/dev/null
    . "${S3_DIR}/s3.env"
    curl -fsS --max-time 5 --cacert "$S3_CA_FILE" "${S3_ENDPOINT}/health" >/dev/null 2>&1
  )
}

# start_s3_server: versitygw over TLS on API_HOST and loopback, its data and
# versioning directories under S3_DIR. It keeps its metadata (ACLs, versioning
# and object-lock settings, retention) in extended attributes; where the
# filesystem under the state directory has none, its own check at start says
# so, and it is started again with a sidecar directory for the metadata.
start_s3_server() {
  local bin attempt deadline
  local -a meta=()
  bin="$("$S3_SERVER" path)"
  for attempt in xattr sidecar; do
    log "Starting versitygw (S3) on https://${API_HOST}:${S3_PORT} and https://127.0.0.1:${S3_PORT}"
    # The credentials through the environment: a command line is readable by
    # every user in /proc.
    ROOT_ACCESS_KEY_ID="$S3_ACCESS_KEY" ROOT_SECRET_ACCESS_KEY="$(cat "${S3_DIR}/pki/secret")" \
      start_service versitygw "$bin" --port "${API_HOST}:${S3_PORT}" --port "127.0.0.1:${S3_PORT}" \
      --cert "${S3_DIR}/pki/server.crt" --key "${S3_DIR}/pki/server.key" --region "$S3_REGION" \
      --health /health posix "${meta[@]}" --versioning-dir "${S3_DIR}/versioning" "${S3_DIR}/data"
    deadline=$((SECONDS + 60))
    until s3_healthy; do
      if ! pid_of versitygw >/dev/null; then
        if [[ "$attempt" == xattr ]] && grep -q 'xattr check failed' "${STATE_DIR}/logs/versitygw.log"; then
          info "no extended attributes under ${S3_DIR}: versitygw keeps its metadata in ${S3_DIR}/meta"
          mkdir -p "${S3_DIR}/meta"
          meta=(--sidecar "${S3_DIR}/meta")
          continue 2
        fi
        show_log versitygw
        die "versitygw exited while starting"
      fi
      if ((SECONDS >= deadline)); then
        show_log versitygw
        die "timed out after 60s waiting for versitygw to answer on https://${API_HOST}:${S3_PORT}/health"
      fi
      sleep 0.2
    done
    return 0
  done
}

# s3_request METHOD PATH BODY [HEADER...]: one S3 API request to the local
# server, signed (AWS SigV4) by curl, so that no AWS CLI or SDK is needed.
# versitygw requires x-amz-content-sha256, which curl 7.88 does not send by
# itself; and curl signs a bare sub-resource ("?versioning") differently from
# the server, so callers write it with "=" ("?versioning=").
s3_request() {
  local method="$1" path="$2" body="$3" h code out="${S3_DIR}/response.xml"
  shift 3
  local -a args=(-sS -K - --cacert "${S3_DIR}/ca.crt" --aws-sigv4 "aws:amz:${S3_REGION}:s3" -X "$method"
    -H "x-amz-content-sha256: $(printf '%s' "$body" | sha256sum | cut -d' ' -f1)" -o "$out" -w '%{http_code}')
  for h in "$@"; do args+=(-H "$h"); done
  [[ -z "$body" ]] || args+=(--data-binary "$body")
  # The secret through curl's config on stdin, not its command line.
  code="$(curl "${args[@]}" "https://${API_HOST}:${S3_PORT}${path}" \
    <<<"user = \"${S3_ACCESS_KEY}:$(cat "${S3_DIR}/pki/secret")\"")" || die "S3 ${method} ${path} failed"
  if [[ "$code" != 200 ]]; then
    cat "$out" >&2 2>/dev/null
    printf '\n' >&2
    die "S3 ${method} ${path} answered HTTP ${code}"
  fi
  rm -f "$out"
}

# create_s3_buckets: the buckets the e2e tests and the demo use, in a fresh
# data directory. Object lock can only be turned on when a bucket is created
# (S3 semantics), and it turns versioning on with it.
create_s3_buckets() {
  s3_request PUT "/${S3_BUCKET}" ""
  s3_request PUT "/${S3_BUCKET}?versioning=" \
    '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>'
  s3_request PUT "/${S3_LOCKED_BUCKET}" "" "x-amz-bucket-object-lock-enabled: true"
  info "buckets ${S3_BUCKET} (versioned) and ${S3_LOCKED_BUCKET} (object lock)"
}

# ---------------------------------------------------------------------------
# CSI: the driver, its btrfs file system, the sidecars and the classes.

# check_socket_paths: unix socket paths have at most 107 bytes; the kubelet
# and the sidecars dial these.
check_socket_paths() {
  local sock
  for sock in "${CSI_REGISTRATION_DIR}/${CSI_DRIVER}-reg.sock" "$CSI_SOCK" "$CONTAINERD_SOCK"; do
    ((${#sock} <= 107)) ||
      die "the unix socket path ${sock} has ${#sock} bytes, more than a socket path may have (107); set LOCAL_CLUSTER_RUN_DIR to a shorter directory"
  done
}

csi_bin() { "$CSI_SIDECARS" path "$1"; }

# csi_registered: the kubelet has registered the driver (its CSINode lists it).
csi_registered() {
  kctl get csinode "$NODE_NAME" -o 'jsonpath={.spec.drivers[*].name}' 2>/dev/null | tr ' ' '\n' | grep -qxF "$CSI_DRIVER"
}

# start_csi: a fresh btrfs file system for the driver, the VolumeSnapshot
# CRDs, the CSIDriver object, the default StorageClass and VolumeSnapshotClass,
# then the driver (which registers with the kubelet itself) and the sidecars.
start_csi() {
  local admin="${STATE_DIR}/kubeconfigs/admin.kubeconfig" crd
  log "Creating the CSI driver's btrfs file system (${CSI_FS_SIZE} sparse file ${CSI_IMAGE})"
  mkdir -p "$CSI_MOUNT"
  truncate -s "$CSI_FS_SIZE" "$CSI_IMAGE" || die "could not create ${CSI_IMAGE}"
  mkfs.btrfs -q -f -L backup-operator-csi "$CSI_IMAGE" >"${STATE_DIR}/logs/mkfs.btrfs.log" 2>&1 || {
    cat "${STATE_DIR}/logs/mkfs.btrfs.log" >&2
    die "mkfs.btrfs ${CSI_IMAGE} failed"
  }
  mount -o loop "$CSI_IMAGE" "$CSI_MOUNT" ||
    die "could not loop-mount ${CSI_IMAGE} on ${CSI_MOUNT} (the CSI driver needs loop devices and btrfs in the kernel)"
  info "btrfs on ${CSI_MOUNT}"

  log "Applying the VolumeSnapshot CRDs, the CSIDriver ${CSI_DRIVER}, the StorageClass ${CSI_STORAGE_CLASS} and the VolumeSnapshotClass ${CSI_SNAPSHOT_CLASS}"
  kctl apply --server-side --force-conflicts -f "$("$CSI_SIDECARS" crds-dir)" >/dev/null ||
    die "applying the VolumeSnapshot CRDs from $("$CSI_SIDECARS" crds-dir) failed"
  for crd in "${CSI_SNAPSHOT_CRDS[@]}"; do
    wait_for "the CRD ${crd}.snapshot.storage.k8s.io to be established" kube-apiserver 60 \
      kctl wait --for=condition=Established "crd/${crd}.snapshot.storage.k8s.io" --timeout=5s
  done
  kctl apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata:
  name: ${CSI_DRIVER}
spec:
  attachRequired: false
  podInfoOnMount: false
  fsGroupPolicy: File
  volumeLifecycleModes: [Persistent]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: ${CSI_STORAGE_CLASS}
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: ${CSI_DRIVER}
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: false
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata:
  name: ${CSI_SNAPSHOT_CLASS}
  annotations: {snapshot.storage.kubernetes.io/is-default-class: "true"}
driver: ${CSI_DRIVER}
deletionPolicy: Delete
EOF

  log "Starting the CSI driver ${CSI_DRIVER} and the sidecars"
  start_service csi-driver "$(csi_bin csi-driver)" --driver-name="$CSI_DRIVER" --node-id="$NODE_NAME" \
    --root="$CSI_MOUNT" --endpoint="unix://${CSI_SOCK}" --registration-dir="$CSI_REGISTRATION_DIR" --v=2
  wait_for "the kubelet to register the CSI driver ${CSI_DRIVER}" csi-driver 60 csi_registered
  start_service snapshot-controller "$(csi_bin snapshot-controller)" --kubeconfig="$admin" \
    --leader-election=false --v=2
  start_service csi-snapshotter "$(csi_bin csi-snapshotter)" --kubeconfig="$admin" --csi-address="$CSI_SOCK" \
    --leader-election=false --timeout=60s --v=2
  start_service csi-provisioner "$(csi_bin csi-provisioner)" --kubeconfig="$admin" --csi-address="$CSI_SOCK" \
    --leader-election=false --timeout=60s --v=2
  # Each sidecar logs the driver's name once it has connected and asked it.
  wait_for "csi-snapshotter to connect to the driver" csi-snapshotter 60 \
    grep -qF "CSI driver name: \"${CSI_DRIVER}\"" "${STATE_DIR}/logs/csi-snapshotter.log"
  wait_for "csi-provisioner to connect to the driver" csi-provisioner 60 \
    grep -qF "Detected CSI driver ${CSI_DRIVER}" "${STATE_DIR}/logs/csi-provisioner.log"
  pid_of snapshot-controller >/dev/null || {
    show_log snapshot-controller
    die "snapshot-controller exited"
  }
}

cmd_up() {
  need_root
  [[ "$REPO_ROOT" != *[[:space:]]* ]] || die "the checkout's path must not contain whitespace"
  check_socket_paths
  local started=$SECONDS recorded
  # The API server's address: the gateway of the pod subnet, on the bridge.
  API_HOST="$(pod_gateway)"
  recorded="$(recorded_state_dir || true)"
  if [[ -n "$recorded" ]]; then
    if any_service_alive; then
      if [[ "$recorded" != "$STATE_DIR" ]]; then
        die "a local cluster started from ${recorded} is running; run its 'hack/local-cluster.sh down' first"
      fi
      if all_services_alive && cluster_healthy; then
        log "The local cluster is already running"
        print_summary
        return 0
      fi
      log "The local cluster is only partly running: stopping it and starting afresh"
      show_unhealthy
    else
      log "Cleaning up what a previous run left behind (${recorded})"
    fi
    cleanup "$recorded" || die "could not clean up the previous run; see the warnings above"
  elif [[ -d "$STATE_DIR" || -d "$RUN_DIR" ]] || ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "Cleaning up leftovers of an earlier run"
    cleanup "$STATE_DIR" || die "could not clean up the previous run; see the warnings above"
  fi

  ensure_packages
  build_components
  "$S3_SERVER" build || die "building the S3 server failed"
  "$CSI_SIDECARS" build || die "building the CSI sidecars or the CSI driver failed"
  build_pause_image
  check_ports

  local ip
  ip="$(node_ip)"
  mkdir -p "$RUN_DIR" "$PID_DIR" "${STATE_DIR}/logs"
  printf '%s\n' "$STATE_DIR" >"${RUN_DIR}/instance"
  cat /proc/sys/net/ipv4/ip_forward >"${RUN_DIR}/ip_forward.orig"
  record_iptables_chains >"${RUN_DIR}/iptables.before"
  generate_config "$ip"
  # On any failure (or interruption) from here on, leave the logs but no
  # running processes.
  UP_DONE=""
  trap 'on_up_exit' EXIT

  log "Setting up the pod network bridge ${BRIDGE}"
  ensure_bridge "$API_HOST"

  log "Starting etcd"
  start_service etcd "${BIN_DIR}/etcd" --name local --data-dir "${STATE_DIR}/etcd" \
    --listen-client-urls "http://127.0.0.1:${ETCD_PORT}" --advertise-client-urls "http://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster "local=http://127.0.0.1:${ETCD_PEER_PORT}" --unsafe-no-fsync --log-level warn
  wait_for "etcd to be healthy" etcd 60 curl -fsS "http://127.0.0.1:${ETCD_PORT}/health"

  start_apiserver
  cp "${STATE_DIR}/kubeconfigs/admin.kubeconfig" "$ADMIN_KUBECONFIG"
  chmod 600 "$ADMIN_KUBECONFIG"
  wait_for "kube-apiserver to be ready" kube-apiserver "$READY_TIMEOUT" kctl get --raw /readyz

  local pki="${STATE_DIR}/pki"
  log "Starting kube-controller-manager and kube-scheduler"
  local kcfg="${STATE_DIR}/kubeconfigs"
  start_service kube-controller-manager "${BIN_DIR}/kube-controller-manager" \
    --kubeconfig="${kcfg}/controller-manager.kubeconfig" \
    --authentication-kubeconfig="${kcfg}/controller-manager.kubeconfig" \
    --authorization-kubeconfig="${kcfg}/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false \
    --use-service-account-credentials=true --root-ca-file="${pki}/ca.crt" \
    --service-account-private-key-file="${pki}/sa.key" --profiling=false
  start_service kube-scheduler "${BIN_DIR}/kube-scheduler" \
    --kubeconfig="${kcfg}/scheduler.kubeconfig" \
    --authentication-kubeconfig="${kcfg}/scheduler.kubeconfig" \
    --authorization-kubeconfig="${kcfg}/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --leader-elect=false --profiling=false
  wait_for "kube-controller-manager to be healthy" kube-controller-manager "$READY_TIMEOUT" \
    curl -fsSk "https://127.0.0.1:${KCM_PORT}/healthz"
  wait_for "kube-scheduler to be healthy" kube-scheduler "$READY_TIMEOUT" \
    curl -fsSk "https://127.0.0.1:${SCHEDULER_PORT}/healthz"

  start_s3_server
  create_s3_buckets

  log "Starting containerd"
  start_service containerd containerd --config "${STATE_DIR}/containerd/config.toml"
  wait_for "containerd to answer" containerd 60 ctr --address "$CONTAINERD_SOCK" version
  import_image "${IMAGE_DIR}/pause.tar"

  log "Starting the kubelet (node ${NODE_NAME}, ${ip})"
  start_service kubelet "${BIN_DIR}/kubelet" --config="${STATE_DIR}/kubelet-config.yaml" \
    --kubeconfig="${kcfg}/kubelet.kubeconfig" --root-dir="$KUBELET_DIR" \
    --node-ip="$ip" --hostname-override="$NODE_NAME"
  wait_for "the kubelet to be healthy" kubelet 60 curl -fsS "http://127.0.0.1:${KUBELET_HEALTHZ_PORT}/healthz"
  wait_for "node ${NODE_NAME} to register" kubelet 60 kctl get node "$NODE_NAME"
  wait_for "node ${NODE_NAME} to be Ready" kubelet "$READY_TIMEOUT" \
    kctl wait --for=condition=Ready "node/${NODE_NAME}" --timeout=5s
  wait_for "the default ServiceAccount" kube-controller-manager 60 kctl -n default get serviceaccount default
  wait_for "the kube-root-ca.crt ConfigMap" kube-controller-manager 60 kctl -n default get configmap kube-root-ca.crt

  # For pre-made hostPath volumes (the `pvc` command); not the default class.
  kctl apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: ${STORAGE_CLASS}
  annotations: {storageclass.kubernetes.io/is-default-class: "false"}
provisioner: kubernetes.io/no-provisioner
reclaimPolicy: Retain
volumeBindingMode: Immediate
EOF
  start_csi
  UP_DONE=1
  trap - EXIT
  log "The local cluster is up ($((SECONDS - started))s)"
  print_summary
}

on_up_exit() {
  [[ -z "${UP_DONE:-}" ]] || return 0
  printf 'ERROR: bringing the cluster up failed; stopping what was started (logs are kept in %s)\n' \
    "${STATE_DIR}/logs" >&2
  local name pid i
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    name="${SERVICES[i]}"
    pid="$(pid_of "$name")" && stop_pid "$name" "$pid" 10
  done
  printf 'Run "hack/local-cluster.sh down" to remove the state.\n' >&2
}

check_ports() {
  local port busy=()
  for port in "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" "$KCM_PORT" "$SCHEDULER_PORT" "$S3_PORT"; do
    ss -Hltn "sport = :${port}" | grep -q . && busy+=("$port")
  done
  ((${#busy[@]} == 0)) || die "TCP ports already in use: ${busy[*]} (another cluster or etcd running?)"
}

cluster_healthy() {
  kctl get --raw /readyz >/dev/null 2>&1 &&
    [[ "$(kctl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]] &&
    s3_healthy && csi_registered
}

show_unhealthy() {
  local name
  for name in "${SERVICES[@]}"; do
    pid_of "$name" >/dev/null || {
      info "${name} is not running"
      show_log "$name"
    }
  done
}

print_summary() {
  cat >&2 <<EOF
    API server:  https://$(apiserver_address) (on ${BRIDGE}, for the host and the pods)
    node:        ${NODE_NAME} ($(node_ip))
    kubeconfig:  export KUBECONFIG=${ADMIN_KUBECONFIG}
    kubectl:     ${BIN_DIR}/kubectl (${K8S_VERSION})
    storage:     StorageClass ${CSI_STORAGE_CLASS} (default: CSI ${CSI_DRIVER}, btrfs subvolumes), VolumeSnapshotClass ${CSI_SNAPSHOT_CLASS}
                 hack/local-cluster.sh pvc NAMESPACE NAME SIZE   (pre-made hostPath volume, storageClassName ${STORAGE_CLASS})
    S3:          $(s3_endpoint) (buckets ${S3_BUCKET}, ${S3_LOCKED_BUCKET}); eval "\$(hack/local-cluster.sh s3-env)"
    logs:        ${STATE_DIR}/logs
    stop:        hack/local-cluster.sh down
EOF
}

cmd_down() {
  need_root
  local recorded
  recorded="$(recorded_state_dir || true)"
  if [[ -z "$recorded" && ! -d "$STATE_DIR" && ! -d "$RUN_DIR" ]] && ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "The local cluster is not running; nothing to clean up"
    rm -f "$ADMIN_KUBECONFIG"
    return 0
  fi
  log "Stopping the local cluster"
  if [[ -n "$recorded" && "$recorded" != "$STATE_DIR" ]]; then
    info "it was started from ${recorded}"
    cleanup "$recorded" || die "cleanup incomplete"
  fi
  cleanup "$STATE_DIR" || die "cleanup incomplete"
  log "The local cluster is down"
}

cmd_status() {
  local recorded name pid rc=0
  recorded="$(recorded_state_dir || true)"
  if [[ -z "$recorded" ]]; then
    echo "local cluster: not running"
    return 1
  fi
  echo "local cluster: state ${recorded}"
  for name in "${SERVICES[@]}"; do
    if pid="$(pid_of "$name")"; then
      printf '  %-24s running (pid %s)\n' "$name" "$pid"
    else
      printf '  %-24s NOT RUNNING\n' "$name"
      rc=1
    fi
  done
  if [[ "$recorded" != "$STATE_DIR" ]]; then
    echo "  started from another checkout: its kubeconfig is $(dirname "$recorded")/admin.kubeconfig"
    return 1
  fi
  if kctl get --raw /readyz >/dev/null 2>&1; then
    echo "  api server               ready at https://$(apiserver_address)"
    kctl get nodes -o wide 2>&1 | sed 's/^/  /'
    cluster_healthy || rc=1
  else
    echo "  api server               not ready"
    rc=1
  fi
  if s3_healthy; then
    echo "  s3 server                ready at $(s3_endpoint) (buckets ${S3_BUCKET}, ${S3_LOCKED_BUCKET}; see s3-env)"
  else
    echo "  s3 server                not ready"
    rc=1
  fi
  if csi_registered; then
    echo "  csi driver               ${CSI_DRIVER} registered on ${NODE_NAME}; btrfs at ${CSI_MOUNT} ($(df -h --output=used,size "$CSI_MOUNT" 2>/dev/null | awk 'NR == 2 {print $1 " of " $2 " used"}'))"
    echo "  storage classes          ${CSI_STORAGE_CLASS} (default, dynamic), ${STORAGE_CLASS} (pre-made hostPath volumes); VolumeSnapshotClass ${CSI_SNAPSHOT_CLASS} (default)"
  else
    echo "  csi driver               ${CSI_DRIVER} not registered with the kubelet"
    rc=1
  fi
  echo "  kubeconfig               ${ADMIN_KUBECONFIG}"
  return "$rc"
}

# s3-env: the S3 server's endpoint, CA, credentials and buckets as shell
# `export` lines, for the e2e tests, the demo and an AWS CLI by hand.
cmd_s3_env() {
  (($# == 0)) || die "usage: $0 s3-env"
  if [[ "$(recorded_state_dir || true)" != "$STATE_DIR" ]] || ! pid_of versitygw >/dev/null; then
    die "the local cluster's S3 server is not running (hack/local-cluster.sh up)"
  fi
  [[ -r "${S3_DIR}/s3.env" ]] || die "cannot read ${S3_DIR}/s3.env (it holds the secret; run as root)"
  cat "${S3_DIR}/s3.env"
}

cmd_pvc() {
  (($# == 3)) || die "usage: $0 pvc NAMESPACE NAME SIZE   (e.g. pvc demo data 1Gi)"
  local ns="$1" name="$2" size="$3" pv path
  [[ -f "$ADMIN_KUBECONFIG" ]] || die "the local cluster is not running (hack/local-cluster.sh up)"
  pv="local-${ns}-${name}"
  path="${STATE_DIR}/volumes/${ns}/${name}"
  mkdir -p "$path"
  # World-writable like a dynamic local-path provisioner's volumes, so that
  # non-root pods can write to a fresh volume.
  chmod 0777 "$path"
  kctl create namespace "$ns" --dry-run=client -o yaml | kctl apply -f - >/dev/null
  # A PV left Released by a deleted claim of the same name cannot bind again.
  if [[ "$(kctl get pv "$pv" -o 'jsonpath={.status.phase}' 2>/dev/null)" == Released ]]; then
    kctl delete pv "$pv" --wait=true >/dev/null
  fi
  kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: ${pv}
  labels: {local-cluster/volume: "true"}
spec:
  capacity: {storage: ${size}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ${STORAGE_CLASS}
  claimRef: {namespace: ${ns}, name: ${name}}
  hostPath: {path: ${path}, type: Directory}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: ${name}
  namespace: ${ns}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ${STORAGE_CLASS}
  volumeName: ${pv}
  resources:
    requests: {storage: ${size}}
EOF
  local deadline=$((SECONDS + 30))
  until [[ "$(kctl -n "$ns" get pvc "$name" -o 'jsonpath={.status.phase}')" == Bound ]]; do
    ((SECONDS < deadline)) || die "PVC ${ns}/${name} did not become Bound"
    sleep 0.5
  done
  info "PVC ${ns}/${name} is Bound to PV ${pv} (${size}, hostPath ${path})"
}

cmd_hostpath() {
  (($# == 2)) || die "usage: $0 hostpath NAMESPACE NAME"
  printf '%s\n' "${STATE_DIR}/volumes/$1/$2"
}

# lock: one up or down at a time (per checkout); daemons do not inherit it.
lock() {
  exec 9<"${BASH_SOURCE[0]}"
  flock -w 900 9 || die "another hack/local-cluster.sh up or down is still running"
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    up | down | restart-apiserver) lock ;;
  esac
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    pvc) cmd_pvc "$@" ;;
    hostpath) cmd_hostpath "$@" ;;
    s3-env) cmd_s3_env "$@" ;;
    restart-apiserver) cmd_restart_apiserver "$@" ;;
    import-image)
      (($# == 1)) || die "usage: $0 import-image TARBALL"
      need_root
      import_image "$1"
      ;;
    kubeconfig) printf '%s\n' "$ADMIN_KUBECONFIG" ;;
    apiserver-address)
      apiserver_address || die "the local cluster is not running (hack/local-cluster.sh up)"
      ;;
    bindir) printf '%s\n' "$BIN_DIR" ;;
    kubectl)
      [[ -f "$ADMIN_KUBECONFIG" ]] || die "the local cluster is not running (hack/local-cluster.sh up)"
      components_built || die "kubectl ${K8S_VERSION} is not built yet (hack/local-cluster.sh build)"
      exec "${BIN_DIR}/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"
      ;;
    build) cmd_build "$@" ;;
    *)
      sed -n '/^# Usage:/,/^# Must run/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
}

main "$@"
