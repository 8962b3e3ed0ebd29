#!/usr/bin/python3
"""A TCP proxy that makes loopback look like a long link: every chunk read
from either side is written to the other side a fixed one-way delay after it
was read, in order, so a round trip through it takes twice the delay.  For
the round-trip row of `make bench' (rtt.py); see tests/bench/README.md.

It runs an asyncio loop in a thread of its own.  The controls may be called
from any thread and have taken effect when they return:

    cut()           close every current connection with a TCP RST on both
                    sides; what was held back is dropped, as on a cut link
    refuse(on)      new connections are closed (RST) as soon as accepted
    stop()          close everything and end the thread

`conns' lists every connection accepted, oldest first, each with `accepted'
(time.monotonic() when the proxy's accept returned: the client's TCP
handshake is over, and it took no time on loopback), `upstream' (the
connection to the target was made) and `closed'.  Only loopback addresses are
accepted, for the listener and the target.

Run alone, it prints one line per accepted connection
(`accept ID MONOTONIC_SECONDS') and cuts every connection on SIGUSR1:

    python3 tests/bench/delayproxy.py TARGET_PORT [DELAY_MS [LISTEN_PORT]]
"""

import asyncio
import collections
import ipaddress
import signal
import socket
import struct
import sys
import threading
import time

GRAIN = 0.0005


def _require_loopback(host):
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError("delayproxy: %r is not a loopback address" % (host,))


class Conn:
    __slots__ = ("id", "accepted", "upstream", "closed", "_writers", "_tasks")

    def __init__(self, cid, accepted):
        self.id = cid
        self.accepted = accepted
        self.upstream = False
        self.closed = False
        self._writers = []
        self._tasks = []


def _abort(writer):
    """Close with an RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class DelayProxy:
    def __init__(self, target_port, delay, target_host="127.0.0.1",
                 listen_host="127.0.0.1", listen_port=0, on_accept=None):
        _require_loopback(target_host)
        _require_loopback(listen_host)
        self.target = (target_host, int(target_port))
        self.delay = float(delay)
        self.on_accept = on_accept
        self.conns = []
        self._refuse = False
        self._loop = asyncio.new_event_loop()
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((listen_host, listen_port))
        self.host, self.port = self._lsock.getsockname()
        self._server = None
        self._thread = None

    # ---- life cycle

    def start(self):
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,),
                                        daemon=True,
                                        name="delayproxy-%d" % self.port)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("delayproxy: the loop did not start")
        return self

    def _run(self, ready):
        asyncio.set_event_loop(self._loop)

        async def listen():
            self._server = await asyncio.start_server(
                self._client, sock=self._lsock)
        self._loop.run_until_complete(listen())
        self._loop.call_soon(ready.set)
        self._loop.run_forever()
        self._loop.close()

    def stop(self):
        if self._thread is None:
            self._lsock.close()
            return

        async def shut():
            self._server.close()
            self._cut()
            # the connections' own tasks end once their pipes are cancelled
            rest = [t for t in asyncio.all_tasks()
                    if t is not asyncio.current_task()]
            if rest:
                _, late = await asyncio.wait(rest, timeout=5)
                for t in late:
                    t.cancel()
            self._loop.stop()
        asyncio.run_coroutine_threadsafe(shut(), self._loop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- controls

    def _call(self, fn):
        async def run():
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def cut(self):
        """Cut every current connection; how many there were."""
        return self._call(self._cut)

    def refuse(self, on=True):
        def set_refuse():
            self._refuse = bool(on)
        self._call(set_refuse)

    # ---- the loop's side

    def _cut(self):
        n = 0
        for c in self.conns:
            if c.closed:
                continue
            n += 1
            self._close(c)
        return n

    def _close(self, c):
        c.closed = True
        for w in c._writers:
            _abort(w)
        for t in c._tasks:
            if t is not asyncio.current_task():
                t.cancel()

    async def _client(self, reader, writer):
        c = Conn(len(self.conns), time.monotonic())
        self.conns.append(c)
        c._writers.append(writer)
        # asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
        # which an accepted one does not: Nagle would hold a chunk written
        # right after another until the daemon's delayed ACK of the first,
        # ~40 ms that no real link has (the server's TLS 1.3 tickets and
        # its stream features come as such a pair).
        writer.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.on_accept is not None:
            self.on_accept(c)
        if self._refuse:
            self._close(c)
            return
        try:
            ureader, uwriter = await asyncio.open_connection(*self.target)
        except OSError:
            self._close(c)
            return
        if c.closed:  # cut while connecting
            _abort(uwriter)
            return
        c.upstream = True
        c._writers.append(uwriter)
        c._tasks = [asyncio.ensure_future(self._pipe(c, reader, uwriter)),
                    asyncio.ensure_future(self._pipe(c, ureader, writer))]
        await asyncio.gather(*c._tasks, return_exceptions=True)
        if not c.closed:
            c.closed = True
            for w in c._writers:
                w.close()

    async def _pipe(self, c, reader, writer):
        """One direction: each chunk is written `delay' after it was read.
        A sender of its own keeps the reads going while chunks wait."""
        held = collections.deque()
        more = asyncio.Event()

        async def send():
            while True:
                while not held:
                    more.clear()
                    await more.wait()
                wait = held[0][0] - self._loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                # The loop's timers wake up to 1 ms late (epoll): what was
                # read within GRAIN of the first chunk goes with it, rather
                # than each chunk of a burst waiting for a timer of its own.
                now = self._loop.time() + GRAIN
                while held and held[0][0] <= now:
                    data = held.popleft()[1]
                    if data is None:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        c._tasks.append(sender)
        try:
            while True:
                data = await reader.read(65536)
                held.append((self._loop.time() + self.delay, data or None))
                more.set()
                if not data:
                    break
            await sender
        except OSError:
            # a reset on one side is passed on to the other
            if not c.closed:
                self._close(c)
        finally:
            sender.cancel()


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    delay = float(argv[2]) / 1000 if len(argv) > 2 else 0.05
    port = int(argv[3]) if len(argv) > 3 else 0

    def accepted(c):
        print("accept %d %.6f" % (c.id, c.accepted), flush=True)
    # Blocked before the loop's thread starts, so that only sigwait sees them.
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    proxy = DelayProxy(int(argv[1]), delay, listen_port=port,
                       on_accept=accepted).start()
    print("listening %s %d delay %.3f" % (proxy.host, proxy.port, delay),
          flush=True)
    try:
        while signal.sigwait(sigs) == signal.SIGUSR1:
            print("cut %d" % proxy.cut(), flush=True)
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
