"""
gateway_http: the JSON gateway (/v3/...) over raw HTTP/1.1, where the
shared conformance cases (one request per step, Content-Length bodies)
cannot reach.  Every expected answer below is what etcd 3.4.23 sends; run
with RAFTKV=/usr/bin/etcd to check the test itself.

  * exact heads: 200 with Content-Length up to 2048 bytes, chunked beyond;
    errors chunked with the Grpc-Trailer-Content-Type trailer; decode
    errors plain 400 with code 3; 404 "Not Found", 405;
  * pipelined requests on one connection, answered in order;
  * chunked request bodies (extensions, trailers, LF-only lines) and Go's
    read errors for broken ones ("invalid byte in chunk length", ...);
  * a 2.5 MB JSON body reaches the service (429 "received message larger
    than max"), a 1 MB base64 value round-trips;
  * Watch as NDJSON on a chunked response, left by its client mid-stream
    many times, LeaseKeepAlive with two requests in one body;
  * etcd3gw with api_path /v3/ put/get/lease/delete; /v3alpha/ (etcd3gw's
    default) is 404 as on etcd 3.4.
"""
import base64
import json
import os
import re
import socket
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import check, eq, log  # noqa: E402


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def exchange(m, data, timeout=2.0, until_close=True):
    """Sends raw bytes on a fresh connection; returns all that came back
    before the server closed (or went quiet for timeout seconds)."""
    s = socket.create_connection(("127.0.0.1", m.client_port), timeout=10)
    got = b""
    try:
        s.sendall(data)
        s.settimeout(timeout)
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not b:
                break
            got += b
            if not until_close and got.endswith(b"\r\n\r\n"):
                break
    finally:
        s.close()
    return got


def post(path, body, extra=b"", close=False):
    body = body.encode() if isinstance(body, str) else body
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra +
            b"Content-Length: %d\r\n" % len(body) + (b"Connection: close\r\n" if close else b"") +
            b"\r\n" + body)


def responses(raw):
    """Splits raw HTTP/1.1 responses: [(status, {header: value}, body bytes,
    trailers)], de-chunking chunked bodies."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        check(sep, "a complete response head in %r" % raw[:200])
        lines = head.decode("latin1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        trailers = {}
        if hdrs.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                n = int(size_line, 16)
                if n == 0:
                    break
                body += rest[:n]
                rest = rest[n + 2:]
            tr, _, rest = rest.partition(b"\r\n\r\n") if not rest.startswith(b"\r\n") else (b"", b"", rest[2:])
            for ln in tr.decode().split("\r\n"):
                if ln:
                    k, _, v = ln.partition(":")
                    trailers[k.strip().lower()] = v.strip()
        elif "content-length" in hdrs:
            n = int(hdrs["content-length"])
            body, rest = rest[:n], rest[n:]
        else:
            body, rest = rest, b""
        out.append((status, hdrs, body, trailers))
        raw = rest
    return out


def one(m, data):
    r = responses(exchange(m, data))
    eq(len(r), 1, "one response")
    return r[0]


def main(t):
    m = t.cluster().members[0]

    # ---- answers and their heads
    st, h, body, _ = one(m, post("/v3/kv/put", '{"key":"%s","value":"%s"}' % (b64("gw"), b64("v")), close=True))
    eq((st, h["content-type"], h["grpc-metadata-content-type"], "content-length" in h),
       (200, "application/json", "application/grpc", True), "put: status and head")
    check(re.fullmatch(rb'\{"header":\{"cluster_id":"\d+","member_id":"\d+","revision":"2","raft_term":"\d+"\}\}',
                       body), "put answer %r" % body)
    st, h, body, tr = one(m, post("/v3/kv/range", "{}", close=True))
    eq((st, h.get("transfer-encoding"), h.get("trailer"), tr, json.loads(body)),
       (400, "chunked", "Grpc-Trailer-Content-Type", {"grpc-trailer-content-type": "application/grpc"},
        {"error": "etcdserver: key is not provided", "message": "etcdserver: key is not provided", "code": 3}),
       "a service error: chunked, with the trailer")
    st, h, body, _ = one(m, post("/v3/kv/range", '{"key":1}', close=True))
    eq((st, "content-length" in h, json.loads(body)["code"], json.loads(body)["error"]),
       (400, True, 3, "json: cannot unmarshal number into Go value of type []uint8"), "a decode error")
    st, _, body, _ = one(m, post("/v3/kv/nope", "{}", close=True))
    eq((st, body), (404, b"Not Found\n"), "unknown path under /v3/")
    st, _, body, _ = one(m, b"GET /v3/kv/range HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    eq((st, body), (405, b"Method Not Allowed\n"), "GET on a gateway path")
    big = "a" * 1500
    one(m, post("/v3/kv/put", '{"key":"%s","value":"%s"}' % (b64("big"), b64(big)), close=True))
    st, h, body, _ = one(m, post("/v3/kv/range", '{"key":"%s"}' % b64("big"), close=True))
    eq((st, h.get("transfer-encoding"), base64.b64decode(json.loads(body)["kvs"][0]["value"]).decode()),
       (200, "chunked", big), "an answer over 2048 bytes goes out chunked")

    # ---- pipelining: every answer, in order, on one connection
    reqs = (post("/v3/kv/range", '{"key":"%s"}' % b64("gw")) + post("/v3/kv/range", "{") +
            b"GET /v3/kv/range HTTP/1.1\r\nHost: x\r\n\r\n" + post("/v3/lease/keepalive", '{"ID":5}') +
            post("/v3/kv/range", "{}") + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    r = responses(exchange(m, reqs))
    eq([x[0] for x in r], [200, 400, 405, 200, 400, 200], "pipelined statuses")
    eq(json.loads(r[0][2])["count"], "1", "pipelined range")
    eq(json.loads(r[1][2])["error"], "unexpected EOF", "pipelined bad JSON")
    eq(json.loads(r[3][2])["result"].get("TTL"), None, "keepalive of an unknown lease")
    eq(r[5][2], b'{"health":"true"}', "pipelined /health")

    # ---- chunked request bodies
    head = b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    js = ('{"key":"%s","value":"%s"}' % (b64("ch"), b64("chunky"))).encode()
    body = b"5;ext=1\r\n" + js[:5] + b"\r\n%X\n" % (len(js) - 5) + js[5:] + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    r = responses(exchange(m, head + body + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    eq([x[0] for x in r], [200, 200], "a chunked put, then a request on the same connection")
    st, _, body, _ = one(m, post("/v3/kv/range", '{"key":"%s"}' % b64("ch"), close=True))
    eq(base64.b64decode(json.loads(body)["kvs"][0]["value"]), b"chunky", "the chunked put's value")
    for name, chunks, msg in [
            ("bad size", b"zz\r\n{}\r\n0\r\n\r\n", "invalid byte in chunk length"),
            ("size too long", b"00000000000000001\r\n{}\r\n0\r\n\r\n", "http chunk length too large"),
            ("cut value", b"3\r\n{\"k\r\nzz\r\n", "invalid byte in chunk length"),
            ("trailer without colon", b"1\r\n{\r\n0\r\nab\r\n\r\n", 'malformed MIME header: missing colon: "ab"')]:
        r = responses(exchange(m, head + chunks + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
        eq([(x[0], x[1].get("connection"), json.loads(x[2])) for x in r],
           [(400, "close", {"error": msg, "message": msg, "code": 3})], "broken chunked body: " + name)
    r = responses(exchange(m, head + b"2\r\n{}XX0\r\n\r\n"))
    eq([(x[0], json.loads(x[2])["error"]) for x in r], [(400, "etcdserver: key is not provided")],
       "a complete value before the break reaches the service")
    r = responses(exchange(m, b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
                           b"Content-Length: 2\r\n\r\n{}"))
    eq([(x[0], x[2]) for x in r], [(501, b"Unsupported transfer encoding")], "an unknown transfer coding")

    # ---- big bodies reach the service, which refuses them as etcd does
    huge = ('{"key":"%s","value":"%s"}' % (b64("huge"), b64(b"\0" * 2500000))).encode()
    st, _, body, _ = one(m, post("/v3/kv/put", huge, close=True))
    eq((st, json.loads(body)["error"]), (429, "grpc: received message larger than max (2500011 vs. 2097152)"),
       "a 2.5 MB put")
    val = os.urandom(1000000)
    st, _, body, _ = one(m, post("/v3/kv/put", '{"key":"%s","value":"%s"}' % (b64("mb"), b64(val)), close=True))
    eq(st, 200, "a 1 MB put")
    st, _, body, _ = one(m, post("/v3/kv/range", '{"key":"%s"}' % b64("mb"), close=True))
    check(base64.b64decode(json.loads(body)["kvs"][0]["value"]) == val, "the 1 MB value reads back")

    # ---- streams: NDJSON, clients that leave, two requests in one body
    for i in range(30):
        s = socket.create_connection(("127.0.0.1", m.client_port), timeout=10)
        s.sendall(post("/v3/watch", '{"create_request":{"key":"%s","prev_kv":true}}' % b64("w")))
        got = b""
        while b"created" not in got:
            got += s.recv(65536)
        if i % 3 == 0:
            one(m, post("/v3/kv/put", '{"key":"%s","value":"%s"}' % (b64("w"), b64(str(i))), close=True))
            while b"events" not in got:
                got += s.recv(65536)
        s.close()
    s = socket.create_connection(("127.0.0.1", m.client_port), timeout=10)
    s.sendall(post("/v3/watch", '{"create_request":{"key":"%s"}}' % b64("w")))
    got = b""
    while b"created" not in got:
        got += s.recv(65536)
    one(m, post("/v3/kv/deleterange", '{"key":"%s"}' % b64("w"), close=True))
    while got.count(b'{"result"') < 2 or not got.endswith(b"\r\n"):
        got += s.recv(65536)
    s.close()
    st, h, body, _ = responses(got + b"0\r\n\r\n")[0]
    lines = [json.loads(x) for x in body.decode().splitlines()]
    eq((st, h.get("transfer-encoding"), [list(x) for x in lines], lines[0]["result"].get("created"),
        lines[1]["result"]["events"][0]["type"]),
       (200, "chunked", [["result"], ["result"]], True, "DELETE"), "a watch's NDJSON")
    g = json.loads(one(m, post("/v3/lease/grant", '{"TTL":60}', close=True))[2])
    st, _, body, _ = one(m, post("/v3/lease/keepalive", '{"ID":%s} {"ID":"%s"}' % (g["ID"], g["ID"]),
                                 close=True))
    eq([json.loads(x)["result"]["TTL"] for x in body.decode().splitlines()], ["60", "60"],
       "two keepalives in one body")

    # ---- etcd3gw: 3.4 serves /v3/ and /v3beta/; its default /v3alpha/ is 404
    code = ("import etcd3gw\n"
            "c = etcd3gw.Etcd3Client(host='127.0.0.1', port=%d, api_path='/v3/')\n"
            "c.put('a', 'b'); print(c.get('a'))\n"
            "l = c.lease(ttl=30); c.put('lk', 'v', lease=l); print(l.keys(), l.revoke())\n"
            "print(c.delete('a'), c.delete('a'), len(c.members()))\n"
            "try:\n"
            "    etcd3gw.client(host='127.0.0.1', port=%d).get('a')\n"
            "except etcd3gw.exceptions.Etcd3Exception as e:\n"
            "    print('v3alpha:', e.detail_text)\n" % (m.client_port, m.client_port))
    r = subprocess.run([cluster.PYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    eq((r.returncode, r.stdout, r.stderr),
       (0, "[b'b']\n[b'lk'] True\nTrue False 1\nv3alpha: 404 page not found\n\n", ""), "etcd3gw")

    check(m.running(), "the server is still running")
    eq(one(m, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[2], b'{"health":"true"}',
       "healthy at the end")
    log("gateway over raw HTTP/1.1 as etcd answers it")


cluster.run(main)
