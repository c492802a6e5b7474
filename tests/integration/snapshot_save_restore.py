"""
snapshot_save_restore: Maintenance/Snapshot as etcdctl and python3-etcd3 use
it, and raftkv-restore turning the saved file into new clusters.

Save (raftkv and etcd alike):
  * `etcdctl snapshot save` of a store with overwritten, deleted and leased
    keys and a compaction writes a file whose size is 32 mod 512 and whose
    last 32 bytes are the SHA-256 of the rest; python3-etcd3's snapshot()
    gets a stream of the same shape;
  * a reader of a big (incompressible) snapshot that reads nothing (a raw
    HTTP/2 client that never opens its flow-control window) does not stall
    the member: puts and gets answer meanwhile; for raftkv the server must
    not hand the whole stream to its transport meanwhile;
    a python3-etcd3 reader that pauses gets the whole stream, chunk by
    chunk with etcd's remaining_bytes.
Restore (raftkv only: etcd restores with `etcdctl snapshot restore`):
  * raftkv-restore refuses a file with one flipped byte, a truncated file
    and an etcd (bbolt) file with exit 1 and a clear message, and writes no
    data dir;
  * a 1-member cluster restored from the file serves every key with the
    same value, version and revisions, the same revision and compaction,
    the lease and its key, under a new cluster id; new writes continue the
    revision; a restart changes nothing (no double apply, no loss);
  * a 3-member cluster restored from the same file: every member holds the
    same state (serializable reads, HashKV) and the leader takes writes.
"""
import hashlib
import json
import os
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, Skip, check, ctl_json, eq, log  # noqa: E402

KEYS = 2000


def is_etcd(t):
    return os.path.basename(t.binary) == "etcd"


def restore_binary(t):
    b = os.environ.get("RAFTKV_RESTORE")
    if not b:
        b = os.path.join(os.path.dirname(os.path.dirname(t.binary)), "tools", "raftkv-restore")
    if not os.access(b, os.X_OK):
        raise Failure("raftkv-restore not found at %s (set RAFTKV_RESTORE)" % b)
    return b


def check_trailer(data, what):
    check(len(data) >= 32 + 512, "%s: only %d bytes" % (what, len(data)))
    eq(len(data) % 512, 32, "%s: size mod 512 (etcdctl's test for a SHA-256 trailer)" % what)
    eq(hashlib.sha256(data[:-32]).digest(), data[-32:], "%s: SHA-256 trailer" % what)


def state(member, consistency="l"):
    """(revision, {key: (value, version, create, mod, lease)}) of every key."""
    r = ctl_json(member, "get", "", "--from-key", "--consistency=" + consistency)
    out = {}
    for kv in r.get("kvs", []):
        out[kv["key"]] = (kv.get("value"), kv.get("version"), kv.get("create_revision"),
                          kv.get("mod_revision"), kv.get("lease", 0))
    return r["header"]["revision"], out


def fill(m):
    c = m.client()
    for i in range(KEYS):
        c.put("s/%05d" % i, "value-%d" % i)
    for i in range(0, KEYS, 7):
        c.put("s/%05d" % i, "again-%d" % i)
    compact_at = c.get_response("s/00000").header.revision
    for i in range(3, KEYS, 11):
        c.delete("s/%05d" % i)
    c.compact(compact_at)
    lease = c.lease(3600)
    c.put("leased", "yes", lease=lease)
    return compact_at, lease.id


def expect_compacted(member, rev, what):
    r = member.ctl("get", "s/00000", "--rev=%d" % rev, check_rc=False)
    check(r.returncode != 0 and "required revision has been compacted" in r.stderr,
          "%s: read at compacted revision %d: rc %d %r" % (what, rev, r.returncode, r.stderr))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def save_and_check(t, m):
    path = os.path.join(t.tmp, "snap.db")
    r = m.ctl("snapshot", "save", path)
    check("Snapshot saved at %s" % path in r.stdout, "etcdctl snapshot save output: %r" % r.stdout)
    with open(path, "rb") as f:
        data = f.read()
    check_trailer(data, "etcdctl snapshot save file")
    log("etcdctl saved %d bytes" % len(data))

    import io
    c = m.client()
    buf = io.BytesIO()
    c.snapshot(buf)
    check_trailer(buf.getvalue(), "python3-etcd3 snapshot()")
    return path, data


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(ftype, flags, stream, payload):
    return (len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big")
            + payload)


def hpack_literal(name, value):
    """A literal header field without indexing, new name, no Huffman."""
    n, v = name.encode(), value.encode()
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def raw_snapshot_call(m):
    """Opens Maintenance/Snapshot over a raw HTTP/2 connection that never
    reads: the server may send one 64 KiB flow-control window, no more."""
    import socket
    s = socket.create_connection(("127.0.0.1", m.client_port), timeout=10)
    hdrs = b"".join(hpack_literal(k, v) for k, v in (
        (":method", "POST"), (":scheme", "http"),
        (":path", "/etcdserverpb.Maintenance/Snapshot"), (":authority", m.endpoint),
        ("content-type", "application/grpc"), ("te", "trailers")))
    s.sendall(PREFACE + h2_frame(4, 0, 0, b"") + h2_frame(1, 4, 1, hdrs)
              + h2_frame(0, 1, 1, b"\0\0\0\0\0"))
    return s


def stalled_reader(t, m):
    """A big snapshot nobody reads, then one read with a pause."""
    from etcd3 import etcdrpc
    c = m.client(timeout=60)
    blob = os.urandom(200 * 1024)
    for i in range(150):  # 30 MB the compression cannot shrink
        c.put("big/%03d" % i, blob[i:] + blob[:i])
    pid = m.proc.pid
    base = rss_kb(pid)
    sent_before = m.log_text().count("snapshot: sent")
    raw = raw_snapshot_call(m)
    time.sleep(1.5)  # the client reads nothing: the server must wait
    grown = rss_kb(pid) - base
    if not is_etcd(t):
        # svc_maint logs "snapshot: sent N bytes" once the whole stream is
        # handed to the transport: with flow control that cannot happen
        # while the client has opened one 64 KiB window.
        check(m.log_text().count("snapshot: sent") == sent_before,
              "the server queued a whole %d-byte snapshot stream for a client that reads "
              "nothing (no flow control)" % (150 * 200 * 1024))
    t0 = time.monotonic()
    m.ctl("put", "during-snapshot", "ok")
    eq(m.ctl("get", "during-snapshot", "--print-value-only").stdout, "ok\n",
       "get during a stalled snapshot")
    took = time.monotonic() - t0
    check(took < 5, "put+get took %.1fs while a snapshot stream was stalled" % took)
    raw.close()

    stream = c.maintenancestub.Snapshot(etcdrpc.SnapshotRequest(), timeout=120)
    chunks = [next(stream)]
    time.sleep(1.0)
    for ch in stream:
        chunks.append(ch)
    data = b"".join(ch.blob for ch in chunks)
    check_trailer(data, "paused snapshot stream")
    eq(chunks[-1].remaining_bytes, 0, "remaining_bytes of the SHA-256 chunk")
    eq(len(chunks[-1].blob), 32, "the last chunk is the SHA-256")
    eq(chunks[-2].remaining_bytes, 0, "remaining_bytes of the last data chunk")
    eq(chunks[0].remaining_bytes, len(data) - 32 - len(chunks[0].blob),
       "remaining_bytes of the first chunk")
    log("%d byte snapshot in %d chunks; server RSS grew %d KiB while a reader stalled"
        % (len(data), len(chunks), grown))
    for i in range(150):
        c.delete("big/%03d" % i)


def run_restore(t, path, member, cl, extra=()):
    argv = [restore_binary(t), path, "--name", member.name, "--data-dir", member.data_dir,
            "--initial-cluster", cl.initial_cluster(), "--initial-cluster-token", cl.token,
            "--initial-advertise-peer-urls", member.peer_url] + list(extra)
    return subprocess.run(argv, capture_output=True, text=True, env=cluster.clean_env(), timeout=60)


def refuse_damaged(t, path, data):
    cl = t.cluster(size=1, start=False)
    m = cl.members[0]
    cases = []
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    cases.append(("one flipped byte", bytes(flipped), "damaged"))
    cases.append(("its end cut off", data[:len(data) - 700], "missing hash"))
    cases.append(("the trailer of other bytes", data[:-32] + hashlib.sha256(b"x").digest(),
                  "damaged"))
    # A well-formed trailer over bytes that are not a raftkv image (as an
    # etcd bbolt snapshot would be).
    alien = b"\0" * 4096 + b"bolt" * 128
    cases.append(("foreign contents", alien + hashlib.sha256(alien).digest(),
                  "not a raftkv snapshot"))
    bad = os.path.join(t.tmp, "bad.db")
    for what, body, word in cases:
        with open(bad, "wb") as f:
            f.write(body)
        r = run_restore(t, bad, m, cl)
        eq(r.returncode, 1, "raftkv-restore of a file with %s: exit status (stderr %r)"
           % (what, r.stderr))
        check(word in r.stderr, "raftkv-restore of a file with %s: message %r lacks %r"
              % (what, r.stderr, word))
        check(not os.path.exists(m.data_dir), "raftkv-restore of a file with %s left %s"
              % (what, m.data_dir))
        log("refused %s: %s" % (what, r.stderr.strip().splitlines()[-1]))


def wait_leader(members, timeout=30):
    """Waits for one leader that every member agrees on; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            leaders = set()
            for m in members:
                s = ctl_json(m, "endpoint", "status")[0]["Status"]
                leaders.add(s.get("leader", 0))
            if len(leaders) == 1 and 0 not in leaders:
                lid = leaders.pop()
                for m in members:
                    s = ctl_json(m, "endpoint", "status")[0]["Status"]
                    if s["header"]["member_id"] == lid:
                        return m
        except Failure as e:
            last = str(e)
        time.sleep(0.2)
    raise Failure("no agreed leader within %ds (last: %s)" % (timeout, last))


def restore_one(t, path, before, compact_at, lease_id, orig_cluster_id):
    cl = t.cluster(size=1, start=False)
    m = cl.members[0]
    r = run_restore(t, path, m, cl)
    eq(r.returncode, 0, "raftkv-restore exit status (stderr %r)" % r.stderr)
    log(r.stdout.strip())
    again = run_restore(t, path, m, cl)
    eq(again.returncode, 1, "raftkv-restore into a non-empty data dir")
    check("not empty" in again.stderr, "message for a non-empty data dir: %r" % again.stderr)
    cl.start()
    after = state(m)
    eq(after, before, "restored state (revision, every key)")
    expect_compacted(m, compact_at - 1, "restored compaction")
    st = ctl_json(m, "endpoint", "status")[0]["Status"]
    check(st["header"]["cluster_id"] != orig_cluster_id, "the restored cluster has a new id")
    ttl = ctl_json(m, "lease", "timetolive", "%x" % lease_id, "--keys")
    eq([k for k in ttl.get("keys", [])], ["bGVhc2Vk"], "the restored lease keeps its key")
    p = ctl_json(m, "put", "after-restore", "1")
    eq(p["header"]["revision"], before[0] + 1, "the revision continues after the restore")
    expect = state(m)
    m.stop()
    cl.start()
    eq(state(m), expect, "state after restarting the restored member")
    log("1-member restore: %d keys at revision %d, new cluster %x"
        % (len(after[1]), after[0], st["header"]["cluster_id"]))
    cl.stop()


def restore_three(t, path, before):
    cl = t.cluster(size=3, start=False)
    for m in cl.members:
        r = run_restore(t, path, m, cl)
        eq(r.returncode, 0, "raftkv-restore of %s (stderr %r)" % (m.name, r.stderr))
    ids = set()
    for m in cl.members:
        m.start()
    leader = wait_leader(cl.members)
    hashes = set()
    for m in cl.members:
        eq(state(m, "s"), before, "state of %s (serializable read)" % m.name)
        st = ctl_json(m, "endpoint", "status")[0]
        ids.add(st["Status"]["header"]["cluster_id"])
        hashes.add(ctl_json(m, "endpoint", "hashkv")[0]["HashKV"]["hash"])
    eq(len(ids), 1, "one cluster id on every restored member")
    eq(len(hashes), 1, "one HashKV on every restored member")
    p = ctl_json(leader, "put", "after-restore", "3")
    eq(p["header"]["revision"], before[0] + 1, "a write through the leader continues the revision")
    for m in cl.members:
        cluster.wait_until(lambda: m.ctl("get", "after-restore", "--consistency=s",
                                         "--print-value-only").stdout == "3\n",
                           10, "the write on %s" % m.name)
    log("3-member restore: every member at revision %d, leader %s" % (before[0] + 1, leader.name))
    cl.stop()


def main(t):
    cluster.require_python_etcd3()
    cl = t.cluster()
    m = cl.members[0]
    compact_at, lease_id = fill(m)
    before = state(m)
    orig_cluster_id = ctl_json(m, "endpoint", "status")[0]["Status"]["header"]["cluster_id"]
    path, data = save_and_check(t, m)
    stalled_reader(t, m)
    if is_etcd(t):
        log("restore: skipped for etcd (etcdctl snapshot restore handles bbolt files)")
        return
    refuse_damaged(t, path, data)
    restore_one(t, path, before, compact_at, lease_id, orig_cluster_id)
    restore_three(t, path, before)


cluster.run(main)
