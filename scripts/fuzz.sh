#!/bin/sh
# fuzz.sh: builds and runs raftkv's libFuzzer targets (tests/fuzz/, see
# README.md "Fuzzing").  clang (Debian clang-14 + libclang-rt-14-dev) builds
# them with ASan and UBSan in a directory of their own; the normal build
# does not need clang.
#
#   scripts/fuzz.sh build               build every target
#   scripts/fuzz.sh replay              run every seed corpus once through its target
#   scripts/fuzz.sh run --minutes N     fuzz each target N minutes in turn, print
#                                       executions and exec/s per target
#   scripts/fuzz.sh check               what `make check` runs: build, replay, then
#                                       fuzz each target FUZZ_SECONDS (default 15) s;
#                                       exit 77 (skip) without clang
#
# Options: --seconds N / --minutes N (per target), --targets "fuzz_grpc ...",
# --build-dir DIR (default: $FUZZ_BUILD_DIR, else build-fuzz/ at the top of
# the tree).  `run` keeps what it finds in BUILD_DIR/corpus/TARGET
# (seeds are read from tests/fuzz/corpus/TARGET) and writes crashes, leaks
# and timeouts to BUILD_DIR/artifacts/TARGET/; any of them makes it exit 1.
# Replay a finding with: BUILD_DIR/TARGET FILE
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
# One build dir for the tree, shared by the in-tree and the VPATH (sanitizer)
# test suites; in the current dir when the tree is read-only (distcheck).
build=$top/build-fuzz
[ -w "$top" ] || build=$PWD/build-fuzz
build=${FUZZ_BUILD_DIR:-$build}
seconds=
cmd=
targets="fuzz_grpc fuzz_grpc_msg fuzz_http1 fuzz_entry fuzz_snapshot fuzz_pbjson fuzz_config"

usage() {
	sed -n '2,22s/^# \{0,1\}//p' "$0"
}

while [ $# -gt 0 ]; do
	case $1 in
	build|replay|run|check) cmd=$1 ;;
	--seconds) seconds=$2; shift ;;
	--minutes) seconds=$(($2 * 60)); shift ;;
	--targets) targets=$2; shift ;;
	--build-dir) build=$2; shift ;;
	-h|--help) usage; exit 0 ;;
	*) echo "fuzz.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done
[ -n "$cmd" ] || { usage >&2; exit 2; }

# Per-target libFuzzer options: the longest input worth trying, and whether
# every input's leaks are checked.  The targets that run the in-process
# member keep libraft's log in memory between inputs, which makes
# libFuzzer's per-input leak check (a full LeakSanitizer scan after every
# input that allocated more than it freed) cost ~5 ms each; they are
# checked by LeakSanitizer when the run ends instead, and every replay
# checks each input.
target_opts() {
	case $1 in
	fuzz_grpc|fuzz_http1) echo "-max_len=16384 -detect_leaks=0" ;;
	fuzz_grpc_msg) echo "-max_len=4096 -detect_leaks=0" ;;
	fuzz_entry) echo "-max_len=8192 -detect_leaks=0" ;;
	fuzz_snapshot) echo "-max_len=16384 -detect_leaks=0" ;;
	*) echo "-max_len=4096" ;;
	esac
}

have_clang() {
	command -v clang >/dev/null 2>&1 || return 1
	# libFuzzer's runtime is libclang-rt-14-dev: try a link.
	d=$(mktemp -d) || return 1
	printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n){(void)d;(void)n;return 0;}\n' \
		>"$d/t.c"
	clang -fsanitize=fuzzer,address,undefined "$d/t.c" -o "$d/t" >/dev/null 2>&1
	rv=$?
	rm -rf "$d"
	return $rv
}

do_build() {
	if ! have_clang; then
		echo "fuzz.sh: clang with libFuzzer is missing (apt-get install clang-14 libclang-rt-14-dev)"
		return 77
	fi
	mkdir -p "$build" || return 1
	echo "fuzz.sh: building in $build"
	make -s -f "$top/tests/fuzz/fuzz.mk" -C "$build" TOP="$top" -j"${FUZZ_JOBS:-2}" $targets
}

do_replay() {
	rv=0
	for t in $targets; do
		seeds=$top/tests/fuzz/corpus/${t#fuzz_}
		n=$(ls "$seeds" 2>/dev/null | wc -l)
		log=$build/replay-$t.log
		if "$build/$t" -runs=0 -close_fd_mask=3 $(target_opts "$t" | sed 's/-detect_leaks=0//') \
			"$seeds" >"$log" 2>&1; then
			echo "replay $t: $n inputs ok"
		else
			echo "replay $t: FAILED (log $log)"
			tail -n 60 "$log"
			rv=1
		fi
	done
	return $rv
}

# stat NAME LOG: a -print_final_stats value.
stat() {
	sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

do_run() {
	secs=$1 work=$2
	rv=0
	printf '%-16s %8s %12s %10s %8s %s\n' target seconds executions exec/s corpus result
	for t in $targets; do
		seeds=$top/tests/fuzz/corpus/${t#fuzz_}
		mkdir -p "$work/corpus/$t" "$build/artifacts/$t"
		log=$work/run-$t.log
		# Dictionaries: tests/fuzz/NAME.dict; config's is every flag of
		# config.c's table, as "--flag=" and "ETCD_FLAG=".
		dict=
		[ -f "$top/tests/fuzz/${t#fuzz_}.dict" ] && dict="-dict=$top/tests/fuzz/${t#fuzz_}.dict"
		if [ "$t" = fuzz_config ]; then
			sed -n 's/^\t{"\([a-z0-9-]*\)", FT_.*/\1/p' "$top/raftkv/server/config.c" |
				awk '{ print "\"--" $0 "=\""; u = toupper($0); gsub("-", "_", u); print "\"ETCD_" u "=\"" }' \
				>"$work/config.dict"
			dict="-dict=$work/config.dict"
		fi
		timeout -k 10 $((secs + 120)) "$build/$t" -max_total_time="$secs" -timeout=10 \
			-rss_limit_mb=2048 -print_final_stats=1 -close_fd_mask=3 \
			-artifact_prefix="$build/artifacts/$t/" $dict $(target_opts "$t") \
			"$work/corpus/$t" "$seeds" >"$log" 2>&1
		st=$?
		execs=$(stat number_of_executed_units "$log")
		rate=$(stat average_exec_per_sec "$log")
		size=$(ls "$work/corpus/$t" | wc -l)
		if [ $st -eq 0 ]; then
			result=ok
		else
			result="FAILED (exit $st, log $log)"
			rv=1
		fi
		printf '%-16s %8s %12s %10s %8s %s\n' "$t" "$secs" "${execs:-?}" "${rate:-?}" "$size" "$result"
		if [ $st -ne 0 ]; then
			# The report: from the first sign of trouble on.
			awk '/ERROR: |runtime error|deadly signal|^fz: |Test unit written/ { on = 1 } on' \
				"$log" | head -n 80
		fi
	done
	return $rv
}

case $cmd in
build)
	do_build
	;;
replay)
	do_build || exit $?
	do_replay
	;;
run)
	do_build || exit $?
	do_run "${seconds:-600}" "$build"
	;;
check)
	do_build
	st=$?
	if [ $st -eq 77 ]; then
		echo "SKIP: clang with libFuzzer not installed"
		exit 77
	fi
	[ $st -eq 0 ] || exit 1
	do_replay || exit 1
	work=$(mktemp -d "${TMPDIR:-/tmp}/raftkv-fuzz-XXXXXX") || exit 1
	do_run "${seconds:-${FUZZ_SECONDS:-15}}" "$work"
	st=$?
	rm -rf "$work"
	exit $st
	;;
esac
