#!/bin/sh
# stale_reads.sh: proof that the fault harness can see a consistency bug.
#
# A register run in which every get is served serializably (by whichever
# member it reaches, without a read barrier) but recorded in the history
# as a linearizable get (--plant stale-reads), while the leader is cut off
# from its peers (partition-leader): the isolated member keeps answering
# clients from its old state while the majority elects a new leader and
# moves on.  Those answers are stale reads, which linearizability forbids,
# and the checker must report them: this test passes only if the run's
# verdict is "violation" (tests/fault/run --plant implies --expect violation).
# Exit: 0 found, 1 not found, 77 skipped.
set -u
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: fault runs need root"
	exit 77
fi
seed=${FAULT_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
seed=$((seed % 2147483647 + 1))
exec /usr/bin/python3 "$here/run" --workload register --fault partition-leader \
	--plant stale-reads --seed "$seed" --time "${FAULT_TIME:-20}" --no-keep-failed
