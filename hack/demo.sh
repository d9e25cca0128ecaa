#!/usr/bin/env bash
# The operator end to end on the local node, from a fresh machine, in one
# command (`make demo`):
#   1. bring the local cluster up (hack/local-cluster.sh up);
#   2. build the operator's image, import it and deploy the operator (make deploy);
#   3. make a PVC with data, apply the design's BackupPolicy, take a Backup;
#   4. restore it into a new PVC and compare the files;
#   5. a restore drill: the policy takes a Backup, a RestoreDrill restores it into a scratch
#      claim, a probe pod (the PostgreSQL image built from this machine's packages) checks the
#      files, and the Backup shows Verified;
#   6. back up to the node's S3 server (a BackupStorage), delete the whole namespace, recreate
#      it with a ReadOnly BackupStorage on the same bucket, see the Backup come back from the
#      bucket, restore it and compare the files: disaster recovery from the bucket alone;
#   7. show `kubectl get` of the five kinds with their Events.
# Any step that does not end as it should stops the demo with what went wrong.
# It leaves the cluster running; `make cluster-down` stops it.
#
# Settings: DEMO_NAMESPACE (backup-demo), DEMO_TIMEOUT (seconds to wait for a
# Backup or Restore to finish, 180).
set -Eeuo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO_ROOT"
CLUSTER=hack/local-cluster.sh
NS="${DEMO_NAMESPACE:-backup-demo}"
TIMEOUT="${DEMO_TIMEOUT:-180}"
SOURCE_PVC=postgres-data
STORAGE_PVC=backup-storage # the default storage claim of a Backup
RESTORE_PVC=postgres-data-restored
BACKUP=postgres-data-demo
RESTORE=postgres-data-demo-restore
OFFSITE_BACKUP=postgres-data-offsite
RECOVERED_PVC=postgres-data-recovered
RECOVERY=postgres-data-recovery
DRILL=daily-backups-drill

if [[ -t 1 ]]; then
  BOLD=$'\033[1m' RESET=$'\033[0m'
else
  BOLD="" RESET=""
fi
step() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"; }
say() { printf '    %s\n' "$*"; }
die() {
  printf '\nERROR: %s\n' "$*" >&2
  exit 1
}
k() { "$CLUSTER" kubectl "$@"; }

# show_objects: the five kinds and their Events.
show_objects() {
  step "kubectl get backuppolicies,backups,restores,backupstorages,restoredrills -n ${NS} -o wide"
  k get backuppolicies.platform.example.com,backups.platform.example.com,restores.platform.example.com,backupstorages.platform.example.com,restoredrills.platform.example.com \
    -n "$NS" -o wide || true
  step "Events of the BackupPolicies, Backups, Restores, BackupStorages and RestoreDrills in ${NS}"
  local events
  events="$(k get events -n "$NS" --sort-by=.lastTimestamp \
    -o custom-columns='LAST SEEN:.lastTimestamp,TYPE:.type,REASON:.reason,OBJECT:.involvedObject.kind,NAME:.involvedObject.name,MESSAGE:.message' |
    awk 'NR == 1 || $4 == "BackupPolicy" || $4 == "Backup" || $4 == "Restore" || $4 == "BackupStorage" || $4 == "RestoreDrill"')"
  if [[ "$(wc -l <<<"$events")" -le 1 ]]; then
    say "(no Events: nothing has acted on these objects yet)"
  else
    printf '%s\n' "$events"
  fi
}

# wait_phase KIND NAME: wait until .status.phase is final and print it;
# return 1, printing the last phase seen, after TIMEOUT seconds.
wait_phase() {
  local kind="$1" name="$2" phase="" start=$SECONDS
  while :; do
    phase="$(k get "${kind}.platform.example.com" "$name" -n "$NS" -o 'jsonpath={.status.phase}' 2>/dev/null || true)"
    case "$phase" in
      Completed | Failed)
        printf '%s\n' "$phase"
        return 0
        ;;
    esac
    if ((SECONDS - start >= TIMEOUT)); then
      printf '%s\n' "${phase:-none}"
      return 1
    fi
    sleep 2
  done
}

# wait_for DESCRIPTION WANT KUBECTL-GET-ARGS...: run `kubectl get ARGS` until it prints WANT;
# return 1 after TIMEOUT seconds, saying what it saw last.
wait_for() {
  local what="$1" want="$2" got="" start=$SECONDS
  shift 2
  while :; do
    got="$(k get "$@" 2>/dev/null || true)"
    [[ "$got" == "$want" ]] && return 0
    if ((SECONDS - start >= TIMEOUT)); then
      say "gave up waiting for ${what} after ${TIMEOUT}s (last seen: ${got:-nothing})"
      return 1
    fi
    sleep 2
  done
}

# offsite_storage ACCESS: the credentials Secret, the CA ConfigMap and the BackupStorage
# "offsite" on the node's S3 server, under this demo run's prefix, then wait for its check.
offsite_storage() {
  k create secret generic s3-credentials -n "$NS" \
    --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
    --dry-run=client -o yaml | k apply -f - >/dev/null
  k create configmap s3-ca -n "$NS" --from-file=ca.crt="$S3_CA_FILE" --dry-run=client -o yaml | k apply -f - >/dev/null
  k apply -n "$NS" -f - <<YAML
apiVersion: platform.example.com/v1
kind: BackupStorage
metadata: {name: offsite}
spec:
  accessMode: $1
  s3:
    endpoint: ${S3_ENDPOINT}
    region: ${S3_REGION}
    bucket: ${S3_BUCKET}
    prefix: ${PREFIX}
    forcePathStyle: true
    credentialsSecretRef: {name: s3-credentials}
    caBundle: {configMapKeyRef: {name: s3-ca, key: ca.crt}}
YAML
  wait_for "BackupStorage offsite to be Available" Available \
    backupstorage.platform.example.com offsite -n "$NS" -o 'jsonpath={.status.phase}' || {
    k describe backupstorage.platform.example.com offsite -n "$NS" | tail -n 20
    die "BackupStorage offsite is not Available"
  }
  k get backupstorage.platform.example.com offsite -n "$NS"
}

# leader_pod prints the controller pod that holds the Lease (its identity is the pod name and
# a suffix), waiting a little for the first election.
leader_pod() {
  local holder="" i
  for i in $(seq 1 30); do
    holder="$(k -n backup-system get lease backup-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)"
    [[ -n "$holder" ]] && break
    sleep 1
  done
  printf '%s\n' "${holder%%_*}"
}

step "1. The local cluster"
"$CLUSTER" up

step "2. The operator"
make -s deploy || die "make deploy failed (see above)"
make -s postgres-image || die "make postgres-image failed (see above)"
k -n backup-system get deployment,pods -o wide
say "leader: $(leader_pod) (holds Lease backup-system/backup-operator; the other replica stands by)"

step "3. A PVC with data (namespace ${NS})"
if k get namespace "$NS" >/dev/null 2>&1; then
  say "Deleting the previous demo namespace ${NS}"
  k delete namespace "$NS" --wait=true --timeout=120s >/dev/null ||
    die "namespace ${NS} is still terminating after 120s: its Backups carry the archive-cleanup finalizer, which only the running controller removes (check: $CLUSTER kubectl -n backup-system get pods; $CLUSTER kubectl get backups -n ${NS})"
fi
for pvc in "$SOURCE_PVC" "$STORAGE_PVC" "$RESTORE_PVC" "$RECOVERED_PVC"; do
  k delete pv "local-${NS}-${pvc}" --ignore-not-found --wait=true --timeout=60s >/dev/null
done
for pvc in "$SOURCE_PVC" "$STORAGE_PVC" "$RESTORE_PVC" "$RECOVERED_PVC"; do
  rm -rf "$("$CLUSTER" hostpath "$NS" "$pvc")"
done
"$CLUSTER" pvc "$NS" "$SOURCE_PVC" 1Gi
"$CLUSTER" pvc "$NS" "$STORAGE_PVC" 2Gi
k label pvc "$SOURCE_PVC" -n "$NS" app=postgres --overwrite >/dev/null
# The image has no shell, so the demo writes the "database" straight into the
# volume's directory on the node, as a database pod would have.
src="$("$CLUSTER" hostpath "$NS" "$SOURCE_PVC")"
mkdir -p "${src}/base/16384" "${src}/pg_wal"
printf 'PG_VERSION 16\n' >"${src}/PG_VERSION"
printf 'listen_addresses = %s\nmax_connections = 100\n' "'*'" >"${src}/postgresql.conf"
head -c 1048576 /dev/urandom >"${src}/base/16384/16385"
seq 1 20000 >"${src}/base/16384/16386"
head -c 262144 /dev/urandom >"${src}/pg_wal/000000010000000000000001"
say "files in PVC ${SOURCE_PVC} (label app=postgres):"
(cd "$src" && find . -type f -printf '%P\n' | sort | xargs sha256sum | sed 's/^/      /')

step "4. The design's BackupPolicy and a Backup"
k apply -n "$NS" -f - <<'EOF'
apiVersion: platform.example.com/v1
kind: BackupPolicy
metadata: {name: daily-backups}
spec:
  schedule: "0 2 * * *"
  retention: {keepLast: 3}
  target:
    pvcSelector: {matchLabels: {app: postgres}}
EOF
k apply -n "$NS" -f - <<EOF
apiVersion: platform.example.com/v1
kind: Backup
metadata: {name: ${BACKUP}}
spec:
  pvcName: ${SOURCE_PVC}
EOF
say "waiting for Backup ${BACKUP} to finish (up to ${TIMEOUT}s)"
rc=0
phase="$(wait_phase backup "$BACKUP")" || rc=$?
if ((rc == 1)); then
  show_objects
  k describe backup.platform.example.com "$BACKUP" -n "$NS" | tail -n 25
  k -n backup-system logs "pod/$(leader_pod)" --tail=20 || true
  die "Backup ${BACKUP} did not finish within ${TIMEOUT}s (phase ${phase})"
elif [[ "$phase" == Failed ]]; then
  show_objects
  k describe backup.platform.example.com "$BACKUP" -n "$NS" | tail -n 25
  die "Backup ${BACKUP} Failed (its conditions and events above say why)"
else
  say "Backup ${BACKUP} is Completed: $(k get backup.platform.example.com "$BACKUP" -n "$NS" \
    -o 'jsonpath={.status.artifact.path} ({.status.artifact.displaySize}, {.status.artifact.files} files, sha256 {.status.artifact.sha256})')"

  step "5. Restore into a new PVC"
  "$CLUSTER" pvc "$NS" "$RESTORE_PVC" 1Gi
  k apply -n "$NS" -f - <<EOF
apiVersion: platform.example.com/v1
kind: Restore
metadata: {name: ${RESTORE}}
spec:
  backupName: ${BACKUP}
  target: {claimName: ${RESTORE_PVC}}
EOF
  say "waiting for Restore ${RESTORE} to finish (up to ${TIMEOUT}s)"
  rc=0
  phase="$(wait_phase restore "$RESTORE")" || rc=$?
  if ((rc == 1)) || [[ "$phase" != Completed ]]; then
    show_objects
    k describe restore.platform.example.com "$RESTORE" -n "$NS" | tail -n 25
    die "Restore ${RESTORE} ended ${phase}"
  else
    dst="$("$CLUSTER" hostpath "$NS" "$RESTORE_PVC")"
    say "comparing ${SOURCE_PVC} with ${RESTORE_PVC}"
    if diff -r "$src" "$dst"; then
      say "the restored files are identical to the originals"
    else
      die "the restored files differ from the originals"
    fi
  fi
fi

step "6. A restore drill proves the policy's Backup"
# The policy takes a Backup now; the drill restores the claim's newest one into a scratch claim
# it provisions, runs a probe pod on the copy and records the verdict on the Backup.
k annotate backuppolicy.platform.example.com daily-backups -n "$NS" platform.example.com/run-now="demo-$(date +%s)" --overwrite >/dev/null
wait_for "the policy's Backup to complete" Completed \
  backups.platform.example.com -n "$NS" -l platform.example.com/policy=daily-backups -o 'jsonpath={.items[0].status.phase}' || {
  show_objects
  die "the policy's Backup did not complete"
}
k apply -n "$NS" -f - <<YAML
apiVersion: platform.example.com/v1
kind: RestoreDrill
metadata:
  name: ${DRILL}
  annotations: {platform.example.com/run-now: "demo"}
spec:
  policyName: daily-backups
  schedule: "0 6 * * 0"
  objectives: {maxTimeToRestore: 10m, maxBackupAge: 26h}
  probe:
    image: backup-operator-postgres:dev
    securityContext: {runAsNonRoot: true, capabilities: {drop: [ALL]}}
    timeoutSeconds: 120
    command:
      - /bin/sh
      - -c
      - |
        set -e
        test "\$(cat /data/PG_VERSION)" = "PG_VERSION 16"
        rows=\$(wc -l < /data/base/16384/16386)
        echo "table 16386 has \$rows rows"
        test "\$rows" -eq 20000
YAML
say "waiting for drill ${DRILL} (restore into a scratch claim, then the probe pod)"
wait_for "drill ${DRILL} to finish" true \
  restoredrill.platform.example.com "$DRILL" -n "$NS" -o 'go-template={{with .status.lastRun}}{{if .completionTime}}true{{end}}{{end}}' || {
  show_objects
  die "drill ${DRILL} did not finish"
}
k get restoredrill.platform.example.com "$DRILL" -n "$NS" -o wide
result="$(k get restoredrill.platform.example.com "$DRILL" -n "$NS" -o 'jsonpath={.status.lastRun.result}')"
if [[ "$result" != Succeeded ]]; then
  k describe restoredrill.platform.example.com "$DRILL" -n "$NS" | tail -n 40
  die "drill ${DRILL} ended ${result}"
fi
say "$(k get restoredrill.platform.example.com "$DRILL" -n "$NS" -o 'jsonpath={.status.conditions[?(@.type=="Succeeded")].message}')"
k get backups.platform.example.com -n "$NS"

step "7. Off-site: a Backup to the node's S3 server"
s3env="$("$CLUSTER" s3-env)" || die "the local node's S3 server is not running ($CLUSTER status)"
eval "$s3env"
# A prefix of its own for every demo run, so that a run never meets the archives of the last.
PREFIX="demo-$(date -u +%Y%m%d%H%M%S)"
offsite_storage ReadWrite
k apply -n "$NS" -f - <<YAML
apiVersion: platform.example.com/v1
kind: Backup
metadata: {name: ${OFFSITE_BACKUP}}
spec:
  pvcName: ${SOURCE_PVC}
  storage: {name: offsite}
YAML
phase="$(wait_phase backup "$OFFSITE_BACKUP")" || true
if [[ "$phase" != Completed ]]; then
  show_objects
  k describe backup.platform.example.com "$OFFSITE_BACKUP" -n "$NS" | tail -n 25
  die "Backup ${OFFSITE_BACKUP} ended ${phase}"
fi
say "Backup ${OFFSITE_BACKUP} is Completed: $(k get backup.platform.example.com "$OFFSITE_BACKUP" -n "$NS" \
  -o 'jsonpath=s3://{.status.artifact.bucket}/{.status.artifact.path} ({.status.artifact.displaySize}, sha256 {.status.artifact.sha256})')"
show_objects

step "8. The disaster: namespace ${NS} is deleted, with every Backup in it"
k delete namespace "$NS" --wait=true --timeout=180s || die "namespace ${NS} did not go within 180s"
say "Backups left in ${NS}: $(k get backups.platform.example.com -n "$NS" -o name 2>/dev/null | wc -l)"

step "9. Recovery: the same namespace, a ReadOnly BackupStorage on the bucket, and nothing else"
k create namespace "$NS" >/dev/null
offsite_storage ReadOnly
say "waiting for the bucket's archives to come back as Backups"
wait_for "Backup ${OFFSITE_BACKUP} to be imported" Completed \
  backup.platform.example.com "$OFFSITE_BACKUP" -n "$NS" -o 'jsonpath={.status.phase}' || {
  show_objects
  die "Backup ${OFFSITE_BACKUP} did not come back from the bucket"
}
k get backups.platform.example.com -n "$NS" -L platform.example.com/imported
"$CLUSTER" pvc "$NS" "$RECOVERED_PVC" 1Gi
k apply -n "$NS" -f - <<YAML
apiVersion: platform.example.com/v1
kind: Restore
metadata: {name: ${RECOVERY}}
spec:
  backupName: ${OFFSITE_BACKUP}
  target: {claimName: ${RECOVERED_PVC}}
YAML
phase="$(wait_phase restore "$RECOVERY")" || true
if [[ "$phase" != Completed ]]; then
  show_objects
  k describe restore.platform.example.com "$RECOVERY" -n "$NS" | tail -n 25
  die "Restore ${RECOVERY} ended ${phase}"
fi
dst="$("$CLUSTER" hostpath "$NS" "$RECOVERED_PVC")"
say "comparing the lost ${SOURCE_PVC} with ${RECOVERED_PVC}, restored from the bucket alone"
diff -r "$src" "$dst" || die "the recovered files differ from the originals"
say "the recovered files are identical to the originals"

show_objects
step "Done"
say "Backup and restore round trip complete, and the namespace recovered from the bucket alone."
say "The cluster keeps running: export KUBECONFIG=$("$CLUSTER" kubeconfig); stop it with make cluster-down."
