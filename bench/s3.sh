#!/usr/bin/env bash
# Benchmarks backups to and restores from object storage: the agent writing
# s3://BUCKET/KEY against two anchors, all three talking to the same S3 server
# (versitygw, posix backend, plain HTTP on a loopback port) that the script
# starts for itself:
#
#   ours     backup-controller agent backup --output s3://… / agent restore --archive s3://…
#   aws-zstd tar -I 'zstd -T0' -cf - | aws s3 cp - s3://…  /  aws s3 cp s3://… - | tar -I zstd -x
#   restic   restic backup (a fresh repository every run, so a full backup) / restic restore latest
#
# on a PostgreSQL data directory, interleaved RUNS times, and prints medians,
# the ratios and whether the goals of docs/storage.md ("Benchmarks: object
# storage") hold. The first run also checks that every tool restored a tree
# equal to the source (type, mode, owner, size, mtime, link target and the
# sha256 of every file).
#
# Usage: bench/s3.sh
#   RUNS=3        interleaved runs; the table shows medians
#   SCALE=40      pgbench scale of the PostgreSQL data directory (40 = about 1.2 GB)
#   BENCH_DIR=_output/bench   scratch directory; the data directory is kept there
#                 and reused (bench/archive.sh uses the same one), everything
#                 else goes to a temporary directory under it, removed at exit
# Needs root (to build the data directory and restore ownership) and installs
# what is missing of time, zstd, jq, curl, restic and the AWS CLI (Debian's
# awscli, unless an `aws` that works is on PATH) with apt-get. Builds the agent
# (make build) and the S3 server (make s3-server).
# Prints the results and writes them to BENCH_DIR/s3-results.txt.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
SCALE=${SCALE:-40}
BENCH_DIR=${BENCH_DIR:-$repo/_output/bench}
REGION=us-east-1
BUCKET=bench
TOOLS=(ours aws-zstd restic)

work=
server_pid=
agent=
aws_cli=
endpoint=

log() { printf '%s\n' "$*" >&2; }
die() {
	printf 'ERROR: %s\n' "$*" >&2
	exit 1
}

cleanup() {
	local rc=$?
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill "$server_pid" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	[ -z "$work" ] || rm -rf "$work"
	exit "$rc"
}

install_missing() {
	local missing=()
	[ -x /usr/bin/time ] || missing+=(time)
	command -v zstd >/dev/null || missing+=(zstd)
	command -v jq >/dev/null || missing+=(jq)
	command -v curl >/dev/null || missing+=(curl)
	command -v ss >/dev/null || missing+=(iproute2)
	command -v restic >/dev/null || missing+=(restic)
	# Debian's AWS CLI if installed; otherwise any `aws` on PATH that runs (such as
	# a pyenv shim); otherwise Debian's, installed now.
	if [ -x /usr/bin/aws ]; then
		aws_cli=/usr/bin/aws
	elif command -v aws >/dev/null && aws --version >/dev/null 2>&1; then
		aws_cli=$(command -v aws)
	else
		missing+=(awscli)
		aws_cli=/usr/bin/aws
	fi
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		apt-get install -y "${missing[@]}" >/dev/null 2>&1 ||
			{ apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; } ||
			die "could not install ${missing[*]} with apt-get"
	fi
	"$aws_cli" --version >/dev/null 2>&1 || die "the AWS CLI ($aws_cli) does not run"
}

# build_agent builds backup-controller as `make build` does and runs a copy of
# it, as bench/archive.sh does (the linker's own output file starts with a
# larger RSS than a copy, such as the one a container image holds).
build_agent() {
	log "building backup-controller (make build)"
	mkdir -p "$work/bin"
	make -C "$repo" --no-print-directory -s build BINARY="$work/bin/backup-controller.linked" >"$work/build.log" 2>&1 ||
		{ cat "$work/build.log" >&2; die "make build failed"; }
	cp "$work/bin/backup-controller.linked" "$work/bin/backup-controller"
	rm "$work/bin/backup-controller.linked"
	agent=$work/bin/backup-controller
}

prepare_data() {
	pg=$BENCH_DIR/pgdata-$SCALE
	if [ ! -f "$pg/PG_VERSION" ]; then
		local make_pgdata=$repo/../shared/bench/make-pgdata.sh
		[ -x "$make_pgdata" ] || die "$make_pgdata not found: it builds the PostgreSQL data directory"
		log "building the PostgreSQL data directory (scale $SCALE) in $pg"
		rm -rf "$pg"
		"$make_pgdata" "$pg" "$SCALE" >/dev/null
	fi
}

# start_server starts versitygw on a free loopback port with its data under
# $work/s3, and sets endpoint and server_pid.
start_server() {
	make -C "$repo" --no-print-directory -s s3-server >"$work/s3-server-build.log" 2>&1 ||
		{ cat "$work/s3-server-build.log" >&2; die "make s3-server failed"; }
	local bin port attempt deadline
	local -a meta=()
	bin=$("$repo/hack/s3-server.sh" path)
	[ -x "$bin" ] || die "no S3 server at $bin after make s3-server"
	mkdir -p "$work/s3/data" "$work/s3/meta"
	for attempt in 1 2 3 4 5 6; do
		port=$((20000 + RANDOM % 40000))
		[ -z "$(ss -Htln "sport = :$port")" ] || continue
		ROOT_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID ROOT_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
			"$bin" --port "127.0.0.1:$port" --region "$REGION" --quiet --health /health \
			posix "${meta[@]}" "$work/s3/data" >"$work/s3/server.log" 2>&1 &
		server_pid=$!
		deadline=$((SECONDS + 30))
		while kill -0 "$server_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
			if curl -fsS --max-time 2 "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
				# Answered, and still ours (not another process that took the port).
				kill -0 "$server_pid" 2>/dev/null || break
				endpoint=http://127.0.0.1:$port
				log "S3 server: versitygw (pid $server_pid) at $endpoint"
				return 0
			fi
			sleep 0.1
		done
		if kill -0 "$server_pid" 2>/dev/null; then
			cat "$work/s3/server.log" >&2
			die "versitygw did not answer on 127.0.0.1:$port within 30s"
		fi
		wait "$server_pid" 2>/dev/null || true
		server_pid=
		# Without extended attributes on this file system, its metadata goes to a sidecar directory.
		if grep -q 'xattr check failed' "$work/s3/server.log"; then
			meta=(--sidecar "$work/s3/meta")
		fi
		log "versitygw exited at start (attempt $attempt): $(tail -n 1 "$work/s3/server.log")"
	done
	cat "$work/s3/server.log" >&2
	die "could not start versitygw on a loopback port"
}

# s3cli ARGS...: the AWS CLI, at the benchmark's server.
s3cli() { "$aws_cli" --endpoint-url "$endpoint" "$@"; }

# object_size KEY: the size the server reports for s3://BUCKET/KEY.
object_size() { s3cli s3api head-object --bucket "$BUCKET" --key "$1" --query ContentLength --output text; }

# timed LABEL OUT CMD...: runs CMD under /usr/bin/time with its stdout in OUT and
# prints "seconds maxrss_kb" (the largest process, for pipelines). Dirty data is
# flushed first, as bench/archive.sh does, so no step pays for the write-back of
# the one before.
timed() {
	local label=$1 out=$2
	shift 2
	sync
	if ! /usr/bin/time -f '%e %M' -o "$work/time.txt" "$@" >"$out" 2>"$work/err.txt"; then
		log "FAILED: $label: $*"
		cat "$work/err.txt" >&2
		exit 1
	fi
	cat "$work/time.txt"
}

# digest DIR: one line per entry (path, type, mode, owner, size, mtime in
# seconds, link target), then the sha256 of every regular file.
digest() {
	(
		cd "$1"
		find . -printf '%p\t%y\t%m\t%u:%g\t%s\t%T@\t%l\n' |
			awk -F'\t' -v OFS='\t' '{ if ($2 == "d") $5 = "-"; sub(/\..*/, "", $6); print }' | LC_ALL=C sort
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum
	)
}

# verify TOOL DIR: the restored tree equals the source. restic restores the
# snapshot's contents into the target but not the target directory's own mode,
# owner and mtime, so for restic (only) that one line is reported, not failed.
verify() {
	local tool=$1 dir=$2
	digest "$dir" >"$work/restored.digest"
	if cmp -s "$work/source.digest" "$work/restored.digest"; then
		log "verified: $tool restored a tree identical to the source ($(grep -c . "$work/source.digest") lines of digest)"
		echo "$tool identical" >>"$work/verified.txt"
		return
	fi
	if [ "$tool" = restic ] && cmp -s <(sed 1d "$work/source.digest") <(sed 1d "$work/restored.digest"); then
		log "verified: restic restored every entry identically; the target directory itself kept its own mode/owner/mtime"
		echo "$tool identical-below-target" >>"$work/verified.txt"
		return
	fi
	diff "$work/source.digest" "$work/restored.digest" | head -20 >&2 || true
	die "$tool: the restored tree differs from the source (first differences above)"
}

# run_tool RUN TOOL: one backup and one restore; appends
# "tool backup_s backup_rss_kb size_bytes restore_s restore_rss_kb" to the samples.
run_tool() {
	local run=$1 tool=$2 dst=$work/restore b r size sum repo_url
	local key=run-$run/$tool.tar.zst
	rm -rf "$dst" && mkdir -p "$dst"
	case $tool in
	ours)
		local -a s3=(--s3-endpoint "$endpoint" --s3-force-path-style --s3-region "$REGION" --termination-log "$work/termination-log")
		b=$(timed "$tool backup" "$work/backup.json" "$agent" agent backup --source "$pg" --output "s3://$BUCKET/$key" "${s3[@]}")
		size=$(jq -r .size "$work/backup.json")
		sum=$(jq -r .sha256 "$work/backup.json")
		[ "$(object_size "$key")" = "$size" ] || die "ours: the agent reported $size bytes, the server holds $(object_size "$key")"
		r=$(timed "$tool restore" "$work/restore.json" "$agent" agent restore --archive "s3://$BUCKET/$key" --target "$dst" --sha256 "$sum" "${s3[@]}")
		;;
	aws-zstd)
		b=$(timed "$tool backup" /dev/null bash -c 'set -o pipefail; tar -I "zstd -T0" -cf - -C "$1" . | "$2" --endpoint-url "$3" s3 cp - "$4"' \
			_ "$pg" "$aws_cli" "$endpoint" "s3://$BUCKET/$key")
		size=$(object_size "$key")
		r=$(timed "$tool restore" /dev/null bash -c 'set -o pipefail; "$2" --endpoint-url "$3" s3 cp "$4" - | tar -I zstd -xf - -C "$1"' \
			_ "$dst" "$aws_cli" "$endpoint" "s3://$BUCKET/$key")
		;;
	restic)
		# A fresh repository every run: the backup is a first, full one.
		repo_url=s3:$endpoint/$BUCKET-restic/run-$run
		local -a ropts=(-o "s3.region=$REGION" -o s3.bucket-lookup=path -r "$repo_url")
		restic "${ropts[@]}" init >"$work/restic-init.txt" 2>&1 || { cat "$work/restic-init.txt" >&2; die "restic init $repo_url failed"; }
		# From inside the directory, so that the snapshot holds its contents at the top.
		b=$(timed "$tool backup" /dev/null bash -c 'cd "$1" && shift && exec restic "$@" backup .' _ "$pg" "${ropts[@]}")
		size=$(find "$work/s3/data/$BUCKET-restic/run-$run" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
		r=$(timed "$tool restore" /dev/null restic "${ropts[@]}" restore latest --target "$dst")
		;;
	esac
	[ "$run" != 1 ] || verify "$tool" "$dst"
	echo "$tool $b $size $r" >>"$work/samples.txt"
	rm -rf "$dst"
}

median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
stat_of() { awk -v t="$1" -v c="$2" '$1 == t {print $c}' "$work/samples.txt" | median; }
max_of() { awk -v t="$1" -v c="$2" '$1 == t {print $c}' "$work/samples.txt" | sort -g | tail -n 1; }

main() {
	[ "$(id -u)" = 0 ] || die "run as root: building the data directory and restoring ownership need it"
	case $RUNS in '' | *[!0-9]* | 0) die "RUNS must be a positive integer, not '$RUNS'" ;; esac
	case $SCALE in '' | *[!0-9]* | 0) die "SCALE must be a positive integer, not '$SCALE'" ;; esac
	mkdir -p "$BENCH_DIR"
	BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	work=$(mktemp -d "$BENCH_DIR/s3.XXXXXX")

	install_missing
	build_agent
	prepare_data

	# Credentials of this run only, through the environment (a command line is
	# readable by every user); the AWS CLI with its defaults, not a user's config.
	AWS_ACCESS_KEY_ID=bench$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
	AWS_SECRET_ACCESS_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	RESTIC_PASSWORD=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY RESTIC_PASSWORD
	export AWS_DEFAULT_REGION=$REGION AWS_EC2_METADATA_DISABLED=true
	export AWS_CONFIG_FILE=$work/aws-config AWS_SHARED_CREDENTIALS_FILE=$work/aws-credentials
	export RESTIC_CACHE_DIR=$work/restic-cache
	unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL RESTIC_REPOSITORY RESTIC_PASSWORD_FILE 2>/dev/null || true

	start_server
	s3cli s3 mb "s3://$BUCKET" >/dev/null || die "could not create bucket $BUCKET"
	s3cli s3 mb "s3://$BUCKET-restic" >/dev/null || die "could not create bucket $BUCKET-restic"

	local bytes run i tool
	bytes=$(du -sb --apparent-size "$pg" | cut -f1)
	digest "$pg" >"$work/source.digest"
	tar -C "$pg" -cf - . | cat >/dev/null # warm the page cache for every tool alike
	: >"$work/samples.txt"
	for run in $(seq "$RUNS"); do
		# Each run starts with the next tool, so none is always first after a restore.
		for i in 0 1 2; do
			tool=${TOOLS[$(((run - 1 + i) % 3))]}
			log "run $run/$RUNS: $tool"
			run_tool "$run" "$tool"
		done
		s3cli s3 rm --recursive --quiet "s3://$BUCKET/run-$run/"
		s3cli s3 rm --recursive --quiet "s3://$BUCKET-restic/run-$run/"
	done

	{
		echo "Object storage benchmark: median of $RUNS runs, $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ), page cache warm"
		echo "pgdata: PostgreSQL 15 data directory, pgbench scale $SCALE, $((bytes / 1000000)) MB;" \
			"S3 server: versitygw $("$repo/hack/s3-server.sh" version) (posix) on 127.0.0.1, plain HTTP"
		echo "tools: ours = backup-controller agent; aws-zstd = tar -I 'zstd -T0' | aws s3 cp ($("$aws_cli" --version 2>&1 | cut -d' ' -f1));" \
			"$(restic version | cut -d' ' -f1-2) with a fresh repository every run"
		echo
		printf '%-9s %9s %11s %9s %8s %9s %12s %8s\n' tool backup_s backup_MB/s size_MB size_% restore_s restore_MB/s rss_MiB
		for tool in "${TOOLS[@]}"; do
			awk -v t="$tool" -v bs="$(stat_of "$tool" 2)" -v br="$(max_of "$tool" 3)" -v sz="$(stat_of "$tool" 4)" \
				-v rs="$(stat_of "$tool" 5)" -v rr="$(max_of "$tool" 6)" -v n="$bytes" 'BEGIN {
				m = br > rr ? br : rr
				printf "%-9s %9.2f %11.0f %9.1f %7.1f%% %9.2f %12.0f %8.1f\n", t, bs, n/1e6/bs, sz/1e6, 100*sz/n, rs, n/1e6/rs, m/1024 }'
		done
		echo "(size: ours = the Backup's size from the agent's result, aws-zstd = the object's size, restic = the repository's files on the server;"
		echo " rss_MiB: the largest peak resident set of one process over all backups and restores, for pipelines its largest process)"
		echo
		echo "Ratios (time ratios: < 1 means ours is faster)"
		awk -v ob="$(stat_of ours 2)" -v ab="$(stat_of aws-zstd 2)" -v rb="$(stat_of restic 2)" \
			-v orr="$(stat_of ours 5)" -v ar="$(stat_of aws-zstd 5)" -v rr="$(stat_of restic 5)" \
			-v os="$(stat_of ours 4)" -v as="$(stat_of aws-zstd 4)" -v rs="$(stat_of restic 4)" \
			-v rss_b="$(max_of ours 3)" -v rss_r="$(max_of ours 6)" 'BEGIN {
			rss = (rss_b > rss_r ? rss_b : rss_r) / 1024
			ok = "met"; no = "MISSED"
			printf "backup time  ours / aws-zstd: %.2f   ours / restic: %.2f   goal: faster than both (< 1): %s\n", ob/ab, ob/rb, (ob < ab && ob < rb) ? ok : no
			printf "restore time ours / aws-zstd: %.2f   ours / restic: %.2f   goal: faster than both (< 1): %s\n", orr/ar, orr/rr, (orr < ar && orr < rr) ? ok : no
			printf "size         ours / aws-zstd: %.3f  (restic / aws-zstd: %.3f)  goal: <= 1.000: %s\n", os/as, rs/as, (os <= as) ? ok : no
			printf "agent peak RSS: %.1f MiB (backup %.1f, restore %.1f)  goal: < 128 MiB: %s\n", rss, rss_b/1024, rss_r/1024, (rss < 128) ? ok : no
		}'
		echo
		printf 'restored trees (run 1): '
		awk '{printf "%s%s %s", (NR > 1 ? "; " : ""), $1, ($2 == "identical" ? "identical to the source" : "identical below the target directory (whose own mode, owner and mtime restic leaves as they were)")} END {print ""}' "$work/verified.txt"
		echo
		echo "samples (tool backup_s backup_rss_kb size_bytes restore_s restore_rss_kb):"
		cat "$work/samples.txt"
	} | tee "$BENCH_DIR/s3-results.txt"
}

main "$@"
