"""
gwclient: the fault driver's client, etcd's JSON gateway (/v3/...) over
plain HTTP/1.1 sockets.

Why not python3-etcd3 (gRPC): an operation's outcome must be known exactly
where it can be and called unknown only where it cannot.  Over a socket we
own, "the connection could not be made" (the request never left: the
operation definitely did not happen, outcome fail) is told apart from "the
request was written and then the connection broke or the deadline passed"
(outcome unknown).  grpcio reports both as UNAVAILABLE, reconnects and may
queue behind the scenes, and runs threads of its own.  Here the deadline is
the socket timeout of each step, there are no retries, and the same code
talks to etcd 3.4 (whose gateway serves the client port) and to raftkv.

Every call returns the decoded JSON answer or raises one of:
  NotSent      the request was not written (connect refused/timed out);
  Indefinite   written, and no complete answer (timeout, reset, EOF);
  ServerError  the server answered with an error (gRPC code and message).
"""
import base64
import http.client
import json
import select
import socket


class NotSent(Exception):
    pass


class Indefinite(Exception):
    pass


class ServerError(Exception):
    def __init__(self, status, code, message):
        Exception.__init__(self, "HTTP %s code %s: %s" % (status, code, message))
        self.status = status
        self.code = code
        self.message = message


# Errors that mean the server refused the request before proposing it, so
# a write that got one was not applied (etcd's own semantics; raftkv uses
# the same messages).  Every other error of a write is an unknown outcome:
# "request timed out", "leader changed", "server stopped" and the like can
# follow a proposal that commits later.
DEFINITE_WRITE_ERRORS = (
    "etcdserver: no leader",
    "etcdserver: too many requests",
    "etcdserver: request is too large",
    "etcdserver: mvcc: database space exceeded",
    "etcdserver: not capable",
)


def b64(s):
    return base64.b64encode(s.encode()).decode()


def unb64(s):
    return base64.b64decode(s).decode() if s else ""


def rev(x):
    """A gateway int64 (a JSON string, absent when 0)."""
    return int(x) if x else 0


def host_port(endpoint):
    hp = endpoint.split("://", 1)[-1]
    h, p = hp.rsplit(":", 1)
    return h, int(p)


class Client:
    """One connection per endpoint, used by one thread at a time."""

    def __init__(self, timeout=2.0, connect_timeout=1.0):
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.conns = {}

    def close(self):
        for c in self.conns.values():
            try:
                c.close()
            except Exception:
                pass
        self.conns = {}

    def _drop(self, endpoint):
        c = self.conns.pop(endpoint, None)
        if c is not None:
            try:
                c.close()
            except Exception:
                pass

    def _conn(self, endpoint):
        c = self.conns.get(endpoint)
        if c is not None and c.sock is not None:
            # A kept connection the server has closed (restart, idle) reads
            # as ready: open a new one now rather than write into it.
            try:
                r, _, _ = select.select([c.sock], [], [], 0)
            except (OSError, ValueError):
                r = [c.sock]
            if not r:
                return c
            self._drop(endpoint)
        h, p = host_port(endpoint)
        c = http.client.HTTPConnection(h, p, timeout=self.connect_timeout)
        try:
            c.connect()
        except (OSError, socket.timeout) as e:
            try:
                c.close()
            except Exception:
                pass
            raise NotSent("connect %s: %s" % (endpoint, e))
        c.sock.settimeout(self.timeout)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conns[endpoint] = c
        return c

    def call(self, endpoint, path, body, timeout=None):
        c = self._conn(endpoint)
        if timeout is not None:
            c.sock.settimeout(timeout)
        data = json.dumps(body).encode()
        try:
            c.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            raw = r.read()
        except (OSError, socket.timeout, http.client.HTTPException) as e:
            self._drop(endpoint)
            raise Indefinite("%s %s: %s" % (endpoint, path, e or type(e).__name__))
        finally:
            if timeout is not None and c.sock is not None:
                c.sock.settimeout(self.timeout)
        if r.will_close:
            self._drop(endpoint)
        try:
            ans = json.loads(raw) if raw else {}
        except ValueError:
            raise ServerError(r.status, None, "not JSON: %r" % raw[:200])
        if r.status != 200 or "error" in ans and "header" not in ans:
            raise ServerError(r.status, ans.get("code"),
                              ans.get("message") or ans.get("error") or repr(raw[:200]))
        return ans

    # ---- KV, as the driver uses it
    def put(self, ep, key, value):
        a = self.call(ep, "/v3/kv/put", {"key": b64(key), "value": b64(value)})
        return {"revision": rev(a.get("header", {}).get("revision"))}

    def get(self, ep, key, serializable=False):
        body = {"key": b64(key)}
        if serializable:
            body["serializable"] = True
        a = self.call(ep, "/v3/kv/range", body)
        kvs = a.get("kvs") or []
        res = {"value": None, "mod_revision": 0,
               "revision": rev(a.get("header", {}).get("revision"))}
        if kvs:
            res["value"] = unb64(kvs[0].get("value"))
            res["mod_revision"] = rev(kvs[0].get("mod_revision"))
        return res

    def cas(self, ep, key, expect, value):
        """Puts value if key holds expect (None: if key is absent)."""
        if expect is None:
            cmp = {"key": b64(key), "result": "EQUAL", "target": "VERSION", "version": "0"}
        else:
            cmp = {"key": b64(key), "result": "EQUAL", "target": "VALUE", "value": b64(expect)}
        a = self.call(ep, "/v3/kv/txn", {
            "compare": [cmp],
            "success": [{"request_put": {"key": b64(key), "value": b64(value)}}],
            "failure": []})
        return {"succeeded": bool(a.get("succeeded")),
                "revision": rev(a.get("header", {}).get("revision"))}

    def read_prefix(self, ep, prefix, serializable=False):
        """[(key, value)] of prefix, and the header revision."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        body = {"key": b64(prefix), "range_end": b64(end)}
        if serializable:
            body["serializable"] = True
        a = self.call(ep, "/v3/kv/range", body, timeout=max(self.timeout, 5.0))
        kvs = [(unb64(kv.get("key")), unb64(kv.get("value"))) for kv in a.get("kvs") or []]
        return kvs, rev(a.get("header", {}).get("revision"))

    def status(self, ep):
        a = self.call(ep, "/v3/maintenance/status", {})
        h = a.get("header", {})
        return {"member_id": rev(h.get("member_id")), "leader": rev(a.get("leader")),
                "revision": rev(h.get("revision")), "raft_index": rev(a.get("raftIndex")),
                "raft_term": rev(a.get("raftTerm"))}

    def member_list(self, ep):
        a = self.call(ep, "/v3/cluster/member/list", {})
        return [{"id": rev(m.get("ID")), "name": m.get("name", ""),
                 "peer_urls": m.get("peerURLs") or [], "client_urls": m.get("clientURLs") or [],
                 "learner": bool(m.get("isLearner"))}
                for m in a.get("members") or []]

    def member_remove(self, ep, mid):
        return self.call(ep, "/v3/cluster/member/remove", {"ID": str(mid)}, timeout=10)

    def member_add(self, ep, peer_url):
        a = self.call(ep, "/v3/cluster/member/add", {"peerURLs": [peer_url]}, timeout=10)
        return rev(a.get("member", {}).get("ID"))

    def move_leader(self, ep, target_id):
        return self.call(ep, "/v3/maintenance/transfer-leadership",
                         {"targetID": str(target_id)}, timeout=10)


def is_definite(e):
    """True when a write that raised e was certainly not applied."""
    if isinstance(e, NotSent):
        return True
    if isinstance(e, ServerError):
        return any(e.message.startswith(m) for m in DEFINITE_WRITE_ERRORS)
    return False


class WatchStream:
    """One Watch call on the gateway: POST /v3/watch with one create
    request; the answer is a chunked stream of {"result": WatchResponse}
    lines.  next_response() returns the next decoded WatchResponse, or
    raises Indefinite when the stream breaks or stays silent past the
    timeout, NotSent when the connection could not be made, ServerError
    for an {"error": ...} line."""

    def __init__(self, endpoint, key, range_end, start_revision, timeout=2.0):
        h, p = host_port(endpoint)
        try:
            self.sock = socket.create_connection((h, p), timeout=timeout)
        except OSError as e:
            raise NotSent("connect %s: %s" % (endpoint, e))
        req = {"create_request": {"key": b64(key), "range_end": b64(range_end),
                                  "start_revision": str(start_revision), "prev_kv": True}}
        body = json.dumps(req).encode()
        head = ("POST /v3/watch HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % (h, p, len(body))).encode()
        self.buf = b""
        self.body = b""
        self.chunked = None
        try:
            self.sock.sendall(head + body)
        except OSError as e:
            self.close()
            raise Indefinite("watch send: %s" % e)

    def close(self):
        try:
            self.sock.close()
        except Exception:
            pass

    def _more(self, timeout):
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise Indefinite("watch: silent for %.1fs" % timeout)
        except OSError as e:
            raise Indefinite("watch: %s" % e)
        if not d:
            raise Indefinite("watch: connection closed")
        self.buf += d

    def _head(self, timeout):
        while b"\r\n\r\n" not in self.buf:
            self._more(timeout)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        self.chunked = hdrs.get("transfer-encoding", "").lower() == "chunked"
        if status != 200 and not self.chunked:
            n = int(hdrs.get("content-length", "0"))
            while len(self.buf) < n:
                self._more(timeout)
            try:
                ans = json.loads(self.buf[:n])
            except ValueError:
                ans = {}
            raise ServerError(status, ans.get("code"), ans.get("message") or ans.get("error"))

    def _line(self, timeout):
        """The next complete body line (de-chunked)."""
        while b"\n" not in self.body:
            if self.chunked:
                while b"\r\n" not in self.buf:
                    self._more(timeout)
                size_line, rest = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    raise Indefinite("watch: stream ended")
                while len(rest) < size + 2:
                    self._more(timeout)
                    size_line, rest = self.buf.split(b"\r\n", 1)
                self.body += rest[:size]
                self.buf = rest[size + 2:]
            else:
                if self.buf:
                    self.body += self.buf
                    self.buf = b""
                else:
                    self._more(timeout)
        line, self.body = self.body.split(b"\n", 1)
        return line

    def next_response(self, timeout):
        if self.chunked is None:
            self._head(timeout)
        while True:
            line = self._line(timeout).strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                raise Indefinite("watch: bad line %r" % line[:200])
            if "error" in msg:
                e = msg["error"]
                raise ServerError(200, e.get("code") or e.get("grpc_code"),
                                  e.get("message") or str(e))
            return msg.get("result", {})
