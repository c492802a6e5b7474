#!/usr/bin/python3
"""
corrupt_data_dir: raftkv started on damaged data dirs, thousands of times.

Two real data dirs are made first, each by a real member (--snapshot-count
100, so they hold two raft snapshots, closed segments and the bootstrap
segment): "clean" after a SIGTERM shutdown, "crash" after more writes and a
SIGKILL (so it also has open segments, one with entries and preallocated
empty ones).  Then, until the time budget is spent (CORRUPT_SECONDS, default
50 s; three workers in parallel, each with its own member identity
and ports), a copy of one of them gets one damage (bits flipped, bytes
overwritten or zeroed, the file truncated or extended) in one of its files
(closed or open segment, snapshot data, snapshot .meta, metadata1/2, the
identity file), and raftkv is started on it.  Each start must end one of
two ways:
  - refused: exit status 1 after a "raftkv: cannot start: ..." line;
  - started: /health answers, and the whole keyspace (read through the
    gateway) is exactly what was acknowledged before the damage, then a
    SIGTERM shutdown exits 0.  The one loss allowed: damage in the header of
    the last batch of an open segment, which nobody can tell from the torn
    last write of a crash: then the newest writes (as many as that batch
    held) may be missing, nothing else.
Never a signal, a sanitizer report, or a start that neither serves nor
exits within 10 s.  Damage in regions libraft does not read (an older
snapshot, the zero tail of an open segment) may start; damage to what it
needs must be refused, never silently truncated (raftkv turns libraft's
auto-recovery off and checks open segments itself, see segcheck.h).

raftkv only: the data dir is libraft's; against etcd this test skips.
"""
import base64
import http.client
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, Skip, check, log  # noqa: E402

BUDGET = float(os.environ.get("CORRUPT_SECONDS", "50"))
# Most of a refused start is waiting (libraft's probe of kernel AIO), so a
# few workers in parallel get through more of them on 2 cores.
WORKERS = 3
MIN_STARTS = 100
START_TIMEOUT = 10.0


def http_json(port, path, body=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if body is None:
            c.request("GET", path)
        else:
            c.request("POST", path, json.dumps(body))
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def keyspace(port):
    """Every key and value, through the gateway."""
    st, body = http_json(port, "/v3/kv/range", {"key": "AA==", "range_end": "AA=="})
    check(st == 200, "range: HTTP %d %r" % (st, body[:200]))
    out = {}
    for kv in json.loads(body).get("kvs", []):
        out[base64.b64decode(kv["key"]).decode()] = base64.b64decode(kv.get("value", "")).decode()
    return out


def batches(path):
    """(start, header_end, n_entries) of each batch of a libraft segment."""
    b = open(path, "rb").read()
    out, off = [], 8
    while off + 16 <= len(b):
        n = struct.unpack("<Q", b[off + 8:off + 16])[0]
        if n == 0 or off + 16 + 16 * n > len(b):
            break
        hdr_end = off + 16 + 16 * n
        data = sum(struct.unpack("<I", b[off + 16 + 16 * i + 12:off + 16 + 16 * i + 16])[0]
                   for i in range(n))
        out.append((off, hdr_end, n))
        off = hdr_end + data
    return out


class Pristine:
    """One data dir as a member left it, and what it must hold."""

    def __init__(self, kind, path, expected, tail_keys):
        self.kind = kind
        self.path = path
        self.expected = expected      # key -> value
        self.tail_keys = tail_keys    # the last writes, in order (may be lost, see above)
        self.files = sorted(os.listdir(path))
        # each file's bytes up to its zero tail, and its size
        self.content = {}
        for f in self.files:
            data = open(os.path.join(path, f), "rb").read()
            self.content[f] = (data.rstrip(b"\0"), len(data))
        # open segment -> (header region of its last batch, entries in it)
        self.last_batch = {}
        for f in self.files:
            if f.startswith("open-"):
                bs = batches(os.path.join(path, f))
                if bs:
                    start, hdr_end, n = bs[-1]
                    self.last_batch[f] = (start, hdr_end, n)


def make_dirs(t, worker):
    """Both pristine dirs of one worker (one member identity, one port set)."""
    c = t.cluster(extra_args=["--snapshot-count", "100"])
    m = c.members[0]
    # A client of our own (t.close_clients() would close the other workers').
    cl = cluster.py_client(m.client_port)
    expected = {}
    for i in range(160):
        k, v = "a/%03d" % (i % 60), "v%d-%d" % (worker, i)
        cl.put(k, v)
        expected[k] = v
    for i in range(0, 60, 7):
        cl.delete("a/%03d" % i)
        expected.pop("a/%03d" % i)
    cl.put("b", "x" * 3000)
    expected["b"] = "x" * 3000
    for i in range(150):
        k, v = "k/%04d" % i, "w%d-%d" % (worker, i)
        cl.put(k, v)
        expected[k] = v
    cl.close()
    check(m.stop() in (0, -signal.SIGTERM), "worker %d: clean stop" % worker)
    dirs = []
    clean = os.path.join(t.tmp, "pristine-clean-%d" % worker)
    shutil.copytree(m.data_dir, clean)
    dirs.append(Pristine("clean", clean, dict(expected), []))

    m.start()
    c.wait_ready()
    cl = cluster.py_client(m.client_port)
    tail = []
    for i in range(40):
        k, v = "t/%03d" % i, "z%d-%d" % (worker, i)
        cl.put(k, v)
        expected[k] = v
        tail.append(k)
    cl.close()
    m.kill()
    crash = os.path.join(t.tmp, "pristine-crash-%d" % worker)
    shutil.copytree(m.data_dir, crash)
    p = Pristine("crash", crash, dict(expected), tail)
    check(p.last_batch, "worker %d: the crash left no open segment with entries: %s"
          % (worker, p.files))
    dirs.append(p)
    return m, dirs


def copy_dir(pristine, dst):
    """A copy libraft reads as the original.  Segments are preallocated: only
    their non-zero part is written, the rest is left sparse (read as zeros),
    which keeps a start cheap enough to do thousands."""
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst, mode=0o700)
    for f, (used, size) in pristine.content.items():
        fd = os.open(os.path.join(dst, f), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, used)
        os.ftruncate(fd, size)
        os.close(fd)


def damage(rnd, pristine, work):
    """Copies pristine to work and damages one file in place; returns (file,
    offset, what)."""
    copy_dir(pristine, work)
    files = pristine.files
    opens = [f for f in files if f.startswith("open-")]
    used_open = list(pristine.last_batch)
    pick = rnd.random()
    if pristine.kind == "crash" and pick < 0.45:
        f = rnd.choice(used_open) if rnd.random() < 0.85 or len(opens) == 1 else rnd.choice(opens)
    elif pick < 0.75:
        f = rnd.choice([x for x in files if x[0].isdigit()])
    elif pick < 0.88:
        f = rnd.choice([x for x in files if x.startswith("snapshot-")])
    else:
        f = rnd.choice([x for x in files if x.startswith("metadata") or x == "raftkv-identity"])
    used, size = pristine.content[f]
    if f.startswith("open-") and rnd.random() < 0.1 and len(used) < size:
        off = rnd.randrange(len(used), size)  # the preallocated zero tail
    else:
        off = rnd.randrange(max(len(used), 1))
    old = (used[off:off + 64] + bytes(64))[:64]
    op = rnd.random()
    if op < 0.55:
        b = bytearray(old[:1])
        for _ in range(rnd.randint(1, 3)):
            b[0] ^= 1 << rnd.randrange(8)
        patch, what = bytes(b), "flip bits at %d" % off
    elif op < 0.75:
        n = rnd.randint(1, 8)
        patch = bytes(rnd.randrange(256) for _ in range(n))
        what = "overwrite %d bytes at %d" % (n, off)
    elif op < 0.85:
        n = rnd.randint(8, 64)
        patch, what = bytes(n), "zero %d bytes at %d" % (n, off)
    elif op < 0.93 and not f.startswith("open-"):
        patch, what = None, "truncate to %d" % off
    else:
        patch = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 64)))
        off, what = size, "append %d bytes of garbage" % len(patch)
    with open(os.path.join(work, f), "r+b") as fh:
        if patch is None:
            fh.truncate(off)
        else:
            fh.seek(off)
            fh.write(patch[:max(size - off, 0)] if off < size else patch)
    return f, off, what


def allowed_loss(pristine, f, off, what):
    """How many of the newest writes may be missing after this damage."""
    lb = pristine.last_batch.get(f)
    if not lb or not what.split()[0] in ("flip", "overwrite", "zero"):
        return 0
    start, hdr_end, n = lb
    n_bytes = int(what.split()[1]) if what.split()[0] != "flip" else 1
    return n if off < hdr_end and off + n_bytes > start else 0


def run_one(m, pristine, work, f, off, what, stats):
    argv = m.argv("new")
    argv[argv.index("--data-dir") + 1] = work
    logp = work + ".log"
    with open(logp, "wb") as lf:
        p = subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=cluster.clean_env(), start_new_session=True)
    cluster._LIVE[p.pid] = p
    desc = "%s dir, %s: %s" % (pristine.kind, f, what)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        ready = False
        while time.monotonic() < deadline:
            if p.poll() is not None:
                break
            try:
                st, _ = http_json(m.client_port, "/health", timeout=1)
                if st == 200:
                    ready = True
                    break
            except OSError:
                pass
            time.sleep(0.01)
        text = open(logp, "rb").read().decode("utf-8", "replace")
        for mark in cluster.SANITIZER_MARKS:
            check(mark not in text, "%s: sanitizer report:\n%s" % (desc, text[-3000:]))
        if not ready:
            if p.poll() is None:
                raise Failure("%s: neither serving nor exited after %.0fs:\n%s"
                              % (desc, START_TIMEOUT, text[-2000:]))
            check(p.returncode == 1, "%s: exit status %s (want 1, a refusal):\n%s"
                  % (desc, p.returncode, text[-2000:]))
            check("raftkv: cannot start:" in text, "%s: refused without the "
                  "\"raftkv: cannot start\" line:\n%s" % (desc, text[-2000:]))
            stats["refused"] += 1
            return
        got = keyspace(m.client_port)
        want = pristine.expected
        loss = allowed_loss(pristine, f, off, what)
        if got != want:
            missing = [k for k in pristine.tail_keys if k not in got]
            others = {k: v for k, v in want.items() if k not in missing}
            ok = (loss and got == others and len(missing) <= loss and
                  missing == pristine.tail_keys[len(pristine.tail_keys) - len(missing):])
            if not ok:
                lost = sorted(set(want) - set(got))
                wrong = sorted(k for k in got if want.get(k) != got[k])
                raise Failure("%s: started with another state: %d keys lost %s, %d keys wrong "
                              "or extra %s\n%s" % (desc, len(lost), lost[:10], len(wrong),
                                                    wrong[:10], text[-1500:]))
            stats["tail_lost"] += 1
        stats["started"] += 1
        os.killpg(p.pid, signal.SIGTERM)
        try:
            rc = p.wait(15)
        except subprocess.TimeoutExpired:
            raise Failure("%s: no exit within 15 s of SIGTERM" % desc)
        check(rc in (0, -signal.SIGTERM), "%s: exit %s on SIGTERM" % (desc, rc))
        text = open(logp, "rb").read().decode("utf-8", "replace")
        for mark in cluster.SANITIZER_MARKS:
            check(mark not in text, "%s: sanitizer report at shutdown:\n%s" % (desc, text[-3000:]))
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        cluster._LIVE.pop(p.pid, None)


def worker(t, idx, m, dirs, deadline, stats, errors):
    rnd = random.Random(int(os.environ.get("CORRUPT_SEED", "1")) * 100 + idx)
    # tmpfs when there is one: a start fsyncs the identity file
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else t.tmp
    work = os.path.join(base, "raftkv-corrupt-%d-%d" % (os.getpid(), idx))
    t.closers.append(lambda: (shutil.rmtree(work, ignore_errors=True),
                              os.path.exists(work + ".log") and os.unlink(work + ".log")))
    try:
        while time.monotonic() < deadline and not errors:
            pristine = dirs[stats["runs"] % 2]
            f, off, what = damage(rnd, pristine, work)
            stats["runs"] += 1
            run_one(m, pristine, work, f, off, what, stats)
    except Exception as e:  # reported by main
        errors.append(e)


def main(t):
    if os.path.basename(t.binary) != "raftkv":
        raise Skip("the data dir format is raftkv's (libraft's); %s has its own" % t.binary)
    members, errors = [None] * WORKERS, []

    def make(i):
        try:
            members[i] = make_dirs(t, i)
        except Exception as e:
            errors.append(e)
    threads = [threading.Thread(target=make, args=(i,)) for i in range(WORKERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    log("pristine dirs ready: %s" % [p.files for p in members[0][1]])
    deadline = time.monotonic() + BUDGET
    stats = [dict(runs=0, refused=0, started=0, tail_lost=0) for _ in members]
    threads = [threading.Thread(target=worker, args=(t, i, m, dirs, deadline, stats[i], errors))
               for i, (m, dirs) in enumerate(members)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = {k: sum(s[k] for s in stats) for k in stats[0]}
    log("%d damaged starts: %d refused, %d started with the right state (%d of them "
        "without the newest writes of a damaged last-batch header)"
        % (total["runs"], total["refused"], total["started"], total["tail_lost"]))
    if errors:
        e = errors[0]
        raise e if isinstance(e, Failure) else Failure("worker: %r" % e)
    check(total["runs"] >= MIN_STARTS, "only %d starts in %.0f s" % (total["runs"], BUDGET))
    check(total["refused"] > 0 and total["started"] > 0,
          "the damage never led to both outcomes: %s" % total)


cluster.run(main)
