"""
members: the server processes of one fault run (raftkv or etcd, same flags).

Member i runs in its own network namespace (net.py) and serves clients on
http://10.213.0.<10+i>:2379.  Its peers reach it at http://10.213.0.<10+i>:2380;
with a delay proxy (proxy.py) the member itself listens for peers on
127.0.0.1:2380 inside its namespace and the proxy owns the advertised
address.  Its data dir is <rundir>/<name>.data, a tmpfs of its own when the
run fills disks (the mount is made before the member starts and removed at
the end of the run).

Processes are started from the driver's main thread only, through
`nsenter --net=... setpriv --pdeathsig KILL`: the server keeps the pid that
Popen returned (each step execs the next), and dies with the driver even
when the driver itself is killed with SIGKILL.  Clock faults load
libfaketime (raftkv only: etcd is Go and reads the clock without libc).
"""
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cluster import ServerLog  # noqa: E402  (log_text, log_tail, sanitizer_report)

FAKETIME_LIBS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                 "/usr/lib/faketime/libfaketimeMT.so.1")
CLIENT_PORT = 2379
PEER_PORT = 2380


def faketime_lib():
    for p in FAKETIME_LIBS:
        if os.path.exists(p):
            return p
    return None


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith("ETCD_") and not k.startswith("ETCDCTL_")
            and not k.startswith("FAKETIME") and k != "LD_PRELOAD"}


class Member(ServerLog):
    LOG_TAIL_LINES = 30

    def __init__(self, cl, i):
        self.cl = cl
        self.i = i
        self.name = "m%d" % (i + 1)
        self.addr = cl.net.addrs[i]
        self.client_url = "http://%s:%d" % (self.addr, CLIENT_PORT)
        self.peer_url = "http://%s:%d" % (self.addr, PEER_PORT)
        self.listen_peer_url = ("http://127.0.0.1:%d" % PEER_PORT) if cl.proxy else self.peer_url
        self.data_dir = os.path.join(cl.rundir, self.name + ".data")
        self.log_path = os.path.join(cl.rundir, self.name + ".log")
        self.clock_file = os.path.join(cl.rundir, self.name + ".clock")
        self.proc = None
        self.proxy = None
        self.paused = False
        self.mounted = False
        self.removed = False       # removed from the cluster by a membership fault
        self.rate = 1.0            # libfaketime clock rate of the current process
        self.starts = 0
        self.id = 0                # member id, learned from the cluster
        # How to start it again: a member added back by a membership fault
        # starts as "existing" with the cluster it joined.
        self.state = ("new", None)

    # ---- process
    def argv(self, state, initial_cluster):
        return [self.cl.binary,
                "--name", self.name,
                "--data-dir", self.data_dir,
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.listen_peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", initial_cluster,
                "--initial-cluster-state", state,
                "--initial-cluster-token", self.cl.token] + list(self.cl.extra_args)

    def env(self):
        env = clean_env()
        if self.cl.faketime:
            lib = faketime_lib()
            env["LD_PRELOAD"] = lib
            # A sanitizer build refuses to start with a library preloaded
            # ahead of its runtime; libfaketime intercepts only the clock
            # calls, which ASan leaves alone, so let it through.
            env["ASAN_OPTIONS"] = ":".join(
                x for x in (env.get("ASAN_OPTIONS"), "verify_asan_link_order=0") if x)
            if self.rate != 1.0:
                # A rate holds from the process's start: set in the
                # environment, not through the file (changing the rate of a
                # running process makes libfaketime jump).
                env["FAKETIME"] = "+0 x%g" % self.rate
            else:
                env["FAKETIME_TIMESTAMP_FILE"] = self.clock_file
                env["FAKETIME_CACHE_DURATION"] = "1"
                if not os.path.exists(self.clock_file):
                    self.set_clock_offset(0)
        return env

    def start(self, state="new", initial_cluster=None):
        assert not self.running(), self.name
        argv = self.argv(state, initial_cluster or self.cl.initial_cluster())
        self.starts += 1
        with open(self.log_path, "ab") as f:
            f.write(("\n==== %.3f start #%d (rate %g): %s\n"
                     % (time.monotonic(), self.starts, self.rate, " ".join(argv))).encode())
            f.flush()
            full = self.cl.net.nsexec(self.i, ["setpriv", "--pdeathsig", "KILL", "--"] + argv)
            self.proc = subprocess.Popen(full, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env(),
                                         cwd=self.cl.rundir, start_new_session=True)
        self.paused = False
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.running():
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        """SIGKILL and reap."""
        if self.proc is None:
            return
        self.signal(signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.paused = False

    def proc_state(self):
        """The process's state letter in /proc (T: stopped), or None."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, AttributeError, IndexError):
            return None

    def has_faketime(self):
        try:
            with open("/proc/%d/maps" % self.proc.pid) as f:
                return "libfaketime" in f.read()
        except (OSError, AttributeError):
            return False

    def pause(self):
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout=20.0):
        """SIGTERM (after SIGCONT); the exit status, or None if it had to be
        killed."""
        if self.proc is None:
            return None
        if not self.running():
            return self.proc.returncode
        self.resume()
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    # ---- disk
    def mount_tmpfs(self, size_mb):
        os.makedirs(self.data_dir, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0700" % size_mb,
                        "kvt-" + self.name, self.data_dir], check=True, capture_output=True)
        self.mounted = True

    def umount(self):
        if self.mounted:
            r = subprocess.run(["umount", self.data_dir], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", self.data_dir], capture_output=True)
            self.mounted = False

    def filler_path(self):
        return os.path.join(self.data_dir, "zz-filler")

    def fill_disk(self):
        """Takes every free byte of the member's tmpfs; returns how many."""
        fd = os.open(self.filler_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        total = 0
        try:
            st = os.statvfs(self.data_dir)
            free = st.f_bavail * st.f_frsize
            if free > 0:
                try:
                    os.posix_fallocate(fd, os.fstat(fd).st_size, free)
                    total += free
                except OSError:
                    pass
            # Whatever fallocate left (it may stop short of the last pages).
            chunk = b"\0" * 4096
            while True:
                try:
                    total += os.write(fd, chunk)
                except OSError:
                    break
        finally:
            os.close(fd)
        return total

    def free_disk(self):
        try:
            os.unlink(self.filler_path())
        except FileNotFoundError:
            pass

    def wipe(self):
        """Removes the data dir's contents (the dir, or mount point, stays)."""
        if not os.path.isdir(self.data_dir):
            return
        for e in os.listdir(self.data_dir):
            p = os.path.join(self.data_dir, e)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)

    # ---- clock
    def set_clock_offset(self, seconds):
        """libfaketime's offset of the member's clocks (realtime and
        monotonic), read by the process within a second."""
        tmp = self.clock_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%+d\n" % seconds)
        os.rename(tmp, self.clock_file)



class Cluster:
    def __init__(self, net, rundir, binary, n, extra_args=(), proxy=False, faketime=False,
                 tmpfs_mb=0):
        self.net = net
        self.rundir = rundir
        self.binary = binary
        self.n = n
        self.extra_args = list(extra_args)
        self.proxy = proxy
        self.faketime = faketime
        self.tmpfs_mb = tmpfs_mb
        self.token = "kvt-%d" % os.getpid()
        self.members = [Member(self, i) for i in range(n)]
        self.proxies = []

    def initial_cluster(self, members=None):
        ms = members if members is not None else [m for m in self.members if not m.removed]
        return ",".join("%s=%s" % (m.name, m.peer_url) for m in ms)

    def start(self):
        here = os.path.dirname(os.path.abspath(__file__))
        for m in self.members:
            if self.tmpfs_mb:
                m.mount_tmpfs(self.tmpfs_mb)
            if self.proxy:
                ctl = os.path.join(self.rundir, "%s.proxy" % m.name)
                argv = ["setpriv", "--pdeathsig", "KILL", "--", "/usr/bin/python3",
                        os.path.join(here, "proxy.py"),
                        "--listen", "%s:%d" % (m.addr, PEER_PORT),
                        "--upstream", "127.0.0.1:%d" % PEER_PORT, "--control", ctl]
                logf = open(os.path.join(self.rundir, "%s.proxy.log" % m.name), "ab")
                m.proxy = subprocess.Popen(self.net.nsexec(m.i, argv), stdout=logf,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
                logf.close()
                m.proxy_ctl = ctl
        if self.proxy:
            deadline = time.monotonic() + 10
            for m in self.members:
                while not os.path.exists(m.proxy_ctl):
                    if m.proxy.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("proxy of %s did not start" % m.name)
                    time.sleep(0.02)
        for m in self.members:
            m.start("new")

    def set_delays(self, links):
        """links: {(src, dst): (delay_ms, jitter_ms)} over member indexes;
        every proxy gets the whole table (it uses the links it carries).
        Returns how many chunks the proxies have delayed so far."""
        table = {"%s>%s" % (self.net.addrs[s], self.net.addrs[d]):
                 {"delay_ms": dm, "jitter_ms": jm} for (s, d), (dm, jm) in links.items()}
        return self._proxies({"links": table})

    def delayed_chunks(self):
        return self._proxies({"stats": True})

    def _proxies(self, req):
        import json
        import socket
        total = 0
        for m in self.members:
            if m.proxy is None or m.proxy.poll() is not None:
                continue
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect(m.proxy_ctl)
                s.sendall((json.dumps(req) + "\n").encode())
                ans = b""
                while not ans.endswith(b"\n"):
                    d = s.recv(4096)
                    if not d:
                        break
                    ans += d
                total += json.loads(ans).get("delayed_chunks", 0)
            finally:
                s.close()
        return total

    def stop_all(self):
        """SIGTERM every running member; returns {name: exit status}."""
        out = {}
        for m in self.members:
            if m.running():
                out[m.name] = m.stop()
        return out

    def kill_all(self):
        for m in self.members:
            m.kill()
            if m.proxy is not None and m.proxy.poll() is None:
                m.proxy.kill()
                m.proxy.wait(5)

    def umount_all(self):
        for m in self.members:
            m.umount()
