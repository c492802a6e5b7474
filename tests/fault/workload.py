"""
workload: the client load of a fault run, and the history it records.

Every operation is written to history.jsonl in the format of
tests/fault/HISTORY.md (the contract with checker.py): id, process, f, key, value,
expect, invoke, complete, outcome, result, endpoint, serializable, error,
with time.monotonic() stamps taken just before the request is written and
just after the answer is read.

Outcomes: ok (answered); fail (certainly without effect: the connection
could not be made, or the server refused before proposing, see
gwclient.is_definite; a read that got an error answer had no effect either);
unknown (anything else: timeout, broken connection, an error that may
follow a proposal).  A worker whose operation ended unknown continues as a
new process (Jepsen's rule): the old process's operation may still be in
flight, and a process must never have two operations open.

Workloads:
  register   put / get / cas (a txn comparing the value) on a few hot keys
             r/0..r/K-1, every put and cas writing a value used once;
             with serializable=True the gets are serializable;
  set        unique adds (put s/<v> = v) and, every few seconds, a
             linearizable read of the whole prefix (read_all);
  watch      puts on w/0..w/K-1 and watchers on the prefix w/ from a start
             revision, recording every event to events.jsonl; a watcher
             whose stream breaks ends with "error" and a new watcher resumes
             after the last revision it saw, on another member.
"""
import json
import random
import threading
import time

import gwclient
from gwclient import Indefinite, NotSent, ServerError


class History:
    def __init__(self, path, events_path=None):
        self.f = open(path, "w")
        self.ef = open(events_path, "w") if events_path else None
        self.lock = threading.Lock()
        self.ops = []
        self.events = []
        self._id = 0
        self._process = 0
        self._watcher = 0

    def new_id(self):
        with self.lock:
            self._id += 1
            return self._id

    def new_process(self):
        with self.lock:
            self._process += 1
            return self._process

    def new_watcher(self):
        with self.lock:
            self._watcher += 1
            return self._watcher

    def record(self, op):
        line = json.dumps(op, sort_keys=True)
        with self.lock:
            self.ops.append(op)
            self.f.write(line + "\n")

    def event(self, ev):
        line = json.dumps(ev, sort_keys=True)
        with self.lock:
            self.events.append(ev)
            self.ef.write(line + "\n")

    def close(self):
        with self.lock:
            self.f.close()
            if self.ef:
                self.ef.close()

    def counts(self):
        c = {"ok": 0, "fail": 0, "unknown": 0}
        with self.lock:
            for op in self.ops:
                c[op["outcome"]] += 1
        return c


def run_op(hist, client, process, f, key, ep, call, value=None, expect=None,
           serializable=False, claim_serializable=None, write=True, planted=False):
    """Runs call() (a gwclient call) as one recorded operation; returns the
    recorded op.  claim_serializable: what the history says about the read
    (a planted-bug mode records serializable reads as linearizable, and
    marks them "planted", a field the checker does not read)."""
    op = {"id": hist.new_id(), "process": process, "f": f, "key": key, "value": value,
          "expect": expect, "endpoint": ep,
          "serializable": serializable if claim_serializable is None else claim_serializable,
          "invoke": None, "complete": None, "outcome": "unknown", "result": None,
          "error": None}
    if planted:
        op["planted"] = True
    op["invoke"] = time.monotonic()
    try:
        res = call()
        op["complete"] = time.monotonic()
        op["outcome"] = "ok"
        op["result"] = res
    except NotSent as e:
        op["complete"] = time.monotonic()
        op["outcome"] = "fail"
        op["error"] = str(e)
    except ServerError as e:
        if not write or gwclient.is_definite(e):
            op["complete"] = time.monotonic()
            op["outcome"] = "fail"
        op["error"] = str(e)
    except Indefinite as e:
        op["error"] = str(e)
    hist.record(op)
    return op


class Workers:
    """Base: n threads of one kind of worker, a stop flag, pacing."""

    def __init__(self, ctx, n, rate):
        self.ctx = ctx
        self.n = n
        self.interval = n / float(rate) if rate > 0 else 0.0
        self.stop_flag = threading.Event()
        self.threads = []
        self.errors = []

    def endpoints(self):
        return [m.client_url for m in self.ctx.cluster.members]

    def start(self):
        for k in range(self.n):
            th = threading.Thread(target=self._main, args=(k,), daemon=True,
                                  name="%s-%d" % (type(self).__name__, k))
            th.start()
            self.threads.append(th)
        return self

    def _main(self, k):
        try:
            self.worker(k)
        except Exception as e:  # noqa: BLE001  (a harness bug: report it)
            import traceback
            self.errors.append("%s: %s\n%s" % (threading.current_thread().name, e,
                                               traceback.format_exc()))

    def pace(self, t_last):
        if self.interval > 0:
            wait = t_last + self.interval - time.monotonic()
            if wait > 0:
                self.stop_flag.wait(wait)
        return time.monotonic()

    def backoff(self):
        """After an error, as real clients do: fewer doomed requests while
        the cluster recovers (and fewer unknown outcomes to check)."""
        self.stop_flag.wait(0.1)

    def stop(self):
        self.stop_flag.set()
        for th in self.threads:
            th.join(30)
        return [th.name for th in self.threads if th.is_alive()]


class Register(Workers):
    def __init__(self, ctx, n, rate, keys, serializable=False, plant_stale=False,
                 mix=(0.4, 0.4, 0.2)):
        Workers.__init__(self, ctx, n, rate)
        self.keys = keys
        self.serializable = serializable
        # Planted bug for the checker's proof: a member cut off from its
        # peers (ctx.isolated, set by the nemesis) answers gets from its own
        # state, as a server that wrongly trusts its leadership would, and
        # the history records them as linearizable gets.
        self.plant_stale = plant_stale
        self.mix = mix

    def worker(self, k):
        ctx = self.ctx
        rng = random.Random()
        client = gwclient.Client(timeout=ctx.op_timeout)
        proc = ctx.hist.new_process()
        last = {}
        eps = self.endpoints()
        t = time.monotonic()
        while not self.stop_flag.is_set():
            t = self.pace(t)
            if self.stop_flag.is_set():
                break
            key = rng.choice(self.keys)
            ep = ctx.pick_endpoint(rng, eps)
            r = rng.random()
            if r < self.mix[0]:
                ser, claim = self.serializable, None
                if self.plant_stale:
                    iso = ctx.isolated
                    if iso is not None and ep == iso.client_url:
                        ser, claim = True, False
                op = run_op(ctx.hist, client, proc, "get", key, ep,
                            lambda: client.get(ep, key, ser),
                            serializable=ser, claim_serializable=claim, write=False,
                            planted=claim is not None)
                if op["outcome"] == "ok":
                    last[key] = op["result"]["value"]
            elif r < self.mix[0] + self.mix[1]:
                val = "v-%d-%d" % (proc, ctx.hist.new_id())
                op = run_op(ctx.hist, client, proc, "put", key, ep,
                            lambda: client.put(ep, key, val), value=val)
                if op["outcome"] == "ok":
                    last[key] = val
            else:
                val = "v-%d-%d" % (proc, ctx.hist.new_id())
                exp = last.get(key)
                op = run_op(ctx.hist, client, proc, "cas", key, ep,
                            lambda: client.cas(ep, key, exp, val), value=val, expect=exp)
                if op["outcome"] == "ok" and op["result"]["succeeded"]:
                    last[key] = val
            if op["outcome"] == "unknown":
                proc = ctx.hist.new_process()
                client.close()
            if op["outcome"] != "ok":
                self.backoff()
        client.close()


class SetAdds(Workers):
    """Unique adds; worker 0 also reads the whole set every few seconds."""

    PREFIX = "s/"

    def __init__(self, ctx, n, rate, read_every=3.0):
        Workers.__init__(self, ctx, n, rate)
        self.read_every = read_every

    def worker(self, k):
        ctx = self.ctx
        rng = random.Random()
        client = gwclient.Client(timeout=ctx.op_timeout)
        proc = ctx.hist.new_process()
        eps = self.endpoints()
        t = time.monotonic()
        next_read = t + self.read_every
        while not self.stop_flag.is_set():
            t = self.pace(t)
            if self.stop_flag.is_set():
                break
            ep = ctx.pick_endpoint(rng, eps)
            if k == 0 and t >= next_read:
                next_read = t + self.read_every
                op = read_all(ctx, client, proc, ep, self.PREFIX)
            else:
                val = "e-%d-%d" % (proc, ctx.hist.new_id())
                key = self.PREFIX + val
                op = run_op(ctx.hist, client, proc, "add", key, ep,
                            lambda: client.put(ep, key, val), value=val)
            if op["outcome"] == "unknown":
                proc = ctx.hist.new_process()
                client.close()
            if op["outcome"] != "ok":
                self.backoff()
        client.close()


def read_all(ctx, client, proc, ep, prefix, serializable=False):
    def call():
        kvs, revision = client.read_prefix(ep, prefix, serializable)
        return {"values": sorted(v for _, v in kvs), "revision": revision}
    return run_op(ctx.hist, client, proc, "read_all", prefix, ep, call,
                  serializable=serializable, write=False)


class WatchPuts(Register):
    """The writers of the watch workload: puts and cas on w/ keys."""

    def __init__(self, ctx, n, rate, keys):
        Register.__init__(self, ctx, n, rate, keys, mix=(0.1, 0.7, 0.2))


class Watchers:
    """Watchers on a key range; each thread is one logical watcher that
    resumes on another member when its stream breaks (as a new watcher id,
    from the revision after the last event it saw)."""

    def __init__(self, ctx, n, key, range_end, start_revisions, silent=1.0):
        self.ctx = ctx
        self.key = key
        self.range_end = range_end
        self.starts = list(start_revisions)
        self.n = n
        self.silent = silent
        self.threads = []
        self.errors = []
        self.finish_at = None      # revision every watcher must reach
        self.deadline = None
        self.stop_flag = threading.Event()
        self.caught_up = {}
        self.restarts = 0

    def start(self, delays=None):
        for k in range(self.n):
            d = delays[k] if delays else 0.0
            th = threading.Thread(target=self._main, args=(k, d), daemon=True,
                                  name="watcher-%d" % k)
            th.start()
            self.threads.append(th)
        return self

    def _main(self, k, delay):
        try:
            self.watcher(k, delay)
        except Exception as e:  # noqa: BLE001
            import traceback
            self.errors.append("watcher-%d: %s\n%s" % (k, e, traceback.format_exc()))

    def _done(self, next_rev):
        if self.stop_flag.is_set():
            return True
        if self.finish_at is not None:
            if next_rev > self.finish_at:
                return True
            if time.monotonic() > self.deadline:
                return True
        return False

    def watcher(self, k, delay):
        ctx = self.ctx
        rng = random.Random()
        if delay and self.stop_flag.wait(delay):
            return
        start = self.starts[k]
        if start is None or start <= 0:
            # "from now": the current revision, read linearizably, plus one.
            start = ctx.current_revision() + 1
            start = max(1, start - rng.randint(0, 50))
        next_rev = start
        eps = [m.client_url for m in ctx.cluster.members]
        ep = rng.choice(eps)
        while not self._done(next_rev):
            wid = ctx.hist.new_watcher()
            started = next_rev
            end = "error"
            err = None
            try:
                ws = gwclient.WatchStream(ep, self.key, self.range_end, next_rev,
                                          timeout=ctx.op_timeout)
            except NotSent as e:
                ws, err = None, str(e)
            if ws is not None:
                try:
                    while not self._done(next_rev):
                        try:
                            resp = ws.next_response(self.silent)
                        except Indefinite as e:
                            if "silent" in str(e):
                                continue
                            raise
                        if resp.get("canceled"):
                            end = "canceled"
                            err = resp.get("cancel_reason") or "canceled (compact_revision %s)" \
                                % resp.get("compact_revision")
                            break
                        for ev in resp.get("events") or []:
                            kv = ev.get("kv") or {}
                            pkv = ev.get("prev_kv")
                            rec = {"watcher": wid, "key": gwclient.unb64(kv.get("key")),
                                   "type": ev.get("type") or "PUT",
                                   "value": gwclient.unb64(kv.get("value"))
                                   if (ev.get("type") or "PUT") == "PUT" else None,
                                   "mod_revision": gwclient.rev(kv.get("mod_revision")),
                                   "create_revision": gwclient.rev(kv.get("create_revision")),
                                   "version": gwclient.rev(kv.get("version")),
                                   "prev_value": gwclient.unb64(pkv.get("value"))
                                   if pkv is not None else None,
                                   "t": time.monotonic()}
                            ctx.hist.event(rec)
                            next_rev = max(next_rev, rec["mod_revision"] + 1)
                    else:
                        end = "ok" if (self.finish_at is None or next_rev > self.finish_at
                                       or self.stop_flag.is_set()) else "error"
                        if end == "error":
                            err = "did not reach revision %s in time" % self.finish_at
                except (Indefinite, ServerError) as e:
                    err = str(e)
                finally:
                    ws.close()
            ctx.hist.event({"watcher": wid, "start_revision": started, "end": end,
                            "t": time.monotonic(), "endpoint": ep, "error": err})
            if end == "ok" or end == "canceled":
                break
            if self._done(next_rev):
                break
            self.restarts += 1
            others = [e for e in eps if e != ep] or eps
            ep = rng.choice(others)
            self.stop_flag.wait(0.2)
        self.caught_up[k] = next_rev

    def finish(self, revision, timeout):
        """Every watcher reads until it saw `revision`, or timeout."""
        self.deadline = time.monotonic() + timeout
        self.finish_at = revision
        for th in self.threads:
            th.join(timeout + 10)
        self.stop_flag.set()
        for th in self.threads:
            th.join(10)
        return [th.name for th in self.threads if th.is_alive()]
