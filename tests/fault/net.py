"""
net: the private network of one fault run, made of Linux network namespaces.

Every member runs in a namespace of its own (kvt-<pid>-m<i>) with one veth
interface and the address 10.213.0.<10+i>; the veths meet on a bridge in a
hub namespace (kvt-<pid>-h, 10.213.0.1), which the driver process itself
joins (setns) before it starts any thread, so that every client connection,
etcdctl call and proxy it makes stays inside these namespaces: nothing of a
run touches the host's own network, and deleting the namespaces removes
every interface and rule.

Because each member has its own source address, a kernel packet filter
(nft, one table per member namespace) can cut any directed link: the rules
of a member's namespace drop, in its input hook, the packets that come from
the members it must not hear.  A cut of i->j is real packet loss between
two processes (TCP retransmits, then times out), not a closed socket.  Loss
is the same rule with `numgen random`.  Client traffic comes from the hub's
address and is never filtered, so a partitioned member keeps answering
clients (which is what lets stale serializable reads be seen).

Cleanup: teardown() kills every process left in the namespaces (ip netns
pids) and deletes them; sweep() does the same for the namespaces of earlier
runs whose driver is gone (a driver killed by SIGKILL cannot clean up).
"""
import ctypes
import os
import re
import signal
import subprocess
import time

SUBNET = "10.213.0"
HUB_ADDR = SUBNET + ".1"
PREFIX = "kvt-"
CLONE_NEWNET = 0x40000000
_NS_RE = re.compile(r"^kvt-(\d+)-(h|m\d+)$")


def member_addr(i):
    """Address of member i (0-based)."""
    return "%s.%d" % (SUBNET, 11 + i)


def _run(argv, input=None, check=True):
    r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                                 (r.stderr or r.stdout).strip()))
    return r


def list_namespaces():
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def _kill_ns_pids(ns):
    r = _run(["ip", "netns", "pids", ns], check=False)
    # Not ourselves: the driver lives in the hub namespace.
    pids = [int(p) for p in r.stdout.split() if p.isdigit() and int(p) != os.getpid()]
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def delete_namespace(ns):
    for _ in range(50):
        if not _kill_ns_pids(ns):
            break
        time.sleep(0.05)
    _run(["ip", "netns", "delete", ns], check=False)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep():
    """Removes the namespaces of runs whose driver process is gone.
    Returns their names."""
    gone = []
    for ns in list_namespaces():
        m = _NS_RE.match(ns)
        if m and not _pid_alive(int(m.group(1))):
            delete_namespace(ns)
            gone.append(ns)
    return gone


def setns(path):
    """Moves the calling thread (and the threads and processes it creates
    later) into the network namespace at path."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns(%s): %s" % (path, os.strerror(e)))
    finally:
        os.close(fd)


class Net:
    """The namespaces of one run: a hub with a bridge and n members."""

    def __init__(self, n, run_id=None):
        self.n = n
        self.run_id = run_id if run_id is not None else os.getpid()
        self.hub = "%s%d-h" % (PREFIX, self.run_id)
        self.ns = ["%s%d-m%d" % (PREFIX, self.run_id, i + 1) for i in range(n)]
        self.addrs = [member_addr(i) for i in range(n)]
        self.created = []
        # Current filter: {(src, dst): pct}; 100 = cut, 1..99 = random loss.
        # None until the first apply() has written every namespace's table.
        self.rules = None

    def nsexec(self, i, argv):
        """argv run inside member i's namespace (no new mount namespace, so
        the process sees the host's mounts and ours, such as tmpfs dirs)."""
        return ["nsenter", "--net=/run/netns/" + self.ns[i], "--"] + list(argv)

    def setup(self):
        hub = self.hub
        _run(["ip", "netns", "add", hub])
        self.created.append(hub)
        _run(["ip", "-n", hub, "link", "set", "lo", "up"])
        _run(["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", hub, "addr", "add", HUB_ADDR + "/24", "dev", "br0"])
        _run(["ip", "-n", hub, "link", "set", "br0", "up"])
        for i, ns in enumerate(self.ns):
            _run(["ip", "netns", "add", ns])
            self.created.append(ns)
            v = "v%d" % (i + 1)
            _run(["ip", "-n", hub, "link", "add", v, "type", "veth", "peer", "name", "eth0",
                  "netns", ns])
            _run(["ip", "-n", hub, "link", "set", v, "master", "br0"])
            _run(["ip", "-n", hub, "link", "set", v, "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "addr", "add", self.addrs[i] + "/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        # Empty tables now, so that a missing nft shows up before any load.
        self.apply({})
        return self

    def enter_hub(self):
        setns("/run/netns/" + self.hub)

    def _ruleset(self, j, rules):
        lines = ["table inet kvt", "delete table inet kvt", "table inet kvt {",
                 "  chain input {", "    type filter hook input priority 0; policy accept;"]
        for (src, dst), pct in sorted(rules.items()):
            if dst != j or pct <= 0:
                continue
            if pct >= 100:
                lines.append("    ip saddr %s counter drop" % self.addrs[src])
            else:
                lines.append("    ip saddr %s numgen random mod 100 < %d counter drop"
                             % (self.addrs[src], pct))
        lines += ["  }", "}", ""]
        return "\n".join(lines)

    def apply(self, rules):
        """Makes the filter exactly `rules` ({(src, dst): pct}, member
        indexes; pct 100 drops every packet src->dst, less drops that share
        at random).  Only namespaces whose rules change are touched."""
        rules = {k: v for k, v in rules.items() if v > 0}
        for j in range(self.n):
            new = {k: v for k, v in rules.items() if k[1] == j}
            if self.rules is not None and new == {k: v for k, v in self.rules.items()
                                                  if k[1] == j}:
                continue
            _run(["nsenter", "--net=/run/netns/" + self.ns[j], "nft", "-f", "-"],
                 input=self._ruleset(j, rules))
        self.rules = dict(rules)

    def dropped(self):
        """Packets the current rules dropped so far (their counters start
        at zero whenever a namespace's rules change): a fault that dropped
        nothing did not happen."""
        total = 0
        for j in range(self.n):
            r = _run(["nsenter", "--net=/run/netns/" + self.ns[j], "nft", "list", "table",
                      "inet", "kvt"], check=False)
            for m in re.finditer(r"counter packets (\d+)", r.stdout):
                total += int(m.group(1))
        return total

    def heal(self):
        self.apply({})

    def teardown(self):
        for ns in reversed(self.created):
            delete_namespace(ns)
        self.created = []
