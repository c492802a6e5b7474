"""
durability_kill: no acknowledged write is lost across SIGKILL or SIGTERM.

Several writer threads (python3-etcd3, one gRPC channel each) put unique
key -> value pairs as fast as the server acknowledges them and record every
acknowledged put.  The server is SIGKILLed in the middle of that stream, 1-3 s
after the writes began, and restarted on the same data dir.  Every
acknowledged put must then be readable with its value (a linearizable read);
a put that was in flight may or may not be there, but if it is, its value
must be right.  Three kill cycles accumulate (older cycles are re-checked
after each restart), then one clean SIGTERM restart, which must exit 0 (or
die by SIGTERM re-raised after a clean shutdown, as etcd does).
"""
import os
import random
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, check, eq, log  # noqa: E402

WRITERS = 6
KILL_CYCLES = 3


class Writers:
    """WRITERS threads putting cycle/writer/seq keys until told to stop or
    until their first error (the server died)."""

    def __init__(self, member, cycle):
        self.member = member
        self.cycle = cycle
        self.acked = {}       # key -> value, acknowledged by the server
        self.maybe = {}       # key -> value, sent but not acknowledged
        self.errors = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(w,), daemon=True)
                        for w in range(WRITERS)]

    def run(self, w):
        c = cluster.py_client(self.member.client_port, timeout=5)
        try:
            seq = 0
            while not self.stop.is_set():
                key = "d/%d/%d/%06d" % (self.cycle, w, seq)
                value = "v-%d-%d-%d-%x" % (self.cycle, w, seq, random.getrandbits(32))
                with self.lock:
                    self.maybe[key] = value
                try:
                    c.put(key, value)
                except Exception as e:   # the server is gone: stop this writer
                    with self.lock:
                        self.errors.append("%s: %s" % (type(e).__name__, e))
                    return
                with self.lock:
                    self.acked[key] = value
                    del self.maybe[key]
                seq += 1
        finally:
            c.close()

    def start(self):
        for th in self.threads:
            th.start()

    def count(self):
        with self.lock:
            return len(self.acked)

    def join(self, timeout=30):
        self.stop.set()
        for th in self.threads:
            th.join(timeout)
            check(not th.is_alive(), "a writer thread is stuck")


def read_all(member):
    """Every d/ key, read in linearizable pages (one reply stays far below
    the client's 4 MiB receive limit however many puts were acknowledged)."""
    from etcd3 import etcdrpc
    c = member.client()
    out = {}
    key, end = b"d/", b"d0"
    while True:
        r = c.kvstub.Range(etcdrpc.RangeRequest(key=key, range_end=end, limit=5000), timeout=30)
        for kv in r.kvs:
            out[kv.key.decode()] = kv.value.decode()
        if not r.more:
            break
        key = r.kvs[-1].key + b"\0"
    c.close()
    return out


def verify(member, acked, maybe, what):
    got = read_all(member)
    lost = [k for k in acked if got.get(k) != acked[k]]
    if lost:
        k = sorted(lost)[0]
        raise Failure("%s: %d of %d acknowledged puts lost or wrong after restart, e.g. %s: "
                      "want %r, got %r" % (what, len(lost), len(acked), k, acked[k], got.get(k)))
    extra = set(got) - set(acked)
    bad = [k for k in extra if k not in maybe or got[k] != maybe[k]]
    if bad:
        k = sorted(bad)[0]
        raise Failure("%s: %d keys that were never written (or with a wrong value), e.g. %s=%r"
                      % (what, len(bad), k, got[k]))
    log("%s: %d acknowledged puts all present; %d of %d in-flight puts also present"
        % (what, len(acked), len(extra), len(maybe)))


def main(t):
    cluster.require_python_etcd3()
    cl = t.cluster()
    m = cl.members[0]
    acked, maybe = {}, {}

    for cycle in range(KILL_CYCLES):
        w = Writers(m, cycle)
        w.start()
        kill_after = random.uniform(1.0, 3.0)
        t0 = time.monotonic()
        cluster.wait_until(lambda: w.count() >= 50 and time.monotonic() - t0 >= kill_after,
                           30, "50 acknowledged puts (cycle %d)" % cycle)
        m.kill()
        w.join()
        check(w.count() > 0, "no put was acknowledged")
        log("cycle %d: SIGKILL after %.2fs, %d puts acknowledged, %d in flight"
            % (cycle, time.monotonic() - t0, w.count(), len(w.maybe)))
        acked.update(w.acked)
        maybe.update(w.maybe)
        cl.start()
        verify(m, acked, maybe, "after kill %d" % (cycle + 1))
        # the in-flight puts are settled now: keep what survived as expected
        got = read_all(m)
        for k in list(maybe):
            if k in got:
                acked[k] = maybe.pop(k)
            else:
                maybe.pop(k)

    # clean shutdown: everything written is kept and the exit status is 0
    c = m.client()
    for i in range(200):
        k = "d/term/%04d" % i
        c.put(k, "t%d" % i)
        acked[k] = "t%d" % i
    c.close()
    rc = m.stop()
    # etcd re-raises SIGTERM after its clean shutdown; exiting 0 is as good
    check(rc in (0, -signal.SIGTERM), "exit status after SIGTERM: %s" % rc)
    cl.start()
    verify(m, acked, {}, "after SIGTERM")
    c = m.client()
    c.put("d/after", "restart")
    eq(c.get("d/after")[0], b"restart", "writes work after the restarts")


cluster.run(main)
