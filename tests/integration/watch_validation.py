"""
watch_validation: 10,000 watchers receive exactly the events they should,
on one member, and on the followers of three members across a leader kill.

A writer process (this file run with --writer) applies a steady load of
puts, deletes, range deletes and multi-key txns, every one of which changes
the store, so each acknowledged write is exactly one revision; it logs every
write with its revision (a write whose outcome is unknown because its member
died is resolved through the revision the new leader reports).  Meanwhile
100 watch streams (raw etcdrpc.WatchStub bidi calls over 4 connections,
since python3-etcd3 opens one watcher per call) each create 100 watchers:
single keys, 10- and 100-key prefixes, random ranges, from-key ranges and
the whole prefix, 40% with prev_kv, 20% starting from a past revision,
created while the writes go on.

The expected events of every watcher are computed by brute force from the
write log, replayed through a model of etcd's MVCC (create/mod revision,
version, prev_kv, DELETE events carrying only key and mod_revision, events of
one revision in operation order).  Every watcher must receive exactly that
list: in order, nothing missing, nothing duplicated, with the right prev_kv,
and all its events of one revision in one response.  A watcher created with
start_revision 0 gets the events after the revision in its `created` reply.

Phase 1: one member.  Phase 2: three members, watchers on the two
followers (half each: whichever is not elected after the kill stays a
follower throughout), writes to the leader (found with endpoint status; a
write sent straight to the leader cannot be applied behind the writer's
back after a timeout, as a write relayed by a follower could, which keeps
the outcome of every write knowable), the leader is killed with SIGKILL
mid-load and later restarted; the watchers must still see exactly the
committed writes.  Streams are opened without `hasleader` metadata, so a
leaderless moment does not end them.
"""
import bisect
import json
import os
import random
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, check, log  # noqa: E402

NKEYS = 2000            # w/0000 .. w/1999 are written; watchers reach beyond
STREAMS = 100
PER_STREAM = 100
CHANNELS = 4
PAST_FRACTION = 0.2
PREVKV_FRACTION = 0.4
PREFILL = 300           # writes before the watchers are created
RATE = 120              # writes/s after the prefill
LOAD_1 = 8.0            # seconds of writes once the watchers exist, phase 1
KILL_AT = 3.0           # phase 2: seconds after the watchers exist
RESTART_AT = 7.0        # seconds after the kill
LOAD_3 = 4.0            # seconds of writes after the restart
WRITER_MAX = 120.0      # the writer stops by itself after this
DRAIN_TIMEOUT = 30.0
GRPC_OPTS = [("grpc.use_local_subchannel_pool", 1),
             ("grpc.max_receive_message_length", 256 << 20)]

PUT, DELETE = 0, 1


def key(i):
    return "w/%04d" % i


def prefix_end(p):
    return p[:-1] + chr(ord(p[-1]) + 1)


# ---------------------------------------------------------------- the model

class Model:
    """etcd's MVCC as far as watchers can see it.  kv: key -> (value,
    create_revision, mod_revision, version); lease is always 0 here."""

    def __init__(self):
        self.kv = {}
        self.keys = []      # sorted keys of kv

    def in_range(self, k, end):
        if not end:
            return [k] if k in self.kv else []
        i = bisect.bisect_left(self.keys, k)
        j = len(self.keys) if end == "\0" else bisect.bisect_left(self.keys, end)
        return self.keys[i:j]

    def apply(self, rev, ops):
        """Applies one write (a list of put/del ops, as one txn) at rev and
        returns its events as (type, key, value, create, mod, version, lease,
        prev) with prev = (key, value, create, mod, version, lease) or None;
        keys and values are bytes, as the client receives them."""
        evs = []
        for op in ops:
            if op[0] == "put":
                k, v = op[1], op[2]
                old = self.kv.get(k)
                if old is None:
                    new = (v, rev, rev, 1)
                    bisect.insort(self.keys, k)
                else:
                    new = (v, old[1], rev, old[3] + 1)
                self.kv[k] = new
                evs.append((PUT, k.encode(), v.encode(), new[1], rev, new[3], 0,
                            prev_tuple(k, old)))
            else:
                for k in self.in_range(op[1], op[2]):
                    old = self.kv.pop(k)
                    self.keys.remove(k)
                    evs.append((DELETE, k.encode(), b"", 0, rev, 0, 0, prev_tuple(k, old)))
        return evs


def prev_tuple(k, old):
    if old is None:
        return None
    return (k.encode(), old[0].encode(), old[1], old[2], old[3], 0)


def gen_write(rng, model, seq):
    """One write that certainly changes the store (so it is exactly one
    revision): a put, a delete of an existing key, a delete of a 10-key
    group holding at least one key, or a txn of 2-5 puts in one group plus
    deletes elsewhere."""
    val = lambda: "v%d.%x" % (seq, rng.getrandbits(24))  # noqa: E731
    r = rng.random()
    if r < 0.15 and model.keys:
        return [("del", rng.choice(model.keys), "")]
    if r < 0.25 and model.keys:
        g = rng.choice(model.keys)[:5]
        return [("del", g, prefix_end(g))]
    if r < 0.55:
        g = rng.randrange(NKEYS // 10)
        ks = rng.sample(range(g * 10, g * 10 + 10), rng.randint(2, 5))
        rng.shuffle(ks)     # events follow operation order, not key order
        ops = [("put", key(i), val()) for i in ks]
        gp = "w/%03d" % g
        others = [k for k in model.keys if not k.startswith(gp)]
        for k in rng.sample(others, min(len(others), rng.randint(0, 2))):
            if any(op[0] == "del" and op[1][:5] == k[:5] for op in ops):
                continue    # overlapping deletes in one txn: keep the model simple
            if rng.random() < 0.3:
                ops.append(("del", k[:5], prefix_end(k[:5])))
            else:
                ops.append(("del", k, ""))
        return ops
    return [("put", key(rng.randrange(NKEYS)), val())]


# ---------------------------------------------------------------- the writer process

def writer_main(argv):
    """--writer ENDPOINTS OUT SEED STOPFILE: writes to the leader among
    ENDPOINTS (comma-separated), logging one JSON line per write, until
    STOPFILE exists."""
    import grpc
    from etcd3 import etcdrpc

    endpoints = argv[0].split(",")
    out = open(argv[1], "a", buffering=1)
    rng = random.Random(int(argv[2]))
    stopfile = argv[3]
    chans = {}

    def chan(ep, fresh=False):
        if fresh and ep in chans:
            chans.pop(ep).close()
        if ep not in chans:
            chans[ep] = grpc.insecure_channel(ep, options=GRPC_OPTS)
        return chans[ep]

    def find_leader(timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ep in endpoints:
                try:
                    st = etcdrpc.MaintenanceStub(chan(ep)).Status(etcdrpc.StatusRequest(), timeout=1)
                except grpc.RpcError:
                    chan(ep, fresh=True)
                    continue
                if st.leader and st.leader == st.header.member_id:
                    return ep
            time.sleep(0.1)
        raise RuntimeError("no leader among %s within %.0fs" % (endpoints, timeout))

    def current_rev():
        """A linearizable read on the leader: every committed write is in it."""
        deadline = time.monotonic() + 30
        while True:
            ep = find_leader()
            try:
                r = etcdrpc.KVStub(chan(ep)).Range(
                    etcdrpc.RangeRequest(key=b"w/", range_end=b"w0", count_only=True), timeout=3)
                return ep, r.header.revision
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                chan(ep, fresh=True)
                time.sleep(0.1)

    def send(ep, ops):
        kv = etcdrpc.KVStub(chan(ep))
        if len(ops) == 1 and ops[0][0] == "put":
            return kv.Put(etcdrpc.PutRequest(key=ops[0][1].encode(), value=ops[0][2].encode()),
                          timeout=3).header.revision
        if len(ops) == 1:
            return kv.DeleteRange(etcdrpc.DeleteRangeRequest(
                key=ops[0][1].encode(), range_end=ops[0][2].encode()), timeout=3).header.revision
        req = etcdrpc.TxnRequest()
        for op in ops:
            if op[0] == "put":
                req.success.add().request_put.CopyFrom(
                    etcdrpc.PutRequest(key=op[1].encode(), value=op[2].encode()))
            else:
                req.success.add().request_delete_range.CopyFrom(
                    etcdrpc.DeleteRangeRequest(key=op[1].encode(), range_end=op[2].encode()))
        r = kv.Txn(req, timeout=3)
        if not r.succeeded:
            raise RuntimeError("txn without compares did not succeed")
        return r.header.revision

    model = Model()
    leader, last = current_rev()
    if last != 1:
        raise RuntimeError("store not empty at start (revision %d)" % last)
    seq = 0
    paced_from = None
    t_end = time.monotonic() + WRITER_MAX
    while True:
        now = time.monotonic()
        if seq >= PREFILL:
            if paced_from is None:
                paced_from = now
            if now >= t_end or os.path.exists(stopfile):
                break
            due = paced_from + (seq - PREFILL) / RATE
            if due > now:
                time.sleep(due - now)
        ops = gen_write(rng, model, seq)
        seq += 1
        try:
            rev = send(leader, ops)
        except grpc.RpcError as e:
            # Unknown outcome: the member may have died with the write in
            # flight.  Once a leader answers a linearizable read, every write
            # that will ever commit is in its revision.
            time.sleep(0.5)
            leader, rev = current_rev()
            if rev == last:
                out.write(json.dumps({"dropped": ops, "err": str(e.code())}) + "\n")
                continue
            if rev != last + 1:
                raise RuntimeError("revision %d after an unanswered write at %d" % (rev, last))
            out.write(json.dumps({"resolved": True}) + "\n")
        if rev != last + 1:
            raise RuntimeError("write %r got revision %d, want %d" % (ops, rev, last + 1))
        model.apply(rev, ops)
        last = rev
        out.write(json.dumps({"rev": rev, "ops": ops, "t": time.monotonic(), "ep": leader}) + "\n")
    time.sleep(0.5)
    _, rev = current_rev()
    if rev != last:
        raise RuntimeError("final revision %d, but the last logged write is %d" % (rev, last))
    out.write(json.dumps({"final": last}) + "\n")
    out.close()


class Writer:
    def __init__(self, t, endpoints, seed, tag):
        self.path = os.path.join(t.tmp, "writes-%s.jsonl" % tag)
        self.stopfile = os.path.join(t.tmp, "stop-%s" % tag)
        self.err = open(os.path.join(t.tmp, "writer-%s.err" % tag), "w+")
        self.proc = subprocess.Popen([cluster.PYTHON, os.path.abspath(__file__), "--writer",
                                      endpoints, self.path, str(seed), self.stopfile],
                                     stdout=self.err, stderr=subprocess.STDOUT,
                                     env=cluster.clean_env())
        t.closers.append(self.kill)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def records(self):
        try:
            with open(self.path) as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            return []
        return [json.loads(x) for x in lines[:-1]]   # the last may be partial

    def writes(self):
        return [r for r in self.records() if "rev" in r]

    def wait_writes(self, n, timeout):
        def enough():
            self.check_alive()
            return len(self.writes()) >= n
        cluster.wait_until(enough, timeout, "%d writes" % n, 0.05)

    def check_alive(self):
        rc = self.proc.poll()
        if rc not in (None, 0):
            self.err.seek(0)
            raise Failure("writer failed (exit %d):\n%s" % (rc, self.err.read()[-3000:]))

    def finish(self, timeout):
        open(self.stopfile, "w").close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Failure("writer did not finish within %.0fs" % timeout)
        self.check_alive()
        recs = self.records()
        check(recs and "final" in recs[-1], "writer log has no final record")
        return recs


# ---------------------------------------------------------------- the watchers

def watcher_specs(rng, rev_now):
    """STREAMS lists of PER_STREAM (key, range_end, start_revision, prev_kv)."""
    out = []
    for s in range(STREAMS):
        specs = []
        kinds = (["key"] * 50 + ["p10"] * 25 + ["p100"] + ["range"] * 15 +
                 (["all"] if s % 20 == 0 else []) + (["from"] * 2 if s % 10 == 0 else []))
        kinds += ["key"] * (PER_STREAM - len(kinds))
        for kind in kinds:
            if kind == "key":
                k, e = key(rng.randrange(NKEYS + NKEYS // 40)), ""
            elif kind == "p10":
                k = "w/%03d" % rng.randrange(NKEYS // 10 + 2)
                e = prefix_end(k)
            elif kind == "p100":
                k = "w/%02d" % rng.randrange(NKEYS // 100)
                e = prefix_end(k)
            elif kind == "range":
                a = rng.randrange(NKEYS)
                k, e = key(a), key(a + rng.randint(1, 40))
            elif kind == "all":
                k, e = "w/", "w0"
            else:
                k, e = key(rng.randrange(NKEYS)), "\0"
            start = rng.randint(1, rev_now) if rng.random() < PAST_FRACTION else 0
            specs.append((k, e, start, rng.random() < PREVKV_FRACTION))
        out.append(specs)
    return out


def event_tuple(ev):
    kv = ev.kv
    prev = None
    if ev.HasField("prev_kv"):
        p = ev.prev_kv
        prev = (p.key, p.value, p.create_revision, p.mod_revision, p.version, p.lease)
    return (ev.type, kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version,
            kv.lease, prev)


class Stream:
    """One Watch call carrying PER_STREAM watchers.  All streams run on one
    asyncio loop (grpc.aio) in a background thread: the blocking API needs
    two threads per call and spends most of its time handing messages
    between them."""

    def __init__(self, idx, specs):
        self.idx = idx
        self.specs = specs
        self.created = []                   # (watch_id, header.revision) in reply order
        self.by_id = {}                     # watch_id -> index in specs
        self.events = [[] for _ in specs]
        self.last_rev = [0] * len(specs)
        self.first_len = [0] * len(specs)   # events in each watcher's first reply
        self.problems = []
        self.stopping = False
        self.call = None

    def problem(self, what):
        if len(self.problems) < 5:
            self.problems.append("stream %d: %s" % (self.idx, what))

    async def run(self, channel):
        import asyncio
        import grpc
        from etcd3 import etcdrpc
        self.call = etcdrpc.WatchStub(channel).Watch()
        reader = asyncio.ensure_future(self._read())
        try:
            for k, e, st, p in self.specs:
                await self.call.write(etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
                    key=k.encode(), range_end=e.encode(), start_revision=st, prev_kv=p)))
        except (grpc.RpcError, asyncio.CancelledError) as e:
            if not self.stopping:
                self.problem("create failed: %r" % e)
        await reader

    async def _read(self):
        import asyncio
        import grpc
        try:
            while True:
                r = await self.call.read()
                if r is grpc.aio.EOF:
                    if not self.stopping:
                        self.problem("stream ended by the server")
                    return
                self._handle(r)
        except (grpc.RpcError, asyncio.CancelledError) as e:
            if not self.stopping:
                self.problem("stream ended: %r" % e)
        except Exception as e:   # noqa: BLE001 (reported, not swallowed)
            self.problem("consumer crashed: %r" % e)

    def _handle(self, r):
        if r.created:
            n = len(self.created)
            self.created.append((r.watch_id, r.header.revision))
            if r.canceled or n >= len(self.specs) or r.watch_id in self.by_id:
                self.problem("bad created reply #%d: %s" % (n, r))
            else:
                self.by_id[r.watch_id] = n
            return
        if r.canceled:
            self.problem("watcher %d canceled: %r (compact_revision %d)"
                         % (r.watch_id, r.cancel_reason, r.compact_revision))
            return
        i = self.by_id.get(r.watch_id)
        if i is None:
            self.problem("a reply for watch id %d before its created reply" % r.watch_id)
            return
        if not r.events:
            return      # progress notification
        first = r.events[0].kv.mod_revision
        if first <= self.last_rev[i]:
            self.problem("watcher %d: a reply starts at revision %d after a reply "
                         "that reached %d (split revision or out of order)"
                         % (r.watch_id, first, self.last_rev[i]))
        evs = self.events[i]
        if not evs:
            self.first_len[i] = len(r.events)
        for ev in r.events:
            evs.append(event_tuple(ev))
        self.last_rev[i] = r.events[-1].kv.mod_revision


def open_streams(members, all_specs):
    """Stream i goes to members[i % len(members)], over CHANNELS connections
    per member.  Returns the streams and a function that closes them."""
    import asyncio
    import grpc
    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    streams = [Stream(i, specs) for i, specs in enumerate(all_specs)]

    async def setup():
        chans = [grpc.aio.insecure_channel(m.endpoint, options=GRPC_OPTS)
                 for _ in range(CHANNELS) for m in members]
        tasks = [asyncio.ensure_future(s.run(chans[i % len(chans)])) for i, s in enumerate(streams)]
        return chans, tasks
    chans, tasks = asyncio.run_coroutine_threadsafe(setup(), loop).result(30)

    async def teardown():
        for s in streams:
            s.stopping = True
            if s.call is not None:
                s.call.cancel()
        await asyncio.wait(tasks, timeout=10)
        for ch in chans:
            await ch.close()
    done = []

    def close():
        if done:
            return
        done.append(1)
        try:
            asyncio.run_coroutine_threadsafe(teardown(), loop).result(30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            th.join(10)
    return streams, close


def wait_created(streams, timeout):
    def done():
        for s in streams:
            if s.problems:
                raise Failure("; ".join(s.problems))
        return all(len(s.created) >= len(s.specs) for s in streams)
    cluster.wait_until(done, timeout, "%d watchers created" % (STREAMS * PER_STREAM), 0.05)


def expected_events(writes):
    """The model replay of the write log: a global event list (in revision,
    then operation, order) and, per key, the indexes of its events."""
    model = Model()
    evs, by_key = [], {}
    for w in writes:
        for ev in model.apply(w["rev"], [tuple(op) for op in w["ops"]]):
            by_key.setdefault(ev[1], []).append(len(evs))
            evs.append(ev)
    return evs, by_key


def expected_for(spec, from_rev, evs, by_key, sorted_keys):
    k, e, _, prev = (x.encode() if isinstance(x, str) else x for x in spec)
    if not e:
        ks = [k] if k in by_key else []
    else:
        i = bisect.bisect_left(sorted_keys, k)
        j = len(sorted_keys) if e == b"\0" else bisect.bisect_left(sorted_keys, e)
        ks = sorted_keys[i:j]
    idx = []
    for kk in ks:
        lst = by_key[kk]
        lo, hi = 0, len(lst)
        while lo < hi:
            mid = (lo + hi) // 2
            if evs[lst[mid]][4] < from_rev:
                lo = mid + 1
            else:
                hi = mid
        idx.extend(lst[lo:])
    idx.sort()
    if prev:
        return [evs[i] for i in idx]
    return [evs[i][:7] + (None,) for i in idx]


def show(ev):
    if ev is None:
        return "(nothing)"
    t, k, v, c, m, ver, lease, prev = ev
    s = "%s %s=%r c=%d m=%d v=%d" % ("PUT" if t == PUT else "DEL", k.decode(), v, c, m, ver)
    if lease:
        s += " lease=%d" % lease
    if prev:
        s += " prev=(%r c=%d m=%d v=%d)" % (prev[1], prev[2], prev[3], prev[4])
    return s


def etcd_prevkv_race(got, want, first_len):
    """etcd 3.4 marks a watcher as wanting prev_kv only after the watcher is
    live (v3rpc/watch.go sets sws.prevKV[id] after watchStream.Watch
    returns, and sendLoop reads it when it builds a reply), so the reply it
    builds for a write landing in that window lacks prev_kv.  Against etcd
    only, a prev_kv missing from the events of a watcher's first reply is
    forgiven; raftkv is held to the intended semantics."""
    n = 0
    for j in range(min(first_len, len(got), len(want))):
        if got[j][7] is None and want[j][7] is not None and got[j][:7] == want[j][:7]:
            got[j] = want[j]
            n += 1
    return n


def verify(streams, writes, what):
    evs, by_key = expected_events(writes)
    is_etcd = os.path.basename(cluster.server_binary()) == "etcd"
    forgiven = 0
    sorted_keys = sorted(by_key)
    expect = []
    for s in streams:
        exp_s = []
        for i, spec in enumerate(s.specs):
            created_rev = s.created[i][1]
            from_rev = spec[2] if spec[2] > 0 else created_rev + 1
            exp_s.append(expected_for(spec, from_rev, evs, by_key, sorted_keys))
        expect.append(exp_s)
    total = sum(len(x) for e in expect for x in e)
    log("%s: %d writes (%d key events); %d events expected across the watchers"
        % (what, len(writes), len(evs), total))

    def delivered():
        for s in streams:
            if s.problems:
                return True
        return all(len(s.events[i]) >= len(expect[n][i])
                   for n, s in enumerate(streams) for i in range(len(s.specs)))
    try:
        cluster.wait_until(delivered, DRAIN_TIMEOUT, "every watcher's events", 0.1)
    except Failure:
        pass    # described precisely below
    time.sleep(0.5)     # room for duplicates or strays to show up
    problems = [p for s in streams for p in s.problems]
    bad = 0
    for n, s in enumerate(streams):
        for i, spec in enumerate(s.specs):
            got, want = s.events[i], expect[n][i]
            if got != want and is_etcd and spec[3]:
                forgiven += etcd_prevkv_race(got, want, s.first_len[i])
            if got == want:
                continue
            bad += 1
            if len(problems) >= 12:
                continue
            j = next((j for j in range(min(len(got), len(want))) if got[j] != want[j]),
                     min(len(got), len(want)))
            problems.append(
                "stream %d watcher %d (key %r range_end %r start_revision %d prev_kv %s, "
                "created at revision %d): got %d events, want %d; first difference at #%d:\n"
                "      got  %s\n      want %s"
                % (n, i, spec[0], spec[1], spec[2], spec[3], s.created[i][1], len(got),
                   len(want), j, show(got[j] if j < len(got) else None),
                   show(want[j] if j < len(want) else None)))
    if problems or bad:
        raise Failure("%s: %d of %d watchers got wrong events:\n  %s"
                      % (what, bad, sum(len(s.specs) for s in streams), "\n  ".join(problems)))
    if forgiven:
        log("%s: forgave etcd's prev_kv race on %d events" % (what, forgiven))
    log("%s: all %d watchers got exactly their %d events" % (what, STREAMS * PER_STREAM, total))


# ---------------------------------------------------------------- the phases

def leader_of(cl, timeout=20.0):
    """The member that endpoint status says is the leader."""
    from etcd3 import etcdrpc
    import grpc

    def find():
        for m in cl.members:
            if not m.running():
                continue
            ch = grpc.insecure_channel(m.endpoint, options=GRPC_OPTS)
            try:
                st = etcdrpc.MaintenanceStub(ch).Status(etcdrpc.StatusRequest(), timeout=1)
            except grpc.RpcError:
                continue
            finally:
                ch.close()
            if st.leader and st.leader == st.header.member_id:
                return m
        return None
    return cluster.wait_until(find, timeout, "a leader", 0.1)


def serializable_rev(m):
    """The member's own applied revision (a serializable read, which any
    member answers from its state)."""
    from etcd3 import etcdrpc
    import grpc
    ch = grpc.insecure_channel(m.endpoint, options=GRPC_OPTS)
    try:
        return etcdrpc.KVStub(ch).Range(etcdrpc.RangeRequest(
            key=b"w/", range_end=b"w0", count_only=True, serializable=True), timeout=2).header.revision
    except grpc.RpcError:
        return None
    finally:
        ch.close()


def converged(cl, rev, timeout):
    for m in cl.members:
        cluster.wait_until(lambda: serializable_rev(m) == rev, timeout,
                           "%s at revision %d (it has %s)" % (m.name, rev, serializable_rev(m)), 0.1)
    log("every member is at revision %d" % rev)


def phase(t, cl, watch_members, seed, what, during):
    rng = random.Random(seed)
    w = Writer(t, cl.endpoints, seed, what.replace(" ", "-"))
    w.wait_writes(PREFILL, 30)
    rev_now = w.writes()[-1]["rev"]
    specs = watcher_specs(rng, rev_now)
    t0 = time.monotonic()
    streams, close = open_streams(watch_members, specs)
    t.closers.append(close)
    wait_created(streams, 30)
    log("%s: %d watchers on %d streams created in %.1fs (writes at revision %d)"
        % (what, STREAMS * PER_STREAM, STREAMS, time.monotonic() - t0, w.writes()[-1]["rev"]))
    during(w)
    recs = w.finish(60)
    writes = [r for r in recs if "rev" in r]
    log("%s: writer done, %d writes to revision %d (%d dropped, %d resolved after a failure)"
        % (what, len(writes), recs[-1]["final"], sum(1 for r in recs if "dropped" in r),
           sum(1 for r in recs if "resolved" in r)))
    verify(streams, writes, what)
    close()
    t.closers.remove(close)
    return recs[-1]["final"]


def main(t):
    cluster.require_python_etcd3()
    seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
    log("seed", seed, "(SEED=... to repeat)")

    cl = t.cluster()
    phase(t, cl, cl.members, seed, "one member", lambda w: time.sleep(LOAD_1))
    for rc in cl.stop():
        check(rc in (0, -15), "member exited with status %s on SIGTERM" % rc)

    cl = t.cluster(size=3)
    leader = leader_of(cl)
    followers = [m for m in cl.members if m is not leader]
    log("3 members: leader %s, watchers on %s and %s (half each: whichever is not elected "
        "stays a follower throughout)" % (leader.name, followers[0].name, followers[1].name))

    def kill_and_restart(w):
        time.sleep(KILL_AT)
        victim = leader_of(cl)
        check(victim is leader, "leadership moved to %s before the kill" % victim.name)
        w.check_alive()
        n_before = len(w.writes())
        victim.kill()
        t_kill = time.monotonic()
        log("killed leader %s after %d writes" % (victim.name, n_before))
        new = leader_of(cl)
        log("new leader %s after %.1fs" % (new.name, time.monotonic() - t_kill))
        time.sleep(max(0.0, t_kill + RESTART_AT - time.monotonic()))
        victim.start()
        log("restarted %s" % victim.name)
        time.sleep(LOAD_3)
        after = [r for r in w.writes() if r["t"] > t_kill]
        check(len(after) >= 50, "only %d writes after the leader kill" % len(after))

    final = phase(t, cl, followers, seed + 1, "three members", kill_and_restart)
    converged(cl, final, 30)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        writer_main(sys.argv[2:])
    else:
        cluster.run(main)
