"""
test_checker: the fault checkers (tests/fault/checker.py) accept correct
histories and catch planted bugs.

Hand-written histories pin down each rule: a stale read, a lost
acknowledged write, a read of a value nobody wrote, a cas that succeeded
against a stale value, a revision going backwards, a watch event missing,
duplicated, out of order, with the wrong prev_kv, a lost or phantom set
element; a pathological history must hit the time cap and come out unknown,
never ok.  Generated histories (histgen.py: a simulated concurrent etcd, so
linearizable by construction, with unknown outcomes) must pass, and the same
histories with one stale read planted must not, by each layer on its own.
The command line is run as the driver will run it.

    /usr/bin/python3 tests/fault/test_checker.py          # the test (< 20 s)
    /usr/bin/python3 tests/fault/test_checker.py --bench  # 100k ops, 50 keys

Exits 0 when every case passes, 1 otherwise.
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checker  # noqa: E402
import histgen  # noqa: E402

CHECKER = os.path.join(HERE, "checker.py")
PYTHON = "/usr/bin/python3"


class Failure(Exception):
    pass


def expect(cond, what, result=None):
    if not cond:
        if result is not None:
            what += "\n  verdict %s\n  anomalies:\n    %s\n  stats %s" % (
                result["verdict"], "\n    ".join(result["anomalies"][:8]), result["stats"])
        raise Failure(what)


def found(result, *words):
    """Some anomaly mentions every one of WORDS."""
    return any(all(w in a for w in words) for a in result["anomalies"])


class H:
    """A hand-written history: ops appended in the contract's format."""

    def __init__(self):
        self.ops = []

    def op(self, p, f, key, inv, comp, outcome="ok", value=None, expect=None, result=None,
           serializable=False):
        d = {"id": len(self.ops) + 1, "process": p, "f": f, "key": key, "value": value,
             "expect": expect, "invoke": float(inv),
             "complete": None if comp is None else float(comp), "outcome": outcome,
             "result": result if outcome == "ok" else None, "endpoint": "test",
             "serializable": serializable, "error": None if outcome == "ok" else "timeout"}
        self.ops.append(d)
        return d

    def put(self, p, key, value, inv, comp, rev=None, outcome="ok"):
        return self.op(p, "put", key, inv, comp, outcome, value=value,
                       result={"revision": rev})

    def get(self, p, key, value, inv, comp, mod=None, rev=None, serializable=False):
        return self.op(p, "get", key, inv, comp, result={"value": value, "mod_revision": mod,
                                                         "revision": rev},
                       serializable=serializable)

    def cas(self, p, key, expect, value, inv, comp, ok=True, rev=None, outcome="ok"):
        return self.op(p, "cas", key, inv, comp, outcome, value=value, expect=expect,
                       result={"succeeded": ok, "revision": rev})

    def delete(self, p, key, inv, comp, deleted=1, rev=None, outcome="ok"):
        return self.op(p, "delete", key, inv, comp, outcome,
                       result={"deleted": deleted, "revision": rev})

    def register(self, **kw):
        return checker.check_register(self.ops, **kw)


def wgl_only(ops, lint):
    """The search layer alone (lint=False: without the real-time lints)."""
    layer, anomalies, _ = checker._check_wgl(checker.normalise(ops), 10.0, "skip", lint=lint)
    return layer, anomalies


# --- register: hand-written ---------------------------------------------------


def test_sequential_ok():
    h = H()
    h.put(1, "k", "a", 0, 1, rev=2)
    h.get(2, "k", "a", 2, 3, mod=2, rev=2)
    h.cas(1, "k", "a", "b", 4, 5, rev=3)
    h.cas(2, "k", "a", "c", 6, 7, ok=False, rev=3)
    h.get(1, "k", "b", 8, 9, mod=3, rev=3)
    h.delete(2, "k", 10, 11, rev=4)
    h.get(1, "k", None, 12, 13, mod=0, rev=4)
    h.delete(2, "k", 14, 15, deleted=0, rev=4)
    h.cas(1, "k", None, "d", 16, 17, rev=5)
    h.get(2, "other", None, 18, 19, mod=0, rev=5)
    r = h.register()
    expect(r["verdict"] == "ok", "a sequential correct history passes", r)


def test_concurrent_ok():
    h = H()
    # Two overlapping puts: readers may see them in either order, but once
    # both are done everybody sees the same last one.
    h.put(1, "k", "a", 0, 10, rev=3)
    h.put(2, "k", "b", 1, 9, rev=2)
    h.get(3, "k", "b", 2, 3, mod=2, rev=2)
    h.get(4, "k", "a", 4, 5, mod=3, rev=3)
    h.get(3, "k", "a", 11, 12, mod=3, rev=3)
    h.get(4, "k", "a", 11.5, 13, mod=3, rev=3)
    r = h.register()
    expect(r["verdict"] == "ok", "overlapping writes read in their real order pass", r)


def test_unknown_write_may_apply_late_or_never():
    for seen in (True, False):
        h = H()
        h.put(1, "k", "a", 0, 1, rev=2)
        h.put(2, "k", "b", 2, None, outcome="unknown")
        h.get(3, "k", "a", 5, 6, mod=2, rev=2)
        if seen:        # it took effect long after the client gave up
            h.get(3, "k", "b", 7, 8, mod=3, rev=3)
            h.get(1, "k", "b", 9, 10, mod=3, rev=3)
        else:
            h.get(1, "k", "a", 9, 10, mod=2, rev=2)
        r = h.register()
        expect(r["verdict"] == "ok", "an unknown put seen=%s passes" % seen, r)
    h = H()
    h.put(1, "k", "a", 0, 1)
    h.put(2, "k", "b", 2, None, outcome="unknown")
    h.get(3, "k", "b", 5, 6)
    h.get(1, "k", "a", 7, 8)
    r = h.register()
    expect(r["verdict"] == "violation", "the old value cannot come back after the unknown put"
           " was seen", r)
    h = H()
    h.get(3, "k", "b", 0, 1)
    h.put(2, "k", "b", 2, None, outcome="unknown")
    r = h.register()
    expect(r["verdict"] == "violation" and found(r, "written only later"),
           "a read of a value before its (unknown) write began is caught", r)


def test_failed_ops_are_dropped():
    h = H()
    h.put(1, "k", "a", 0, 1, rev=2)
    h.put(2, "k", "x", 2, 3, outcome="fail")
    h.get(3, "k", "a", 4, 5, mod=2, rev=2)
    r = h.register()
    expect(r["verdict"] == "ok", "a failed put is ignored", r)
    h.get(3, "k", "x", 6, 7, mod=3, rev=3)
    r = h.register()
    expect(r["verdict"] == "violation" and found(r, "phantom", "failed"),
           "reading the value of a failed put is caught", r)


def test_stale_read():
    h = H()
    h.put(1, "k", "a", 0, 1, rev=2)
    h.put(2, "k", "b", 2, 3, rev=3)
    g = h.get(3, "k", "a", 4, 5, mod=2, rev=3)
    r = h.register()
    expect(r["verdict"] == "violation", "a stale read is a violation", r)
    expect(r["layers"]["wgl"]["violated_keys"] == ["k"], "linearizability catches it", r)
    expect(found(r, "revision: stale", "#%d" % g["id"]), "the revision layer catches it", r)
    layer, an = wgl_only(h.ops, lint=False)
    expect(layer["violated_keys"] == ["k"], "the search alone catches it")
    text = "\n".join(an)
    expect("cannot linearize #%d" % g["id"] in text and "written by #2" in text
           and "'a' was written by #1" in text, "the explanation names the read, the write"
           " there and the writer of the value it wanted:\n" + text)


def test_lost_acknowledged_write():
    h = H()
    h.put(1, "k", "a", 0, 1, rev=2)
    h.put(2, "k", "b", 2, 3, rev=3)            # acknowledged, then lost
    h.get(3, "k", "a", 4, 5, mod=2, rev=2)     # the server forgot revision 3
    h.get(1, "k", "a", 6, 7, mod=2, rev=2)
    r = h.register()
    expect(r["layers"]["wgl"]["verdict"] == "violation", "linearizability sees the lost write", r)
    expect(found(r, "went backwards"), "the revision layer sees the revision go back", r)


def test_read_of_never_written_value():
    h = H()
    h.put(1, "k", "a", 0, 1, rev=2)
    h.get(2, "k", "zzz", 2, 3, mod=2, rev=2)
    r = h.register()
    expect(r["layers"]["wgl"]["verdict"] == "violation", "linearizability catches it", r)
    expect(found(r, "phantom", "no operation ever wrote"), "the revision layer catches it", r)


def test_cas_against_stale_value():
    h = H()
    h.put(1, "k", "a", 0, 1, rev=2)
    h.put(2, "k", "b", 2, 3, rev=3)
    h.cas(3, "k", "a", "c", 4, 5, rev=4)
    r = h.register()
    expect(r["layers"]["wgl"]["verdict"] == "violation", "linearizability catches it", r)
    expect(found(r, "revision: stale", "compared"), "the revision layer catches it", r)
    layer, _ = wgl_only(h.ops, lint=False)
    expect(layer["verdict"] == "violation", "the search alone catches it")


def test_cas_failed_although_value_matched():
    h = H()
    h.put(1, "k", "a", 0, 1, rev=2)
    h.cas(2, "k", "a", "c", 2, 3, ok=False, rev=2)
    r = h.register()
    expect(r["layers"]["wgl"]["verdict"] == "violation", "linearizability catches it", r)
    expect(found(r, "failed, but"), "the revision layer catches it", r)


def test_revision_going_backwards():
    h = H()
    h.put(1, "k", "a", 0, 1, rev=5)
    h.get(2, "k", "a", 2, 3, mod=5, rev=5)
    h.put(1, "j", "x", 4, 5, rev=4)       # values fine, revision from the past
    r = h.register()
    expect(r["layers"]["wgl"]["verdict"] == "ok", "values alone are linearizable", r)
    expect(r["verdict"] == "violation" and found(r, "went backwards", "#3"),
           "the revision layer catches it", r)
    h = H()
    h.put(1, "k", "a", 0, 1, rev=5)
    h.put(2, "j", "x", 2, 3, rev=5)
    r = h.register()
    expect(found(r, "holds two different writes"), "two writes at one revision are caught", r)


def test_revision_mismatch_of_read():
    h = H()
    h.put(1, "k", "a", 0, 1, rev=2)
    h.put(1, "k", "b", 2, 3, rev=3)
    h.get(2, "k", "b", 4, 5, mod=2, rev=3)   # right value, the other write's revision
    r = h.register()
    expect(r["verdict"] == "violation" and found(r, "two different writes"),
           "a read's mod_revision must be its value's write", r)


def test_revision_reset_is_reported_briefly():
    # A server that restarts its revision counter fails nearly every later
    # op; the result keeps the first anomalies and counts the rest.
    ops, _, _ = histgen.register(n_ops=4000, n_keys=4, seed=3)
    h = histgen.strip(ops)
    mid = sorted(o["invoke"] for o in h)[len(h) // 2]
    for o in h:
        if o["invoke"] > mid and o["result"]:
            for f in ("revision", "mod_revision"):
                if o["result"].get(f):
                    o["result"][f] = max(1, o["result"][f] - 1000)
    r = checker.check_register(h)
    expect(r["verdict"] == "violation" and found(r, "holds two different writes"), "caught", r)
    expect(r["stats"]["anomalies"] > checker.MAX_ANOMALIES and
           len(r["anomalies"]) == checker.MAX_ANOMALIES + 1 and "more anomalies"
           in r["anomalies"][-1], "and cut short: %d" % r["stats"]["anomalies"])


def test_search_beyond_lints():
    # Two concurrent puts: after both, reads may not flip back and forth.
    # No real-time lint sees this (the writes overlap); the search does.
    h = H()
    h.put(1, "k", "a", 0, 10)
    h.put(2, "k", "b", 0, 10)
    h.get(3, "k", "a", 11, 12)
    h.get(3, "k", "b", 13, 14)
    h.get(3, "k", "a", 15, 16)
    ops = h.ops
    layer, an = wgl_only(ops, lint=True)
    expect(layer["verdict"] == "violation" and "cannot linearize #" in "\n".join(an),
           "the search finds a flip-flop read:\n" + "\n".join(an))
    expect(not checker._lint_key(_key_history(ops, "k")), "the lints alone do not")


def _key_history(ops, key):
    keys, _ = checker._key_histories(checker.normalise(ops), "skip")
    kh = keys[key]
    checker._prune_unknown_writes(kh)
    return kh


def brute_force(ops):
    """Is this one-key register history linearizable?  By trying every
    order, with no reduction at all: the reference for the search."""
    inf = float("inf")
    live = []
    for o in ops:
        if o["outcome"] == "fail" or (o["f"] == "get" and o["outcome"] != "ok"):
            continue
        live.append((o, o["complete"] if o["outcome"] == "ok" else inf))
    memo = set()

    def step(o, state):
        r = o["result"]
        if o["f"] == "get":
            return (state == r["value"]), state
        if o["f"] == "put":
            return True, o["value"]
        if o["f"] == "cas":
            if o["outcome"] != "ok":
                return True, o["value"] if state == o["expect"] else state
            if r["succeeded"]:
                return state == o["expect"], o["value"]
            return state != o["expect"], state
        if o["outcome"] == "ok" and r.get("deleted") is not None:
            return min(r["deleted"], 1) == (state is not None), None
        return True, None

    def go(left, state):
        if all(live[i][1] == inf for i in left):
            return True         # the unknown ops left never happened
        if (left, state) in memo:
            return False
        memo.add((left, state))
        for i in left:
            o = live[i][0]
            if any(live[j][1] < o["invoke"] for j in left):
                continue        # something that finished before it began is not placed
            ok, new = step(o, state)
            if ok and go(left - {i}, new):
                return True
        return False
    return go(frozenset(range(len(live))), None)


def random_history(rnd, unique):
    """A small one-key history: simulated, then maybe one result corrupted."""
    pool = ["a", "b", "c"]
    ops, n = [], rnd.randint(2, 8)
    for i in range(n):
        inv = rnd.uniform(0, 10)
        f = rnd.choice(("put", "get", "get", "cas", "delete"))
        o = {"id": i + 1, "process": i, "f": f, "key": "k", "invoke": inv,
             "complete": inv + rnd.uniform(0, 4), "expect": None,
             "value": ("v%d" % i if unique else rnd.choice(pool)) if f in ("put", "cas") else None,
             "outcome": rnd.choice(("ok",) * 6 + ("unknown", "fail")), "result": None,
             "_lp": None}
        o["_lp"] = rnd.uniform(o["invoke"], o["complete"])
        if o["outcome"] == "unknown":
            o["complete"] = None
            o["_lp"] = rnd.choice((None, o["_lp"], o["_lp"] + rnd.uniform(0, 5)))
        elif o["outcome"] == "fail":
            o["_lp"] = None
        ops.append(o)
    state, written = None, [None]
    for o in sorted((o for o in ops if o["_lp"] is not None), key=lambda o: o["_lp"]):
        if o["f"] == "get":
            o["result"] = {"value": state}
        elif o["f"] == "put":
            state = o["value"]
        elif o["f"] == "cas":
            o["expect"] = rnd.choice((state, rnd.choice(written)))
            o["result"] = {"succeeded": state == o["expect"]}
            if state == o["expect"]:
                state = o["value"]
        else:
            o["result"] = {"deleted": 0 if state is None else 1}
            state = None
        if o["f"] in ("put", "cas"):
            written.append(o["value"])
    for o in ops:
        if o["outcome"] != "ok":
            o["result"] = None
        elif o["result"] is None:
            o["result"] = {}
        if o["f"] == "cas" and o["outcome"] == "fail":
            o["expect"] = rnd.choice(written)
        del o["_lp"]
    okd = [o for o in ops if o["outcome"] == "ok" and o["f"] != "put"]
    if okd and rnd.random() < 0.5:
        o = rnd.choice(okd)
        if o["f"] == "get":
            o["result"]["value"] = rnd.choice(written + ["zz"])
        elif o["f"] == "cas":
            o["result"]["succeeded"] = not o["result"]["succeeded"]
        else:
            o["result"]["deleted"] = 1 - o["result"]["deleted"]
    return ops


def test_search_agrees_with_brute_force():
    # Every reduction of the search (memo subsumption, forced reads, open
    # write groups and filter, merged unseen values, dropped and bounded
    # unknown writes, the lints) must keep exactly the verdicts of trying
    # every order, with unique values and with reused ones.
    rnd = random.Random(2024)
    counts = {True: 0, False: 0}
    for n in range(4000):
        unique = n % 4 != 0
        ops = random_history(rnd, unique)
        want = brute_force(ops)
        for lint in ((True, False) if unique else (False,)):
            layer, an = wgl_only(ops, lint)
            got = layer["verdict"] == "ok"
            if got != want:
                raise Failure("history %d (lint=%s): search says %s, brute force %s:\n%s\n%s"
                              % (n, lint, layer["verdict"], want,
                                 "\n".join(json.dumps(o) for o in ops), "\n".join(an)))
        counts[want] += 1
    expect(min(counts.values()) > 1000, "both verdicts are well represented: %s" % counts)
    return "%d linearizable, %d not" % (counts[True], counts[False])


def test_serializable_reads():
    h = H()
    h.put(1, "k", "a", 0, 1, rev=2)
    h.put(2, "k", "b", 2, 3, rev=3)
    h.get(3, "k", "a", 4, 5, mod=2, rev=2, serializable=True)    # a lagging member
    r = h.register()
    expect(r["verdict"] == "ok", "a stale serializable read is allowed by default", r)
    r = h.register(serializable="check")
    expect(r["verdict"] == "violation", "serializable='check' holds it to linearizability", r)
    h.get(3, "k", "a", 6, 7, mod=2, rev=3, serializable=True)
    r = h.register()
    expect(r["verdict"] == "violation" and found(r, "revision: stale"),
           "a serializable read must still match the store at its own revision", r)


def pathological():
    """24 concurrent puts, each read by a concurrent get, then two reads
    that disagree on which put was last: impossible, but proving it means
    trying every order of the puts.  No revisions: only the search judges."""
    h = H()
    for i in range(24):
        h.put(i, "k", "v%d" % i, 0, 100)
        h.get(30 + i, "k", "v%d" % i, 0, 100)
    h.get(60, "k", "v0", 101, 102)
    h.get(60, "k", "v1", 103, 104)
    return h


def test_time_cap_gives_unknown():
    h = pathological()
    t = time.process_time()
    r = h.register(time_limit=0.5)
    dt = time.process_time() - t
    expect(r["verdict"] == "unknown", "a search cut short is unknown, never ok", r)
    expect(r["layers"]["wgl"]["unknown_keys"] == ["k"] and found(r, "time cap"),
           "the capped key is named", r)
    expect(dt < 5, "the cap holds (%.1fs)" % dt)
    return "%.2fs cpu" % dt


def test_empty_history_is_not_ok():
    r = checker.check_register([])
    expect(r["verdict"] == "unknown", "an empty history proves nothing", r)


def test_bad_input():
    for bad, what in (({"f": "put"}, "outcome"), ({"f": "zap", "outcome": "ok"}, "unknown f"),
                      ({"f": "get", "key": "k", "outcome": "ok", "invoke": 1, "complete": 2,
                        "result": {"value": 3}}, "string"),
                      ({"f": "get", "key": "k", "outcome": "ok", "invoke": 1, "complete": 0,
                        "result": {"value": None}}, "complete"),
                      ({"f": "cas", "key": "k", "outcome": "ok", "invoke": 1, "complete": 2,
                        "result": {"revision": 3}}, "succeeded"),
                      ({"f": "put", "key": "k", "outcome": "ok", "invoke": "x"}, "number")):
        try:
            checker.check_register([bad])
        except checker.HistoryError as e:
            expect(what in str(e), "error for %r names the problem: %s" % (bad, e))
        else:
            raise Failure("%r was accepted" % bad)


# --- register: generated ------------------------------------------------------


def test_generated_concurrent_ok():
    out = []
    for seed, (n, keys, procs, pu, ps) in enumerate([(3000, 1, 8, 0.05, 0.1),
                                                     (5000, 3, 16, 0.05, 0.0),
                                                     (6000, 10, 12, 0.02, 0.2)]):
        ops, _, _ = histgen.register(n_ops=n, n_keys=keys, n_procs=procs, p_unknown=pu,
                                     seed=seed, p_serializable=ps)
        t = time.process_time()
        r = checker.check_register(histgen.strip(ops))
        dt = time.process_time() - t
        expect(r["verdict"] == "ok", "generated history %d (%d ops, %d keys, %d procs, %g"
               " unknown) passes" % (seed, n, keys, procs, pu), r)
        expect(r["stats"]["put_unknown"] > 0 and r["stats"]["get_ok"] > 0, "it has unknowns")
        out.append("%d ops/%d keys/%d procs %.2fs" % (n, keys, procs, dt))
    return ", ".join(out)


def test_generated_stale_read_caught():
    out = []
    for seed in range(6):
        ops, _, applied = histgen.register(n_ops=3000, n_keys=3, n_procs=10, p_unknown=0.03,
                                           seed=100 + seed)
        g = histgen.plant_stale_read(ops, applied, random.Random(seed))
        expect(g is not None, "a stale read can be planted")
        h = histgen.strip(ops)
        r = checker.check_register(h)
        expect(r["verdict"] == "violation", "seed %d: the planted stale read is caught" % seed, r)
        expect(g["key"] in r["layers"]["wgl"]["violated_keys"],
               "seed %d: by linearizability" % seed, r)
        expect(found(r, "revision: stale", "#%d " % g["id"]), "seed %d: by revisions" % seed, r)
        layer, an = wgl_only(h, lint=False)
        expect(layer["violated_keys"] == [g["key"]], "seed %d: by the search alone: %s"
               % (seed, layer))
        # Without any revision, the search is the only judge.
        for o in h:
            if o["result"]:
                for f in ("revision", "mod_revision"):
                    o["result"].pop(f, None)
        r = checker.check_register(h)
        expect(r["verdict"] == "violation" and r["layers"]["revision"]["verdict"] == "ok",
               "seed %d: caught without revisions" % seed, r)
        out.append(an[0].splitlines()[1].split()[2])
    return "reads " + " ".join(out)


def test_generated_medium_run():
    ops, _, applied = histgen.register(n_ops=20000, n_keys=5, n_procs=16, p_unknown=0.02,
                                       seed=7)
    h = histgen.strip(ops)
    t = time.process_time()
    r = checker.check_register(h)
    dt = time.process_time() - t
    expect(r["verdict"] == "ok", "20k ops over 5 keys pass", r)
    histgen.plant_stale_read(ops, applied, random.Random(7))
    t = time.process_time()
    r2 = checker.check_register(histgen.strip(ops))
    dt2 = time.process_time() - t
    expect(r2["verdict"] == "violation", "and fail with one stale read", r2)
    return "20k ops/5 keys/16 procs: ok in %.2fs cpu, stale read found in %.2fs cpu" % (dt, dt2)


# --- set ------------------------------------------------------------------------


def add(ops, value, inv, comp, outcome="ok", rev=None):
    ops.append({"id": len(ops) + 1, "process": 1, "f": "add", "key": "s", "value": value,
                "invoke": inv, "complete": comp, "outcome": outcome,
                "result": {"revision": rev} if outcome == "ok" else None})


def read_all(ops, values, inv, comp, rev=None):
    ops.append({"id": len(ops) + 1, "process": 2, "f": "read_all", "key": "s", "value": None,
                "invoke": inv, "complete": comp, "outcome": "ok",
                "result": {"values": values, "revision": rev}})


def test_set():
    ops, present = histgen.set_history(n_adds=3000, seed=3)
    r = checker.check_set(ops)
    expect(r["verdict"] == "ok", "a generated set history passes", r)
    expect(r["stats"]["unknown_present"] > 0 and r["stats"]["unknown_absent"] > 0,
           "unknown adds may be present or not", r)
    ops = []
    add(ops, "a", 0, 1, rev=2)
    add(ops, "b", 2, 3, rev=3)
    add(ops, "c", 4, None, outcome="unknown")
    add(ops, "d", 4, 5, outcome="fail")
    read_all(ops, ["a", "b", "c"], 6, 7, rev=4)
    read_all(ops, ["a", "b", "c"], 8, 9, rev=4)
    r = checker.check_set(ops)
    expect(r["verdict"] == "ok" and r["stats"]["unknown_present"] == 1, "ok", r)
    lost = [dict(o) for o in ops]
    lost[-1]["result"] = {"values": ["a", "c"], "revision": 4}
    r = checker.check_set(lost)
    expect(r["verdict"] == "violation" and r["stats"]["final_lost"] == 1 and found(r, "lost", "'b'"),
           "a lost acknowledged add is caught", r)
    lost[-1]["result"] = {"values": ["a", "b"], "revision": 4}
    r = checker.check_set(lost)
    expect(r["verdict"] == "violation" and found(r, "'c' read by an earlier read_all"),
           "an element that vanishes is lost", r)
    ph = [dict(o) for o in ops]
    ph[-1]["result"] = {"values": ["a", "b", "c", "zz", "d"], "revision": 4}
    r = checker.check_set(ph)
    expect(r["verdict"] == "violation" and r["stats"]["phantom"] == 1
           and r["stats"]["failed_adds_present"] == 1, "phantom and failed elements", r)
    rv = [dict(o) for o in ops]
    rv[-2]["result"] = {"values": ["a", "b", "c"], "revision": 2}
    r = checker.check_set(rv)
    expect(r["verdict"] == "violation" and found(r, "read at a lower revision"),
           "an element above the read's revision is caught", r)
    dup = [dict(o) for o in ops]
    dup[-1]["result"] = {"values": ["a", "b", "c", "b"], "revision": 4}
    r = checker.check_set(dup)
    expect(r["verdict"] == "violation" and found(r, "duplicate"), "an element twice is caught", r)
    r = checker.check_set([o for o in ops if o["f"] == "add"])
    expect(r["verdict"] == "unknown", "no read_all proves nothing", r)


# --- watch ----------------------------------------------------------------------


def watch_case(seed=11, prev_kv=True):
    ops, store, _ = histgen.register(n_ops=1500, n_keys=6, n_procs=6, p_unknown=0.03, seed=seed,
                                     mix=(("put", 4), ("get", 2), ("cas", 1), ("delete", 1)))
    events = histgen.watch_events(store, [(1, 2, None, None), (2, 200, "r/3", None),
                                          (3, 50, "r/1", "r/4"), (4, 300, "r/2", "\0")],
                                  prev_kv=prev_kv)
    return histgen.strip(ops), events


def events_of(events, w):
    return [i for i, e in enumerate(events) if e["watcher"] == w and "type" in e]


def test_watch_ok():
    ops, events = watch_case()
    r = checker.check_watch(ops, events)
    expect(r["verdict"] == "ok", "correct watch streams pass", r)
    expect(r["stats"]["events"] > 1000, "with many events", r)
    ops, events = watch_case(prev_kv=False)
    for e in events:
        if "type" not in e:
            e.pop("prev_kv")        # unspecified: null prev values are not judged
    r = checker.check_watch(ops, events)
    expect(r["verdict"] == "ok", "streams without prev_kv pass", r)
    r = checker.check_watch(ops, [])
    expect(r["verdict"] == "unknown", "no watcher proves nothing", r)


def test_watch_planted():
    def planted(change, *words):
        ops, events = watch_case()
        change(events)
        r = checker.check_watch(ops, events)
        expect(r["verdict"] == "violation" and found(r, *words),
               "planted %r is caught" % (words,), r)

    def drop(ev):
        i = events_of(ev, 3)[40]
        del ev[i]

    def dup(ev):
        i = events_of(ev, 2)[5]
        ev.insert(i + 1, dict(ev[i]))

    def swap(ev):
        i, j = events_of(ev, 1)[30:32]
        ev[i], ev[j] = ev[j], ev[i]

    def prev(ev):
        i = [i for i in events_of(ev, 2) if ev[i]["prev_value"] is not None][3]
        ev[i]["prev_value"] = "v-0-999999"

    def phantom(ev):
        i = events_of(ev, 1)[-1]
        e = dict(ev[i], value="never-written", mod_revision=ev[i]["mod_revision"] + 1000)
        ev.insert(i + 1, e)

    def wrong_value(ev):
        i = [i for i in events_of(ev, 4) if ev[i]["type"] == "PUT"][10]
        ev[i]["value"] = [e for e in ev if e.get("type") == "PUT"
                          and e["value"] != ev[i]["value"]][0]["value"]

    def version(ev):
        i = [i for i in events_of(ev, 1) if ev[i]["type"] == "PUT"
             and ev[i]["version"] > 1][5]
        ev[i]["version"] += 1

    def canceled_gap(ev):
        w = [e for e in ev if e["watcher"] == 3 and "type" not in e][0]
        w["end"] = "canceled"
        del ev[events_of(ev, 3)[10]]

    planted(drop, "watcher 3 missed")
    planted(dup, "duplicate", "watcher 2")
    planted(swap, "out of order", "watcher 1")
    planted(prev, "prev_value", "v-0-999999")
    planted(phantom, "phantom", "never-written")
    planted(wrong_value, "holds two different writes")
    planted(version, "version")
    planted(canceled_gap, "watcher 3 missed")


def test_watch_prev_kv_and_compaction():
    ops, events = watch_case()
    i = [i for i in events_of(events, 1) if events[i]["prev_value"] is not None][20]
    events[i]["prev_value"] = None
    r = checker.check_watch(ops, events)
    expect(r["verdict"] == "violation" and found(r, "watcher 1", "prev_value nil"),
           "a missing prev_kv is caught", r)
    w = [e for e in events if e["watcher"] == 1 and "type" not in e][0]
    w["compact_revision"] = events[i]["mod_revision"]
    r = checker.check_watch(ops, events)
    expect(r["verdict"] == "ok", "unless revision - 1 was compacted (etcd leaves it out)", r)
    events[i]["prev_value"] = "v-0-999999"
    r = checker.check_watch(ops, events)
    expect(r["verdict"] == "violation", "a wrong prev_kv is wrong even then", r)
    ops, events = watch_case()
    w = [e for e in events if e["watcher"] == 2 and "type" not in e][0]
    w["start_revision"] = events[events_of(events, 2)[3]]["mod_revision"]
    r = checker.check_watch(ops, events)
    expect(r["verdict"] == "violation" and found(r, "below the start revision"),
           "events before the start revision are caught", r)


def test_watch_bad_input():
    ops, events = watch_case()
    for i, field, bad in ((0, "mod_revision", "3"), (0, "type", "POST"), (0, "t", "now"),
                          (-1, "start_revision", 1.5), (-1, "range_end", 7)):
        ev = [dict(e) for e in events]
        ev[i][field] = bad
        try:
            checker.check_watch(ops, ev)
        except checker.HistoryError as e:
            expect(field in str(e) or "PUT or DELETE" in str(e), "names %s: %s" % (field, e))
        else:
            raise Failure("a bad %s was accepted" % field)


def test_watch_canceled_may_stop_early():
    ops, events = watch_case()
    w = [e for e in events if e["watcher"] == 3 and "type" not in e][0]
    w["end"] = "canceled"
    for i in reversed(events_of(events, 3)[-30:]):
        del events[i]
    r = checker.check_watch(ops, events)
    expect(r["verdict"] == "ok", "a canceled watcher may miss the tail", r)
    w["end"] = "ok"
    r = checker.check_watch(ops, events)
    expect(r["verdict"] == "violation" and found(r, "watcher 3 missed"),
           "a watcher ended ok up to end_revision may not", r)


# --- the command line -------------------------------------------------------------


def run_cli(*args):
    p = subprocess.run([PYTHON, CHECKER] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def write_jsonl(path, records):
    with open(path, "w") as f:
        for d in records:
            f.write(json.dumps(d) + "\n")


def test_cli():
    with tempfile.TemporaryDirectory(prefix="checker-test-") as d:
        hist = os.path.join(d, "history.jsonl")
        ops, store, applied = histgen.register(n_ops=2000, n_keys=4, seed=5)
        write_jsonl(hist, histgen.strip(ops))
        rc, out, err = run_cli("--kind", "register", hist)
        expect(rc == 0 and out.startswith("register: OK"), "ok exits 0: %d %s %s" % (rc, out, err))
        g = histgen.plant_stale_read(ops, applied, random.Random(5))
        write_jsonl(hist, histgen.strip(ops))
        rc, out, err = run_cli("--kind", "register", hist)
        expect(rc == 1 and "VIOLATION" in out and "#%d " % g["id"] in out,
               "a violation exits 1 and names the op: %d %s %s" % (rc, out, err))
        rc, out, err = run_cli("--kind", "register", "--json", hist)
        res = json.loads(out)
        expect(rc == 1 and res["verdict"] == "violation" and res["stats"]["ops"] == 2000,
               "--json prints the result")
        write_jsonl(hist, pathological().ops)
        rc, out, err = run_cli("--kind", "register", "--time-limit", "0.3", hist)
        expect(rc == 2 and "UNKNOWN" in out, "a capped search exits 2: %d %s %s" % (rc, out, err))
        with open(hist, "a") as f:
            f.write("{not json\n")
        rc, out, err = run_cli("--kind", "register", hist)
        expect(rc == 3 and ":51: not JSON" in err, "unreadable input exits 3 and names the line:"
               " %d %s %s" % (rc, out, err))
        rc, out, err = run_cli("--kind", "watch", hist)
        expect(rc == 3 and "EVENTS" in err, "watch without events is a usage error: %s" % err)
        rc, out, err = run_cli("--kind", "nope", hist)
        expect(rc == 3, "a bad option exits 3, not 2 (unknown)")
        ops, events = watch_case()
        ev = os.path.join(d, "events.jsonl")
        write_jsonl(hist, ops)
        write_jsonl(ev, events)
        rc, out, err = run_cli("--kind", "watch", hist, ev)
        expect(rc == 0, "watch ok exits 0: %s %s" % (out, err))
        ops, _ = histgen.set_history(n_adds=500, seed=1)
        write_jsonl(hist, ops)
        rc, out, err = run_cli("--kind", "set", hist)
        expect(rc == 0 and "lost=0" in out, "set ok exits 0: %s %s" % (out, err))


# --- runner ------------------------------------------------------------------------


def bench():
    """100k ops over 50 keys, 16 processes, 1% unknown: check time."""
    for n, keys, procs in ((100000, 50, 16), (100000, 5, 16), (20000, 5, 16)):
        ops, _, applied = histgen.register(n_ops=n, n_keys=keys, n_procs=procs,
                                           p_unknown=0.01, seed=1)
        with tempfile.TemporaryDirectory(prefix="checker-bench-") as d:
            hist = os.path.join(d, "history.jsonl")
            write_jsonl(hist, histgen.strip(ops))
            for label in ("correct", "one stale read"):
                t = time.monotonic()
                rc, out, err = run_cli("--kind", "register", hist)
                dt = time.monotonic() - t
                print("%d ops, %d keys, %d procs, %s: exit %d in %.2fs wall (CLI, with"
                      " parsing)" % (n, keys, procs, label, rc, dt))
                print("  " + out.splitlines()[1][:300])
                histgen.plant_stale_read(ops, applied, random.Random(1))
                write_jsonl(hist, histgen.strip(ops))


def main():
    if sys.argv[1:] == ["--bench"]:
        bench()
        return 0
    tests = [(k, v) for k, v in globals().items() if k.startswith("test_") and callable(v)]
    failed = 0
    t0 = time.monotonic()
    for name, fn in tests:
        t = time.monotonic()
        try:
            note = fn()
        except Exception:
            failed += 1
            print("FAIL %s\n%s" % (name, traceback.format_exc()), flush=True)
            continue
        print("ok   %-45s %5.2fs %s" % (name, time.monotonic() - t, note or ""), flush=True)
    print("%d of %d failed, %.1fs" % (failed, len(tests), time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
