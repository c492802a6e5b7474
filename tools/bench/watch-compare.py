#!/usr/bin/python3
"""
watch-compare: watch fan-out and watcher memory of raftkv beside the real
etcd, single member each, same flags, run one after the other in one sitting.

  1. Fan-out: 1,000 watchers (10 streams x 100, one connection, every
     watcher on the same prefix) while h2load puts to a key under that
     prefix at a fixed rate (default 5,000 puts/s: 10 connections x
     --rps 500, as tools/bench/put-compare.sh drives puts).  Reports the
     put rate reached, the events delivered to the watchers per second
     during the load, and how long delivery took to finish after it.
  2. Memory: VmRSS of the member before and after 10,000 idle watchers
     (100 streams x 100, one distinct key each, one connection).

The watchers are held by a small C program (compiled here from the source
below with libnghttp2): one h2c connection, gRPC framing by hand, and a
scan of each WatchResponse's top-level fields that counts the events
without decoding them, so that the consumer is not the bottleneck (5,000
puts/s to 1,000 watchers is 5 million events/s, far beyond what a Python
gRPC consumer decodes).  Its CPU share is reported too: if it used most of
a core, the figure is the consumer's limit, not the server's.

The machine is shared by whatever else runs: the load average is printed
before and after each server's runs, and the figures are only worth
comparing within one sitting.

Usage: tools/bench/watch-compare.py [--raftkv BIN] [--etcd BIN]
           [--rate 5000] [--seconds 10] [--value-size 100]
Needs h2load (nghttp2-client), gcc, libnghttp2-dev, etcdctl.
"""
import argparse
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

CONSUMER_C = r'''
/* watchcount: holds S Watch streams of W watchers each on one h2c
 * connection to an etcd-compatible server and counts what arrives.
 * usage: watchcount HOST PORT S W prefix|idle KEY
 *   prefix: every watcher watches the prefix KEY;
 *   idle:   watcher i watches the single key KEY%06d.
 * Prints "ms events msgs created canceled cpu_ms" every 100 ms. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct wstream {
	uint8_t *req;
	size_t req_len, req_off;
	uint8_t hdr[5];
	size_t hdr_got;
	uint8_t *msg;
	size_t msg_len, msg_got, msg_cap;
};

static uint64_t n_events, n_msgs, n_created, n_canceled;
static int fd;

static void die(const char *what)
{
	fprintf(stderr, "watchcount: %s\n", what);
	exit(1);
}

static size_t varint(const uint8_t *p, size_t n, uint64_t *v)
{
	uint64_t x = 0;
	for (size_t i = 0; i < n && i < 10; i++) {
		x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = x;
			return i + 1;
		}
	}
	return 0;
}

/* A WatchResponse: count field 11 (events), note created (3) / canceled (4). */
static void on_message(const uint8_t *p, size_t n)
{
	size_t i = 0, k;
	uint64_t tag, v;
	n_msgs++;
	while (i < n) {
		if (!(k = varint(p + i, n - i, &tag)))
			return;
		i += k;
		switch (tag & 7) {
		case 0:
			if (!(k = varint(p + i, n - i, &v)))
				return;
			i += k;
			if ((tag >> 3) == 3 && v)
				n_created++;
			if ((tag >> 3) == 4 && v)
				n_canceled++;
			break;
		case 2:
			if (!(k = varint(p + i, n - i, &v)))
				return;
			i += k + v;
			if ((tag >> 3) == 11)
				n_events++;
			break;
		case 1:
			i += 8;
			break;
		case 5:
			i += 4;
			break;
		default:
			return;
		}
	}
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
		   size_t len, void *ud)
{
	struct wstream *w = nghttp2_session_get_stream_user_data(s, sid);
	(void)flags;
	(void)ud;
	if (!w)
		return 0;
	while (len) {
		if (w->hdr_got < 5) {
			size_t t = 5 - w->hdr_got < len ? 5 - w->hdr_got : len;
			memcpy(w->hdr + w->hdr_got, data, t);
			w->hdr_got += t;
			data += t;
			len -= t;
			if (w->hdr_got < 5)
				break;
			w->msg_len = ((size_t)w->hdr[1] << 24) | ((size_t)w->hdr[2] << 16) |
				     ((size_t)w->hdr[3] << 8) | w->hdr[4];
			w->msg_got = 0;
			if (w->msg_len > w->msg_cap) {
				w->msg_cap = w->msg_len;
				if (!(w->msg = realloc(w->msg, w->msg_cap)))
					die("out of memory");
			}
		}
		size_t t = w->msg_len - w->msg_got < len ? w->msg_len - w->msg_got : len;
		memcpy(w->msg + w->msg_got, data, t);
		w->msg_got += t;
		data += t;
		len -= t;
		if (w->msg_got == w->msg_len) {
			on_message(w->msg, w->msg_len);
			w->hdr_got = 0;
		}
	}
	return 0;
}

static int on_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
	(void)s;
	(void)ud;
	fprintf(stderr, "watchcount: stream %d closed (error code %u)\n", sid, code);
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	(void)s;
	(void)flags;
	(void)ud;
	if (nl >= 5 && !memcmp(name, "grpc-", 5))
		fprintf(stderr, "watchcount: stream %d: %.*s: %.*s\n", f->hd.stream_id, (int)nl,
			name, (int)vl, value);
	return 0;
}

static ssize_t read_req(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t length,
			uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct wstream *w = src->ptr;
	size_t left = w->req_len - w->req_off, n = left < length ? left : length;
	(void)s;
	(void)sid;
	(void)flags;
	(void)ud;
	if (!left)
		return NGHTTP2_ERR_DEFERRED; /* the stream stays open */
	memcpy(buf, w->req + w->req_off, n);
	w->req_off += n;
	return (ssize_t)n;
}

/* gRPC frame of WatchRequest{create_request{key, range_end}} */
static size_t put_create(uint8_t *p, const char *key, size_t kl, const char *end, size_t el)
{
	size_t inner = 2 + kl + (el ? 2 + el : 0), outer = 2 + inner, i = 0;
	if (kl > 127 || el > 127 || inner > 127)
		die("key too long");
	p[i++] = 0;
	p[i++] = 0;
	p[i++] = 0;
	p[i++] = 0;
	p[i++] = (uint8_t)outer;
	p[i++] = 0x0a;
	p[i++] = (uint8_t)inner;
	p[i++] = 0x0a;
	p[i++] = (uint8_t)kl;
	memcpy(p + i, key, kl);
	i += kl;
	if (el) {
		p[i++] = 0x12;
		p[i++] = (uint8_t)el;
		memcpy(p + i, end, el);
		i += el;
	}
	return i;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t cpu_ms(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 +
	       (uint64_t)ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
}

int main(int argc, char **argv)
{
	if (argc != 7)
		die("usage: watchcount HOST PORT STREAMS PER_STREAM prefix|idle KEY");
	int streams = atoi(argv[3]), per = atoi(argv[4]), idle = !strcmp(argv[5], "idle");
	const char *key = argv[6];
	size_t kl = strlen(key);
	char end[128], k2[128];
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1)
		die("bad host");
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect failed");
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memcpy(end, key, kl);
	end[kl - 1]++;

	nghttp2_session_callbacks *cb;
	nghttp2_session *sess;
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	if (nghttp2_session_client_new(&sess, cb, NULL))
		die("nghttp2_session_client_new");
	nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
				       {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16 << 20}};
	nghttp2_submit_settings(sess, NGHTTP2_FLAG_NONE, iv, 2);
	nghttp2_session_set_local_window_size(sess, NGHTTP2_FLAG_NONE, 0, 1 << 30);

	char authority[64];
	snprintf(authority, sizeof(authority), "%s:%s", argv[1], argv[2]);
#define HDR(n, v) {(uint8_t *)n, (uint8_t *)v, sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
	nghttp2_nv hdrs[] = {HDR(":method", "POST"), HDR(":scheme", "http"),
			     HDR(":path", "/etcdserverpb.Watch/Watch"), HDR(":authority", authority),
			     HDR("content-type", "application/grpc"), HDR("te", "trailers")};
	for (int s = 0; s < streams; s++) {
		struct wstream *w = calloc(1, sizeof(*w));
		if (!w || !(w->req = malloc((size_t)per * 300)))
			die("out of memory");
		for (int i = 0; i < per; i++) {
			if (idle) {
				int l = snprintf(k2, sizeof(k2), "%s%06d", key, s * per + i);
				w->req_len += put_create(w->req + w->req_len, k2, (size_t)l, NULL, 0);
			} else {
				w->req_len += put_create(w->req + w->req_len, key, kl, end, kl);
			}
		}
		nghttp2_data_provider dp = {.source.ptr = w, .read_callback = read_req};
		if (nghttp2_submit_request(sess, NULL, hdrs, 6, &dp, w) < 0)
			die("nghttp2_submit_request");
	}

	static uint8_t buf[1 << 16];
	uint64_t t0 = now_ms(), last = 0;
	for (;;) {
		const uint8_t *out;
		ssize_t n;
		/* Deferred request bodies are resumed every round: cheap with a
		 * few streams, and the creates go out without bookkeeping. */
		for (int32_t sid = 1; sid < 2 * streams + 1; sid += 2)
			nghttp2_session_resume_data(sess, sid);
		while ((n = nghttp2_session_mem_send(sess, &out)) > 0) {
			while (n > 0) {
				ssize_t w = write(fd, out, (size_t)n);
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					die("write failed");
				out += w;
				n -= w;
			}
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 20) > 0) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r <= 0)
				die("connection closed by the server");
			if (nghttp2_session_mem_recv(sess, buf, (size_t)r) < 0)
				die("nghttp2_session_mem_recv");
		}
		uint64_t t = now_ms() - t0;
		if (t - last >= 100) {
			last = t;
			printf("%llu %llu %llu %llu %llu %llu\n", (unsigned long long)t,
			       (unsigned long long)n_events, (unsigned long long)n_msgs,
			       (unsigned long long)n_created, (unsigned long long)n_canceled,
			       (unsigned long long)cpu_ms());
			fflush(stdout);
		}
	}
}
'''


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Server:
    def __init__(self, name, binary, tmp):
        self.name = name
        self.binary = binary
        self.tmp = tmp
        self.proc = None

    def start(self):
        self.port = random.randint(30000, 34000)
        self.data = os.path.join(self.tmp, "%s.data" % self.name)
        shutil.rmtree(self.data, ignore_errors=True)
        c, p = "http://127.0.0.1:%d" % self.port, "http://127.0.0.1:%d" % (self.port + 1)
        self.logf = open(os.path.join(self.tmp, "%s.log" % self.name), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--name", "bench", "--data-dir", self.data,
             "--listen-client-urls", c, "--advertise-client-urls", c,
             "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
             "--initial-cluster", "bench=" + p],
            stdout=self.logf, stderr=subprocess.STDOUT, env=env())
        for _ in range(100):
            if self.ctl("get", "x").returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise SystemExit("%s did not start (log in %s)" % (self.name, self.logf.name))

    def ctl(self, *args):
        return subprocess.run(["etcdctl", "--endpoints", "127.0.0.1:%d" % self.port] + list(args),
                              capture_output=True, text=True, env=env())

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def revision(self):
        out = self.ctl("get", "x", "-w", "json").stdout
        return int(re.search(r'"revision":(\d+)', out).group(1))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    e["ETCDCTL_API"] = "3"
    return e


EV, MSGS, CREATED, CANCELED, CPU = 2, 3, 4, 5, 6   # fields of a Consumer sample


class Consumer:
    """The C watcher process and what it printed, with arrival times."""

    def __init__(self, exe, port, streams, per, mode, key):
        self.proc = subprocess.Popen([exe, "127.0.0.1", str(port), str(streams), str(per), mode, key],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.samples = []   # (time.monotonic(), ms, events, msgs, created, canceled, cpu_ms)
        self.err = []
        self.t0 = time.monotonic()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.samples.append((time.monotonic(),) + tuple(int(x) for x in line.split()))

    def _read_err(self):
        for line in self.proc.stderr:
            self.err.append(line.rstrip())

    def last(self):
        return self.samples[-1] if self.samples else (time.monotonic(), 0, 0, 0, 0, 0, 0)

    def wait_created(self, n, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("consumer exited: %s" % "\n".join(self.err[-5:]))
            if self.last()[CREATED] >= n:
                return
            time.sleep(0.05)
        raise SystemExit("only %d of %d watchers created: %s" % (self.last()[CREATED], n, self.err[-5:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait()


def put_body(path, key, size):
    val = b"v" * size
    pb = b"\x0a" + bytes([len(key)]) + key + b"\x12" + varint(len(val)) + val
    with open(path, "wb") as f:
        f.write(b"\x00" + struct.pack(">I", len(pb)) + pb)


def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def fanout(srv, exe, args, body):
    srv.start()
    c = Consumer(exe, srv.port, 10, 100, "prefix", "bench/")
    try:
        c.wait_created(1000)
        rev0 = srv.revision()
        n = args.rate * args.seconds
        t_start = time.monotonic()
        s_start = c.last()
        h = subprocess.run(["h2load", "-n", str(n), "-c", "10", "-m", "32", "--rps", str(args.rate // 10),
                            "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers",
                            "http://127.0.0.1:%d/etcdserverpb.KV/Put" % srv.port],
                           capture_output=True, text=True)
        t_end = time.monotonic()
        s_end = c.last()
        m = re.search(r"finished in ([0-9.]+)(m?s), ([0-9.]+) req/s", h.stdout)
        applied = srv.revision() - rev0
        want = applied * 1000
        # Drain: until every event arrived, or 10 s without progress.
        last_progress, last_n = time.monotonic(), c.last()[EV]
        while (c.last()[EV] < want and time.monotonic() - last_progress < 10
               and time.monotonic() - t_end < 120):
            time.sleep(0.1)
            if c.last()[EV] != last_n:
                last_n, last_progress = c.last()[EV], time.monotonic()
        s_done = c.last()
        done_at = next((s[0] for s in c.samples if s[EV] >= s_done[EV]), s_done[0])
        return {
            "puts/s": applied / (t_end - t_start),
            "h2load req/s": float(m.group(3)) if m else 0.0,
            "puts": applied,
            "events want": want,
            "events got": s_done[EV],
            "ev/s load": (s_end[EV] - s_start[EV]) / (s_end[0] - s_start[0]),
            "ev/s overall": (s_done[EV] - s_start[EV]) / max(1e-9, done_at - s_start[0]),
            "drain s": max(0.0, done_at - t_end),
            "msgs": s_done[MSGS] - s_start[MSGS],
            "consumer cpu": (s_done[CPU] - s_start[CPU]) / 1000.0 / max(1e-9, done_at - s_start[0]),
            "canceled": s_done[CANCELED],
            "errors": c.err[-3:],
        }
    finally:
        c.stop()
        srv.stop()


def memory(srv, exe):
    srv.start()
    time.sleep(1)
    rss0 = srv.rss_kib()
    c = Consumer(exe, srv.port, 100, 100, "idle", "idle/")
    try:
        c.wait_created(10000)
        time.sleep(2)
        rss1 = srv.rss_kib()
        return {"rss0": rss0, "rss1": rss1, "per watcher": (rss1 - rss0) * 1024 / 10000.0}
    finally:
        c.stop()
        srv.stop()


def main():
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--raftkv", default=os.path.join(top, "raftkv", "raftkv"))
    ap.add_argument("--etcd", default="/usr/bin/etcd")
    ap.add_argument("--rate", type=int, default=5000, help="puts/s (10 h2load connections)")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--value-size", type=int, default=100)
    args = ap.parse_args()
    for tool in ("h2load", "gcc", "etcdctl"):
        if not shutil.which(tool):
            raise SystemExit("needs %s" % tool)
    tmp = tempfile.mkdtemp(prefix="watch-compare-")
    try:
        exe = os.path.join(tmp, "watchcount")
        src = exe + ".c"
        with open(src, "w") as f:
            f.write(CONSUMER_C)
        subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, src, "-lnghttp2"], check=True)
        body = os.path.join(tmp, "put.bin")
        put_body(body, b"bench/k", args.value_size)
        results = []
        log("load average before the runs: %.2f %.2f %.2f (other processes skew the figures)"
            % os.getloadavg())
        for name, binary in (("raftkv", os.path.abspath(args.raftkv)), ("etcd", args.etcd)):
            log("%s: fan-out to 1,000 watchers at %d puts/s for %d s..." % (name, args.rate, args.seconds))
            f = fanout(Server(name, binary, tmp), exe, args, body)
            log("%s: memory with 10,000 idle watchers..." % name)
            m = memory(Server(name, binary, tmp), exe)
            results.append((name, f, m))
            log("load average: %.2f %.2f %.2f" % os.getloadavg())
        print()
        print("1,000 watchers (10 streams x 100, same prefix), puts of a %d-byte value at %d/s for %d s"
              % (args.value_size, args.rate, args.seconds))
        print("%-7s %8s %10s %10s %12s %12s %8s %7s %9s"
              % ("server", "puts/s", "events", "delivered", "ev/s (load)", "ev/s (all)", "drain s",
                 "ev/msg", "cons.cpu"))
        for name, f, _ in results:
            print("%-7s %8.0f %10d %10d %12.0f %12.0f %8.1f %7.1f %8.0f%%"
                  % (name, f["puts/s"], f["events want"], f["events got"], f["ev/s load"],
                     f["ev/s overall"], f["drain s"], f["events got"] / max(1, f["msgs"]),
                     100 * f["consumer cpu"]))
        print("puts/s: applied puts over h2load's run; ev/s (load): events received while h2load "
              "ran;\nev/s (all): all events over the time until the last one arrived; drain s: "
              "delivery time after\nthe last put; ev/msg: events per WatchResponse; cons.cpu: "
              "the consumer's CPU share.")
        for name, f, _ in results:
            if f["canceled"] or f["errors"] or f["events got"] != f["events want"]:
                print("%s: %d canceled, consumer messages: %s" % (name, f["canceled"], f["errors"]))
        print()
        print("10,000 idle watchers (100 streams x 100, one key each, one connection)")
        print("%-7s %12s %14s %14s" % ("server", "RSS before", "RSS watching", "per watcher"))
        for name, _, m in results:
            print("%-7s %9.1f MiB %11.1f MiB %11.0f B" % (name, m["rss0"] / 1024.0, m["rss1"] / 1024.0,
                                                      m["per watcher"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
