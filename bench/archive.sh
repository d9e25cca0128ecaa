#!/usr/bin/env bash
# Benchmarks the archive agent against tar with gzip, pigz and zstd, on a
# PostgreSQL data directory and on incompressible data, and prints medians
# and the ratios the data path is held to (docs/archive-format.md).
#
# Usage: bench/archive.sh
#   RUNS=3        runs per measurement; the table shows medians
#   SCALE=40      pgbench scale of the PostgreSQL data directory (40 = about 1.2 GB)
#   RANDOM_MB=1024  size of the incompressible data set
#   BENCH_DIR=_output/bench   scratch directory (data sets are kept and reused,
#                 archives and restored trees are deleted)
#   TOOLS="..."   the tools to measure (default: all); a ratio is printed when both of its
#                 tools were measured
# agent-zstd-age is agent-zstd encrypted with age to one recipient (docs/storage.md).
# Needs root (to build the PostgreSQL directory and restore ownership) and
# the packages postgresql-15, pigz, zstd and time, which it installs if missing.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
SCALE=${SCALE:-40}
RANDOM_MB=${RANDOM_MB:-1024}
BENCH_DIR=${BENCH_DIR:-$repo/_output/bench}
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
work=$BENCH_DIR/work
agent=()

log() { printf '%s\n' "$*" >&2; }

install_missing() {
	local missing=()
	command -v pigz >/dev/null || missing+=(pigz)
	command -v zstd >/dev/null || missing+=(zstd)
	[ -x /usr/bin/time ] || missing+=(time)
	[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		apt-get install -y "${missing[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
	fi
}

# build_agent builds backup-controller as `make build` does: the benchmark measures the
# agent as the Jobs run it, inside the one static binary. It runs a copy of what the
# linker wrote: the linker's own output file started 13 MiB larger in RSS (44 MiB
# instead of 31) than a copy of it, such as the one a container image holds.
build_agent() {
	mkdir -p "$BENCH_DIR/bin"
	make -C "$repo" --no-print-directory -s build BINARY="$BENCH_DIR/bin/backup-controller.linked" >/dev/null
	cp "$BENCH_DIR/bin/backup-controller.linked" "$BENCH_DIR/bin/backup-controller"
	rm "$BENCH_DIR/bin/backup-controller.linked"
	agent=("$BENCH_DIR/bin/backup-controller" agent)
}

prepare_data() {
	pg=$BENCH_DIR/pgdata-$SCALE
	if [ ! -f "$pg/PG_VERSION" ]; then
		log "building the PostgreSQL data directory (scale $SCALE) in $pg"
		rm -rf "$pg"
		"$repo/../shared/bench/make-pgdata.sh" "$pg" "$SCALE" >/dev/null
	fi
	rnd=$BENCH_DIR/random-${RANDOM_MB}m
	if [ ! -f "$rnd/.complete" ]; then
		log "generating $RANDOM_MB MB of incompressible data in $rnd"
		rm -rf "$rnd" && mkdir -p "$rnd"
		local per=$((RANDOM_MB / 8))
		for i in 1 2 3 4 5 6 7 8; do
			head -c "$((per * 1024 * 1024))" /dev/urandom >"$rnd/part-$i.bin"
		done
		touch "$rnd/.complete"
	fi
}

# timed LABEL CMD...: runs CMD under /usr/bin/time, prints "seconds maxrss_kb".
# Dirty data is flushed first: tar -x leaves a restore's writes (and rm -rf its
# deletions) for the kernel to write back later, which would otherwise slow
# down whichever measurement runs next.
timed() {
	local label=$1
	shift
	sync
	if ! /usr/bin/time -f '%e %M' -o "$work/time.txt" "$@" >"$work/out.txt" 2>"$work/err.txt"; then
		log "FAILED: $label: $*"
		cat "$work/err.txt" >&2
		exit 1
	fi
	cat "$work/time.txt"
}

# One backup and one restore of data set $1 with tool $2; appends
# "dataset tool backup_s backup_rss_kb size_bytes restore_s restore_rss_kb".
run_tool() {
	local ds=$1 tool=$2 src=$3 out dst=$work/restore b r sum
	rm -rf "$dst" && mkdir -p "$dst"
	case $tool in
	tar-gzip)
		out=$work/a.tar.gz
		b=$(timed "$tool backup" tar -C "$src" -czf "$out" .)
		r=$(timed "$tool restore" tar -C "$dst" -xzf "$out")
		;;
	tar-pigz)
		out=$work/a.tar.gz
		b=$(timed "$tool backup" tar -C "$src" -I pigz -cf "$out" .)
		r=$(timed "$tool restore" tar -C "$dst" -I pigz -xf "$out")
		;;
	tar-zstd)
		out=$work/a.tar.zst
		b=$(timed "$tool backup" tar -C "$src" -I 'zstd -T0' -cf "$out" .)
		r=$(timed "$tool restore" tar -C "$dst" -I zstd -xf "$out")
		;;
	agent-zstd-age)
		out=$work/a.tar.zst.age
		b=$(timed "$tool backup" "${agent[@]}" backup --source "$src" --output "$out" --recipient "$recipient" --termination-log "$work/termination-log")
		sum=$(cut -d' ' -f1 "$out.sha256")
		r=$(timed "$tool restore" "${agent[@]}" restore --archive "$out" --target "$dst" --sha256 "$sum" --identity-file "$work/age-key.txt" --termination-log "$work/termination-log")
		;;
	agent-zstd | agent-gzip)
		out=$work/a.tar.${tool#agent-}
		out=${out/%.zstd/.zst}
		out=${out/%.gzip/.gz}
		b=$(timed "$tool backup" "${agent[@]}" backup --source "$src" --output "$out" --termination-log "$work/termination-log")
		sum=$(cut -d' ' -f1 "$out.sha256")
		r=$(timed "$tool restore" "${agent[@]}" restore --archive "$out" --target "$dst" --sha256 "$sum" --termination-log "$work/termination-log")
		;;
	esac
	echo "$ds $tool $b $(stat -c %s "$out") $r" >>"$work/samples.txt"
	rm -f "$out" "$out.sha256" "$out.manifest.json"
	rm -rf "$dst"
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# stat DATASET TOOL COLUMN: median of a column of the samples.
stat_of() { awk -v d="$1" -v t="$2" -v c="$3" '$1==d && $2==t {print $c}' "$work/samples.txt" | median; }

main() {
	[ "$(id -u)" = 0 ] || { log "run as root: the data sets and restores need it"; exit 1; }
	install_missing
	build_agent
	prepare_data
	rm -rf "$work" && mkdir -p "$work"
	trap 'rm -rf "$work"' EXIT

	local tools=${TOOLS:-"tar-gzip tar-pigz tar-zstd agent-gzip agent-zstd agent-zstd-age"}
	# The key pair of the encrypted runs, made with Go's age (the agent's own library), so
	# that the benchmark needs no age-keygen.
	(cd "$repo" && go run filippo.io/age/cmd/age-keygen -o "$work/age-key.txt") 2>"$work/keygen.txt"
	recipient=$(sed -n 's/^Public key: //p' "$work/keygen.txt")
	declare -A src=([pgdata]=$pg [random]=$rnd) bytes
	for ds in pgdata random; do
		bytes[$ds]=$(du -sb --apparent-size "${src[$ds]}" | cut -f1)
		tar -C "${src[$ds]}" -cf - . | cat >/dev/null # warm the page cache for every tool alike
	done
	for run in $(seq "$RUNS"); do
		for ds in pgdata random; do
			for tool in $tools; do
				log "run $run/$RUNS: $ds $tool"
				run_tool "$ds" "$tool" "${src[$ds]}"
			done
		done
	done

	{
		echo "Archive benchmark: median of $RUNS runs, $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ), page cache warm"
		echo "pgdata: PostgreSQL 15 data directory, pgbench scale $SCALE, $((bytes[pgdata] / 1000000)) MB; random: $((bytes[random] / 1000000)) MB from /dev/urandom"
		echo
		printf '%-7s %-10s %9s %9s %9s %7s %8s %9s %9s %8s\n' dataset tool backup_s backup_MB/s size_MB size_% rss_MiB restore_s restore_MB/s rss_MiB
		for ds in pgdata random; do
			for tool in $tools; do
				local bs br sz rs rr
				bs=$(stat_of "$ds" "$tool" 3)
				br=$(stat_of "$ds" "$tool" 4)
				sz=$(stat_of "$ds" "$tool" 5)
				rs=$(stat_of "$ds" "$tool" 6)
				rr=$(stat_of "$ds" "$tool" 7)
				awk -v ds="$ds" -v t="$tool" -v bs="$bs" -v br="$br" -v sz="$sz" -v rs="$rs" -v rr="$rr" -v n="${bytes[$ds]}" 'BEGIN {
					printf "%-7s %-10s %9.2f %9.0f %9.1f %6.1f%% %8.1f %9.2f %9.0f %8.1f\n",
						ds, t, bs, n/1e6/bs, sz/1e6, 100*sz/n, br/1024, rs, n/1e6/rs, rr/1024 }'
			done
		done
		echo
		echo "Ratios (time ratios: <1 means the agent is faster)"
		for ds in pgdata random; do
			# ratio A B COLUMN TEXT: the medians' ratio, when both tools were measured.
			ratio() {
				local a b
				a=$(stat_of "$ds" "$1" "$3")
				b=$(stat_of "$ds" "$2" "$3")
				awk -v a="$a" -v b="$b" -v ds="$ds" -v text="$4" 'BEGIN { if (a > 0 && b > 0) printf "%s: " text "\n", ds, a/b }'
			}
			ratio tar-gzip agent-zstd 3 "agent zstd backup is %.1fx faster than tar czf (goal >= 10x)"
			ratio agent-zstd tar-zstd 3 "agent zstd backup time / tar -I zstd -T0: %.2f (goal <= 1.10)"
			ratio agent-zstd tar-zstd 5 "agent zstd archive size / zstd -T0 size: %.3f (goal <= 1.00)"
			ratio agent-gzip tar-pigz 3 "agent gzip backup time / tar -I pigz: %.2f (goal <= 1.00)"
			ratio agent-zstd tar-zstd 6 "agent zstd restore time / tar -x zstd: %.2f (goal <= 1.00)"
			ratio agent-gzip tar-pigz 6 "agent gzip restore time / tar -x pigz: %.2f (goal <= 1.00)"
			ratio agent-zstd-age agent-zstd 3 "agent zstd+age backup time / agent zstd: %.2f (goal <= 1.10)"
			ratio agent-zstd-age agent-zstd 6 "agent zstd+age restore time / agent zstd: %.2f (goal <= 1.10)"
			local m=0 v t c
			for t in agent-zstd agent-gzip agent-zstd-age; do
				for c in 4 7; do
					v=$(stat_of "$ds" "$t" "$c")
					m=$(awk -v a="$m" -v b="$v" 'BEGIN { print (b > a ? b : a) }')
				done
			done
			awk -v m="$m" -v ds="$ds" 'BEGIN { printf "%s: agent peak RSS: %.1f MiB (goal < 64)\n", ds, m/1024 }'
		done
	} | tee "$BENCH_DIR/archive-results.txt"
}

main "$@"
