#!/usr/bin/python3
"""
checker: verdicts on the operation histories that the fault driver records
(tests/fault/HISTORY.md is the format; keep the two in step).

The driver runs a workload against a cluster while it injects faults and
writes every client operation, with its real-time window and outcome, to a
JSON Lines file (watch events to a second one).  This module decides whether
what the clients saw is allowed by etcd's guarantees:

  register  Per-key linearizability of put/get/cas/delete, by the
            Wing-Gong/Lowe search (WGL, memoising (linearized set, state) as
            in Lowe's "Testing for linearizability" and porcupine), split per
            key (P-compositionality), with a time cap per key; plus a cheap,
            independent layer that uses etcd's revisions (real-time order of
            revisions, one write per revision, reads consistent with the
            writes at their revision).  Neither layer trusts the other.
  set       Acknowledged adds are never lost, nothing appears that was never
            added, an element once read stays.
  watch     Per watcher: ordered, unique, no gaps relative to every write
            known from the history and from all watchers, prev_kv right,
            nothing that was never written.

Verdicts: "ok", "violation", or "unknown" (a time cap was hit, or nothing
could be checked).  "unknown" is never a pass.

Standard library only; run by /usr/bin/python3.  Entry points:
check_register(ops), check_set(ops), check_watch(ops, events), and the CLI
`checker.py --kind register|set|watch HISTORY [EVENTS]` (exit 0 ok,
1 violation, 2 unknown, 3 unreadable input or bad usage).
"""
import argparse
import bisect
import json
import math
import sys
import time

INF = math.inf

OK, VIOLATION, UNKNOWN = "ok", "violation", "unknown"
EXIT = {OK: 0, VIOLATION: 1, UNKNOWN: 2}
EXIT_BAD_INPUT = 3

FUNCS = ("put", "get", "cas", "delete", "add", "read_all")
OUTCOMES = ("ok", "fail", "unknown")


class HistoryError(Exception):
    """The history does not follow tests/fault/HISTORY.md."""


# --- loading and normalising ----------------------------------------------


def load_jsonl(path):
    """Every non-blank line of PATH as a dict; HistoryError names the line."""
    out = []
    try:
        f = open(path, "r", encoding="utf-8")
    except OSError as e:
        raise HistoryError("%s: %s" % (path, e.strerror))
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError as e:
                raise HistoryError("%s:%d: not JSON: %s" % (path, n, e))
            if not isinstance(d, dict):
                raise HistoryError("%s:%d: not a JSON object" % (path, n))
            d.setdefault("_line", n)
            out.append(d)
    return out


class Op:
    """One client operation of the history, validated."""
    __slots__ = ("id", "process", "f", "key", "value", "expect", "invoke",
                 "complete", "outcome", "result", "serializable")

    def describe(self):
        s = "#%s p%s %s %s" % (self.id, self.process, self.f, self.key)
        if self.f == "cas":
            s += " %s->%s" % (_v(self.expect), _v(self.value))
        elif self.f in ("put", "add"):
            s += " " + _v(self.value)
        r = self.result or {}
        if self.outcome != "ok":
            s += " " + self.outcome.upper()
        elif self.f == "get":
            s += " -> %s (mod %s, rev %s)" % (_v(r.get("value")), r.get("mod_revision"),
                                               r.get("revision"))
        elif self.f == "cas":
            s += " -> %s (rev %s)" % ("succeeded" if r.get("succeeded") else "failed",
                                      r.get("revision"))
        elif self.f == "delete":
            s += " -> deleted %s (rev %s)" % (r.get("deleted"), r.get("revision"))
        elif self.f == "read_all":
            s += " -> %d values (rev %s)" % (len(r.get("values") or ()), r.get("revision"))
        else:
            s += " (rev %s)" % r.get("revision")
        if self.serializable:
            s += " serializable"
        comp = "-" if self.complete is None else "%.6f" % self.complete
        return s + " [%.6f, %s]" % (self.invoke, comp)


def _v(x):
    return "nil" if x is None else repr(x)


class _Ref:
    """Text around an op, formatted only if a message needs it."""
    __slots__ = ("pre", "op", "post")

    def __init__(self, pre, op, post=""):
        self.pre, self.op, self.post = pre, op, post

    def __str__(self):
        return self.pre + self.op.describe() + self.post


def _d(x):
    """An Op, a _Ref or a text, as text."""
    return x.describe() if isinstance(x, Op) else str(x)


def _num(d, k, where, nullable=False):
    x = d.get(k)
    if x is None and nullable:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x:
        raise HistoryError("%s: %r must be a number, not %r" % (where, k, x))
    return x


def _str_or_none(d, k, where):
    x = d.get(k)
    if x is not None and not isinstance(x, str):
        raise HistoryError("%s: %r must be a string or null, not %r" % (where, k, x))
    return x


def normalise(raw):
    """Validate a list of history records (dicts) into Op objects."""
    ops = []
    funcs, outcomes = set(FUNCS), set(OUTCOMES)
    for i, d in enumerate(raw):
        if isinstance(d, Op):
            ops.append(d)
            continue
        get = d.get
        o = Op()
        o.id = get("id", i)
        o.process = get("process")
        o.f, o.outcome, o.key = f, outcome, key = get("f"), get("outcome"), get("key")
        o.value, o.expect = get("value"), get("expect")
        o.invoke, o.complete = inv, comp = get("invoke"), get("complete")
        o.serializable = bool(get("serializable"))
        r = get("result")
        if f not in funcs or outcome not in outcomes or \
                (type(key) is not str and f != "read_all") or \
                (o.value is not None and type(o.value) is not str) or \
                (o.expect is not None and type(o.expect) is not str) or \
                type(inv) not in (int, float) or inv != inv or \
                (comp is not None and (type(comp) not in (int, float) or comp != comp)) or \
                (r is not None and type(r) is not dict):
            _reject(d, i)
        if outcome == "ok":
            if comp is None or comp < inv:
                raise HistoryError("%s: an ok operation needs a complete time, not before"
                                   " its invoke time" % _where(d, i))
            if r is None:
                if f in ("get", "cas", "read_all"):
                    raise HistoryError("%s: an ok %s needs a result" % (_where(d, i), f))
                r = {}
            _check_result(f, r, d, i)
            o.result = r
        else:
            o.result = None
        ops.append(o)
    return ops


def _where(d, i):
    return "line %s" % d.get("_line", i + 1)


def _reject(d, i):
    """Raise HistoryError naming the first bad field of record D."""
    where = _where(d, i)
    if d.get("f") not in FUNCS:
        raise HistoryError("%s: unknown f %r" % (where, d.get("f")))
    if d.get("outcome") not in OUTCOMES:
        raise HistoryError("%s: unknown outcome %r" % (where, d.get("outcome")))
    if not isinstance(d.get("key"), str) and d.get("f") != "read_all":
        raise HistoryError("%s: key must be a string" % where)
    _str_or_none(d, "value", where)
    _str_or_none(d, "expect", where)
    _num(d, "invoke", where)
    _num(d, "complete", where, nullable=True)
    raise HistoryError("%s: result must be an object or null" % where)


_INT_FIELDS = ("revision", "mod_revision", "deleted")


def _check_result(f, r, d, i):
    for k in _INT_FIELDS:
        x = r.get(k)
        if x is not None and type(x) is not int:
            raise HistoryError("%s: result %r must be an integer, not %r" % (_where(d, i), k, x))
    if f == "get":
        if "value" not in r:
            raise HistoryError("%s: a get result needs a value (null if absent)" % _where(d, i))
        _str_or_none(r, "value", _where(d, i))
    elif f == "cas":
        if type(r.get("succeeded")) is not bool:
            raise HistoryError("%s: a cas result needs succeeded: true|false" % _where(d, i))
    elif f == "read_all":
        vs = r.get("values")
        if not isinstance(vs, list) or not all(isinstance(x, str) for x in vs):
            raise HistoryError("%s: a read_all result needs values: [str...]" % _where(d, i))


MAX_ANOMALIES = 1000


def _summary(verdict, anomalies, stats, **extra):
    stats["anomalies"] = len(anomalies)
    if len(anomalies) > MAX_ANOMALIES:
        # A broken server can fail every op; the first ones tell the story.
        anomalies = anomalies[:MAX_ANOMALIES] + [
            "... and %d more anomalies" % (len(anomalies) - MAX_ANOMALIES)]
    d = {"verdict": verdict, "anomalies": anomalies, "stats": stats}
    d.update(extra)
    return d


def _combine(*verdicts):
    if VIOLATION in verdicts:
        return VIOLATION
    if UNKNOWN in verdicts:
        return UNKNOWN
    return OK


# --- register: the linearizability search (WGL) ------------------------------

PUT, GET, CAS, DEL = 0, 1, 2, 3
_ABSENT = 0      # interned value id of "key absent"
_UNSEEN = 1      # interned id shared by the values nobody can tell apart
_UNSEEN_NAME = "<one of the values nobody read>"


class _KeyHistory:
    """The ops of one key, ready for the search: values interned to ints."""

    def __init__(self, key):
        self.key = key
        self.ops = []           # Op, in search order
        self.ret = []           # complete time used by the search (INF if open)
        self.dropped = 0        # unknown writes proven irrelevant (see _prune)
        self.bounded = 0        # unknown writes given a finite return

    def intern_all(self):
        """Values to small ints, op by op.

        Values that no op reads or compares against are indistinguishable
        to every op of the key (a get never returns one, a cas never
        expects one, so any of them fails every such compare and satisfies
        every failed one), so they share one id, _UNSEEN: the search then
        never tells such writes apart."""
        seen = set()
        for o in self.ops:
            if o.f == "get":
                seen.add(o.result.get("value"))
            elif o.f == "cas":
                seen.add(o.expect)
        ids = {None: _ABSENT}
        self.names = [None, _UNSEEN_NAME]

        def iv(x):
            i = ids.get(x)
            if i is None:
                if x not in seen:
                    i = ids[x] = _UNSEEN
                else:
                    i = ids[x] = len(self.names)
                    self.names.append(x)
            return i
        n = len(self.ops)
        self.kind = [0] * n
        self.a = [0] * n        # put/cas: value written; get: value read
        self.b = [0] * n        # cas: expected value
        self.c = [0] * n        # cas: 1 succeeded, 0 failed, -1 unknown;
                                # delete: deleted count or -1 unknown
        for i, o in enumerate(self.ops):
            r = o.result or {}
            if o.f == "put":
                self.kind[i], self.a[i] = PUT, iv(o.value)
            elif o.f == "get":
                self.kind[i], self.a[i] = GET, iv(r.get("value"))
            elif o.f == "cas":
                self.kind[i], self.a[i], self.b[i] = CAS, iv(o.value), iv(o.expect)
                self.c[i] = -1 if o.outcome != "ok" else (1 if r["succeeded"] else 0)
            else:
                self.kind[i] = DEL
                d = r.get("deleted") if o.outcome == "ok" else None
                self.c[i] = -1 if d is None else min(d, 1)


def _prune_unknown_writes(kh):
    """Bound or drop unknown-outcome writes; both are sound reductions.

    An unknown write stays open forever (return = +inf) and every open write
    doubles the configurations the search may visit.  Values are unique per
    key (HISTORY.md), so:
      * a write whose value some op observed (a get returned it, a cas that
        succeeded expected it) happened before that op completed: its return
        becomes the earliest such completion;
      * a write nobody observed can only have mattered to an op linearized
        while it held the register that needs the key to hold something
        else than before: a failed cas, or a delete that deleted a key
        (every other op there would have had to observe its value).  With
        no such op completing after its invoke, there is a linearization
        with it placed last, where it changes nothing: drop it.
    Values written more than once on the key are left alone."""
    writes = {}
    for o in kh.ops:
        if o.f in ("put", "cas"):
            writes[o.value] = writes.get(o.value, 0) + 1
    first_seen = {}
    expected = set()
    for o in kh.ops:
        if o.outcome != "ok":
            if o.f == "cas":
                expected.add(o.expect)
            continue
        if o.f == "get":
            v = o.result.get("value")
        elif o.f == "cas":
            expected.add(o.expect)
            v = o.expect if o.result["succeeded"] else None
        else:
            continue
        if v is not None and o.complete < first_seen.get(v, INF):
            first_seen[v] = o.complete
    helped = max((o.complete for o in kh.ops if o.outcome == "ok" and (
        (o.f == "cas" and not o.result["succeeded"]) or
        (o.f == "delete" and (o.result.get("deleted") or 0) > 0))),
        default=-INF)
    keep, ret = [], []
    for o, r in zip(kh.ops, kh.ret):
        if o.outcome == "unknown" and o.f in ("put", "cas") and writes[o.value] == 1:
            seen = first_seen.get(o.value)
            if seen is not None:
                r = max(seen, o.invoke)
                kh.bounded += 1
            elif o.value not in expected and helped <= o.invoke:
                kh.dropped += 1
                continue
        keep.append(o)
        ret.append(r)
    kh.ops, kh.ret = keep, ret


def _wgl(kh, deadline):
    """Lowe's linearizability search over one key.

    Returns (verdict, info); info on a violation holds the op that the
    search could never linearize at its furthest point, and the register's
    value there.

    The ops with a finite return sit in one doubly-linked list of call and
    return entries sorted by time (calls first at equal times: touching
    windows count as concurrent, never as ordered).  The candidates at each
    step are the calls before the first return; linearizing an op unlinks
    its two entries, and when no candidate works the search backtracks.
    Open ops (unknown outcome, return = +inf) are kept apart; they are
    tried only after every finite candidate, and only those invoked before
    the first pending return.  The search succeeds once the finite list is
    empty: the open ops left can all go last.

    These reductions keep it small, each sound and complete (and checked
    against brute force by test_checker.py):
      * Lowe's memo of (linearized set, state), refined for open ops:
        configuration (F, S1, s) subsumes (F, S2, s) when S1 is a subset of
        S2 (F finite ops placed, S open ops placed, s the state), since
        every completion of the second works from the first with the extra
        open ops moved to the end;
      * a candidate that does not change the state (a get, a failed cas, a
        delete of nothing) and is legal now is taken without alternatives:
        every completion that places it later still works with it here;
      * of finite candidates with the same effect and legality (writes of
        values nobody reads, which intern_all merges; deletes) only the one
        returning first is tried: the others fit later wherever it would;
      * of open ops with the same effect only the last invoked is tried, for
        the same reason, and only when the state it makes enables a finite
        candidate (see open_children).
    Writes are tried earliest deadline first (the earliest return among the
    write and the ops that read its value): a heuristic, it only changes
    how soon a linearization is found."""
    ops = kh.ops
    kind, a, b, c = kh.kind, kh.a, kh.b, kh.c
    evs, opens = [], []
    for i, o in enumerate(ops):
        if kh.ret[i] == INF:
            opens.append((o.invoke, i))
        else:
            evs.append((o.invoke, 0, i))
            evs.append((kh.ret[i], 1, i))
    evs.sort()
    opens.sort()
    m, k = len(evs), len(opens)
    size = m + k + 1            # 0 heads the finite list; open ops follow it
    nxt = [-1] * size
    prv = [-1] * size
    e_op = [0] * size
    e_call = [False] * size
    e_t = [0.0] * size
    match = [0] * size
    bit = [0] * len(ops)        # finite op: its rank by invoke; open op: its bit in opn
    call_of = {}
    for j, (t, is_ret, i) in enumerate(evs, 1):
        e_op[j], e_t[j] = i, t
        if is_ret:
            match[j] = call_of[i]
            match[call_of[i]] = j
        else:
            e_call[j] = True
            call_of[i] = j
            bit[i] = len(call_of) - 1      # the finite op's rank by invoke
    for j, (t, i) in enumerate(opens, m + 1):
        e_op[j], e_t[j], e_call[j] = i, t, True
        bit[i] = 1 << (j - m - 1)
    for x in range(m):
        nxt[x], prv[x + 1] = x + 1, x
    # Open ops by effect: puts by value, deletes, cases by expected value
    # then value; each group sorted by invoke.  placed[] marks the ones in
    # the current configuration.
    placed = [False] * size
    put_g, del_g, cas_g = {}, [], {}
    for j, (t, i) in enumerate(opens, m + 1):
        if kind[i] == PUT:
            put_g.setdefault(a[i], []).append(j)
        elif kind[i] == DEL:
            del_g.append(j)
        else:
            cas_g.setdefault(b[i], {}).setdefault(a[i], []).append(j)
    groups = [(g, [e_t[j] for j in g]) for g in list(put_g.values()) + [del_g]]
    put_g = list(zip(put_g.keys(), groups[:len(put_g)]))
    del_g = groups[-1]
    cas_g = {x: [(u, (g, [e_t[j] for j in g])) for u, g in d.items()]
             for x, d in cas_g.items()}
    open_expects = set(cas_g)

    # Deadlines: a value must be written before its first reader returns.
    deadline_of = {}
    for i, o in enumerate(ops):
        if kind[i] == GET or (kind[i] == CAS and c[i] == 1):
            v = a[i] if kind[i] == GET else b[i]
            if kh.ret[i] < deadline_of.get(v, INF):
                deadline_of[v] = kh.ret[i]
    dl = [min(kh.ret[i], deadline_of.get(a[i], INF)) if kind[i] in (PUT, CAS) else kh.ret[i]
          for i in range(len(ops))]

    ret_of = kh.ret

    def step(i, state):
        """(legal, new state, changes nothing) of op I from STATE."""
        kd = kind[i]
        if kd == GET:
            return state == a[i], state, True
        if kd == PUT:
            return True, a[i], False
        r = c[i]
        if kd == CAS:
            if r == 1:
                return state == b[i], a[i], False
            if r == 0:
                return state != b[i], state, True
            return True, (a[i] if state == b[i] else state), False
        if r == 0:
            return state == _ABSENT, state, True
        return (r < 0 or state != _ABSENT), _ABSENT, False

    def children(state):
        """The finite candidates that are legal from STATE, as (entry, new
        state); just one if it changes nothing.  Also the first return."""
        kids = []
        e = nxt[0]
        while e_call[e]:
            ok, new, ro = step(e_op[e], state)
            if ok:
                if ro:
                    return [(e, new, True)], e, True
                kids.append((e, new, False))
            e = nxt[e]
        if len(kids) > 1:
            # Of candidates with the same effect (writes of values nobody
            # reads, deletes) only the one returning first: the others,
            # left for later, fit everywhere it would.
            first = {}
            for x in kids:
                i = e_op[x[0]]
                sig = (kind[i], a[i], b[i], c[i])
                y = first.get(sig)
                if y is None or ret_of[i] < ret_of[e_op[y[0]]]:
                    first[sig] = x
            kids = sorted(first.values(), key=lambda x: dl[e_op[x[0]]])
        return kids, e, False

    def latest(group, limit):
        """The last invoked op of GROUP available (invoked by LIMIT, not placed)."""
        g, ts = group
        j = bisect.bisect_right(ts, limit) - 1
        while j >= 0 and placed[g[j]]:
            j -= 1
        return g[j] if j >= 0 else -1

    def open_children(state, limit):
        """The open ops worth placing now, as (entry, new state).

        Placing one matters only if the state u it makes lets a finite
        candidate do something it cannot from the current state s (a
        candidate legal from both leads to the same configuration either
        way, and the read-only ones are all illegal from s, or the level
        would have been forced), or if an open cas compares against u.
        Reasons: a failed cas expecting s (any u will do), a delete that
        deleted something when s is absent (any u but absent), a get or cas
        wanting u, a delete of nothing (u absent).  An open op that leaves s
        as it is matters not at all."""
        anything = not_absent = False
        wanted = set(open_expects)
        e = nxt[0]
        while e_call[e]:
            i = e_op[e]
            kd, r = kind[i], c[i]
            if kd == GET:
                wanted.add(a[i])
            elif kd == CAS:
                if r == 0:
                    anything = anything or b[i] == state
                else:
                    wanted.add(b[i])
            elif kd == DEL:
                if r == 0:
                    wanted.add(_ABSENT)
                elif r == 1:
                    not_absent = not_absent or state == _ABSENT
            e = nxt[e]
        out = []
        for u, grp in put_g:
            if u != state and (anything or u in wanted or (not_absent and u != _ABSENT)):
                x = latest(grp, limit)
                if x >= 0:
                    out.append((x, u, False))
        if state != _ABSENT and (anything or _ABSENT in wanted):
            x = latest(del_g, limit)
            if x >= 0:
                out.append((x, _ABSENT, False))
        for u, grp in cas_g.get(state, ()):
            if u != state and (anything or u in wanted or (not_absent and u != _ABSENT)):
                x = latest(grp, limit)
                if x >= 0:
                    out.append((x, u, False))
        out.sort()
        return out

    cache = {}
    frames = []
    # The finite ops placed: every rank below fbase, and the ranks
    # fbase + j for the bits j of frel (kept small: the memo's keys would
    # otherwise grow with the history).  opn: the open ops placed.
    state, writer, fbase, frel, opn = _ABSENT, -1, 0, 0, 0
    best = ((-1, False), -1, _ABSENT, -1)   # (depth, no open op), blocked, state, writer
    steps = 0
    if nxt[0] == -1:
        return OK, {"steps": 0, "cache": 0}
    kids, ret, forced = children(state)
    ci, opened = 0, forced
    while True:
        if ci < len(kids):
            e, new, ro = kids[ci]
            ci += 1
            steps += 1
            if not steps & 4095 and time.process_time() > deadline:
                return UNKNOWN, {"steps": steps, "cache": len(cache)}
            i = e_op[e]
            if e <= m:
                nb, no = fbase, opn
                j = bit[i] - fbase
                nr = frel | (1 << j)
                if j == 0:
                    t = (~nr & (nr + 1)).bit_length() - 1
                    nr >>= t
                    nb += t
            else:
                nb, nr, no = fbase, frel, opn | bit[i]
            ck = (nb, nr, new)
            seen = cache.get(ck)
            if seen is None:
                cache[ck] = [no]
            elif no and any(not (s2 & ~no) for s2 in seen):
                continue
            elif not no and 0 in seen:
                continue
            else:
                seen.append(no)
            frames.append((kids, ci, opened, forced, ret, state, writer, fbase, frel, opn, e))
            if e > m:
                placed[e] = True
            else:
                p, q = prv[e], nxt[e]
                nxt[p] = q
                if q != -1:
                    prv[q] = p
                r2 = match[e]
                p, q = prv[r2], nxt[r2]
                nxt[p] = q
                if q != -1:
                    prv[q] = p
            if not ro:
                writer = i
            state, fbase, frel, opn = new, nb, nr, no
            if nxt[0] == -1:
                return OK, {"steps": steps, "cache": len(cache)}
            kids, ret, forced = children(state)
            ci, opened = 0, forced
            continue
        if not opened:
            opened = True
            if k:
                kids = kids + open_children(state, e_t[ret])
                continue
        if not forced:
            depth = len(frames) - bin(opn).count("1")
            if (depth, not opn) > best[0]:
                best = ((depth, not opn), e_op[ret], state, writer)
        if not frames:
            break
        kids, ci, opened, forced, ret, state, writer, fbase, frel, opn, e = frames.pop()
        if e > m:
            placed[e] = False
        else:
            p, q = prv[e], nxt[e]
            nxt[p] = e
            if q != -1:
                prv[q] = e
            r2 = match[e]
            p, q = prv[r2], nxt[r2]
            nxt[p] = r2
            if q != -1:
                prv[q] = r2
    depth, blocked, st, wr = best
    return VIOLATION, {"steps": steps, "cache": len(cache), "depth": depth[0],
                       "blocked": blocked, "state": kh.names[st], "writer": wr}


def _explain(kh, info):
    """A short account of a search failure: the op, the value, the window."""
    ops = kh.ops
    bi = info["blocked"]
    bo = ops[bi]
    lines = ["linearizability: key %r has no linearization (%d of %d ops placed at best)"
             % (kh.key, info["depth"], len(ops)),
             "  cannot linearize %s" % bo.describe()]
    wr = info["writer"]
    lines.append("  register there: %s%s" % (
        _v(info["state"]), (", written by " + ops[wr].describe()) if wr >= 0 else ""))
    want = bo.result.get("value") if bo.f == "get" else bo.expect if bo.f == "cas" else None
    src = [j for j, o in enumerate(ops) if want is not None and o.f in ("put", "cas")
           and o.value == want]
    if bo.f in ("get", "cas"):
        lines.append("  %s was written by %s" % (_v(want), "; ".join(
            ops[j].describe() for j in src) if src else "no op" if want is not None
            else "no op (absent)" if bo.f == "get" else "-"))
    end = kh.ret[bi]
    window = [j for j, o in enumerate(ops)
              if o.invoke <= end and kh.ret[j] >= bo.invoke and j != bi]
    closed = [j for j in window if kh.ret[j] != INF]
    opened = [j for j in window if kh.ret[j] == INF]
    before = sorted((j for j, o in enumerate(ops) if kh.ret[j] < bo.invoke),
                    key=lambda j: kh.ret[j])
    shown = sorted(set(before[-3:] + closed[:12] + opened[-3:]), key=lambda j: ops[j].invoke)
    lines.append("  ops around it (the last to complete before it, then the concurrent):")
    for j in shown:
        lines.append("    " + ops[j].describe())
    hidden = max(0, len(closed) - 12) + max(0, len(opened) - 3)
    if hidden:
        lines.append("    ... and %d more concurrent (%d of unknown outcome, in all)"
                     % (hidden, len(opened)))
    return "\n".join(lines)


def _key_histories(ops, serializable):
    """Per key, the ops the search must place."""
    keys = {}
    skipped = 0
    for o in ops:
        if o.f not in ("put", "get", "cas", "delete") or o.outcome == "fail":
            continue
        if o.f == "get" and (o.outcome != "ok" or (o.serializable and serializable != "check")):
            skipped += 1
            continue
        kh = keys.get(o.key)
        if kh is None:
            kh = keys[o.key] = _KeyHistory(o.key)
        kh.ops.append(o)
        kh.ret.append(o.complete if o.outcome == "ok" else INF)
    return keys, skipped


def _lint_key(kh):
    """Real-time refutations that need no search, checked first.

    With unique values, the op that read a value v was preceded by the one
    write W of v, and an op that surely overwrote v (an acknowledged put,
    delete or successful cas) which began after W took effect and took
    effect before the read began leaves nothing to read v from.  W took
    effect before it returned and before its first reader returned.  Also a
    value nobody wrote, or one written only after the read returned.
    Returns explanation texts (empty: nothing found; the search decides)."""
    writer = {}
    for i, o in enumerate(kh.ops):
        if o.f in ("put", "cas"):
            writer[o.value] = i if o.value not in writer else -1
    readers = []
    first = {}
    for i, o in enumerate(kh.ops):
        if o.outcome != "ok":
            continue
        if o.f == "get" and o.result.get("value") is not None:
            v = o.result["value"]
        elif o.f == "cas" and o.result["succeeded"] and o.expect is not None:
            v = o.expect
        else:
            continue
        readers.append((i, v))
        if o.complete < first.get(v, INF):
            first[v] = o.complete
    ec = [min(r, first.get(o.value, INF)) if writer.get(o.value) == i else r
          for i, (o, r) in enumerate(zip(kh.ops, kh.ret))]
    xs = []
    for i, o in enumerate(kh.ops):
        if o.outcome == "ok":
            sure = o.f in ("put", "delete") or (o.f == "cas" and o.result["succeeded"])
        else:
            sure = o.f in ("put", "cas")    # observed, if ec is finite
        if sure and ec[i] != INF:
            xs.append((o.invoke, ec[i], i))
    xs.sort()
    inv = [x[0] for x in xs]
    suf = [None] * (len(xs) + 1)
    suf[len(xs)] = (INF, -1)
    for j in range(len(xs) - 1, -1, -1):
        suf[j] = min(suf[j + 1], (xs[j][1], xs[j][2]))
    out = []
    for g, v in readers:
        go = kh.ops[g]
        w = writer.get(v)
        if w is None:
            out.append("no op wrote %s (none that did not fail)" % _v(v))
        elif w < 0:
            continue
        elif kh.ops[w].invoke > go.complete:
            out.append("it was written only later, by %s" % kh.ops[w].describe())
        else:
            j = bisect.bisect_right(inv, ec[w])
            t, x = suf[j]
            if t >= go.invoke:
                continue
            out.append("%s wrote it, then %s overwrote it before the read began"
                       % (kh.ops[w].describe(), kh.ops[x].describe()))
        out[-1] = "linearizability: key %r: %s read %s, but %s" % (
            kh.key, go.describe(), _v(v), out[-1])
        if len(out) >= 3:
            break
    return out


def _check_wgl(ops, time_limit, serializable, lint=True):
    keys, skipped = _key_histories(ops, serializable)
    verdicts, anomalies = {}, []
    stats = {"keys": len(keys), "unconstrained_reads": skipped, "dropped_unknown_writes": 0,
             "bounded_unknown_writes": 0, "steps": 0, "max_key_cpu_seconds": 0.0}
    for key in sorted(keys):
        kh = keys[key]
        _prune_unknown_writes(kh)
        stats["dropped_unknown_writes"] += kh.dropped
        stats["bounded_unknown_writes"] += kh.bounded
        t0 = time.process_time()
        found = _lint_key(kh) if lint else None
        if found:
            verdicts[key] = VIOLATION
            anomalies.extend(found)
            continue
        kh.intern_all()
        v, info = _wgl(kh, t0 + time_limit)
        dt = time.process_time() - t0
        stats["max_key_cpu_seconds"] = max(stats["max_key_cpu_seconds"], round(dt, 3))
        stats["steps"] += info["steps"]
        verdicts[key] = v
        if v == VIOLATION:
            anomalies.append(_explain(kh, info))
    layer = {"verdict": _combine(*verdicts.values()) if verdicts else OK,
             "violated_keys": sorted(k for k, v in verdicts.items() if v == VIOLATION),
             "unknown_keys": sorted(k for k, v in verdicts.items() if v == UNKNOWN)}
    if layer["unknown_keys"]:
        anomalies.append("linearizability: time cap of %gs hit on %d key(s): %s (verdict unknown)"
                         % (time_limit, len(layer["unknown_keys"]),
                            ", ".join(map(repr, layer["unknown_keys"][:10]))))
    return layer, anomalies, stats


# --- the revision layer ---------------------------------------------------------


class RevIndex:
    """What is known of etcd's write log: revision -> (key, value).

    etcd gives every write its own revision; the header revision of a read is
    the store revision it read at, and that store is exactly the replay of
    the writes up to it.  Writes come from acknowledged ops, from reads that
    return a value with its mod_revision, and from watch events.  Two
    different writes claiming one revision, or one (unique) value at two
    revisions, are anomalies.  Deletes are writes of None."""

    def __init__(self, attempts):
        self.attempts = attempts    # (key, value) -> [Op] that tried to write it
        self.by_rev = {}            # rev -> (key, value, source: Op or text)
        self.value_rev = {}         # (key, value) -> (rev, source)
        self.anomalies = []

    def unique(self, key, value):
        return len(self.attempts.get((key, value), ())) == 1

    def add(self, rev, key, value, src):
        old = self.by_rev.get(rev)
        if old is None:
            self.by_rev[rev] = (key, value, src)
        elif old[0] != key or old[1] != value:
            self.anomalies.append(
                "revision: revision %d holds two different writes: %s=%s (%s) and %s=%s (%s)"
                % (rev, old[0], _v(old[1]), _d(old[2]), key, _v(value), _d(src)))
            return
        if value is not None and self.unique(key, value):
            kv = (key, value)
            seen = self.value_rev.get(kv)
            if seen is None:
                self.value_rev[kv] = (rev, src)
            elif seen[0] != rev:
                self.anomalies.append(
                    "revision: value %s of key %r written once but seen at revisions %d (%s)"
                    " and %d (%s)" % (_v(value), key, seen[0], _d(seen[1]), rev, _d(src)))

    def finish(self):
        self.all_revs = sorted(self.by_rev)
        per = {}
        for r in self.all_revs:
            per.setdefault(self.by_rev[r][0], []).append(r)
        self.key_revs = per

    def writes_in(self, key, lo, hi):
        """Known writes of KEY with lo < revision <= hi."""
        revs = self.key_revs.get(key, ())
        i = bisect.bisect_right(revs, lo)
        j = bisect.bisect_right(revs, hi)
        return revs[i:j]

    def last_at(self, key, rev):
        """The latest known write of KEY at or below REV: revision or None."""
        revs = self.key_revs.get(key, ())
        i = bisect.bisect_right(revs, rev)
        return revs[i - 1] if i else None

    def complete_between(self, lo, hi):
        """Every revision in (lo, hi] is a known write: no unknown write hides there."""
        i = bisect.bisect_right(self.all_revs, lo)
        j = bisect.bisect_right(self.all_revs, hi)
        return j - i == hi - lo

    def value_at(self, key, rev):
        """(certain, value) of KEY in the store at REV, from known writes."""
        p = self.last_at(key, rev)
        if p is None:
            return False, None
        return self.complete_between(p, rev), self.by_rev[p][1]

    def check_state(self, key, rev, value, what):
        """Anomalies of an observation that KEY held VALUE at revision REV (a
        read's header revision, a compare, a watch event's prev_kv); WHAT
        (an Op or text) names the observer."""
        if value is not None:
            wr = self.value_rev.get((key, value))
            if wr is None:
                return []
            w = wr[0]
            if w > rev:
                return ["revision: %s saw %s=%s at revision %d, but that value was written at"
                        " revision %d (%s)" % (_d(what), key, _v(value), rev, w, _d(wr[1]))]
            later = self.writes_in(key, w, rev)
            if later:
                x = later[0]
                return ["revision: stale: %s saw %s=%s (written at %d) at revision %d, but %s"
                        " was written at %d (%s)" % (_d(what), key, _v(value), w, rev,
                                                     _v(self.by_rev[x][1]), x,
                                                     _d(self.by_rev[x][2]))]
        else:
            certain, cur = self.value_at(key, rev)
            if certain and cur is not None:
                p = self.last_at(key, rev)
                return ["revision: stale: %s saw %s absent at revision %d, but %s was written"
                        " at %d (%s) and every revision since is a known write"
                        % (_d(what), key, rev, _v(cur), p, _d(self.by_rev[p][2]))]
        return []


def _attempts(ops):
    """(key, value) -> the ops that tried to write it."""
    att = {}
    for o in ops:
        if o.f in ("put", "cas", "add") and o.value is not None:
            kv = (o.key, o.value)
            t = att.get(kv)
            if t is None:
                att[kv] = [o]
            else:
                t.append(o)
    return att


def _write_rev(o):
    """(revision, value) of an acknowledged write, or None."""
    if o.outcome != "ok":
        return None
    r = o.result
    rev = r.get("revision")
    if rev is None:
        return None
    if o.f == "put":
        return rev, o.value
    if o.f == "cas" and r["succeeded"]:
        return rev, o.value
    if o.f == "delete" and (r.get("deleted") or 0) > 0:
        return rev, None
    return None


def _observed_value(att, key, value, what, t_done):
    """Anomalies of reading VALUE of KEY: never written, only by failed
    writes, or only by writes invoked after the read completed."""
    tries = att.get((key, value))
    if not tries:
        return ["phantom: %s returned %s=%s, which no operation ever wrote"
                % (_d(what), key, _v(value))]
    if len(tries) == 1:
        o = tries[0]
        if o.outcome != "fail" and (t_done is None or o.invoke <= t_done):
            return []
    if all(o.outcome == "fail" for o in tries):
        return ["phantom: %s returned %s=%s, written only by %s, which failed"
                % (_d(what), key, _v(value), tries[0].describe())]
    if t_done is not None and all(o.invoke > t_done for o in tries if o.outcome != "fail"):
        return ["phantom: %s returned %s=%s before it was written by %s"
                % (_d(what), key, _v(value), tries[0].describe())]
    return []


def _real_time_order(items, anomalies):
    """items: (op, header revision, is_write) of acknowledged linearizable ops.
    An op invoked after another completed never has a lower revision, and a
    write's revision is strictly higher (it makes a new one)."""
    by_done = sorted(items, key=lambda x: x[0].complete)
    j, best, best_op = 0, -1, None
    for o, rev, w in sorted(items, key=lambda x: x[0].invoke):
        while j < len(by_done) and by_done[j][0].complete < o.invoke:
            if by_done[j][1] > best:
                best, best_op = by_done[j][1], by_done[j][0]
            j += 1
        if rev < best or (w and rev == best):
            anomalies.append("revision: went backwards: %s completed before %s was invoked,"
                             " yet the later op has revision %d %s %d"
                             % (best_op.describe(), o.describe(), rev,
                                "<=" if w else "<", best))


def _build_index(ops, events=()):
    """The write log known from acknowledged writes, from reads that return
    a value with its mod_revision, and from watch events (which also reveal
    writes whose put timed out).  Everything goes in before the per-key
    lists are built, so a write seen two ways at one revision is compared."""
    idx = RevIndex(_attempts(ops))
    for o in ops:
        wr = _write_rev(o)
        if wr is not None:
            idx.add(wr[0], o.key, wr[1], o)
    for o in ops:
        if o.f == "get" and o.outcome == "ok":
            r = o.result
            v, m = r.get("value"), r.get("mod_revision")
            if v is not None and m and idx.unique(o.key, v):
                idx.add(m, o.key, v, _Ref("read by ", o))
    for e in events:
        idx.add(e["mod_revision"], e["key"], e.get("value") if e["type"] == "PUT" else None,
                "watcher %s event" % e["watcher"])
    idx.finish()
    return idx


def _check_revisions(ops, idx, serializable):
    """The revision layer over the ops: anomalies and stats."""
    att = idx.attempts
    an = list(idx.anomalies)
    items = []
    for o in ops:
        if o.outcome != "ok" or o.f not in ("put", "get", "cas", "delete"):
            continue
        r = o.result
        rev = r.get("revision")
        what = o
        if o.f == "get":
            v, m = r.get("value"), r.get("mod_revision")
            if v is not None:
                an.extend("revision: " + x for x in
                          _observed_value(att, o.key, v, what, o.complete))
            if rev is not None and m is not None and m > rev:
                an.append("revision: %s: mod_revision above the header revision" % _d(o))
            if rev is not None:
                an.extend(idx.check_state(o.key, rev, v, what))
        elif o.f == "cas" and rev is not None:
            if r["succeeded"]:
                if o.expect is not None:
                    an.extend("revision: " + x for x in
                              _observed_value(att, o.key, o.expect, what, o.complete))
                an.extend(idx.check_state(o.key, rev - 1, o.expect, _Ref("", o, " compared")))
            else:
                certain, cur = idx.value_at(o.key, rev)
                if certain and cur == o.expect:
                    an.append("revision: %s failed, but %s held %s at revision %d"
                              % (_d(o), o.key, _v(cur), rev))
        elif o.f == "delete" and r.get("deleted") == 0 and rev is not None:
            an.extend(idx.check_state(o.key, rev, None, what))
        if rev is not None and not (o.serializable and o.f == "get" and serializable != "check"):
            items.append((o, rev, _write_rev(o) is not None))
    _real_time_order(items, an)
    stats = {"known_write_revisions": len(idx.all_revs), "revision_ordered_ops": len(items)}
    return an, stats


def check_register(ops, time_limit=10.0, serializable="skip"):
    """Linearizability of a register history, by both layers.

    time_limit caps the search per key (seconds); a key that hits it makes
    the verdict unknown unless something is violated.  serializable="skip"
    leaves serializable gets out of the real-time checks (etcd does not
    promise them linearizable); "check" holds them to it."""
    t0 = time.process_time()
    ops = normalise(ops)
    t1 = time.process_time()
    wgl, an1, st1 = _check_wgl(ops, time_limit, serializable)
    t2 = time.process_time()
    an2, st2 = _check_revisions(ops, _build_index(ops), serializable)
    t3 = time.process_time()
    rev_verdict = VIOLATION if an2 else OK
    stats = {"ops": len(ops)}
    for o in ops:
        stats["%s_%s" % (o.f, o.outcome)] = stats.get("%s_%s" % (o.f, o.outcome), 0) + 1
    stats.update(st1)
    stats.update(st2)
    stats.update(cpu_parse=round(t1 - t0, 3), cpu_wgl=round(t2 - t1, 3),
                 cpu_revision=round(t3 - t2, 3))
    verdict = _combine(wgl["verdict"], rev_verdict)
    anomalies = an1 + an2
    if not any(o.outcome == "ok" for o in ops):
        verdict = _combine(verdict, UNKNOWN)
        anomalies.append("nothing to check: no operation completed")
    return _summary(verdict, anomalies, stats,
                    layers={"wgl": wgl, "revision": {"verdict": rev_verdict,
                                                     "anomalies": len(an2)}})


# --- set ----------------------------------------------------------------------


def check_set(ops, serializable="skip"):
    """Lost and phantom elements of the set workload.

    Each add writes a unique value; read_all returns every element.  A value
    acknowledged before a read_all was invoked, or seen by a read_all that
    completed before it, must be in it; an element at or below a read_all's
    revision must be in it, and one above must not; a value nobody added
    never appears.  The headline counts come from the final read_all (the
    last invoked ok one).  All ops form one set, whatever their key."""
    ops = normalise(ops)
    adds = [o for o in ops if o.f == "add"]
    reads = [o for o in ops if o.f == "read_all" and o.outcome == "ok"]
    status = {}
    for o in adds:
        # The best outcome wins if a value was (wrongly) added twice.
        s = status.get(o.value)
        if s != "ok" and (s is None or o.outcome != "fail"):
            status[o.value] = o.outcome
    an = []
    stats = {"adds_ok": sum(o.outcome == "ok" for o in adds),
             "adds_unknown": sum(o.outcome == "unknown" for o in adds),
             "adds_fail": sum(o.outcome == "fail" for o in adds),
             "read_alls": len(reads)}
    if not reads:
        an.append("nothing to check: no read_all completed")
        stats.update(lost=0, phantom=0)
        return _summary(UNKNOWN, an, stats)
    acked = sorted((o for o in adds if o.outcome == "ok"), key=lambda o: o.complete)
    rev_of = {}
    for o in acked:
        rv = o.result.get("revision")
        if rv is not None:
            rev_of[o.value] = rv
    by_rev = sorted((rv, v) for v, rv in rev_of.items())
    lost, phantom, failed_seen = set(), set(), set()
    linear = sorted((r for r in reads if not r.serializable or serializable == "check"),
                    key=lambda r: r.invoke)
    done = sorted(linear, key=lambda r: r.complete)
    must, seen, j, k = set(), set(), 0, 0

    def report_lost(missing, why, r):
        # Each lost value once (where first missed), and at most 50 lines.
        for v in sorted(missing - lost):
            if len(lost) < 50:
                an.append("lost: %s %s %s" % (_v(v), why, r.describe()))
            lost.add(v)
    for r in linear:
        vals = set(r.result["values"])
        while j < len(acked) and acked[j].complete < r.invoke:
            must.add(acked[j].value)
            j += 1
        while k < len(done) and done[k].complete < r.invoke:
            seen.update(done[k].result["values"])
            k += 1
        report_lost(must - vals, "acknowledged before it was invoked is absent from", r)
        report_lost(seen - vals, "read by an earlier read_all is absent from", r)
    for r in reads:
        vals = set(r.result["values"])
        if len(vals) != len(r.result["values"]):
            an.append("duplicate: %s returned an element twice" % r.describe())
        for v in vals:
            s = status.get(v)
            if s is None or s == "fail":
                if v not in phantom and v not in failed_seen:
                    an.append("phantom: %s in %s was %s" % (
                        _v(v), r.describe(), "never added" if s is None else
                        "only added by a failed add"))
                (phantom if s is None else failed_seen).add(v)
        rv = r.result.get("revision")
        if rv is None:
            continue
        i = bisect.bisect_right(by_rev, (rv, "\U0010ffff"))
        below = {v for _, v in by_rev[:i]}
        report_lost(below - vals, "added at or below the revision of", r)
        for v in sorted(vals & {v for _, v in by_rev[i:]})[:20]:
            an.append("revision: %s added at revision %d is in %s, read at a lower revision"
                      % (_v(v), rev_of[v], r.describe()))
    final = max(reads, key=lambda r: (r.invoke, r.complete))
    fvals = set(final.result["values"])
    unk = {o.value for o in adds if status.get(o.value) == "unknown"}
    stats.update(lost=len(lost), phantom=len(phantom), failed_adds_present=len(failed_seen),
                 final_read_values=len(fvals),
                 final_lost=sum(1 for o in acked if o.complete < final.invoke
                                and o.value not in fvals),
                 unknown_present=len(unk & fvals), unknown_absent=len(unk - fvals))
    return _summary(VIOLATION if an else OK, an, stats)


# --- watch ----------------------------------------------------------------------


def _in_range(key, lo, end):
    if lo is None:
        return True
    if end is None:
        return key == lo
    if end == "\0":
        return key >= lo
    return lo <= key < end


def check_watch(ops, events, serializable="skip"):
    """Watch guarantees, per watcher, against the write log that the
    history and every watcher's events reveal together."""
    ops = normalise(ops)
    evs, watchers = _split_events(events)
    idx = _build_index(ops, evs)
    an, rst = _check_revisions(ops, idx, serializable)
    att = idx.attempts
    fields = {}
    for e in evs:
        if e["type"] == "PUT":
            key, rev = e["key"], e["mod_revision"]
            f = (e.get("create_revision"), e.get("version"))
            old = fields.setdefault((key, rev), (f, e["watcher"]))
            if old[0] != f:
                an.append("watch: watchers %s and %s disagree on %s@%d: (create_revision,"
                          " version) %s vs %s" % (old[1], e["watcher"], key, rev, old[0], f))
    stats = dict(rst)
    stats.update(watchers=len(watchers), events=len(evs), missed=0, duplicates=0,
                 out_of_order=0, prev_value_errors=0, phantom_events=0)
    by_watcher = {}
    for e in evs:
        by_watcher.setdefault(e["watcher"], []).append(e)
    for w in sorted(set(by_watcher) | set(watchers), key=str):
        _check_watcher(w, by_watcher.get(w, []), watchers.get(w), idx, att, an, stats)
    verdict = VIOLATION if an else OK
    if verdict == OK and not watchers and not evs:
        verdict = UNKNOWN
        an.append("nothing to check: no watcher recorded")
    return _summary(verdict, an, stats)


def _split_events(events):
    evs, watchers = [], {}
    for i, d in enumerate(events):
        where = "events line %s" % d.get("_line", i + 1)
        if "watcher" not in d:
            raise HistoryError("%s: no watcher" % where)
        if "type" in d:
            if d["type"] not in ("PUT", "DELETE"):
                raise HistoryError("%s: type must be PUT or DELETE" % where)
            if not isinstance(d.get("key"), str):
                raise HistoryError("%s: key must be a string" % where)
            _str_or_none(d, "value", where)
            _str_or_none(d, "prev_value", where)
            for k in ("mod_revision", "create_revision", "version"):
                r = d.get(k)
                if (r is not None or k == "mod_revision") and type(r) is not int:
                    raise HistoryError("%s: %s must be an integer" % (where, k))
            _num(d, "t", where, nullable=True)
            evs.append(d)
        else:
            if d.get("end") not in ("ok", "canceled", "compacted", "error", None):
                raise HistoryError("%s: end must be ok|canceled|compacted|error" % where)
            for k in ("start_revision", "end_revision", "compact_revision"):
                r = d.get(k)
                if r is not None and type(r) is not int:
                    raise HistoryError("%s: %s must be an integer" % (where, k))
            _str_or_none(d, "key", where)
            _str_or_none(d, "range_end", where)
            watchers[d["watcher"]] = d
    return evs, watchers


def _check_watcher(w, evs, info, idx, att, an, stats):
    info = info or {}
    name = "watcher %s" % w
    lo, end = info.get("key"), info.get("range_end")
    start = info.get("start_revision") or 0
    prev_kv = info.get("prev_kv")
    # etcd leaves prev_kv out when revision - 1 is compacted away.
    compacted = info.get("compact_revision") or 0
    last_rev, seen = 0, set()
    last_on_key = {}            # key -> last event of that key in this stream
    for n, e in enumerate(evs):
        key, rev = e["key"], e["mod_revision"]
        what = "%s event #%d %s %s=%s@%d" % (name, n, e["type"], key,
                                             _v(e.get("value")), rev)
        if (key, rev) in seen:
            stats["duplicates"] += 1
            an.append("watch: duplicate: " + what)
            continue
        if rev < last_rev:
            stats["out_of_order"] += 1
            an.append("watch: out of order: %s after an event at revision %d" % (what, last_rev))
        seen.add((key, rev))
        last_rev = max(last_rev, rev)
        if rev < start:
            an.append("watch: %s is below the start revision %d" % (what, start))
        if not _in_range(key, lo, end):
            an.append("watch: %s is outside the watched range" % what)
        if e["type"] == "PUT":
            bad = _observed_value(att, key, e.get("value"), what, e.get("t"))
            stats["phantom_events"] += len(bad)
            an.extend("watch: " + x for x in bad)
        # prev_kv: the key's value just before this revision.
        pv = e.get("prev_value")
        before = last_on_key.get(key)
        null_prev = prev_kv and pv is None and rev - 1 >= compacted
        if null_prev or pv is not None:
            if before is not None:
                want = before.get("value") if before["type"] == "PUT" else None
                if pv != want:
                    stats["prev_value_errors"] += 1
                    an.append("watch: %s has prev_value %s, but the previous event of that key"
                              " in the stream wrote %s" % (what, _v(pv), _v(want)))
            else:
                bad = idx.check_state(key, rev - 1, pv, what + " prev_value")
                stats["prev_value_errors"] += len(bad)
                an.extend(bad)
        if e["type"] == "PUT":
            cr, ver = e.get("create_revision"), e.get("version")
            created = (before is not None and before["type"] == "DELETE") or null_prev
            if before is not None and before["type"] == "PUT" and cr is not None \
                    and ver is not None and before.get("version") is not None:
                if cr != before.get("create_revision") or ver != before["version"] + 1:
                    an.append("watch: %s has create_revision %s version %s after"
                              " create_revision %s version %s" % (
                                  what, cr, ver, before.get("create_revision"),
                                  before["version"]))
            elif created and cr is not None and ver is not None and (cr != rev or ver != 1):
                an.append("watch: %s creates the key but has create_revision %s version %s"
                          % (what, cr, ver))
        last_on_key[key] = e
    # Reliable: every known write in the watched range from the start up to
    # how far the watcher got (or was told it got) is in the stream.
    if not start and evs:
        start = evs[0]["mod_revision"]
    horizon = last_rev
    if info.get("end") == "ok" and info.get("end_revision"):
        horizon = max(horizon, info["end_revision"])
    if not start or not horizon:
        return
    i = bisect.bisect_left(idx.all_revs, start)
    j = bisect.bisect_right(idx.all_revs, horizon)
    missed = []
    for r in idx.all_revs[i:j]:
        key, val, src = idx.by_rev[r]
        if _in_range(key, lo, end) and (key, r) not in seen:
            missed.append((r, key, val, src))
    stats["missed"] += len(missed)
    for r, key, val, src in missed[:20]:
        an.append("watch: %s missed %s=%s at revision %d (%s); it watched from %d to %d"
                  % (name, key, _v(val), r, src, start, horizon))
    if len(missed) > 20:
        an.append("watch: %s missed %d more" % (name, len(missed) - 20))


# --- command line ---------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write("checker: %s\n" % message)
        sys.exit(EXIT_BAD_INPUT)


def main(argv=None):
    p = _Parser(description="Check a fault-run history (tests/fault/HISTORY.md).")
    p.add_argument("--kind", required=True, choices=("register", "set", "watch"))
    p.add_argument("--time-limit", type=float, default=10.0,
                   help="seconds of linearizability search per key (register); default 10")
    p.add_argument("--serializable", choices=("skip", "check"), default="skip",
                   help="hold serializable reads to real-time order too (default: skip)")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.add_argument("--max-anomalies", type=int, default=20)
    p.add_argument("history")
    p.add_argument("events", nargs="?")
    a = p.parse_args(argv)
    if a.kind == "watch" and not a.events:
        p.error("--kind watch needs the EVENTS file")
    t0 = time.monotonic()
    try:
        ops = load_jsonl(a.history)
        if a.kind == "register":
            res = check_register(ops, time_limit=a.time_limit, serializable=a.serializable)
        elif a.kind == "set":
            res = check_set(ops, serializable=a.serializable)
        else:
            res = check_watch(ops, load_jsonl(a.events), serializable=a.serializable)
    except HistoryError as e:
        msg = str(e)
        if msg.startswith("line "):
            msg = "%s: %s" % (a.history, msg)
        elif msg.startswith("events line "):
            msg = "%s: %s" % (a.events, msg[len("events "):])
        sys.stderr.write("checker: %s\n" % msg)
        return EXIT_BAD_INPUT
    res["stats"]["check_seconds"] = round(time.monotonic() - t0, 3)
    if a.json:
        json.dump(res, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print("%s: %s" % (a.kind, res["verdict"].upper()))
        print("stats: " + " ".join("%s=%s" % kv for kv in sorted(res["stats"].items())))
        for x in res["anomalies"][:a.max_anomalies]:
            print(x)
        if len(res["anomalies"]) > a.max_anomalies:
            print("... %d more anomalies (--max-anomalies, --json)"
                  % (len(res["anomalies"]) - a.max_anomalies))
    return EXIT[res["verdict"]]


if __name__ == "__main__":
    sys.exit(main())
