"""A small fault-injecting TCP proxy for the clawsd fault tests, plus a
server that accepts TCP connections and never says anything.

FaultProxy listens on 127.0.0.1:<free port> and forwards every connection to
a target on loopback (the real Prosody).  It runs in-process, in one
background thread around a `selectors` loop; the controls below may be called
from any thread and take effect in that loop before they return:

    cut()               close every current connection abruptly, both sides,
                        with a TCP RST (SO_LINGER 0)
    blackhole(on)       on: every current connection, and every new one while
                        it is on, silently drops the bytes of both directions
                        and never closes (no FIN, no RST): a peer that
                        vanished.  Such a connection stays dead once the
                        black hole is lifted (its bytes are gone, as its TCP
                        peer would time out); off: new connections work again
    delay(seconds)      hold every chunk this long before forwarding it, in
                        each direction (so a round trip takes twice that;
                        order kept); 0 = forward at once
    refuse(on)          new connections are closed (RST) as soon as accepted
    stop()              close everything and end the thread

Counters (read them any time): accepted, refused, cuts (cut() calls that
closed at least one connection), connections_cut, active, bytes_up (client to
target), bytes_down, bytes_dropped.

Everything is bounded: connections (max_conns), buffered bytes per direction
(max_buffer: reading pauses beyond it), every wait on the loop thread.  Only
loopback addresses are accepted for both the listener and the target.
"""

import collections
import errno
import ipaddress
import selectors
import socket
import struct
import threading
import time

__all__ = ["FaultProxy", "SilentServer"]


def _require_loopback(host):
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError("faultproxy: %r is not a loopback address" % (host,))


def _rst_close(sock):
    """Close with an RST rather than a FIN."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Pipe:
    """One direction of a connection: bytes read from src, written to dst."""
    __slots__ = ("pending", "size", "eof", "shut")

    def __init__(self):
        self.pending = collections.deque()   # (due monotonic time, bytes)
        self.size = 0
        self.eof = False     # src said EOF; shut dst for writing once flushed
        self.shut = False    # dst already shut for writing


class _Conn:
    __slots__ = ("id", "client", "upstream", "connected", "up", "down",
                 "blackholed", "closed", "events")

    def __init__(self, cid, client, upstream):
        self.id = cid
        self.client = client
        self.upstream = upstream
        self.connected = False          # upstream connect() completed
        self.up = _Pipe()               # client -> upstream
        self.down = _Pipe()             # upstream -> client
        self.blackholed = False
        self.closed = False
        self.events = {}                # sock -> registered mask


class FaultProxy:
    def __init__(self, target_port, target_host="127.0.0.1", listen_host="127.0.0.1",
                 max_conns=64, max_buffer=4 << 20, chunk=65536):
        _require_loopback(target_host)
        _require_loopback(listen_host)
        self.target = (target_host, int(target_port))
        self.max_conns = max_conns
        self.max_buffer = max_buffer
        self.chunk = chunk
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((listen_host, 0))
        self._lsock.listen(64)
        self._lsock.setblocking(False)
        self.host = listen_host
        self.port = self._lsock.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._cmds = collections.deque()
        self._lock = threading.Lock()
        self._conns = {}
        self._next_id = 0
        self._blackhole = False
        self._refuse = False
        self._delay = 0.0
        self._running = False
        self._thread = None
        # counters
        self.accepted = 0
        self.refused = 0
        self.cuts = 0
        self.connections_cut = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.bytes_dropped = 0
        self.errors = []          # unexpected exceptions in the loop (bounded)

    # ------------------------------------------------------------ life cycle

    def start(self):
        if self._thread is not None:
            return self
        self._running = True
        self._sel.register(self._lsock, selectors.EVENT_READ, ("listen", None))
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="faultproxy-%d" % self.port)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        if self._thread is None:
            self._close_fds()
            return
        if self._running:
            try:
                self._call(self._do_stop, timeout)
            except TimeoutError:
                pass
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def active(self):
        return len(self._conns)

    @property
    def address(self):
        return (self.host, self.port)

    # ------------------------------------------------------------ controls

    def cut(self, timeout=5.0):
        """Close every current connection with an RST on both sides.
        Returns how many connections were cut."""
        return self._call(self._do_cut, timeout)

    def blackhole(self, on=True, timeout=5.0):
        return self._call(lambda: self._do_blackhole(bool(on)), timeout)

    def delay(self, seconds, timeout=5.0):
        seconds = float(seconds)
        if not 0 <= seconds <= 60:
            raise ValueError("delay must be within 0..60 s")
        return self._call(lambda: setattr(self, "_delay", seconds), timeout)

    def refuse(self, on=True, timeout=5.0):
        return self._call(lambda: setattr(self, "_refuse", bool(on)), timeout)

    def counters(self):
        return {"accepted": self.accepted, "refused": self.refused, "cuts": self.cuts,
                "connections_cut": self.connections_cut, "active": self.active,
                "bytes_up": self.bytes_up, "bytes_down": self.bytes_down,
                "bytes_dropped": self.bytes_dropped}

    def wait_connections(self, n, timeout=10.0):
        """Wait until at least n connections were accepted in total."""
        deadline = time.monotonic() + timeout
        while self.accepted < n:
            if time.monotonic() >= deadline:
                raise TimeoutError("faultproxy: %d connections accepted, wanted %d"
                                   % (self.accepted, n))
            time.sleep(0.02)
        return self.accepted

    # ------------------------------------------------------------ plumbing

    def _call(self, fn, timeout):
        """Run fn in the loop thread; wait for it (bounded)."""
        if not self._running or self._thread is None:
            raise RuntimeError("faultproxy is not running")
        if threading.current_thread() is self._thread:
            return fn()
        done = threading.Event()
        box = {}

        def run():
            try:
                box["v"] = fn()
            except Exception as e:  # reported to the caller
                box["e"] = e
            finally:
                done.set()
        with self._lock:
            self._cmds.append(run)
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass
        if not done.wait(timeout):
            raise TimeoutError("faultproxy: control did not run in %.1fs" % timeout)
        if "e" in box:
            raise box["e"]
        return box.get("v")

    def _note(self, e):
        if len(self.errors) < 100:
            self.errors.append(repr(e))

    def _loop(self):
        try:
            while self._running:
                timeout = self._next_due()
                for key, mask in self._sel.select(timeout):
                    kind, conn = key.data
                    try:
                        if kind == "listen":
                            self._accept()
                        elif kind == "wake":
                            self._drain_wake()
                        else:
                            self._io(conn, key.fileobj, mask)
                    except Exception as e:  # keep the loop alive
                        self._note(e)
                        if conn is not None:
                            self._close_conn(conn, rst=True)
                    if not self._running:
                        break
                if self._running:
                    self._flush_due()
        finally:
            self._running = False
            for c in list(self._conns.values()):
                self._close_conn(c, rst=True)
            self._close_fds()
            # let anyone waiting on a control return
            with self._lock:
                cmds, self._cmds = list(self._cmds), collections.deque()
            for run in cmds:
                run()

    def _close_fds(self):
        for s in (self._lsock, self._wake_r, self._wake_w):
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError, OSError):
                pass
            try:
                s.close()
            except OSError:
                pass
        try:
            self._sel.close()
        except OSError:
            pass

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        while True:
            with self._lock:
                if not self._cmds:
                    return
                run = self._cmds.popleft()
            run()

    # -- commands (loop thread)

    def _do_stop(self):
        self._running = False

    def _do_cut(self):
        conns = list(self._conns.values())
        for c in conns:
            self._close_conn(c, rst=True)
        if conns:
            self.cuts += 1
            self.connections_cut += len(conns)
        return len(conns)

    def _do_blackhole(self, on):
        self._blackhole = on
        if on:
            for c in self._conns.values():
                self._make_blackholed(c)

    def _make_blackholed(self, c):
        c.blackholed = True
        for p in (c.up, c.down):
            self.bytes_dropped += p.size
            p.pending.clear()
            p.size = 0
        self._update(c)

    # -- connections

    def _accept(self):
        for _ in range(16):
            try:
                cs, _addr = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._note(e)
                return
            self.accepted += 1
            if self._refuse or len(self._conns) >= self.max_conns:
                self.refused += 1
                _rst_close(cs)
                continue
            cs.setblocking(False)
            us = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            us.setblocking(False)
            # a transparent proxy: no Nagle wait (for a delayed ACK) that
            # neither end asked for
            for s in (cs, us):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._next_id += 1
            c = _Conn(self._next_id, cs, us)
            self._conns[c.id] = c
            if self._blackhole:
                c.blackholed = True
            err = us.connect_ex(self.target)
            if err == 0:
                c.connected = True
            elif err not in (errno.EINPROGRESS, errno.EALREADY, errno.EAGAIN):
                self._close_conn(c, rst=True)
                continue
            self._update(c)

    def _want(self, c, sock):
        """The events to wait for on one socket of c."""
        mask = 0
        if sock is c.upstream and not c.connected:
            return selectors.EVENT_WRITE
        if sock is c.client:
            src_pipe, dst_pipe = c.up, c.down
        else:
            src_pipe, dst_pipe = c.down, c.up
        # read from sock while its direction has room (and not at EOF);
        # a black-holed connection keeps reading (and dropping)
        if not src_pipe.eof and (c.blackholed or src_pipe.size < self.max_buffer):
            mask |= selectors.EVENT_READ
        # write to sock what the opposite direction has due
        if not c.blackholed and dst_pipe.pending and dst_pipe.pending[0][0] <= time.monotonic():
            mask |= selectors.EVENT_WRITE
        return mask

    def _update(self, c):
        if c.closed:
            return
        for sock in (c.client, c.upstream):
            if sock is None:
                continue
            mask = self._want(c, sock)
            old = c.events.get(sock, 0)
            if mask == old:
                continue
            try:
                if old and mask:
                    self._sel.modify(sock, mask, ("conn", c))
                elif mask:
                    self._sel.register(sock, mask, ("conn", c))
                else:
                    self._sel.unregister(sock)
            except (KeyError, ValueError, OSError):
                pass
            c.events[sock] = mask

    def _close_conn(self, c, rst=False):
        if c.closed:
            return
        c.closed = True
        self._conns.pop(c.id, None)
        for sock in (c.client, c.upstream):
            if sock is None:
                continue
            if c.events.get(sock):
                try:
                    self._sel.unregister(sock)
                except (KeyError, ValueError, OSError):
                    pass
            if rst:
                _rst_close(sock)
            else:
                try:
                    sock.close()
                except OSError:
                    pass
        c.events.clear()

    def _io(self, c, sock, mask):
        if c.closed:
            return
        if sock is c.upstream and not c.connected:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err != 0:
                # target unreachable: drop the client the same way
                self._close_conn(c, rst=True)
                return
            c.connected = True
            self._update(c)
            return
        if sock is c.client:
            src_pipe, dst_pipe, peer = c.up, c.down, c.upstream
        else:
            src_pipe, dst_pipe, peer = c.down, c.up, c.client
        if mask & selectors.EVENT_WRITE:
            self._write(c, sock, dst_pipe)
            if c.closed:
                return
        if mask & selectors.EVENT_READ:
            try:
                data = sock.recv(self.chunk)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                # reset by one side: reset the other one too
                if c.blackholed:
                    self._drop_side(c, sock)
                else:
                    self._close_conn(c, rst=True)
                return
            if data is not None:
                if not data:
                    src_pipe.eof = True
                    if c.blackholed:
                        # a vanished network carries no FIN either
                        self._drop_side(c, sock)
                        return
                elif c.blackholed:
                    self.bytes_dropped += len(data)
                else:
                    src_pipe.pending.append((time.monotonic() + self._delay, data))
                    src_pipe.size += len(data)
                    if sock is c.client:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
                    # try to pass it on at once
                    if self._delay == 0 and (peer is not c.upstream or c.connected):
                        self._write(c, peer, src_pipe)
                        if c.closed:
                            return
        self._finish_halves(c)
        self._update(c)

    def _drop_side(self, c, sock):
        """Black-holed connection: one side went away; forget it, keep the
        other side open and silent."""
        if c.events.get(sock):
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError, OSError):
                pass
        c.events.pop(sock, None)
        try:
            sock.close()
        except OSError:
            pass
        if sock is c.client:
            c.client = None
        else:
            c.upstream = None
        if c.client is None and c.upstream is None:
            self._close_conn(c)
        else:
            self._update(c)

    def _write(self, c, sock, pipe):
        now = time.monotonic()
        while pipe.pending and pipe.pending[0][0] <= now:
            due, data = pipe.pending[0]
            try:
                n = sock.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close_conn(c, rst=True)
                return
            pipe.size -= n
            if n < len(data):
                pipe.pending[0] = (due, data[n:])
                return
            pipe.pending.popleft()

    def _finish_halves(self, c):
        """Pass a FIN on once everything before it was written."""
        if c.closed or c.blackholed:
            return
        for pipe, dst in ((c.up, c.upstream), (c.down, c.client)):
            if pipe.eof and not pipe.pending and not pipe.shut:
                pipe.shut = True
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        if c.up.shut and c.down.shut:
            self._close_conn(c)

    def _next_due(self):
        """select() timeout: until the first delayed chunk is due."""
        first = None
        for c in self._conns.values():
            if c.blackholed:
                continue
            for pipe in (c.up, c.down):
                if pipe.pending:
                    t = pipe.pending[0][0]
                    if first is None or t < first:
                        first = t
        if first is None:
            return 1.0
        return max(0.0, min(1.0, first - time.monotonic()))

    def _flush_due(self):
        now = time.monotonic()
        for c in list(self._conns.values()):
            if c.closed or c.blackholed:
                continue
            for pipe, dst in ((c.up, c.upstream), (c.down, c.client)):
                if pipe.pending and pipe.pending[0][0] <= now and \
                        (dst is not c.upstream or c.connected):
                    self._write(c, dst, pipe)
                    if c.closed:
                        break
            if not c.closed:
                self._finish_halves(c)
                self._update(c)


class SilentServer:
    """Listens on 127.0.0.1:<free port>, accepts every TCP connection and
    never sends a byte (a stalled server).  Holds at most max_conns sockets;
    closes them all on stop()."""

    def __init__(self, host="127.0.0.1", max_conns=64):
        _require_loopback(host)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.max_conns = max_conns
        self.accept_times = []     # monotonic time of each accept
        self.bytes_received = 0
        self._held = []
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="silent-%d" % self.port)
        self._thread.start()
        return self

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, None)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.1):
                    if key.data is None:
                        try:
                            cs, _ = self.sock.accept()
                        except (socket.timeout, BlockingIOError, OSError):
                            continue
                        self.accept_times.append(time.monotonic())
                        if len(self._held) >= self.max_conns:
                            cs.close()
                            continue
                        cs.setblocking(False)
                        self._held.append(cs)
                        sel.register(cs, selectors.EVENT_READ, "c")
                    else:
                        try:
                            data = key.fileobj.recv(65536)
                        except (BlockingIOError, OSError):
                            data = b""
                        if data:
                            self.bytes_received += len(data)
                        else:
                            sel.unregister(key.fileobj)
                            key.fileobj.close()
                            self._held.remove(key.fileobj)
        finally:
            sel.close()
            for s in self._held:
                try:
                    s.close()
                except OSError:
                    pass
            self._held = []
            self.sock.close()

    @property
    def accepted(self):
        return len(self.accept_times)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        else:
            self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
