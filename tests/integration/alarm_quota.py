"""
alarm_quota: the NOSPACE alarm and --quota-backend-bytes, as etcd 3.4 does them.

On one member with a small quota (and --snapshot-count 10, so that the
alarm also travels through a raft snapshot):
  * no alarm at first: `alarm list` prints nothing (`{}` in JSON), /health
    is true, Status has no errors, `alarm disarm` is a no-op;
  * an alarm raised through the API (python3-etcd3 create_alarm for another
    member id) is listed, makes /health false and refuses puts; `etcdctl
    alarm disarm` clears it;
  * filling the store: the write that would reach the quota fails with
    ResourceExhausted "etcdserver: mvcc: database space exceeded" and raises
    NOSPACE for this member: `alarm list` shows "memberID:<id>
    alarm:NOSPACE", Status.errors the same, /health is false (503);
  * while raised: Put, Txn with a put and LeaseGrant fail with that error
    (etcdctl and python3-etcd3), while Range, DeleteRange and Compact work;
  * the alarm survives a restart;
  * after deleting, compacting (and defrag) and `alarm disarm` (which prints
    the disarmed alarm) the member is healthy and takes writes again.
Disk full (raftkv only, and only where a tmpfs can be mounted, i.e. as
root): a member whose data dir sits on a 64 MiB tmpfs that is then filled
answers writes with ResourceExhausted "etcdserver: mvcc: database space
exceeded" at once (no hang), reports /health false (503, with a "reason"
that says the disk is full) and, being the only member, still serves
serializable reads; once space is freed it is healthy and writes again.
(cluster_disk_full.py: the same on one member of three.)
(etcd dies on a full disk: "failed to write" on its WAL.)
"""
import json
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, check, ctl_json, eq, log  # noqa: E402

QUOTA = 400000
NOSPACE = "etcdserver: mvcc: database space exceeded"
VALUE = "x" * 20000


def is_etcd(t):
    return os.path.basename(t.binary) == "etcd"


def errors(m):
    return ctl_json(m, "endpoint", "status")[0]["Status"].get("errors", [])


def err_line(r):
    lines = r.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def expect_nospace(m, *args, input=None, what=None):
    r = m.ctl(*args, input=input, check_rc=False)
    check(r.returncode != 0, "%s should fail while NOSPACE is raised; stdout %r"
          % (what or " ".join(args), r.stdout))
    check(NOSPACE in err_line(r), "%s: error %r" % (what or " ".join(args), err_line(r)))


def py_put_error(c, key):
    import grpc
    from etcd3 import etcdrpc
    try:
        c.kvstub.Put(etcdrpc.PutRequest(key=key.encode(), value=b"v"), timeout=10)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return None


def main(t):
    cluster.require_python_etcd3()
    import grpc
    cl = t.cluster(extra_args=["--quota-backend-bytes", str(QUOTA), "--snapshot-count", "10"])
    m = cl.members[0]
    mid = ctl_json(m, "endpoint", "status")[0]["Status"]["header"]["member_id"]
    c = m.client()

    # ---- nothing raised
    eq(m.ctl("alarm", "list").stdout, "", "alarm list with no alarm")
    eq(json.loads(m.ctl("alarm", "list", "-w", "json").stdout), {}, "alarm list -w json with no alarm")
    eq(m.ctl("alarm", "disarm").stdout, "", "alarm disarm with no alarm")
    eq(m.health(10), (200, '{"health":"true"}'), "/health with no alarm")
    eq(errors(m), [], "Status.errors with no alarm")
    eq(list(c.list_alarms()), [], "python3-etcd3 list_alarms with no alarm")

    # ---- an alarm raised through the API, for another member id
    got = c.create_alarm(member_id=12345)
    eq([(a.alarm_type, a.member_id) for a in got], [(1, 12345)], "create_alarm answer")
    eq(m.ctl("alarm", "list").stdout, "memberID:12345 alarm:NOSPACE \n", "alarm list after create_alarm")
    eq(m.health(10), (503, '{"health":"false"}\n'), "/health with an alarm raised")
    expect_nospace(m, "put", "k", "v")
    eq(m.ctl("alarm", "disarm").stdout, "memberID:12345 alarm:NOSPACE \n", "alarm disarm output")
    eq(m.ctl("alarm", "list").stdout, "", "alarm list after disarm")
    eq(m.ctl("put", "k", "v").stdout, "OK\n", "put after disarm")
    eq(m.health(10), (200, '{"health":"true"}'), "/health after disarm")

    # ---- fill the store until the quota refuses a write
    n = 0
    while True:
        r = m.ctl("put", "fill/%03d" % n, VALUE, check_rc=False)
        if r.returncode != 0:
            eq(err_line(r), "Error: " + NOSPACE, "error of the put over the quota")
            break
        n += 1
        check(n < 200, "200 puts of %d bytes fit in a quota of %d bytes" % (len(VALUE), QUOTA))
    check(n >= 3, "only %d puts of %d bytes fit in a quota of %d bytes" % (n, len(VALUE), QUOTA))
    log("the quota refused put #%d" % (n + 1))

    line = "memberID:%d alarm:NOSPACE \n" % mid
    eq(m.ctl("alarm", "list").stdout, line, "alarm list once the quota is reached")
    eq(json.loads(m.ctl("alarm", "list", "-w", "json").stdout),
       {"alarms": [{"memberID": mid, "alarm": 1}]}, "alarm list -w json")
    eq(errors(m), [line[:-1]], "Status.errors with NOSPACE")
    eq(m.health(10), (503, '{"health":"false"}\n'), "/health with NOSPACE")
    eq([(a.alarm_type, a.member_id) for a in c.list_alarms()], [(1, mid)],
       "python3-etcd3 list_alarms")

    # ---- what NOSPACE refuses, and what it lets through
    expect_nospace(m, "put", "small", "v")
    expect_nospace(m, "lease", "grant", "60")
    expect_nospace(m, "txn", input="\n\nput t1 v\n\n", what="txn with a put")
    eq(py_put_error(c, "py"), (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE), "python3-etcd3 put")
    eq(m.ctl("get", "fill/000", "--print-value-only").stdout, VALUE + "\n", "get while NOSPACE")
    for i in range(12):  # entries past --snapshot-count: a raft snapshot carries the alarm
        eq(m.ctl("del", "fill/%03d" % i).stdout, "1\n", "delete while NOSPACE")
    rev = ctl_json(m, "get", "k")["header"]["revision"]
    check("compacted revision %d" % rev in m.ctl("compaction", str(rev)).stdout,
          "compaction while NOSPACE")

    # ---- the alarm is replicated state: it survives a restart
    cl.restart()
    eq(m.ctl("alarm", "list").stdout, line, "alarm list after a restart")
    expect_nospace(m, "put", "small", "v", what="put after a restart")
    if not is_etcd(t):
        check(", 1 alarms," in m.log_text(), "no raft snapshot with the alarm was restored")

    # ---- free space, disarm, write again
    m.ctl("del", "fill/", "--prefix")
    rev = ctl_json(m, "get", "k")["header"]["revision"]
    m.ctl("compaction", str(rev))
    m.ctl("defrag")
    eq(m.ctl("alarm", "disarm").stdout, line, "alarm disarm prints the disarmed alarm")
    eq(m.ctl("alarm", "list").stdout, "", "alarm list after disarm")
    eq(errors(m), [], "Status.errors after disarm")
    eq(m.health(10), (200, '{"health":"true"}'), "/health after disarm")
    eq(m.ctl("put", "small", "v").stdout, "OK\n", "put after disarm")
    eq(m.ctl("alarm", "disarm", "-w", "json").stdout.strip(), "{}", "disarm with nothing raised")

    disk_full(t)


def disk_full(t):
    import grpc
    from etcd3 import etcdrpc
    if is_etcd(t):
        log("disk full: skipped for etcd (it exits when its WAL cannot be written)")
        return
    if os.geteuid() != 0:
        log("disk full: skipped (mounting a tmpfs needs root)")
        return
    mnt = os.path.join(t.tmp, "small-disk")
    os.mkdir(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt],
                       capture_output=True, text=True)
    if r.returncode != 0:
        log("disk full: skipped (cannot mount a tmpfs: %s)" % r.stderr.strip())
        return
    cl = None
    try:
        cl = t.cluster(start=False)
        m = cl.members[0]
        m.data_dir = os.path.join(mnt, "m1.data")
        cl.start()
        # Let libraft prepare its spare segments first (free space stops
        # moving), then fill what is left.
        last, stable = None, 0
        while stable < 5:
            st = os.statvfs(mnt)
            stable = stable + 1 if st.f_bavail == last else 0
            last = st.f_bavail
            time.sleep(0.1)
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass  # full: that is the point
        c = m.client(timeout=15)
        value = os.urandom(1000000)
        failed = None
        for i in range(40):
            t0 = time.monotonic()
            try:
                c.kvstub.Put(etcdrpc.PutRequest(key=b"disk/%d" % i, value=value), timeout=15)
            except grpc.RpcError as e:
                failed = (e.code(), e.details())
            took = time.monotonic() - t0
            check(took < 5, "put #%d took %.1fs on a full disk: it must fail, not hang" % (i, took))
            if failed:
                break
        eq(failed, (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE), "a put on a full disk")
        log("disk full: put #%d failed at once" % (i + 1))
        cluster.wait_until(lambda: m.health(10)[0] == 503, 5, "/health false on a full disk")
        code, body = m.health(10)
        h = json.loads(body)
        eq((code, h["health"]), (503, "false"), "/health on a full disk")
        check(h.get("reason", "").startswith("disk full: "), "/health says why: %r" % body)
        eq(m.ctl("get", "disk/0", "--consistency=s", "--keys-only").stdout.strip(), "disk/0",
           "serializable read on a full disk")
        check("cannot grow" in m.log_text(), "no log line says the log cannot grow")
        os.remove(filler)
        cluster.wait_until(lambda: m.health(10)[0] == 200, 30, "/health true once space is freed",
                           interval=0.2)
        eq(m.ctl("put", "disk/after", "ok").stdout, "OK\n", "put once space is freed")
        log("disk full: healthy and writable again once space was freed")
    finally:
        if cl is not None:
            for mm in cl.members:
                mm.kill()
        r = subprocess.run(["umount", mnt], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", mnt], capture_output=True)


cluster.run(main)
