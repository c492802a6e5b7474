#!/bin/bash
# put-compare: put throughput of raftkv and the real etcd, single member,
# side by side in one sitting, driven by h2load (nghttp2-client): a lean C
# HTTP/2 load generator that sends the same gRPC-framed PutRequest on every
# call, so the client costs little CPU.  Usage:
#   tools/bench/put-compare.sh [RAFTKV_BINARY] [ETCD_BINARY]
# Prints requests/s and mean latency for 1 and 100 concurrent clients, and
# checks through the store's revision that every put was applied (h2load
# itself only sees HTTP 200, not grpc-status).
set -eu
RAFTKV=${1:-$(dirname "$0")/../../raftkv/raftkv}
ETCD=${2:-/usr/bin/etcd}
command -v h2load >/dev/null || { echo "needs h2load: apt-get install nghttp2-client" >&2; exit 2; }
command -v etcdctl >/dev/null || { echo "needs etcdctl: apt-get install etcd-client" >&2; exit 2; }
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# One PutRequest{key "benchkey", value 256 × "v"} with its 5-byte gRPC prefix.
/usr/bin/python3 - "$tmp/put.bin" <<'PY'
import struct, sys
key, val = b"benchkey", b"v" * 256
pb = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([0x80 | (len(val) & 0x7f), len(val) >> 7]) + val
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(pb)) + pb)
PY

port=$((30000 + RANDOM % 5000))
run() { # name binary
	local name=$1 bin=$2 c n out total=0
	rm -rf "$tmp/data"
	"$bin" --name bench --data-dir "$tmp/data" \
		--listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
		--listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
		--initial-cluster "bench=http://127.0.0.1:$((port + 1))" >"$tmp/$name.log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" get x >/dev/null 2>&1 && break; sleep 0.1; done
	for c in 1 100; do
		n=$((c == 1 ? 5000 : 50000))
		total=$((total + n))
		out=$(h2load -n "$n" -c "$c" -m 1 -d "$tmp/put.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
			"http://127.0.0.1:$port/etcdserverpb.KV/Put" 2>&1)
		printf '%-8s clients=%-4s %s   mean latency %s\n' "$name" "$c" \
			"$(echo "$out" | sed -n 's/.*finished in [^,]*, \([0-9.]* req\/s\).*/\1/p')" \
			"$(echo "$out" | awk '/time for request:/ {print $6}')"
	done
	rev=$(ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" get benchkey -w json | sed -n 's/.*"revision":\([0-9]*\).*/\1/p')
	[ "$rev" = "$((total + 1))" ] || echo "$name: WARNING: revision $rev, expected $((total + 1)): some puts failed"
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}
run raftkv "$RAFTKV"
run etcd "$ETCD"
