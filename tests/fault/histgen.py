"""
histgen: synthetic histories in the tests/fault/HISTORY.md format, for the
checker's own tests (tests/fault/test_checker.py) and for timing it.

A simulated etcd: N processes issue operations with random, overlapping
invoke/complete windows; each operation that takes effect does so at a
random instant inside its window (an unknown one maybe never, maybe after
the client gave up), and the results are computed by applying the ops to
one store in the order of those instants, with etcd's global revision.  So
every generated history is linearizable by construction, and planting one
wrong result in it gives a history that is not.
"""
import random


class Store:
    """etcd's MVCC as far as the checker can see it: one revision counter,
    per key value, create_revision, mod_revision, version."""

    def __init__(self):
        self.rev = 1                # an empty etcd store is at revision 1
        self.kv = {}                # key -> [value, create, mod, version]
        self.log = []               # (rev, key, type, value, prev, create, version, time)
        self.now = 0.0              # the simulated time of the op being applied

    def _write(self, key, value):
        self.rev += 1
        old = self.kv.get(key)
        prev = old[0] if old else None
        if value is None:
            del self.kv[key]
            self.log.append((self.rev, key, "DELETE", None, prev, 0, 0, self.now))
        else:
            if old:
                old[0], old[2], old[3] = value, self.rev, old[3] + 1
            else:
                old = self.kv[key] = [value, self.rev, self.rev, 1]
            self.log.append((self.rev, key, "PUT", value, prev, old[1], old[3], self.now))
        return self.rev

    def put(self, key, value):
        return {"revision": self._write(key, value)}

    def get(self, key):
        cur = self.kv.get(key)
        return {"value": cur[0] if cur else None, "mod_revision": cur[2] if cur else 0,
                "revision": self.rev}

    def cas(self, key, expect, value):
        cur = self.kv.get(key)
        if (cur[0] if cur else None) == expect:
            return {"succeeded": True, "revision": self._write(key, value)}
        return {"succeeded": False, "revision": self.rev}

    def delete(self, key):
        if key in self.kv:
            return {"deleted": 1, "revision": self._write(key, None)}
        return {"deleted": 0, "revision": self.rev}


def register(n_ops=2000, n_keys=5, n_procs=8, p_unknown=0.01, seed=1,
             mix=(("put", 4), ("get", 4), ("cas", 2), ("delete", 0.3)),
             mean_latency=0.004, think=0.002, p_serializable=0.0):
    """A linearizable register history: (ops, store, applied) where applied
    lists the effective ops in the order they took effect."""
    rnd = random.Random(seed)
    funcs = [f for f, _ in mix]
    weights = [w for _, w in mix]
    keys = ["r/%d" % i for i in range(n_keys)]
    ops = []
    clock = [rnd.random() * think for _ in range(n_procs)]
    seq = 0
    for n in range(n_ops):
        p = rnd.randrange(n_procs)
        inv = clock[p]
        dur = rnd.expovariate(1.0 / mean_latency) + 0.0002
        comp = inv + dur
        clock[p] = comp + rnd.expovariate(1.0 / think)
        f = rnd.choices(funcs, weights)[0]
        seq += 1
        op = {"id": seq, "process": p, "f": f, "key": rnd.choice(keys),
              "value": "v-%d-%d" % (p, seq) if f in ("put", "cas") else None,
              "expect": None, "invoke": inv, "complete": comp, "outcome": "ok",
              "result": None, "endpoint": "sim", "serializable": False, "error": None}
        lp = inv + rnd.random() * dur
        if rnd.random() < p_unknown:
            op["outcome"], op["complete"], op["error"] = "unknown", None, "timeout"
            # It may take effect long after the client gave up, or never.
            lp = inv + rnd.random() * dur * 5 if rnd.random() < 0.6 else None
        elif f == "get" and rnd.random() < p_serializable:
            op["serializable"] = True
        op["_lp"] = lp
        ops.append(op)
    store = Store()
    applied = []
    last_values = {}
    for op in sorted((o for o in ops if o["_lp"] is not None), key=lambda o: o["_lp"]):
        k, f = op["key"], op["f"]
        store.now = op["_lp"]
        if f == "put":
            res = store.put(k, op["value"])
        elif f == "get":
            res = store.get(k)
        elif f == "delete":
            res = store.delete(k)
        else:
            # The client compares against a value it believes current: the
            # real one, a recent one, or absent.
            cur = store.get(k)["value"]
            choice = rnd.random()
            if choice < 0.5:
                op["expect"] = cur
            elif choice < 0.9 and last_values.get(k):
                op["expect"] = rnd.choice(last_values[k][-4:])
            res = store.cas(k, op["expect"], op["value"])
        if f in ("put", "cas") and (f == "put" or res["succeeded"]):
            last_values.setdefault(k, []).append(op["value"])
        op["result"] = res if op["outcome"] == "ok" else None
        op["_rev"] = res.get("revision")
        op["_deleted"] = res.get("deleted", 0) > 0
        op["_succeeded"] = res.get("succeeded", False)
        applied.append(op)
    for op in ops:
        if op["f"] == "cas" and op["outcome"] == "unknown" and op["_lp"] is None:
            op["expect"] = None
        if op["f"] == "get" and op["outcome"] == "unknown":
            op["result"] = None
    return ops, store, applied


def strip(ops):
    """The history as the driver would write it (no simulation fields)."""
    return [{k: v for k, v in o.items() if not k.startswith("_")} for o in ops]


def plant_stale_read(ops, applied, rnd):
    """Make one acknowledged linearizable get return the value that the key
    held before the last write that completed before the get began (and
    that write's revision as mod_revision), where the older write surely
    came first: it completed before the newer one began.  Returns the get,
    or None if the history has no such get."""
    pos = {}
    by_key = {}
    for op in applied:
        seq = by_key.setdefault(op["key"], [])
        pos[id(op)] = len(seq)
        seq.append(op)
    gets = [o for o in applied if o["f"] == "get" and o["outcome"] == "ok"
            and not o["serializable"]]
    rnd.shuffle(gets)
    for g in gets[:500]:
        seq = by_key[g["key"]]
        # Applied ops before g, latest first: w2 is the newest write done
        # before g began; w1 the write applied just before w2.
        j = pos[id(g)] - 1
        w2 = None
        while j >= 0 and w2 is None:
            o = seq[j]
            if _is_write(o) and o["outcome"] == "ok" and o["complete"] < g["invoke"]:
                w2 = o
            j -= 1
        if w2 is None:
            continue
        j = pos[id(w2)] - 1
        while j >= 0 and not _is_write(seq[j]):
            j -= 1
        if j < 0:
            continue
        w1 = seq[j]
        # Only a w1 that completed before w2 began must precede it in
        # every linearization; otherwise the "stale" read may be legal.
        if w1["f"] == "delete" or w1["outcome"] != "ok" or \
                w1["complete"] >= w2["invoke"] or w1["value"] == g["result"]["value"]:
            continue
        g["result"] = dict(g["result"], value=w1["value"], mod_revision=w1["_rev"])
        return g
    return None


def _is_write(o):
    """Did this applied op change the store?  (An unknown op that was
    applied did, but its result is not in the history: ask the _rev.)"""
    if o["f"] == "put":
        return True
    if o["f"] == "delete":
        return o["_deleted"]
    if o["f"] == "cas":
        return o["_succeeded"]
    return False


def watch_events(store, watchers, prev_kv=True):
    """Correct event streams: watchers is a list of (id, start_revision,
    key, range_end); every write from the start on in the range, in order."""
    from checker import _in_range
    out = []
    for w, start, key, end in watchers:
        t = 0.0
        for rev, k, typ, val, prev, cr, ver, t in store.log:
            if rev >= start and _in_range(k, key, end):
                out.append({"watcher": w, "key": k, "type": typ, "value": val,
                            "mod_revision": rev, "create_revision": cr, "version": ver,
                            "prev_value": prev if prev_kv else None, "t": t + 0.001})
        out.append({"watcher": w, "start_revision": start, "end": "ok", "t": t + 0.01,
                    "key": key, "range_end": end, "prev_kv": prev_kv,
                    "end_revision": store.rev})
    return out


def set_history(n_adds=2000, n_procs=8, p_unknown=0.02, n_reads=10, seed=1):
    """A correct set workload: unique adds, periodic read_alls, a final one.
    Returns (ops, present) with present the values in the final read."""
    rnd = random.Random(seed)
    ops, events = [], []
    clock = [0.0] * n_procs
    for n in range(n_adds):
        p = rnd.randrange(n_procs)
        inv = clock[p]
        dur = rnd.expovariate(250.0) + 0.0002
        clock[p] = inv + dur + rnd.expovariate(500.0)
        op = {"id": n + 1, "process": p, "f": "add", "key": "s", "value": "e-%d" % n,
              "expect": None, "invoke": inv, "complete": inv + dur, "outcome": "ok",
              "result": None, "endpoint": "sim", "serializable": False, "error": None}
        lp = inv + rnd.random() * dur
        if rnd.random() < p_unknown:
            op["outcome"], op["complete"] = "unknown", None
            lp = lp if rnd.random() < 0.5 else None
        ops.append(op)
        if lp is not None:
            events.append((lp, op))
    end = max(clock)
    for i in range(n_reads):
        inv = end * (i + 1) / n_reads
        dur = 0.003
        op = {"id": n_adds + i + 1, "process": n_procs, "f": "read_all", "key": "s",
              "value": None, "expect": None, "invoke": inv, "complete": inv + dur,
              "outcome": "ok", "result": None, "endpoint": "sim", "serializable": False,
              "error": None}
        ops.append(op)
        events.append((inv + dur / 2, op))
    present, rev = [], 1
    for _, op in sorted(events, key=lambda x: x[0]):
        if op["f"] == "add":
            rev += 1
            present.append(op["value"])
            if op["outcome"] == "ok":
                op["result"] = {"revision": rev}
        else:
            op["result"] = {"values": list(present), "revision": rev}
    return ops, set(present)
