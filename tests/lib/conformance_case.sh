#!/bin/sh
# conformance_case: one case of the shared differential conformance harness
# as one automake test.
#
# tests/integration/conformance/NAME.sh are symlinks to this script; NAME
# selects cases/NAME.case of the harness, which runs the same etcdctl /
# python3-etcd3 / HTTP steps against $RAFTKV and against the real etcd and
# diffs the transcripts.  The harness is not part of this repository: it lives
# in shared/conformance beside the project (../shared/conformance from the
# top source dir), or wherever CONFORMANCE_DIR points.  Without it the test is
# skipped (77), so a bare clone still passes `make check`.
name=$(basename "$0" .sh)
top=${TOP_SRCDIR:-$(cd "$(dirname "$0")/../../.." && pwd)}
harness=${CONFORMANCE_DIR:-$top/../shared/conformance}
server=${RAFTKV:-$top/raftkv/raftkv}
reference=${CONFORMANCE_REFERENCE:-/usr/bin/etcd}

if [ ! -f "$harness/run" ]; then
	echo "SKIP: no conformance harness at $harness/run (set CONFORMANCE_DIR)"
	exit 77
fi
case_file=$harness/cases/$name.case
if [ ! -f "$case_file" ]; then
	echo "SKIP: the harness has no case $name ($case_file)"
	exit 77
fi
for tool in /usr/bin/python3 /usr/bin/etcdctl "$reference"; do
	if [ ! -x "$tool" ]; then
		echo "SKIP: $tool not found (./scripts/setup.sh --test installs it)"
		exit 77
	fi
done

# Cases marked "@cluster N" need N-member clusters of both servers.
size=$(sed -n 's/^@cluster[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$case_file" | head -n 1)
# A random 100-port window below the ephemeral range, so that cases running
# in parallel (make -j) rarely meet; the harness also checks each port.
base=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 119 * 100 ))

out=$(/usr/bin/python3 "$harness/run" --server "$server" --reference "$reference" \
	--cluster "${size:-1}" --port-range "$base-$((base + 99))" --keep-going \
	--cases "$case_file" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ]; then
	exit 1
fi
if printf '%s\n' "$out" | grep -q "^conformance: 1 passed, 0 failed$"; then
	exit 0
fi
echo "SKIP: the harness ran no case"
exit 77
