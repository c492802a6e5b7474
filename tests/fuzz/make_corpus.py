#!/usr/bin/python3
"""
make_corpus: (re)builds the seed corpora in tests/fuzz/corpus/ from real
client traffic and from what the server itself produces.  Not part of
`make check`; run it after changing a target's input format:

    scripts/fuzz.sh build && /usr/bin/python3 tests/fuzz/make_corpus.py

It starts a raftkv member (tests/lib/cluster.py) behind a recording TCP
proxy and drives it with etcdctl, python3-etcd3, etcd3gw and plain HTTP/1.1
requests, then writes
  grpc/      every gRPC connection's client bytes after the preface
             (byte 0 = 0: one read), as fuzz_grpc takes them;
  grpc_msg/  each request stream of those connections, parsed with
             python3-h2: method index, flags, length-prefixed messages;
  http1/     every HTTP/1.1 connection's client bytes (byte 0 = 0);
  pbjson/    each gateway request body, behind its message type index;
  config/    command lines and ETCD_* variables of the tests and README;
and then, with the fuzz binaries of scripts/fuzz.sh (--fuzz-dir), replays
grpc_msg/ through fuzz_grpc_msg to collect
  entry/     the raft entries the server proposed for those requests;
  snapshot/  store images after them (byte 0 = 0: as raft holds them;
             byte 0 = 7: the uncompressed image, format 4).
Existing files are kept (regression inputs live there too); new seeds are
named after their content.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
import cluster  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Recorder:
    """A TCP proxy that keeps what each client connection sent."""

    def __init__(self, target_port):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []  # [label, bytearray]
        self.label = "start"
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.target))
            rec = [self.label, bytearray()]
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self._pump, args=(c, s, rec[1]), daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, None), daemon=True).start()

    @staticmethod
    def _pump(src, dst, keep):
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                if keep is not None:
                    keep += b
                dst.sendall(b)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def write_seed(dirname, name, data):
    os.makedirs(dirname, exist_ok=True)
    h = hashlib.sha1(data).hexdigest()[:12]
    path = os.path.join(dirname, "%s-%s" % (re.sub(r"[^a-z0-9_.-]+", "-", name.lower()), h))
    if not any(f.endswith(h) for f in os.listdir(dirname)):
        with open(path, "wb") as f:
            f.write(data)


def drive(t, rec, member):
    """Real clients through the recorder."""
    ep = "127.0.0.1:%d" % rec.port
    env = cluster.clean_env()

    def ctl(label, *args, input=None, timeout=20):
        rec.label = "etcdctl-" + label
        argv = [cluster.ETCDCTL, "--endpoints", ep] + [str(a) for a in args]
        subprocess.run(argv, input=input, capture_output=True, text=True, env=env,
                       timeout=timeout)
        time.sleep(0.05)

    ctl("put", "put", "foo", "bar")
    ctl("put-prev-kv", "put", "foo", "baz", "--prev-kv")
    ctl("get", "get", "foo")
    ctl("get-prefix", "get", "--prefix", "f", "--limit", "2", "--sort-by", "MODIFY", "--order", "DESCEND")
    ctl("get-from-key", "get", "", "--from-key", "--keys-only")
    ctl("get-rev", "get", "foo", "--rev", "2", "--consistency", "s")
    ctl("get-count", "get", "a", "z", "--count-only")
    ctl("del", "del", "foo", "--prev-kv")
    ctl("del-prefix", "del", "--prefix", "f")
    ctl("txn", "txn", input='value("foo") = "bar"\n\nput foo ok\n\nput foo no\nget foo\n')
    ctl("txn-mod", "txn", input='mod("k") > "0"\nversion("k") = "1"\n\nput k v\n\ndel k\n')
    ctl("compaction", "compaction", "2")
    out = subprocess.run([cluster.ETCDCTL, "--endpoints", member.endpoint, "lease", "grant", "600"],
                         capture_output=True, text=True, env=env).stdout
    m = re.search(r"lease ([0-9a-f]+) granted", out)
    lease = m.group(1) if m else "1234"
    ctl("lease-grant", "lease", "grant", "60")
    ctl("put-lease", "put", "lk", "lv", "--lease", lease)
    ctl("lease-ttl", "lease", "timetolive", lease, "--keys")
    ctl("lease-keepalive", "lease", "keep-alive", "--once", lease)
    ctl("lease-list", "lease", "list")
    ctl("lease-revoke", "lease", "revoke", lease)
    ctl("member-list", "member", "list")
    ctl("member-add", "member", "add", "fz2", "--peer-urls", "http://127.0.0.1:1", "--learner")
    ctl("member-update", "member", "update", "ffffffff", "--peer-urls", "http://127.0.0.1:2")
    ctl("member-remove", "member", "remove", "ffffffff")
    ctl("member-promote", "member", "promote", "ffffffff")
    ctl("endpoint-status", "endpoint", "status")
    ctl("endpoint-hashkv", "endpoint", "hashkv")
    ctl("endpoint-health", "endpoint", "health")
    ctl("alarm-list", "alarm", "list")
    ctl("alarm-disarm", "alarm", "disarm")
    ctl("defrag", "defrag")
    ctl("move-leader", "move-leader", "ffffffff")
    snap = os.path.join(t.tmp, "fz.snap")
    ctl("snapshot-save", "snapshot", "save", snap)
    rec.label = "etcdctl-watch"
    w = subprocess.Popen([cluster.ETCDCTL, "--endpoints", ep, "watch", "--prefix", "w",
                          "--prev-kv", "--rev", "1"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env)
    time.sleep(0.5)
    subprocess.run([cluster.ETCDCTL, "--endpoints", member.endpoint, "put", "w1", "x"],
                   capture_output=True, env=env)
    time.sleep(0.5)
    w.terminate()
    w.wait(10)

    # python3-etcd3: one client (one connection) per group.
    def py(label, fn):
        rec.label = "etcd3-" + label
        c = cluster.py_client(rec.port)
        try:
            fn(c)
        except Exception as e:  # the seed is the request, not the answer
            cluster.log("etcd3 %s: %s" % (label, e))
        c.close()
        time.sleep(0.05)

    py("kv", lambda c: (c.put("a", "1"), c.get("a"), c.get_prefix("a"), c.delete("a"),
                         c.get_all(), c.replace("a", "1", "2")))

    def txn(c):
        c.transaction(compare=[c.transactions.value("a") == "1",
                               c.transactions.version("b") > 0,
                               c.transactions.create("c") < 5,
                               c.transactions.mod("d") != 3],
                      success=[c.transactions.put("a", "2"), c.transactions.get("b")],
                      failure=[c.transactions.delete("a")])
    py("txn", txn)

    def lease(c):
        ls = c.lease(30)
        c.put("lk2", "v", lease=ls)
        ls.refresh()
        ls.remaining_ttl
        ls.revoke()
    py("lease", lease)

    def watch(c):
        events, cancel = c.watch_prefix("pw", prev_kv=True)
        c.put("pw1", "x")
        next(iter(events))
        cancel()
    py("watch", watch)
    py("status", lambda c: (c.status(), list(c.members)))

    # HTTP/1.1: the gateway and the plain routes, with curl.
    def curl(label, path, body=None, extra=()):
        rec.label = "curl-" + label
        argv = ["curl", "-s", "-m", "2", "http://127.0.0.1:%d%s" % (rec.port, path)] + list(extra)
        if body is not None:
            argv += ["-X", "POST", "-d", body]
        subprocess.run(argv, capture_output=True, timeout=10)
        time.sleep(0.05)

    def b64(s):
        import base64
        return base64.b64encode(s.encode()).decode()

    curl("health", "/health")
    curl("version", "/version")
    curl("put", "/v3/kv/put", json.dumps({"key": b64("foo"), "value": b64("bar")}))
    curl("range", "/v3/kv/range", json.dumps({"key": b64("a"), "range_end": b64("z"),
                                               "limit": 10, "sort_order": "DESCEND"}))
    curl("deleterange", "/v3/kv/deleterange", json.dumps({"key": b64("foo"), "prev_kv": True}))
    curl("txn", "/v3/kv/txn", json.dumps({
        "compare": [{"key": b64("foo"), "result": "EQUAL", "target": "VALUE", "value": b64("bar")}],
        "success": [{"request_put": {"key": b64("foo"), "value": b64("x")}}],
        "failure": [{"request_range": {"key": b64("foo")}}]}))
    curl("compaction", "/v3/kv/compaction", json.dumps({"revision": "1", "physical": True}))
    curl("lease-grant", "/v3/lease/grant", json.dumps({"TTL": "60", "ID": 77}))
    curl("lease-ttl", "/v3/kv/lease/timetolive", json.dumps({"ID": 77, "keys": True}))
    curl("lease-leases", "/v3/lease/leases", "{}")
    curl("lease-revoke", "/v3/lease/revoke", json.dumps({"ID": "77"}))
    curl("lease-keepalive", "/v3/lease/keepalive", json.dumps({"ID": 77}))
    curl("status", "/v3/maintenance/status", "{}")
    curl("alarm", "/v3/maintenance/alarm", json.dumps({"action": "GET"}))
    curl("members", "/v3/cluster/member/list", "{}")
    curl("watch", "/v3/watch", json.dumps({"create_request": {"key": b64("w"), "range_end": b64("x")}}))
    curl("chunked", "/v3/kv/range", json.dumps({"key": b64("foo")}),
         ["-H", "Transfer-Encoding: chunked"])
    curl("beta", "/v3beta/kv/range", json.dumps({"key": b64("foo")}))
    curl("notfound", "/v3/nope", "{}")
    curl("get-on-post", "/v3/kv/range")
    rec.label = "etcd3gw"
    try:
        import etcd3gw
        g = etcd3gw.client(host="127.0.0.1", port=rec.port)
        g.put("g", "1")
        g.get("g")
        g.delete("g")
        ls = g.lease(30)
        ls.refresh()
        ls.revoke()
    except Exception as e:
        cluster.log("etcd3gw: %s" % e)
    time.sleep(0.3)


def grpc_streams(data):
    """(path, [messages], stream ended) for each request stream of a client's
    HTTP/2 bytes (parsed by python3-h2 as a server)."""
    import h2.config
    import h2.connection
    import h2.events
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
        client_side=False, validate_inbound_headers=False, normalize_inbound_headers=False))
    conn.initiate_connection()
    conn.max_inbound_frame_size = 1 << 24
    streams = {}
    try:
        events = conn.receive_data(bytes(data))
    except Exception as e:
        cluster.log("h2: %s" % e)
        events = []
    for ev in events:
        if isinstance(ev, h2.events.RequestReceived):
            hdr = dict((k.decode() if isinstance(k, bytes) else k,
                        v.decode() if isinstance(v, bytes) else v) for k, v in ev.headers)
            streams[ev.stream_id] = [hdr.get(":path", ""), bytearray(), False]
        elif isinstance(ev, h2.events.DataReceived) and ev.stream_id in streams:
            streams[ev.stream_id][1] += ev.data
        elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in streams:
            streams[ev.stream_id][2] = True
    out = []
    for path, body, ended in streams.values():
        msgs, off = [], 0
        while off + 5 <= len(body):
            n = struct.unpack(">I", body[off + 1:off + 5])[0]
            msgs.append(bytes(body[off + 5:off + 5 + n]))
            off += 5 + n
        out.append((path, msgs, ended))
    return out


def grpc_msg_methods():
    """fuzz_grpc_msg.c's method table, in its order."""
    src = open(os.path.join(HERE, "fuzz_grpc_msg.c")).read()
    table = src[src.index("fuzz_methods[] = {"):]
    table = table[:table.index("};")]
    return re.findall(r'"(/[^"]+)"', table)


def pbjson_types(fuzz_dir):
    out = subprocess.run([os.path.join(fuzz_dir, "fuzz_pbjson"), "-runs=0"],
                         env=dict(os.environ, FZ_LIST_TYPES="1"), capture_output=True,
                         text=True).stdout
    return {name: int(i) for i, name in (line.split() for line in out.splitlines()
                                            if re.match(r"^\d+ \S+$", line))}


def gateway_inputs():
    """gw.c route -> etcdserverpb input message name (from gw.c and rpc.proto)."""
    gw = open(os.path.join(TOP, "raftkv", "server", "gw.c")).read()
    proto = open(os.path.join(TOP, "raftkv", "proto", "rpc.proto")).read()
    rpc_in = dict(re.findall(r"rpc\s+(\w+)\s*\(\s*(?:stream\s+)?(\w+)\s*\)", proto))
    out = {}
    for route, method in re.findall(r'\{"([a-z/-]+)",\s*&etcdserverpb__\w+__descriptor,\s*"(\w+)"\}', gw):
        if method in rpc_in:
            out[route] = "etcdserverpb." + rpc_in[method]
    return out


def http_requests(data):
    """(path, body) of each request in an HTTP/1.1 client stream."""
    out, off = [], 0
    while True:
        end = data.find(b"\r\n\r\n", off)
        if end < 0:
            return out
        head = data[off:end].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        path = parts[1] if len(parts) > 1 else ""
        hdr = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
               for l in lines[1:] if ":" in l}
        off = end + 4
        body = b""
        if "content-length" in hdr:
            n = int(hdr["content-length"])
            body, off = data[off:off + n], off + n
        elif hdr.get("transfer-encoding", "").lower() == "chunked":
            while True:
                e = data.find(b"\r\n", off)
                if e < 0:
                    return out
                n = int(data[off:e].split(b";")[0] or b"0", 16)
                body += data[e + 2:e + 2 + n]
                off = e + 2 + n + 2
                if n == 0:
                    break
        out.append((path, body))


CONFIG_SEEDS = [
    ["--name", "m1", "--data-dir", "/tmp/m1", "--listen-client-urls", "http://127.0.0.1:2379",
     "--advertise-client-urls", "http://127.0.0.1:2379", "--listen-peer-urls",
     "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
     "--initial-cluster", "m1=http://127.0.0.1:2380", "--initial-cluster-state", "new",
     "--initial-cluster-token", "tok"],
    ["--initial-cluster", "a=http://127.0.0.1:1,b=http://[::1]:2,c=http://localhost:3",
     "--name", "b", "--initial-advertise-peer-urls", "http://[::1]:2",
     "--initial-cluster-state=existing"],
    ["-heartbeat-interval=10", "-election-timeout", "50", "--snapshot-count", "100",
     "--quota-backend-bytes", "1048576", "--max-txn-ops", "16", "--max-request-bytes=4096"],
    ["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000",
     "--grpc-keepalive-min-time", "5s", "--grpc-keepalive-interval", "2h",
     "--experimental-watch-progress-notify-interval", "10m", "--log-level", "debug"],
    ["--auto-compaction-retention", "1h30m", "--pre-vote", "--strict-reconfig-check=false",
     "--enable-grpc-gateway=false", "--max-concurrent-streams", "100", "--debug"],
    ["ETCD_NAME=envm", "ETCD_DATA_DIR=/tmp/e", "ETCD_INITIAL_CLUSTER=envm=http://127.0.0.1:2380",
     "ETCD_HEARTBEAT_INTERVAL=100", "ETCD_UNKNOWN=1"],
    ["--listen-client-urls", "https://127.0.0.1:2379", "--version"],
    ["--help"],
    ["--config-file", "/etc/etcd.yaml"],
    ["--name", "x", "--", "trailing"],
]


def main(t):
    ap = argparse.ArgumentParser()
    ap.add_argument("--fuzz-dir", default=os.path.join(TOP, "build-fuzz"))
    ap.add_argument("--out", default=os.path.join(HERE, "corpus"))
    args = ap.parse_args()
    out = args.out
    have_bins = os.access(os.path.join(args.fuzz_dir, "fuzz_grpc_msg"), os.X_OK)

    c = t.cluster()
    m = c.members[0]
    rec = Recorder(m.client_port)
    drive(t, rec, m)

    methods = grpc_msg_methods()
    routes = gateway_inputs()
    types = pbjson_types(args.fuzz_dir) if have_bins else {}
    for label, data in rec.conns:
        data = bytes(data)
        if not data:
            continue
        if data.startswith(PREFACE):
            write_seed(os.path.join(out, "grpc"), label, b"\0" + data[len(PREFACE):])
            for path, msgs, ended in grpc_streams(data):
                if path not in methods or not msgs:
                    continue
                flags = 0 if ended else 4
                body = b"".join(struct.pack("<H", len(x)) + x for x in msgs if len(x) < 65536)
                write_seed(os.path.join(out, "grpc_msg"), label + path.replace("/", "-"),
                           bytes([methods.index(path), flags]) + body)
        else:
            write_seed(os.path.join(out, "http1"), label, b"\0" + data)
            for path, body in http_requests(data):
                route = re.sub(r"^/v3(alpha|beta)?/", "", path.split("?")[0])
                name = routes.get(route)
                if name in types and body:
                    write_seed(os.path.join(out, "pbjson"), label + "-" + route,
                               bytes([types[name]]) + body)
    for i, argv in enumerate(CONFIG_SEEDS):
        write_seed(os.path.join(out, "config"), "cmdline%d" % i,
                   b"\0".join(a.encode() for a in argv))

    if not have_bins:
        cluster.log("no fuzz binaries in %s: entry/ and snapshot/ not refreshed "
                    "(scripts/fuzz.sh build first)" % args.fuzz_dir)
        return
    dump = tempfile.mkdtemp(prefix="fz-dump-", dir=t.tmp)
    ents, snaps = os.path.join(dump, "e"), os.path.join(dump, "s")
    os.makedirs(ents)
    os.makedirs(snaps)
    subprocess.run([os.path.join(args.fuzz_dir, "fuzz_grpc_msg"), "-runs=0",
                    os.path.join(out, "grpc_msg")], capture_output=True,
                   env=dict(os.environ, FZ_DUMP_ENTRIES=ents, FZ_DUMP_SNAPSHOTS=snaps))
    for f in sorted(os.listdir(ents)):
        write_seed(os.path.join(out, "entry"), "entry", open(os.path.join(ents, f), "rb").read())
    # Images differ little from one input to the next: keep a few sizes.
    seen = set()
    for f in sorted(os.listdir(snaps), key=lambda f: os.path.getsize(os.path.join(snaps, f))):
        data = open(os.path.join(snaps, f), "rb").read()
        kind = f.split("-")[0]
        bucket = (kind, len(data) // 64)
        if bucket in seen:
            continue
        seen.add(bucket)
        prefix = b"\0" if kind == "snap" else b"\7"
        write_seed(os.path.join(out, "snapshot"), kind, prefix + data)
    shutil.rmtree(dump, ignore_errors=True)


if __name__ == "__main__":
    cluster.run(main)
