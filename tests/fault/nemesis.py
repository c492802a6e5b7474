"""
nemesis: the fault schedule of a run and the code that injects and heals
each fault.

schedule(kind, seed, duration, n) draws, from a random.Random seeded with
the kind, the seed and the member count alone, a list of windows: when a fault starts and ends, what kind it is, whom it
hits and how hard.  Targets that depend on the cluster's state are roles
("the leader", "a follower" with a fixed pick in [0, 1)), resolved when the
window opens; everything else is concrete.  The same seed therefore gives
the same times, kinds, roles, members and parameters.

Each fault is healed at the end of its window, and heal_all() at the end of
the run undoes whatever may be left (it is idempotent), so a run always
ends with every member running, in the cluster, on a sane clock, with free
disk, a clean packet filter and no delays.

Kinds (all listed in KINDS):
  kill-follower, kill-leader, kill-majority   SIGKILL, restart at window end
  pause-follower, pause-leader                SIGSTOP ... SIGCONT
  partition-leader    the leader cut from every other member (both ways)
  partition-split     a random minority cut from the majority
  partition-oneway    the leader deaf (hears no member) or mute (is heard by none)
  partition-bridge    two sides cut from each other (the leader's and the
                      other), one follower (the bridge) seeing both
  link-lossy          a member's peer links drop 10-50% of packets each way
  link-delay          a member's (or every) peer link delayed 20-200 ms +- half
  disk-full           the leader's or a follower's data dir (tmpfs) filled up
  clock-jump          the leader's or a follower's clock jumps +-2..60 s, and
                      back (libfaketime: realtime and monotonic clocks)
  clock-drift         the leader or a follower restarted on a clock running
                      x0.5..x2 (timers too), later restarted on a true clock
  member-replace      a member removed from the cluster, wiped, added back
  leader-move         leadership transferred to a follower (MoveLeader)
  combo               each window a network fault (partition-* or link-*) and,
                      during it, a process fault (kill, pause, clock-jump,
                      disk-full, leader-move), healed in reverse order
  mix                 each window one of the kinds above (not combo), at random
  none                no fault (a baseline)
"""
import os
import random
import time

import gwclient

KINDS = ["kill-follower", "kill-leader", "kill-majority", "pause-follower", "pause-leader",
         "partition-leader", "partition-split", "partition-oneway", "partition-bridge",
         "link-lossy", "link-delay", "disk-full", "clock-jump", "clock-drift",
         "member-replace", "leader-move"]
ALL_KINDS = KINDS + ["combo", "mix", "none"]
# combo windows: one network fault and, during it, one process fault.
COMBO_NET = ["partition-leader", "partition-split", "partition-oneway", "partition-bridge",
             "link-lossy", "link-delay"]
COMBO_PROC = ["kill-follower", "kill-leader", "pause-follower", "pause-leader", "clock-jump",
              "disk-full", "leader-move"]

# (shortest, longest) fault window and healthy gap after it, seconds.
TIMING = {
    "kill": ((1.5, 4.0), (2.0, 4.0)),
    "pause": ((1.5, 4.0), (2.0, 4.0)),
    "partition": ((2.5, 6.0), (2.0, 4.0)),
    "link": ((3.0, 6.0), (2.0, 3.0)),
    "disk": ((2.5, 5.0), (2.0, 4.0)),
    "clock": ((2.5, 5.0), (2.0, 4.0)),
    "member": ((2.0, 4.0), (4.0, 6.0)),
    "leader": ((0.0, 0.0), (1.5, 3.0)),
}


def needs_proxy(kind):
    return kind in ("link-delay", "mix", "combo")


def needs_faketime(kind):
    return kind in ("clock-jump", "clock-drift", "mix", "combo")


def needs_tmpfs(kind):
    return kind in ("disk-full", "mix", "combo")


def _params(kind, rng, n):
    if kind in ("kill-follower", "pause-follower"):
        return {"role": "follower", "pick": rng.random()}
    if kind in ("kill-leader", "pause-leader", "partition-leader"):
        return {"role": "leader"}
    if kind == "kill-majority":
        return {"role": "majority", "with_leader": rng.random() < 0.5, "pick": rng.random()}
    if kind == "partition-split":
        return {"minority": sorted(rng.sample(range(n), (n - 1) // 2))}
    if kind == "partition-oneway":
        return {"role": "leader", "way": rng.choice(["deaf", "mute"])}
    if kind == "partition-bridge":
        # The bridge is a follower and the leader is on side a, so that the
        # cut always separates the leader from someone (followers alone
        # exchange no raft traffic).  rank orders the other members.
        return {"role": "bridge", "pick": rng.random(), "rank": [rng.random() for _ in range(n)]}
    if kind == "link-lossy":
        return {"member": rng.randrange(n), "pct": rng.choice([10, 20, 30, 50])}
    if kind == "link-delay":
        d = rng.choice([20, 50, 100, 200])
        return {"member": rng.choice(list(range(n)) + ["all"]), "delay_ms": d,
                "jitter_ms": d // 2}
    if kind == "disk-full":
        return {"role": rng.choice(["leader", "follower"]), "pick": rng.random()}
    if kind == "clock-jump":
        return {"role": rng.choice(["leader", "follower"]), "pick": rng.random(),
                "offset": rng.choice([-1, 1]) * rng.choice([2, 5, 10, 30, 60])}
    if kind == "clock-drift":
        return {"role": rng.choice(["leader", "follower"]), "pick": rng.random(),
                "rate": rng.choice([0.5, 0.7, 1.5, 2.0])}
    if kind == "member-replace":
        return {"role": "leader" if rng.random() < 0.3 else "follower", "pick": rng.random()}
    if kind == "leader-move":
        return {"pick": rng.random()}
    raise ValueError("unknown fault kind %r" % kind)


def schedule(kind, seed, duration, n, first=2.0, quiet_end=3.5, mix_kinds=None):
    """The windows of a run: [{"start", "end", "kind", ...params}]."""
    rng = random.Random("%s/%s/%s" % (kind, seed, n))
    out = []
    if kind == "none":
        return out
    t = first + rng.uniform(0, 1.0)
    while True:
        k = kind
        if kind == "mix":
            k = rng.choice(mix_kinds or KINDS)
        parts = None
        if k == "combo":
            procs = [p for p in COMBO_PROC if mix_kinds is None or p in mix_kinds]
            parts = [rng.choice(COMBO_NET), rng.choice(procs)]
            (wlo, whi), (glo, ghi) = TIMING["partition"]
        else:
            (wlo, whi), (glo, ghi) = TIMING[k.split("-")[0]]
        length = rng.uniform(wlo, whi)
        if t + length > duration - quiet_end:
            break
        w = {"start": round(t, 3), "end": round(t + length, 3), "kind": k}
        if parts:
            w["parts"] = []
            for p in parts:
                pw = {"kind": p}
                pw.update(_params(p, rng, n))
                w["parts"].append(pw)
            # The process fault hits once the network fault has had effects
            # (a new leader, a lagging member).
            w["parts"][1]["after"] = round(rng.uniform(0.3, length / 2), 3)
        else:
            w.update(_params(k, rng, n))
        out.append(w)
        t += length + rng.uniform(glo, ghi)
    return out


class Nemesis:
    def __init__(self, run):
        self.run = run
        self.cl = run.cluster
        self.net = run.net
        self.log = run.log
        self.client = gwclient.Client(timeout=2.0)
        self.injected = 0
        self.events = []    # what was done, for the run's record
        self.active = []    # [(window, state)] of the faults in force
        self.rules = {}     # nft rules by the fault that asked for them

    # ---- looking at the cluster
    def live(self):
        return [m for m in self.cl.members if m.running() and not m.paused and not m.removed]

    def leader(self):
        """The member that says it leads and whose leadership a majority of
        the live members report (a partitioned old leader does not count),
        or None."""
        views = {}
        for m in self.live():
            try:
                st = self.client.status(m.client_url)
            except Exception:
                continue
            m.id = st["member_id"] or m.id
            if st["leader"]:
                views[st["leader"]] = views.get(st["leader"], 0) + 1
        if not views:
            return None
        lid, votes = max(views.items(), key=lambda kv: kv[1])
        for m in self.cl.members:
            if m.id == lid and not m.removed:
                return m
        return None

    def _resolve(self, w):
        """The members a role-based window hits (a list)."""
        members = [m for m in self.cl.members if not m.removed]
        role = w.get("role")
        ldr = self.leader() if role else None
        if role == "leader":
            if ldr is None:
                # No leader now: hit a member all the same (the pick is fixed).
                return [members[int(w.get("pick", 0) * len(members))]]
            return [ldr]
        followers = [m for m in members if m is not ldr]
        if role == "follower":
            return [followers[int(w["pick"] * len(followers))]]
        if role == "majority":
            size = len(members) // 2 + 1
            chosen = [ldr] if (w["with_leader"] and ldr is not None) else []
            rest = [m for m in followers]
            start = int(w["pick"] * len(rest))
            rest = rest[start:] + rest[:start]
            for m in rest:
                if len(chosen) >= size:
                    break
                chosen.append(m)
            return chosen
        if "member" in w and w["member"] != "all":
            return [self.cl.members[w["member"]]]
        return []

    def note(self, what, w, targets, detail=""):
        t = time.monotonic() - self.run.t0
        names = ",".join(m.name for m in targets)
        self.events.append({"t": round(t, 3), "what": what, "kind": w["kind"],
                            "targets": names, "detail": detail})
        self.log("nemesis: %s %s %s%s" % (what, w["kind"], names or "-",
                                          (" (" + detail + ")") if detail else ""))

    # ---- one window
    def apply(self, w):
        for part in w.get("parts") or [w]:
            if part.get("after"):
                time.sleep(part["after"])
            fn = getattr(self, "_apply_" + part["kind"].replace("-", "_").split("_")[0])
            self.active.append((part, fn(part)))
            self.injected += 1

    def heal(self):
        """Heals the faults in force, the last one first."""
        while self.active:
            w, state = self.active.pop()
            fn = getattr(self, "_heal_" + w["kind"].replace("-", "_").split("_")[0])
            fn(w, state)

    def _net(self, name, rules):
        """Sets (or with None removes) one fault's nft rules; the filter is
        the union of every fault's rules (a cut wins over loss)."""
        if rules is None:
            self.rules.pop(name, None)
        else:
            self.rules[name] = rules
        merged = {}
        for r in self.rules.values():
            for k, v in r.items():
                merged[k] = max(merged.get(k, 0), v)
        self.net.apply(merged)

    # kill-*
    def _apply_kill(self, w):
        targets = self._resolve(w)
        for m in targets:
            m.kill()
        self.note("kill -9", w, targets)
        return targets

    def _heal_kill(self, w, targets):
        for m in targets:
            self.restart(m)
        self.note("restart", w, targets)

    # pause-*
    def _apply_pause(self, w):
        targets = self._resolve(w)
        for m in targets:
            m.pause()
        self.note("SIGSTOP", w, targets)
        for m in targets:
            deadline = time.monotonic() + 2.0
            while m.proc_state() not in ("T", "t") and time.monotonic() < deadline:
                time.sleep(0.02)
            if m.proc_state() not in ("T", "t"):
                self.run.problem("pause: %s is in state %r, not stopped" % (m.name, m.proc_state()))
        return targets

    def _heal_pause(self, w, targets):
        for m in targets:
            m.resume()
        self.note("SIGCONT", w, targets)

    # partition-*
    def _apply_partition(self, w):
        n = self.cl.n
        k = w["kind"]
        cut = set()
        if k in ("partition-leader", "partition-oneway"):
            ldr = self._resolve(w)[0]
            others = [j for j in range(n) if j != ldr.i]
            way = w.get("way", "both")
            for j in others:
                if way in ("both", "deaf"):
                    cut.add((j, ldr.i))
                if way in ("both", "mute"):
                    cut.add((ldr.i, j))
            detail = "%s %s" % (ldr.name, way)
            targets = [ldr]
        elif k == "partition-split":
            mino = set(w["minority"])
            for i in range(n):
                for j in range(n):
                    if (i in mino) != (j in mino):
                        cut.add((i, j))
            detail = "minority %s" % [self.cl.members[i].name for i in sorted(mino)]
            targets = [self.cl.members[i] for i in sorted(mino)]
        elif k == "partition-bridge":
            ldr = self.leader() or self.cl.members[0]
            followers = [m for m in self.cl.members if m is not ldr]
            bridge = followers[int(w["pick"] * len(followers))]
            rest = sorted((m for m in followers if m is not bridge), key=lambda m: w["rank"][m.i])
            half = (n - 1) // 2
            a = [ldr] + rest[:half - 1]
            b = rest[half - 1:]
            for x in a:
                for y in b:
                    cut.add((x.i, y.i))
                    cut.add((y.i, x.i))
            detail = "bridge %s between %s and %s" % (
                bridge.name, [m.name for m in a], [m.name for m in b])
            targets = [bridge]
        else:
            raise ValueError(k)
        self._net("partition", {c: 100 for c in cut})
        if k == "partition-leader":
            self.run.isolated = targets[0]
        self.note("cut %d links" % len(cut), w, targets, detail)
        return cut

    def _heal_partition(self, w, cut):
        self.run.isolated = None
        dropped = self.net.dropped()
        self._net("partition", None)
        self.note("heal network", w, [], "%d packets dropped" % dropped)
        if not dropped:
            self.run.problem("%s: the filter dropped no packet (no effect)" % w["kind"])

    # link-*
    def _apply_link(self, w):
        n = self.cl.n
        tgt = w["member"]
        members = range(n) if tgt == "all" else [tgt]
        links = set()
        for i in members:
            for j in range(n):
                if i != j:
                    links.add((i, j))
                    links.add((j, i))
        before = 0
        if w["kind"] == "link-lossy":
            self._net("loss", {lk: w["pct"] for lk in links})
            detail = "%d%% loss on %d links" % (w["pct"], len(links))
        else:
            before = self.cl.set_delays({lk: (w["delay_ms"], w["jitter_ms"]) for lk in links})
            detail = "%d+-%d ms on %d links" % (w["delay_ms"], w["jitter_ms"], len(links))
        targets = [self.cl.members[i] for i in members]
        self.note("degrade", w, targets, detail)
        return before

    def _heal_link(self, w, before):
        if w["kind"] == "link-lossy":
            n = self.net.dropped()
            self._net("loss", None)
            what = "%d packets dropped" % n
        else:
            n = self.cl.delayed_chunks() - before
            self.cl.set_delays({})
            what = "%d chunks delayed" % n
        self.note("heal links", w, [], what)
        if n <= 0:
            self.run.problem("%s: %s (no effect)" % (w["kind"], what))

    # disk-full
    def _apply_disk(self, w):
        targets = self._resolve(w)
        for m in targets:
            n = m.fill_disk()
            self.note("fill disk", w, [m], "%d MiB" % (n >> 20))
            # The member may free a segment right after; a fill that wrote
            # nothing while there was room is what must not happen.
            st = os.statvfs(m.data_dir)
            if n == 0 and st.f_bavail:
                self.run.problem("disk-full: nothing written on %s, %d blocks free"
                                 % (m.name, st.f_bavail))
        return targets

    def _heal_disk(self, w, targets):
        for m in targets:
            m.free_disk()
            if not m.running():
                self.note("died on a full disk, restart", w, [m],
                          "exit %s" % (m.proc.returncode if m.proc else None))
                self.restart(m)
        self.note("free disk", w, targets)

    # clock-*
    def _apply_clock(self, w):
        m = self._resolve(w)[0]
        if self.cl.faketime and m.running() and not m.has_faketime():
            self.run.problem("clock: %s does not have libfaketime loaded" % m.name)
        if w["kind"] == "clock-jump":
            m.set_clock_offset(w["offset"])
            self.note("clock jump", w, [m], "%+d s" % w["offset"])
        else:
            m.kill()
            m.rate = w["rate"]
            self.restart(m)
            self.note("restart on a drifting clock", w, [m], "x%g" % w["rate"])
        return m

    def _heal_clock(self, w, m):
        if w["kind"] == "clock-jump":
            m.set_clock_offset(0)
            self.note("clock back", w, [m])
        else:
            m.kill()
            m.rate = 1.0
            self.restart(m)
            self.note("restart on a true clock", w, [m])

    # member-replace
    def _apply_member(self, w):
        m = self._resolve(w)[0]
        others = [o for o in self.live() if o is not m]
        mid = None
        deadline = time.monotonic() + 10
        err = None
        while mid is None and time.monotonic() < deadline:
            for o in others:
                try:
                    for e in self.client.member_list(o.client_url):
                        if m.peer_url in e["peer_urls"]:
                            mid = e["id"]
                    break
                except Exception as e:  # noqa: BLE001
                    err = e
            if mid is None:
                time.sleep(0.2)
        if mid is None:
            self.note("member-replace skipped", w, [m], "not in the member list: %s" % err)
            return None
        removed = False
        while not removed and time.monotonic() < deadline + 10:
            for o in others:
                try:
                    self.client.member_remove(o.client_url, mid)
                    removed = True
                    break
                except gwclient.ServerError as e:
                    if "member not found" in e.message:
                        removed = True
                        break
                    err = e
                except Exception as e:  # noqa: BLE001
                    err = e
            if not removed:
                time.sleep(0.3)
        if not removed:
            self.note("member-replace: remove failed", w, [m], str(err))
            return None
        # etcd stops a removed member by itself; give it a moment, then kill.
        end = time.monotonic() + 2
        while m.running() and time.monotonic() < end:
            time.sleep(0.05)
        m.kill()
        m.removed = True
        m.wipe()
        self.note("member removed", w, [m], "id %x" % mid)
        return m

    def _heal_member(self, w, m):
        if m is None or not m.removed:
            return
        self.readd(m, w)

    def readd(self, m, w):
        deadline = time.monotonic() + 30
        err = None
        added = None
        while added is None and time.monotonic() < deadline:
            for o in self.live():
                try:
                    added = self.client.member_add(o.client_url, m.peer_url)
                    break
                except gwclient.ServerError as e:
                    if "already exists" in e.message:
                        added = 0
                        break
                    err = e
                except Exception as e:  # noqa: BLE001
                    err = e
            if added is None:
                time.sleep(0.3)
        if added is None:
            self.note("member-replace: add failed", w, [m], str(err))
            return False
        m.removed = False
        m.wipe()
        m.id = added or m.id
        m.state = ("existing", self.cl.initial_cluster())
        self.restart(m)
        self.note("member added back", w, [m], "id %x" % (added or 0))
        return True

    # leader-move
    def _apply_leader(self, w):
        ldr = self.leader()
        if ldr is None:
            self.note("leader-move skipped: no leader", w, [])
            return None
        followers = [m for m in self.live() if m is not ldr]
        if not followers:
            return None
        tgt = followers[int(w["pick"] * len(followers))]
        if not tgt.id:
            self.leader()
        try:
            self.client.move_leader(ldr.client_url, tgt.id)
            self.note("move leader", w, [tgt], "from %s" % ldr.name)
        except Exception as e:  # noqa: BLE001
            self.note("move leader failed", w, [tgt], str(e)[:200])
        return tgt

    def _heal_leader(self, w, state):
        pass

    # ---- helpers
    def restart(self, m):
        if m.running():
            return
        state, ic = getattr(m, "state", ("new", None))
        m.start(state, ic)

    def heal_all(self):
        """Undoes every fault that may be left (idempotent)."""
        self.heal()
        self.run.isolated = None
        self.rules = {}
        self.net.heal()
        if self.cl.proxy:
            self.cl.set_delays({})
        for m in self.cl.members:
            if m.paused:
                m.resume()
            if self.cl.faketime:
                m.set_clock_offset(0)
            if m.mounted:
                m.free_disk()
            if m.rate != 1.0:
                m.kill()
                m.rate = 1.0
        for m in self.cl.members:
            if m.removed:
                self.readd(m, {"kind": "heal-all"})
            elif not m.running():
                self.restart(m)
