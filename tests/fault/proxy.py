#!/usr/bin/python3
"""
proxy: the delaying TCP proxy in front of one member's peer port.

The fault driver (tests/fault/run) starts one of these inside each member's
network namespace when a run needs slow links.  It listens on the member's
advertised peer address (10.213.0.<10+i>:2380) and relays every connection
to the member's real peer listener on that namespace's loopback
(127.0.0.1:2380).  Since each member has its own source address (net.py),
the proxy knows which link a connection belongs to: a connection from S to
this member D carries S->D bytes upstream and D->S bytes downstream, and
each direction is delayed by the rule of its own link.

Why a proxy: this kernel has no netem qdisc, so latency can only be added
in user space (as etcd's robustness tests do).  Cuts and packet loss are
done by the kernel's filter instead (net.py), which is real packet loss.

Control: a Unix socket (works across network namespaces); one JSON object
per line, one JSON answer per line:
  {"links": {"10.213.0.11>10.213.0.12": {"delay_ms": 80, "jitter_ms": 40}, ...}}
      replaces the whole rule table (links not named get no delay);
  {"stats": true} -> {"connections": N, "bytes": N, "delayed_chunks": N}.
Bytes are never dropped or reordered: a chunk goes out no earlier than its
delay after it was read and never before the chunk read before it.
"""
import argparse
import asyncio
import json
import os
import random
import sys
import time


class Proxy:
    def __init__(self, self_addr, upstream):
        self.self_addr = self_addr
        self.upstream = upstream
        self.links = {}
        self.stats = {"connections": 0, "bytes": 0, "delayed_chunks": 0}
        self.rng = random.Random()

    def delay_of(self, src, dst):
        rule = self.links.get("%s>%s" % (src, dst))
        if not rule:
            return 0.0
        d = rule.get("delay_ms", 0) + self.rng.uniform(-1, 1) * rule.get("jitter_ms", 0)
        return max(0.0, d) / 1000.0

    async def pipe(self, reader, writer, src, dst):
        """Copies reader -> writer, each chunk delayed by the src->dst rule."""
        queue = asyncio.Queue()
        last_due = 0.0

        async def send():
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                self.stats["bytes"] += len(data)
                d = self.delay_of(src, dst)
                if d > 0:
                    self.stats["delayed_chunks"] += 1
                last_due = max(last_due, time.monotonic() + d)
                queue.put_nowait((last_due, data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait((0, None))
        try:
            await sender
        except (ConnectionError, OSError):
            pass

    async def on_client(self, creader, cwriter):
        self.stats["connections"] += 1
        peer = cwriter.get_extra_info("peername")
        src = peer[0] if peer else "?"
        try:
            ureader, uwriter = await asyncio.open_connection(*self.upstream)
        except OSError:
            cwriter.transport.abort()
            return
        up = asyncio.ensure_future(self.pipe(creader, uwriter, src, self.self_addr))
        down = asyncio.ensure_future(self.pipe(ureader, cwriter, self.self_addr, src))
        done, pending = await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        # One side closed: a TCP proxy that half-closes would keep raft
        # connections half-open; close both as a crashed peer would.
        for w in (cwriter, uwriter):
            try:
                w.transport.abort()
            except Exception:
                pass
        for t in pending:
            t.cancel()

    async def on_control(self, reader, writer):
        while True:
            line = await reader.readline()
            if not line:
                break
            try:
                req = json.loads(line)
                if "links" in req:
                    self.links = dict(req["links"])
                ans = dict(self.stats, ok=True)
            except ValueError as e:
                ans = {"ok": False, "error": str(e)}
            writer.write((json.dumps(ans) + "\n").encode())
            await writer.drain()
        writer.close()


async def main_async(args):
    host, port = args.listen.rsplit(":", 1)
    uhost, uport = args.upstream.rsplit(":", 1)
    p = Proxy(host, (uhost, int(uport)))
    server = await asyncio.start_server(p.on_client, host, int(port), reuse_address=True)
    if os.path.exists(args.control):
        os.unlink(args.control)
    ctl = await asyncio.start_unix_server(p.on_control, args.control)
    print("proxy %s -> %s ready" % (args.listen, args.upstream), flush=True)
    async with server, ctl:
        await asyncio.gather(server.serve_forever(), ctl.serve_forever())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--control", required=True)
    args = ap.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
