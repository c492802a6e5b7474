"""
cluster_disk_full: a member whose disk fills up stops hurting its cluster.

Three members; m1's data dir is on a small tmpfs, mounted by this test (as
root: it skips otherwise) on a fresh directory under /tmp and unmounted at
the end.  m1 is made leader (move-leader), two writers put keys through m2
and m3 (each switching to the other on an error), and a watch is opened on
m1.  Then the tmpfs is filled and a few large puts use up what m1's log had
prepared, so that m1 can no longer persist anything:

  * writes through m2 and m3 go on: no writer waits more than MAX_GAP_S for
    an acknowledgement, and m1 soon no longer leads;
  * m1 answers its clients with an error instead of leaving them waiting: a
    put through it fails within seconds and its watch stream ends with an
    error (raftkv: "etcdserver: storage failure", UNAVAILABLE; /health is
    503 with a "reason" and Status.errors says why.  etcd 3.4 has no such
    state: its WAL write fails, it exits, and the connection is refused);
  * (raftkv) once the space is freed, m1 is healthy again by itself;
  * m1 is restarted (stopped first if it still runs) and rejoins; every
    acknowledged write is on every member, and `endpoint hashkv` is equal.

Run against etcd with RAFTKV=/usr/bin/etcd to check the test itself.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Skip, check, eq, log, wait_until  # noqa: E402
from cluster import leader_of, member_id  # noqa: E402
from cluster_faults import Writer, serializable_keys, settle  # noqa: E402

IS_ETCD = os.path.basename(cluster.server_binary()) == "etcd"
# etcd preallocates two 64 MiB WAL files; raftkv two 8 MiB log segments.
TMPFS_SIZE = "192m"
MAX_GAP_S = 5.0
BIG = 512 * 1024
STORAGE_FAILURE = "etcdserver: storage failure"


def mount_tmpfs(t):
    if os.geteuid() != 0:
        raise Skip("mounting a tmpfs for the full disk needs root")
    mnt = tempfile.mkdtemp(prefix="raftkv-diskfull-", dir="/tmp")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + TMPFS_SIZE, "raftkv-diskfull",
                        mnt], capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(mnt)
        raise Skip("cannot mount a tmpfs: %s" % r.stderr.strip())

    def unmount():
        for cl in t.clusters:
            for m in cl.members:
                m.kill()  # nothing may keep the mount busy (stopped already if passed)
        if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        os.rmdir(mnt)
    return mnt, unmount


def fill(path):
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
        except OSError:
            pass  # full: that is the point


class WatchOn:
    """A watch stream on one member, read in a thread: records how it ended."""

    def __init__(self, m):
        from etcd3 import etcdrpc
        self.c = cluster.py_client(m.client_port, timeout=None)
        create = etcdrpc.WatchCreateRequest(key=b"df/", range_end=b"df0")
        stub = etcdrpc.WatchStub(self.c.channel)
        self.stream = stub.Watch(iter([etcdrpc.WatchRequest(create_request=create)]))
        self.events = 0
        self.ended = None  # (time, code name, details)
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        import grpc
        try:
            for resp in self.stream:
                self.events += len(resp.events)
            self.ended = (time.monotonic(), "OK", "")
        except grpc.RpcError as e:
            self.ended = (time.monotonic(), e.code().name, e.details())

    def close(self):
        self.stream.cancel()
        self.c.close()


def main(t):
    cluster.require_python_etcd3()
    mnt, unmount = mount_tmpfs(t)
    try:
        run(t, mnt)
    finally:
        t.close_clients()
        unmount()


def run(t, mnt):
    t0 = time.monotonic()
    c = t.cluster(3, start=False)
    m1, m2, m3 = c.members
    m1.data_dir = os.path.join(mnt, "m1.data")
    c.start()
    ldr = settle(c.members, "start")
    if ldr is not m1:
        tid = member_id(m1)
        wait_until(lambda: ldr.ctl("move-leader", "%x" % tid, check_rc=False).returncode == 0,
                   30, "move-leader to m1", 0.5)
    wait_until(lambda: leader_of(c.members) is m1, 10, "m1 to lead", 0.1)
    writers = [Writer("df/a/", [m2, m3], pause=0.01).start(),
               Writer("df/b/", [m3, m2], pause=0.01).start()]
    wait_until(lambda: all(w.count() >= 20 for w in writers), 20, "writes before the fill")
    watch = WatchOn(m1)
    t.closers.append(watch.close)
    wait_until(lambda: watch.events > 0, 10, "events on the watch through m1")

    fill(os.path.join(mnt, "filler"))
    t_fill = time.monotonic()
    log("m1 leads; its disk is full (%d writes so far)" % sum(w.count() for w in writers))
    big = cluster.py_client(m2.client_port, timeout=5)
    t.closers.append(big.close)
    ok = 0
    for i in range(60):
        try:
            big.put("big/%d" % i, b"x" * BIG)
            ok += 1
        except Exception:  # noqa: BLE001  (the member may be failing over)
            pass
        if time.monotonic() - t_fill > 15:
            break
    log("%d large puts through m2 acknowledged" % ok)

    new = wait_until(lambda: (lambda l: l if l is not None and l is not m1 else None)(
        leader_of([m for m in c.members if m.running()])), 30, "a leader other than m1", 0.1)
    t_moved = time.monotonic()
    log("%s leads (seen %.2fs after the fill)" % (new.name, t_moved - t_fill))
    n = sum(w.count() for w in writers)
    wait_until(lambda: sum(w.count() for w in writers) >= n + 100, 20,
               "writes through m2 and m3 after m1 stopped leading")

    # m1's clients get an error, not a wait.
    start = time.monotonic()
    r = m1.ctl("--dial-timeout=2s", "--command-timeout=5s", "put", "df/through-m1", "x",
               check_rc=False, timeout=20)
    took = time.monotonic() - start
    check(r.returncode != 0, "a put through m1 must fail once it cannot persist: %r" % r.stdout)
    check(took < 8, "a put through m1 took %.1fs: it must fail, not wait" % took)
    wait_until(lambda: watch.ended is not None, 10, "the watch through m1 to end")
    log("through m1: put failed in %.2fs (%s); watch ended %.2fs after the fill (%s)"
        % (took, (r.stderr.strip().splitlines() or ["?"])[-1][:120],
           watch.ended[0] - t_fill, watch.ended[1]))
    if not IS_ETCD:
        # etcdctl has no name for this error: it prints the gRPC status.
        eq((r.stderr.strip().splitlines() or [""])[-1],
           "Error: rpc error: code = Unavailable desc = " + STORAGE_FAILURE,
           "the error of a put through m1")
        eq(watch.ended[1:], ("UNAVAILABLE", STORAGE_FAILURE), "how m1's watch ended")
        r = m1.ctl("get", "--consistency=s", "df/a/000000", check_rc=False)
        eq((r.stderr.strip().splitlines() or [""])[-1],
           "Error: rpc error: code = Unavailable desc = " + STORAGE_FAILURE,
           "a serializable read through m1")
        code, body = m1.health()
        eq(code, 503, "/health of m1: %s" % body)
        check(json.loads(body).get("reason", "").startswith("disk full"),
              "/health of m1 says why: %s" % body)
        st = json.loads(m1.ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]
        check(any(e.startswith(STORAGE_FAILURE + ": disk full") for e in st.get("errors", [])),
              "Status.errors of m1: %r" % st.get("errors"))
        check("cannot persist" in m1.log_text(), "m1's log says it cannot persist")

    # Every gap between acknowledgements since the fill, per writer.
    for w in writers:
        with w.lock:
            acks = sorted(done for sent, done in w.ack_times if done >= t_fill)
        gaps = [b - a for a, b in zip([t_fill] + acks, acks)]
        worst = max(gaps) if gaps else float("inf")
        log("writer %s: %d acknowledged since the fill, longest wait %.2fs, %d errors"
            % (w.prefix, len(acks), worst, w.errors))
        check(worst < MAX_GAP_S, "writer %s waited %.2fs for an acknowledgement (bound %.0fs)"
              % (w.prefix, worst, MAX_GAP_S))

    # Free the space.  raftkv's m1 recovers by itself; both get restarted.
    os.remove(os.path.join(mnt, "filler"))
    t_free = time.monotonic()
    if not IS_ETCD:
        wait_until(lambda: m1.health()[0] == 200, 30, "m1 healthy once space is freed", 0.2)
        log("m1 healthy again %.2fs after the space was freed" % (time.monotonic() - t_free))
    if m1.running():
        rc = m1.stop()
        check(rc in (0, -15), "m1 stopped cleanly (status %s)" % rc)
    else:
        log("m1 had exited (status %s)" % m1.proc.returncode)
    m1.start()
    c.wait_ready(30)
    for w in writers:
        w.join()
    ldr = settle(c.members, "after-restart")
    acked = {}
    for w in writers:
        acked.update(w.acked)
    for m in c.members:
        got = serializable_keys(m, "df/")
        lost = [k for k in acked if got.get(k) != acked[k]]
        check(not lost, "%s misses %d of %d acknowledged writes, e.g. %s"
              % (m.name, len(lost), len(acked), lost[:5]))
    rev = json.loads(ldr.ctl("get", "settle/after-restart", "-w", "json").stdout)["header"]["revision"]
    hashes = {m.name: json.loads(m.ctl("endpoint", "hashkv", "--rev", rev, "-w", "json").stdout)
              [0]["HashKV"]["hash"] for m in c.members}
    eq(len(set(hashes.values())), 1, "one hashkv at revision %d: %s" % (rev, hashes))
    log("m1 rejoined: %d acknowledged writes on every member, hashkv equal at revision %d "
        "(%.1fs in all)" % (len(acked), rev, time.monotonic() - t0))
    t.close_clients()
    for m in c.members:
        rc = m.stop()
        check(rc in (0, -15), "%s stopped cleanly (status %s)" % (m.name, rc))


if __name__ == "__main__":
    cluster.run(main)
