"""
snapshot_restart: state survives restarts when most of it lives in snapshots.

With --snapshot-count 100 the server must snapshot (and may truncate its log)
many times while 1200+ keys are written, some overwritten and some deleted,
and a compaction is done.  After a clean restart and after a SIGKILL restart
every key must have the same value, version, create and mod revision, deleted
keys stay deleted, the revision and compact revision are unchanged, and new
writes continue the revision sequence.  The data dir must hold a snapshot
file (libraft's snapshot-* for raftkv, member/snap/*.snap for etcd).
"""
import os
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, check, eq, log  # noqa: E402

KEYS = 1200
THREADS = 4


def put_range(member, lo, hi, errors):
    try:
        c = member.client()
        for i in range(lo, hi):
            c.put("s/%05d" % i, "value-%d" % i)
    except Exception as e:
        errors.append(repr(e))


def state(member):
    """(revision, {key: (value, version, create, mod)}) of every s/ key."""
    from etcd3 import etcdrpc
    c = member.client()
    out = {}
    key, end, rev = b"s/", b"s0", 0
    while True:
        r = c.kvstub.Range(etcdrpc.RangeRequest(key=key, range_end=end, limit=500, revision=rev),
                           timeout=30)
        rev = r.header.revision
        for kv in r.kvs:
            out[kv.key.decode()] = (kv.value.decode(), kv.version, kv.create_revision,
                                    kv.mod_revision)
        if not r.more:
            return rev, out
        key = r.kvs[-1].key + b"\0"


def compare(before, after, what):
    rev0, kv0 = before
    rev1, kv1 = after
    eq(rev1, rev0, "%s: revision" % what)
    if kv0 != kv1:
        missing = sorted(set(kv0) - set(kv1))
        extra = sorted(set(kv1) - set(kv0))
        changed = sorted(k for k in set(kv0) & set(kv1) if kv0[k] != kv1[k])
        raise Failure("%s: %d keys missing (e.g. %s), %d extra (e.g. %s), %d changed (e.g. %s)"
                      % (what, len(missing), missing[:3], len(extra), extra[:3], len(changed),
                         [(k, kv0[k], kv1[k]) for k in changed[:2]]))
    log("%s: %d keys identical at revision %d" % (what, len(kv1), rev1))


def expect_compacted(member, rev, what):
    import grpc
    from etcd3 import etcdrpc
    c = member.client()
    try:
        c.kvstub.Range(etcdrpc.RangeRequest(key=b"s/00000", revision=rev), timeout=10)
    except grpc.RpcError as e:
        eq((e.code(), e.details()), (grpc.StatusCode.OUT_OF_RANGE,
                                      "etcdserver: mvcc: required revision has been compacted"),
           what)
        return
    raise Failure("%s: a read at revision %d (compacted) succeeded" % (what, rev))


def main(t):
    cluster.require_python_etcd3()
    cl = t.cluster(extra_args=["--snapshot-count", "100"])
    m = cl.members[0]

    errors = []
    per = KEYS // THREADS
    ths = [threading.Thread(target=put_range, args=(m, i * per, (i + 1) * per, errors))
           for i in range(THREADS)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(120)
    check(not errors, "writers failed: %s" % errors[:3])
    c = m.client()
    for i in range(0, KEYS, 10):
        c.put("s/%05d" % i, "overwritten-%d" % i)
    compact_at = c.get_response("s/00000").header.revision
    for i in range(5, KEYS, 50):
        c.delete("s/%05d" % i)
    c.compact(compact_at)
    for i in range(50):
        c.put("s/late/%02d" % i, "late")
    before = state(m)
    eq(len(before[1]), KEYS - KEYS // 50 + 50, "keys written")
    log("%d keys at revision %d, compacted at %d" % (len(before[1]), before[0], compact_at))

    eq(m.stop() in (0, -15), True, "clean exit on SIGTERM")
    snaps = cluster.find_files(m.data_dir, ["snapshot-*", "*.snap"])
    check(snaps, "no snapshot file (snapshot-* or *.snap) under %s after %d writes with "
          "--snapshot-count 100; files: %s"
          % (m.data_dir, before[0], cluster.find_files(m.data_dir, ["*"])[:20]))
    log("snapshot files: %s" % [os.path.relpath(s, m.data_dir) for s in snaps[:4]])

    cl.start()
    compare(before, state(m), "after SIGTERM restart")
    expect_compacted(m, compact_at - 1, "compaction survives a restart")

    m.kill()
    cl.start()
    compare(before, state(m), "after SIGKILL restart")
    expect_compacted(m, compact_at - 1, "compaction survives a crash")

    c = m.client()
    p = c.put("s/new", "after")
    eq(p.header.revision, before[0] + 1, "the revision continues after restarts")
    eq(c.get("s/new")[0], b"after", "new write readable")


cluster.run(main)
