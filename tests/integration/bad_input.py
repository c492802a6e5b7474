"""
bad_input: oversized requests, garbage bytes and unknown methods get an
error, never a crash, and other clients keep being served.

  * etcdctl put of a 1.6 MB value (over --max-request-bytes, 1.5 MiB):
    "etcdserver: request is too large" (InvalidArgument);
  * a 2.5 MB put through python3-etcd3 (etcdctl refuses to send it): over the
    2 MiB gRPC receive limit, ResourceExhausted "grpc: received message larger
    than max (2560010 vs. 2097152)";
  * a 1 MB put still works, and --max-request-bytes is honoured when lowered;
  * garbage on the client port (random bytes, a broken HTTP/2 session,
    bad HPACK, an absurd frame length, an enormous HTTP/1 header, idle and
    half-closed connections, a burst of connects) while a client that
    connected before keeps working;
  * HTTP/1.1 GET /health and /version: exact status, content type and body;
  * an unknown gRPC method or service: UNIMPLEMENTED with etcd's message;
    an undecodable protobuf body: an error status.
"""
import json
import os
import random
import socket
import struct
import sys
import urllib.error
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, check, eq, log  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, stream, payload, length=None):
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def send_raw(member, data, read=True, shut_wr=True):
    """Sends data on a fresh connection and reads until the server closes or
    goes quiet; returns what it answered."""
    s = socket.create_connection(("127.0.0.1", member.client_port), timeout=5)
    got = b""
    try:
        try:
            s.sendall(data)
            if shut_wr:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass          # the server may close on us mid-send: that is fine
        if read:
            s.settimeout(2)
            try:
                while len(got) < 1 << 20:
                    b = s.recv(65536)
                    if not b:
                        break
                    got += b
            except OSError:
                pass
    finally:
        s.close()
    return got


def alive(member, client, what):
    check(member.running(), "%s: the server died (status %s)"
          % (what, member.proc.returncode if member.proc else None))
    eq(member.ctl("get", "canary", "--print-value-only").stdout, "alive\n",
       "%s: a new etcdctl client is served" % what)
    eq(client.get("canary")[0], b"alive", "%s: an existing client is still served" % what)


def http_get(member, path):
    try:
        with urllib.request.urlopen(member.client_url + path, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def main(t):
    cluster.require_python_etcd3()
    import grpc

    m = t.cluster().members[0]
    c = m.client(timeout=30)
    c.put("canary", "alive")

    # ---- request size limits
    r = m.ctl("put", "big", input="x" * 1600000, check_rc=False)
    check(r.returncode != 0, "a 1.6 MB put must fail")
    eq(r.stderr.strip().splitlines()[-1], "Error: etcdserver: request is too large",
       "1.6 MB put error")
    try:
        c.put("big", b"x" * 2560000)
        raise Failure("a 2.5 MB put was accepted")
    except grpc.RpcError as e:
        eq((e.code(), e.details()),
           (grpc.StatusCode.RESOURCE_EXHAUSTED,
            "grpc: received message larger than max (2560010 vs. 2097152)"), "2.5 MB put error")
    eq(m.ctl("get", "big").stdout, "", "no oversized value was stored")
    eq(m.ctl("put", "big", input="y" * 1000000).stdout, "OK\n", "a 1 MB put works")
    eq(len(c.get("big")[0]), 1000000, "1 MB value read back")
    alive(m, c, "after oversized puts")

    # ---- garbage on the client port
    rnd = random.Random(int(os.environ.get("SEED", "0")) or None)
    idle = [socket.create_connection(("127.0.0.1", m.client_port), timeout=5) for _ in range(8)]
    idle[0].sendall(PREFACE[:10])                       # a half-sent preface, then silence
    idle[1].sendall(b"GET /health HTTP/1.1\r\nHost: x")  # a half-sent HTTP/1 request
    idle[2].sendall(PREFACE + frame(4, 0, 0, b""))       # a session that never opens a stream
    idle[3].shutdown(socket.SHUT_WR)                     # half-closed right away
    cases = [
        ("random bytes", bytes(rnd.getrandbits(8) for _ in range(65536))),
        ("preface + random bytes", PREFACE + bytes(rnd.getrandbits(8) for _ in range(4096))),
        ("bad HPACK", PREFACE + frame(4, 0, 0, b"") + frame(1, 0x4 | 0x1, 1, b"\xff" * 64)),
        ("16 MiB frame length", PREFACE + frame(4, 0, 0, b"") + frame(0, 0, 1, b"abc", 0xffffff)),
        ("DATA on an unopened stream", PREFACE + frame(4, 0, 0, b"") +
         frame(0, 1, 7, b"\x00\x00\x00\x00\x05hello")),
        ("SETTINGS with bad length", PREFACE + frame(4, 0, 0, b"\x00" * 5)),
        ("WINDOW_UPDATE overflow", PREFACE + frame(4, 0, 0, b"") +
         frame(8, 0, 0, b"\x7f\xff\xff\xff") + frame(8, 0, 0, b"\x7f\xff\xff\xff")),
        ("HTTP/1 huge header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 +
         b"\r\n\r\n"),
        ("HTTP/1 huge path", b"GET /" + b"p" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("HTTP/1 garbage request line", b"\x00\x01\x02 / HTTP/9.9\r\n\r\n"),
        ("HTTP/1 bad content-length", b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: 99999999999999999999\r\n\r\n{}"),
        ("HTTP/1 negative content-length", b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: -5\r\n\r\n{}"),
    ]
    for name, data in cases:
        send_raw(m, data)
        alive(m, c, "after %s" % name)
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", m.client_port), timeout=5)
        s.close()
    alive(m, c, "after 200 connect/close")
    for s in idle:
        s.close()
    alive(m, c, "after closing idle connections")

    # ---- HTTP/1.1 endpoints on the client port
    st, ctype, body = http_get(m, "/health")
    eq((st, ctype, body), (200, "text/plain; charset=utf-8", b'{"health":"true"}'), "GET /health")
    st, ctype, body = http_get(m, "/version")
    eq((st, ctype), (200, "application/json"), "GET /version status and type")
    v = json.loads(body)
    eq(sorted(v), ["etcdcluster", "etcdserver"], "GET /version keys")
    server_version = c.status().version
    eq(v["etcdserver"], server_version, "/version etcdserver == Status.version")
    eq(v["etcdcluster"], ".".join(server_version.split(".")[:2]) + ".0", "/version etcdcluster")
    st, _, _ = http_get(m, "/no/such/path")
    eq(st, 404, "GET of an unknown path")
    alive(m, c, "after HTTP requests")

    # ---- unknown gRPC methods and undecodable requests
    ch = grpc.insecure_channel(m.endpoint, options=[("grpc.use_local_subchannel_pool", 1)])
    t.closers.append(ch.close)
    for path, details in [("/etcdserverpb.KV/Nope", "unknown method Nope for service etcdserverpb.KV"),
                          ("/nope.Service/X", "unknown service nope.Service")]:
        try:
            ch.unary_unary(path)(b"", timeout=10)
            raise Failure("%s succeeded" % path)
        except grpc.RpcError as e:
            eq((e.code(), e.details()), (grpc.StatusCode.UNIMPLEMENTED, details), path)
    for body in (b"\xff\xff\xff\x01garbage", b"\x0a\xff\xff\xff\xff\x0f", b"\x12"):
        try:
            ch.unary_unary("/etcdserverpb.KV/Range")(body, timeout=10)
            raise Failure("Range with an undecodable body %r succeeded" % body)
        except grpc.RpcError as e:
            check(e.code() not in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE,
                                   grpc.StatusCode.DEADLINE_EXCEEDED),
                  "undecodable Range body %r: %s %s" % (body, e.code(), e.details()))
    alive(m, c, "after bad gRPC calls")

    # ---- a lowered --max-request-bytes is honoured
    m.stop()
    small = t.cluster(extra_args=["--max-request-bytes", "1024"])
    s = small.members[0]
    eq(s.ctl("put", "k", "v" * 900).stdout, "OK\n", "a 900-byte put under a 1 KiB limit")
    r = s.ctl("put", "k", input="v" * 2000, check_rc=False)
    eq(r.stderr.strip().splitlines()[-1] if r.returncode else "(accepted)",
       "Error: etcdserver: request is too large", "a 2000-byte put under a 1 KiB limit")
    log("all bad input refused cleanly")


cluster.run(main)
