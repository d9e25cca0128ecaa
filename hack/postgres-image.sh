#!/usr/bin/env bash
# The PostgreSQL image of the local node: restore drills probe with it, and the
# end-to-end tests run a live database in it (the server under a pgbench load,
# backed up with pg_basebackup and pg_dump from its own pod). It holds the
# postgresql-15 files of this machine's distribution (the server, pg_ctl, psql,
# pgbench, pg_basebackup, pg_dump, pg_restore, their libraries, the share
# directory and the time zones), a POSIX shell and a few coreutils, built
# without a container engine by hack/image -rootfs. Its
# /etc/passwd names the postgres user with the same IDs as on this machine, so a
# data directory backed up here opens in the image as its owner.
#
# Usage: hack/postgres-image.sh
#   Writes _output/images/postgres.tar (tag backup-operator-postgres:dev) and
#   prints the image ID; skipped when the tarball is newer than its inputs.
set -Eeuo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
OUT="${REPO_ROOT}/_output/images"
TAR="${OUT}/postgres.tar"
ID_FILE="${OUT}/postgres.id"
TAG="backup-operator-postgres:dev"
PG_MAJOR=15
PG_LIB="/usr/lib/postgresql/${PG_MAJOR}"
PG_SHARE="/usr/share/postgresql/${PG_MAJOR}"
PG_BINARIES=(postgres pg_ctl psql initdb pg_isready pg_controldata pgbench pg_basebackup pg_dump pg_restore)
TOOLS=(cat ls mkdir rm sleep id head tail wc env du)

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

if [[ ! -x "${PG_LIB}/bin/postgres" ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "Installing postgresql-${PG_MAJOR} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-${PG_MAJOR}" >/dev/null
  else
    die "postgresql-${PG_MAJOR} is not installed: apt-get install postgresql-${PG_MAJOR}"
  fi
fi
id -u postgres >/dev/null 2>&1 || die "no postgres user on this machine (the postgresql-${PG_MAJOR} package makes it)"

if [[ -s "$TAR" && -s "$ID_FILE" && "$TAR" -nt "${BASH_SOURCE[0]}" && "$TAR" -nt "${REPO_ROOT}/hack/image/main.go" && "$TAR" -nt "${PG_LIB}/bin/postgres" ]]; then
  cat "$ID_FILE"
  exit 0
fi

log "Building the image ${TAG} from this machine's postgresql-${PG_MAJOR} -> ${TAR}"
mkdir -p "$OUT"
root="$(mktemp -d "${OUT}/postgres-rootfs.XXXXXX")"
trap 'rm -rf "$root"' EXIT

# put PATH...: copies each path (a file, or a directory tree) to the same place
# in the image; a symbolic link brings its target along.
put() {
  local p target
  for p in "$@"; do
    [[ -e "$root$p" || -L "$root$p" ]] && continue
    mkdir -p "$root$(dirname "$p")"
    cp -a "$p" "$root$p"
    if [[ -L "$p" ]]; then
      target="$(readlink -f "$p")"
      put "$target"
    fi
  done
}

# The distribution's merged /usr: /bin and /lib are links into it.
mkdir -p "$root/usr/bin" "$root/usr/lib" "$root/usr/local/bin"
ln -s usr/bin "$root/bin"
ln -s usr/lib "$root/lib"
[[ -d /usr/lib64 ]] && { mkdir -p "$root/usr/lib64"; ln -s usr/lib64 "$root/lib64"; }

for b in "${PG_BINARIES[@]}"; do
  put "${PG_LIB}/bin/${b}"
  ln -s "${PG_LIB}/bin/${b}" "$root/usr/local/bin/${b}"
done
# The server's loadable modules, less the LLVM JIT (over 100 MB of libLLVM;
# without it the server runs with JIT off).
mkdir -p "$root${PG_LIB}/lib"
find "${PG_LIB}/lib" -maxdepth 1 -type f ! -name 'llvmjit*' -exec cp -a {} "$root${PG_LIB}/lib/" \;
put "$PG_SHARE" /usr/share/zoneinfo
[[ -d /usr/lib/locale/C.utf8 ]] && put /usr/lib/locale/C.utf8
cp -a "$(readlink -f /bin/sh)" "$root/usr/bin/sh"
for t in "${TOOLS[@]}"; do
  put "$(command -v "$t")"
done

# The shared libraries of every program and module, and theirs, until none is
# missing.
while :; do
  missing=()
  while IFS= read -r f; do
    while IFS= read -r lib; do
      [[ -e "$root$lib" ]] || missing+=("$lib")
    done < <(ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
  done < <(find "$root" -type f \( -perm -u+x -o -name '*.so*' \) -print)
  ((${#missing[@]})) || break
  for lib in $(printf '%s\n' "${missing[@]}" | sort -u); do
    put "$lib"
  done
done

uid="$(id -u postgres)"
gid="$(id -g postgres)"
mkdir -p "$root/etc" "$root/var/lib/postgresql"
cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
postgres:x:${uid}:${gid}:PostgreSQL administrator:/var/lib/postgresql:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"$root/etc/group" <<EOF
root:x:0:
postgres:x:${gid}:
nobody:x:65534:
EOF

cd "$REPO_ROOT"
go run ./hack/image -rootfs "$root" -tag "$TAG" -out "$TAR" >"${ID_FILE}.tmp"
mv "${ID_FILE}.tmp" "$ID_FILE"
log "    $(du -h "$TAR" | cut -f1), image ID $(cat "$ID_FILE")"
cat "$ID_FILE"
