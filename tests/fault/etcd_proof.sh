#!/bin/sh
# etcd_proof.sh: the fault harness against the real etcd 3.4 (/usr/bin/etcd),
# whatever RAFTKV says: three runs (register under a leader partition, set
# under leader kills, watch under leader pauses) must report no violation,
# no lost write and equal hashes.  A harness that flags etcd is wrong, so
# this is the check that the driver and checker have no false positives
# under the faults that matter most.  Skipped against a sanitizer build of
# raftkv (it does not test raftkv; the main suite runs it).
# Exit: 0 passed, 1 failed, 77 skipped.
set -u
here=$(cd "$(dirname "$0")" && pwd)
etcd=${ETCD:-/usr/bin/etcd}
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: fault runs need root"
	exit 77
fi
if [ ! -x "$etcd" ]; then
	echo "SKIP: $etcd not found (apt-get install etcd-server)"
	exit 77
fi
server=${RAFTKV:-$here/../../raftkv/raftkv}
if [ -x "$server" ] && grep -q __asan_init "$server" 2>/dev/null; then
	echo "SKIP: sanitizer build (this test runs etcd, not raftkv)"
	exit 77
fi
failed=0
for r in register:partition-leader set:kill-leader watch:pause-leader; do
	seed=${FAULT_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
	seed=$((seed % 2147483647 + 1))
	echo "==== etcd: ${r%%:*} / ${r#*:} / seed $seed"
	/usr/bin/python3 "$here/run" --server "$etcd" --workload "${r%%:*}" --fault "${r#*:}" \
		--seed "$seed" --time "${FAULT_TIME:-20}" || failed=$((failed + 1))
done
echo "etcd proof: $failed failed"
[ $failed -eq 0 ]
