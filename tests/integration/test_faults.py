"""clawsd against a real XMPP server (Prosody, ejabberd: the server fixture
is parametrized) through a fault-injecting proxy (issue 3): connections cut
at random moments, a black-holed connection, a server killed and restarted,
a stalled server, SIGTERM with stanzas in flight, SIGHUP.

Contract: SPEC sections 1, 3, 4, 5.  Every test is bounded in time; every
process is stopped by pid; everything lives in temporary folders.

The chaos test prints its figures on one line starting with `CHAOS:` (and
the moments of its cuts on the next; CHAOS_SEED=N replays a cut schedule),
the restart test the measured time from the server coming back to
`connected` on a line starting with `RESTART:`; BLACKHOLE:, STALLED:,
SIGTERM:, SIGHUP: lines give the other measures (pytest -s shows them).
"""

import datetime
import os
import random
import re
import signal
import threading
import time

import pytest

import harness
from harness import TEST_ACCOUNTS as ACCOUNTS
from harness import (CLIENT_NS, Peer, is_status, local_name, message_xml,
                     parse_line, unique)
from faultproxy import FaultProxy, SilentServer

PEER = "peer@localhost"
BOT = "bot@localhost"

# one clawsd log line: "2024-01-02T03:04:05.678Z level: text"
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (\w+): (.*)$")


# --------------------------------------------------------------------------
# helpers

def log_entries(text):
    """[(seconds since the epoch, level, text)] of the timestamped lines."""
    out = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if not m:
            continue
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
        t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
        out.append((t, m.group(2), m.group(3)))
    return out


def log_since(d, mark):
    return d.log()[mark:]


def log_mark(d):
    return len(d.log())


def wait_log_since(d, mark, regex, timeout, flags=re.M):
    """Wait until regex matches the clawsd log written after mark."""
    rx = re.compile(regex, flags)

    def found():
        return rx.search(log_since(d, mark))
    try:
        return harness.wait_until(found, timeout, interval=0.05,
                                  what="clawsd log to match %r" % regex)
    except TimeoutError as e:
        pytest.fail("%s\n--- clawsd log since mark:\n%s"
                    % (e, harness.tail(log_since(d, mark), 60)))


def body_of(el):
    b = el.find("{%s}body" % CLIENT_NS)
    return None if b is None else (b.text or "")


def status_lines(lines, name):
    out = []
    for line in lines:
        try:
            el = parse_line(line)
        except Exception:
            continue
        if is_status(el, name):
            out.append(el)
    return out


class Recorder(threading.Thread):
    """Reads every line of a SockClient in the background, with its arrival
    time (time.monotonic()).  The client may be written to from another
    thread at the same time."""

    def __init__(self, client):
        super().__init__(daemon=True, name="recorder")
        self.client = client
        self.items = []            # (time, line)
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.connected = 0         # `connected` status lines seen
        self.errors = []           # `error` lines seen
        self.eof = False

    def run(self):
        while not self.halt.is_set():
            try:
                line = self.client.read_line(timeout=0.2)
            except TimeoutError:
                continue
            except (EOFError, OSError):
                self.eof = True
                return
            now = time.monotonic()
            try:
                el = parse_line(line)
            except Exception:
                el = None
            with self.lock:
                self.items.append((now, line, el))
                if el is not None and is_status(el, "connected"):
                    self.connected += 1
                if el is not None and is_status(el, "error"):
                    self.errors.append(line)

    def stop(self):
        self.halt.set()
        self.join(5)

    def snapshot(self):
        with self.lock:
            return list(self.items)


class TimedPeer(Peer):
    """A Peer that also records when each message arrived."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.arrivals = []         # (time.monotonic(), id, body)

    def _on_message(self, msg):
        super()._on_message(msg)
        with self._cond:
            self.arrivals.append((time.monotonic(), msg["id"] or None, msg["body"]))

    def arrivals_copy(self):
        with self._cond:
            return list(self.arrivals)


@pytest.fixture
def proxy(make_proxy, prosody):
    """A FaultProxy in front of the shared server's STARTTLS port."""
    return make_proxy(prosody.c2s_port)


@pytest.fixture
def lone_clawsd(pki):
    """Like make_clawsd, for the tests that need no XMPP server (so they
    run once, not once per server kind)."""
    if not harness.CLAWSD_BIN.exists():
        pytest.skip("%s not built (run `make clawsd`)" % harness.CLAWSD_BIN)
    made = []

    def make(**kw):
        kw.setdefault("user", "bot")
        kw.setdefault("password", ACCOUNTS["bot"])
        kw.setdefault("ca_file", pki.ca_cert)
        d = harness.Clawsd(**kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.retire()


@pytest.fixture
def timed_peer(prosody, pki):
    peers = []

    def make(server=None, user="peer"):
        srv = server or prosody
        p = TimedPeer(srv.jid(user), ACCOUNTS[user], srv.c2s_port, ca_file=pki.ca_cert)
        peers.append(p)
        return p.start()
    yield make
    for p in peers:
        p.stop()


# Small timers for every daemon in this file.
FAST = dict(reconnect_delay=1, reconnect_max_delay=2, connect_timeout=5)
PINGS = {"ping_interval": 2, "ping_timeout": 2}


# --------------------------------------------------------------------------
# chaos: cuts at random moments, 1,000 messages each way

N_MESSAGES = 1000
SEND_SECONDS = 15.0
MIN_CUTS = 10
CHAOS_DEADLINE = 40.0      # cutting stops by then, whatever happened
DRAIN_TIMEOUT = 25.0       # after that, waiting for the last messages


def _dup_explained(t_first, t_dup, reconnects, slack=1.0):
    """A duplicate is allowed only across a reconnect that did not resume
    (XEP-0198: a resumed session resends exactly what the other side did not
    count; a new session resends everything unacknowledged)."""
    return any(t_first - slack <= t <= t_dup + slack for t in reconnects)


def _proxied_session(make_clawsd, make_proxy, make_server, timed_peer):
    """A server of the test's own behind a FaultProxy, clawsd up through
    it, a peer, and a Recorder on clawsd's socket: (daemon, client, proxy,
    peer, recorder, server).  On the shared server, the sessions other tests left
    hibernating would take a share of every message sent to the bare JID
    bot@localhost, and a dead session's unacknowledged messages go to the
    offline store only when it was the account's last."""
    srv = make_server()
    proxy = make_proxy(srv.c2s_port)
    d = make_clawsd(port=proxy.port, xmpp=dict(PINGS), **FAST).start()
    c, _ = d.wait_connected(timeout=20)
    peer = timed_peer(server=srv)
    rec = Recorder(c)
    rec.start()
    return d, c, proxy, peer, rec, srv


# Prosody's mod_smacks keeps at most this many unacknowledged stanzas for a
# session (smacks_max_queue_size, left at its default by the harness).
PROSODY_SM_QUEUE = 500


def not_resumed_causes(daemon_log):
    """Why each new session after the first was not a resumption, from
    the daemon's log: what became of the resumes tried since the last
    session (refused by the server with its condition, or the connection
    lost while resuming), or that there was nothing to resume."""
    causes, notes, sessions = [], [], 0
    for _t, _lvl, msg in log_entries(daemon_log):
        m = re.match(r"stream management: the server cannot resume the session "
                     r"\((.*)\), binding a new one", msg)
        if m:
            notes.append("refused by the server (%s)" % m.group(1))
        elif re.match(r"state: Binding -> Retrying: .*", msg) and notes[-1:] == ["resuming"]:
            notes[-1] = "connection lost while resuming (%s)" % msg.split(": ", 3)[-1]
        elif msg.startswith("state: Bind -> Binding: resuming"):
            notes.append("resuming")
        elif msg.startswith("session resumed"):
            notes = []
        elif msg.startswith("session established"):
            sessions += 1
            if sessions > 1:
                causes.append("; ".join(n for n in notes if n != "resuming")
                              or "nothing to resume (the session was not resumable yet)")
            notes = []
    return causes


def prosody_queue_overflows(server_log):
    """[unacked] of every resumption Prosody refused because its queue
    had overflowed: it keeps PROSODY_SM_QUEUE stanzas, the older ones are
    gone (to no one: not even its offline store)."""
    out, pending = [], None
    for line in server_log.splitlines():
        m = re.search(r"Pre-resumption #queue = (\d+)", line)
        if m:
            pending = int(m.group(1))
        elif pending is not None and "Too many unacked stanzas remaining" in line:
            out.append(pending)
            pending = None
    return out


def test_chaos_random_cuts(make_clawsd, make_proxy, make_server, timed_peer):
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    run = unique("chaos")
    d, c, proxy, peer, rec, srv = _proxied_session(make_clawsd, make_proxy,
                                                   make_server, timed_peer)

    stop_all = threading.Event()
    sent_done = {"p2b": threading.Event(), "b2p": threading.Event()}
    failures = []

    def peer_sender():
        try:
            t0 = time.monotonic()
            for i in range(N_MESSAGES):
                if stop_all.is_set():
                    return
                peer.send_message(BOT, "p2b %s %d" % (run, i), id="p2b-%s-%d" % (run, i))
                lag = t0 + (i + 1) * SEND_SECONDS / N_MESSAGES - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
        except Exception as e:
            failures.append("peer sender: %r" % (e,))
        finally:
            sent_done["p2b"].set()

    def socket_sender():
        try:
            t0 = time.monotonic()
            for i in range(N_MESSAGES):
                if stop_all.is_set():
                    return
                c.send(message_xml(PEER, "b2p %s %d" % (run, i), id="b2p-%s-%d" % (run, i)))
                lag = t0 + (i + 1) * SEND_SECONDS / N_MESSAGES - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
        except Exception as e:
            failures.append("socket sender: %r" % (e,))
        finally:
            sent_done["b2p"].set()

    cut_times = []
    cut_kinds = {"session": 0, "handshake": 0, "random": 0}

    def cutter():
        t_end = time.monotonic() + CHAOS_DEADLINE
        last_connected = rec.connected - 1     # the session is up already
        while not stop_all.is_set() and time.monotonic() < t_end:
            if all(e.is_set() for e in sent_done.values()) and proxy.cuts >= MIN_CUTS:
                return
            r = rng.random()
            if r < 0.65:
                # most cuts hit an established session, some time after it
                # came up (possibly while it resends and catches up)
                kind = "session"
                deadline = time.monotonic() + 15
                while rec.connected <= last_connected and time.monotonic() < deadline \
                        and not stop_all.is_set():
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.1, 0.9))
            elif r < 0.85:
                # in the handshake (TCP, TLS, SASL, resume or bind: some
                # 15 ms on loopback): wait for the next connection
                kind = "handshake"
                accepted = proxy.accepted
                if proxy.active and proxy.cut():
                    cut_times.append((time.monotonic(), "session"))
                    cut_kinds["session"] += 1
                deadline = time.monotonic() + 10
                while proxy.accepted <= accepted and time.monotonic() < deadline \
                        and not stop_all.is_set():
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.02))
            else:
                # the others at any moment: in the handshake, while
                # retrying (no connection: not counted), or up
                kind = "random"
                time.sleep(rng.uniform(0.05, 1.2))
            last_connected = rec.connected
            if proxy.cut():
                cut_times.append((time.monotonic(), kind))
                cut_kinds[kind] += 1

    threads = [threading.Thread(target=f, daemon=True, name=f.__name__)
               for f in (peer_sender, socket_sender, cutter)]
    t_start = time.monotonic()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(CHAOS_DEADLINE + 10)
        t_chaos = time.monotonic() - t_start

        # wait (bounded) for the last messages in both directions
        def complete():
            got_in = {int(body_of(el).split()[2]) for _, _, el in rec.snapshot()
                      if el is not None and local_name(el.tag) == "message"
                      and (body_of(el) or "").startswith("p2b %s " % run)}
            got_out = {int(b.split()[2]) for _, _, b in peer.arrivals_copy()
                       if b and b.startswith("b2p %s " % run)}
            return len(got_in) == N_MESSAGES and len(got_out) == N_MESSAGES
        try:
            harness.wait_until(complete, DRAIN_TIMEOUT, interval=0.2, what="every message")
        except TimeoutError:
            pass
    finally:
        stop_all.set()
        for t in threads:
            t.join(10)
        rec.stop()

    # ---- the subscriber's view: peer -> bot
    items = rec.snapshot()
    reconnects_fresh = []      # times of `connected resumed="false"` (after the first)
    reconnects_resumed = 0
    inbound = []               # (time, index) in arrival order
    for t, line, el in items:
        if el is None:
            continue
        if is_status(el, "connected"):
            if el.get("resumed") == "true":
                reconnects_resumed += 1
            else:
                reconnects_fresh.append(t)
        elif local_name(el.tag) == "message" and (body_of(el) or "").startswith("p2b %s " % run):
            inbound.append((t, int(body_of(el).split()[2])))
    first_in = {}
    order_in = []
    dup_in = bad_dup_in = 0
    for t, i in inbound:
        if i in first_in:
            dup_in += 1
            if not _dup_explained(first_in[i], t, reconnects_fresh, slack=0.0):
                bad_dup_in += 1
        else:
            first_in[i] = t
            order_in.append(i)
    lost_in = N_MESSAGES - len(first_in)
    in_order = order_in == sorted(order_in)
    gaps_in = [i for i in range(N_MESSAGES) if i not in first_in][:10]

    # ---- the peer's view: socket -> peer
    first_out = {}
    order_out = []
    dup_out = bad_dup_out = 0
    for t, _mid, b in peer.arrivals_copy():
        if not b or not b.startswith("b2p %s " % run):
            continue
        i = int(b.split()[2])
        if i in first_out:
            dup_out += 1
            if not _dup_explained(first_out[i], t, reconnects_fresh, slack=1.0):
                bad_dup_out += 1
        else:
            first_out[i] = t
            order_out.append(i)
    lost_out = N_MESSAGES - len(first_out)
    out_order = order_out == sorted(order_out)

    disconnects = len(status_lines([l for _, l, _ in items], "disconnected"))
    summary = ("CHAOS: seed=%d cuts=%d (of a session %d, in a handshake %d, random %d) "
               "connections=%d "
               "disconnected-lines=%d reconnects resumed=%d new=%d chaos=%.1fs | "
               "peer->bot sent=%d lost=%d duplicated=%d (unexplained %d) in-order=%s | "
               "socket->peer sent=%d lost=%d duplicated=%d (unexplained %d) in-order=%s "
               "| errors=%d"
               % (seed, proxy.cuts, cut_kinds["session"], cut_kinds["handshake"],
                  cut_kinds["random"],
                  proxy.accepted, disconnects, reconnects_resumed,
                  len(reconnects_fresh), t_chaos,
                  N_MESSAGES, lost_in, dup_in, bad_dup_in, in_order,
                  N_MESSAGES, lost_out, dup_out, bad_dup_out, out_order,
                  len(rec.errors)))
    causes = not_resumed_causes(d.log())
    overflows = prosody_queue_overflows(srv.log()) if srv.name == "prosody" else []
    dropped_by_server = sum(n - PROSODY_SM_QUEUE for n in overflows if n > PROSODY_SM_QUEUE)
    print(summary)
    print("CHAOS: cuts at %s" % ", ".join("%.2fs %s" % (t - t_start, k) for t, k in cut_times))
    print("CHAOS: not resumed: %s" % (" | ".join(causes) or "none"))
    if overflows:
        print("CHAOS: %s refused to resume with %s unacknowledged stanzas queued for "
              "the bot (it keeps %d: %d dropped by the server itself, before any "
              "resumption; their recovery is the archive catch-up of SPEC 9)"
              % (srv.name, "+".join(map(str, overflows)), PROSODY_SM_QUEUE,
                 dropped_by_server))
    assert len(causes) == len(reconnects_fresh), (causes, summary)

    assert not failures, failures
    assert d.alive, "clawsd died:\n" + harness.tail(d.log(), 60)
    assert proxy.cuts >= MIN_CUTS, summary
    assert not rec.errors, "error lines: %r\n%s" % (rec.errors[:5], summary)
    assert lost_out == 0, "%s\nnever reached the peer (first 10): %r" % (
        summary, [i for i in range(N_MESSAGES) if i not in first_out][:10])
    # What the server itself dropped is reported above, not the daemon's
    # fault; anything else lost is.
    assert lost_in in (0, dropped_by_server), \
        "%s\nnever reached the subscriber (first 10): %r\nnot resumed: %r" % (
            summary, gaps_in, causes)
    assert in_order, "%s\nsubscriber order (first out-of-order): %r" % (
        summary, next((order_in[k:k + 5] for k in range(1, len(order_in))
                       if order_in[k] < order_in[k - 1]), None))
    assert out_order, summary
    assert bad_dup_in == 0, "duplicates at the subscriber without a new session\n" + summary
    assert bad_dup_out == 0, "duplicates at the peer without a new session\n" + summary


# --------------------------------------------------------------------------
# black hole: a connection that silently stops carrying anything

def test_cut_during_tls_burst_loses_nothing(make_clawsd, make_proxy, make_server, timed_peer):
    """The connection dies while a megabyte goes each way: TLS records of
    it are half read, half sealed, the subscriber's writes half done.  After
    the reconnection every message has arrived whole, both ways."""
    run, n, size = unique("burst"), 60, 20000
    d, c, proxy, peer, rec, _srv = _proxied_session(make_clawsd, make_proxy,
                                                    make_server, timed_peer)

    def body(i):
        return ("%s %d " % (run, i) + "x<&>\u00e9" * size)[:size]

    def got_in():
        return {int(body_of(el).split()[1]): body_of(el)
                for _, _, el in rec.snapshot()
                if el is not None and local_name(el.tag) == "message"
                and (body_of(el) or "").startswith(run + " ")}

    def got_out():
        return {int(b.split()[1]): b for _, _, b in peer.arrivals_copy()
                if b and b.startswith(run + " ")}

    try:
        c.send(b"".join(message_xml(PEER, body(i), id="%s-o%d" % (run, i))
                        .encode("utf-8") for i in range(n)))
        for i in range(n):
            peer.send_message(BOT, body(i), id="%s-i%d" % (run, i))
        harness.wait_until(lambda: got_in(), 20, interval=0.01,
                           what="the first message of the burst")
        cuts = proxy.cut()
        harness.wait_until(lambda: len(got_in()) == n and len(got_out()) == n,
                           60, interval=0.2, what="every message, both ways")
    finally:
        rec.stop()
    print("burst cut: %d connection(s) cut; in %d/%d, out %d/%d"
          % (cuts, len(got_in()), n, len(got_out()), n))
    assert cuts >= 1
    assert all(b == body(i) for i, b in got_in().items())
    assert all(b == body(i) for i, b in got_out().items())
    assert "connection lost" in d.log()


def test_blackholed_connection_detected_by_ping(make_clawsd, proxy):
    interval, timeout = PINGS["ping_interval"], PINGS["ping_timeout"]
    d = make_clawsd(port=proxy.port, xmpp=dict(PINGS), **FAST).start()
    c, first = d.wait_connected(timeout=20)
    accepted = proxy.accepted
    time.sleep(0.5)               # let the session settle (presence, roster)
    mark = log_mark(d)
    proxy.blackhole(True)
    t0 = time.monotonic()
    m = wait_log_since(d, mark, r"^.*connection lost in [^:\n]+: ([^\n]*)$",
                       timeout=interval + timeout + 4)
    detected = time.monotonic() - t0
    # lift it for new connections (the black-holed one stays dead)
    proxy.blackhole(False)
    reason = m.group(1)
    assert re.search(r"(?i)ping", reason), "reason %r is not a ping timeout\n%s" % (
        reason, harness.tail(log_since(d, mark), 30))
    # log polling and timer granularity: 0.75 s of slack
    assert detected <= interval + timeout + 0.75, \
        "dead connection detected after %.2fs (> %d + %d)" % (detected, interval, timeout)
    assert re.search(r"(?m)state: Binded -> Retrying: [^\n]*ping", log_since(d, mark)), \
        harness.tail(log_since(d, mark), 30)
    el = c.wait_for(lambda e: is_status(e, "disconnected"), timeout=3)
    assert re.search(r"(?i)ping", el.get("reason", "")), el.attrib
    el = c.wait_for(lambda e: is_status(e, "connected"), timeout=1.2 + 5 + 3)
    assert el.get("jid") == first.get("jid")
    assert proxy.accepted > accepted
    print("BLACKHOLE: detected after %.2fs, reason %r" % (detected, reason))


# --------------------------------------------------------------------------
# the server killed (SIGKILL) and restarted: backoff, queue, reconnect

def _retry_delays(text):
    """The waits in Retrying, from the clawsd log: [(seconds, reason)] from
    each `state: X -> Retrying: reason` to the next `state: Retrying ->
    Connecting`."""
    delays = []
    t_enter = reason = None
    for t, _lvl, msg in log_entries(text):
        m = re.match(r"state: (.+?) -> Retrying(?:: (.*))?$", msg)
        if m:
            t_enter, reason = t, m.group(2)
            continue
        if re.match(r"state: Retrying -> Connecting\b", msg) and t_enter is not None:
            delays.append((t - t_enter, reason))
            t_enter = None
    return delays


def test_server_killed_and_restarted_backoff(make_clawsd, make_server, timed_peer):
    srv = make_server()    # a server of the test's own: it gets SIGKILLed
    if srv.name == "ejabberd":
        # mnesia writes its transaction log lazily: an account registered
        # less than a second before a SIGKILL is gone after the restart
        time.sleep(2)
    base, cap = 1, 4
    d = make_clawsd(port=srv.c2s_port, reconnect_delay=base, reconnect_max_delay=cap,
                    connect_timeout=5).start()
    c, first = d.wait_connected(timeout=20)
    mark = log_mark(d)

    srv.kill(signal.SIGKILL)
    el = c.wait_for(lambda e: is_status(e, "disconnected"), timeout=10)
    assert el.get("reason")

    # written while the session is down: queued, not refused
    ids = [unique("queued") for _ in range(5)]
    for k, mid in enumerate(ids):
        c.send(message_xml(PEER, "queued %d" % k, id=mid))
    for line in c.read_lines_for(0.3):
        assert not is_status(parse_line(line), "error"), line

    # three attempts against the dead server (after ~1, ~2, ~4 s), then
    # bring it back: the next one (after ~4 s, the cap) succeeds
    wait_log_since(d, mark, r"(?s)(state: Retrying -> Connecting.*){3}",
                   timeout=1.2 + 2.4 + 4.8 + 3)
    srv.start()
    t_back = time.monotonic()
    peer = timed_peer(server=srv)      # online before the queue is flushed, if it can
    el = c.wait_for(lambda e: is_status(e, "connected"), timeout=cap * 1.2 + 8)
    t_up = time.monotonic() - t_back
    assert el.get("resumed") == "false"   # a killed server cannot resume
    if srv.sasl2:
        # Bind2: the server makes the resource from ours (ejabberd adds a
        # random part to each new session)
        assert el.get("jid").startswith(first.get("jid").split("~")[0].rsplit(".", 1)[0])
    else:
        assert el.get("jid") == first.get("jid")

    delays = _retry_delays(log_since(d, mark))
    print("RESTART: server back -> connected in %.2fs; retry waits %s"
          % (t_up, ", ".join("%.2f" % x for x, _ in delays)))
    assert len(delays) >= 4, "retry waits %r\n%s" % (delays, harness.tail(log_since(d, mark), 40))
    for k, (got, reason) in enumerate(delays):
        want = min(base * 2 ** k, cap)
        # +-20% jitter; 0.15 s below / 0.3 s above for timers and logging
        assert want * 0.8 - 0.15 <= got <= want * 1.2 + 0.3, \
            "wait %d was %.2fs, expected %s s +-20%% (all: %s)" % (
                k + 1, got, want, ["%.2f" % x for x, _ in delays])
        assert reason, "no reason logged for failure %d" % (k + 1)
    assert t_up <= cap * 1.2 + 3, "connected %.1fs after the server came back" % t_up

    # the queued stanzas reach the peer (live, or from the offline store), in order
    for mid in ids:
        peer.wait_message(lambda m, mid=mid: m.id == mid, timeout=15)
    got = [a[1] for a in peer.arrivals_copy() if a[1] in ids]
    assert got == ids
    c.close()


# --------------------------------------------------------------------------
# a stalled server: accepts TCP and says nothing

def test_stalled_server_abandoned_after_connect_timeout(lone_clawsd):
    with SilentServer() as silent:
        d = lone_clawsd(port=silent.port, reconnect_delay=1, reconnect_max_delay=2,
                        connect_timeout=2).start()
        m = wait_log_since(d, 0, r"^.*connection failed in [^:\n]+: [^\n]*handshake timeout[^\n]*$",
                           timeout=2 + 4)
        # and it tries again
        harness.wait_until(lambda: silent.accepted >= 2, 1.2 + 2 + 2, what="a second attempt")
        text = d.log()
        entries = log_entries(text)
        t_connect = next(t for t, _, msg in entries if msg.startswith("connecting to"))
        t_fail = next(t for t, _, msg in entries
                      if "handshake timeout" in msg and msg.startswith("connection failed"))
        took = t_fail - t_connect
        assert 1.8 <= took <= 3.0, "abandoned after %.2fs, connect_timeout = 2\n%s" % (
            took, harness.tail(text, 20))
        assert re.search(r"(?m)state: [^\n]+ -> Retrying: [^\n]*handshake timeout", text), \
            harness.tail(text, 20)
        with d.connect() as c:
            el = parse_line(c.read_line(timeout=5))
            assert is_status(el, "disconnected"), el.attrib
        assert d.alive
        print("STALLED: abandoned after %.2fs (%s)" % (took, m.group(0)))


# --------------------------------------------------------------------------
# SIGTERM with stanzas in flight

def test_sigterm_flushes_queued_stanzas(make_clawsd, proxy, prosody, timed_peer):
    n = 200
    peer = timed_peer()
    d = make_clawsd(port=proxy.port, **FAST).start()
    c, el = d.wait_connected(timeout=20)
    jid = el.get("jid")
    pmark = prosody.log_mark()
    # a slow link: what is written now is still in flight (unsent or
    # unacknowledged) when the signal comes
    proxy.delay(0.3)
    ids = [unique("bye") for _ in range(n)]
    c.send("".join(message_xml(PEER, "bye %d" % k, id=mid) for k, mid in enumerate(ids)))
    t0 = time.monotonic()
    d.kill(signal.SIGTERM)
    rc = d.proc.wait(timeout=15)
    took = time.monotonic() - t0
    log = d.log()
    assert rc == 0, harness.tail(log, 30)
    assert took <= 5.5, "shutdown took %.1fs (at most 5 s)" % took
    assert not d.socket_path.exists()
    assert c.wait_eof(timeout=5)
    for mid in ids:
        peer.wait_message(lambda m, mid=mid: m.id == mid, timeout=10)
    got = [a[1] for a in peer.arrivals_copy() if a[1] in ids]
    assert got == ids, "order or duplicates: %d received for %d sent" % (len(got), n)
    # the stream was closed, both ways, not dropped
    assert not re.search(r"did not close its stream", log), harness.tail(log, 30)
    assert not re.search(r"(?m)connection (lost|failed) in", log.split("shutting down", 1)[-1]), \
        harness.tail(log, 30)
    # the server's view: the bot's stream was closed by the client
    # (</stream:stream>), not dropped
    try:
        by_client, why = harness.wait_until(lambda: prosody.stream_closed_since(pmark, jid), 5,
                                            what="the server to log the end of the session")
    except TimeoutError:
        pytest.fail("%s never logged the end of %s:\n%s"
                    % (prosody.name, jid, harness.tail(prosody.log_since(pmark), 30)))
    print("SIGTERM: exit %s after %.2fs; %s: closed by client %s (%s)"
          % (rc, took, prosody.name, by_client, why))
    assert by_client, why


def test_sigterm_with_blackholed_server_exits_in_5s(make_clawsd, proxy):
    # the server no longer answers anything: shutdown may not wait for it
    d = make_clawsd(port=proxy.port, **FAST).start()
    c, _ = d.wait_connected(timeout=20)
    proxy.blackhole(True)
    c.send("".join(message_xml(PEER, "into the void %d" % k, id=unique("void"))
                   for k in range(3)))
    time.sleep(0.2)
    t0 = time.monotonic()
    d.kill(signal.SIGTERM)
    rc = d.proc.wait(timeout=15)
    took = time.monotonic() - t0
    assert rc == 0, harness.tail(d.log(), 30)
    assert took <= 5.5, "shutdown took %.1fs (at most 5 s)" % took
    assert not d.socket_path.exists()
    print("SIGTERM-BLACKHOLE: exit %s after %.2fs" % (rc, took))


# --------------------------------------------------------------------------
# SIGHUP

def test_sighup_valid_change_reconnects_with_new_resource(make_clawsd, prosody, timed_peer):
    d = make_clawsd(**FAST).start()
    c, first = d.wait_connected(timeout=20)
    peer = timed_peer()
    old_jid = first.get("jid")
    new_res = unique("reloaded")
    d.xmpp_opts["resource"] = new_res
    d.write_config()
    mark = log_mark(d)
    pmark = prosody.log_mark()
    # written just before the signal: not lost by the reconnect
    before = unique("before-hup")
    c.send(message_xml(PEER, "before reload", id=before))
    d.kill(signal.SIGHUP)
    el = c.wait_for(lambda e: is_status(e, "connected"), timeout=15)
    if prosody.sasl2:
        # Bind2: the server makes the resource from ours
        assert re.fullmatch(r"%s/%s[~.]\S+" % (re.escape(BOT), re.escape(new_res)),
                            el.get("jid")), (old_jid, el.attrib)
    else:
        assert el.get("jid") == "%s/%s" % (BOT, new_res), (old_jid, el.attrib)
    assert el.get("resumed") == "false"
    assert d.alive
    assert peer.wait_message(lambda m: m.id == before, timeout=10).body == "before reload"
    # the same client is still subscribed: a message from the peer reaches it
    mid = unique("after-hup")
    peer.send_message(el.get("jid"), "after reload", id=mid)
    got = c.wait_for(lambda e: e.get("id") == mid, timeout=10)
    assert body_of(got) == "after reload"
    assert not re.search(r"(?m)^\S+ error: ", log_since(d, mark)), log_since(d, mark)
    # how the old session ended, as the server saw it (information only:
    # the SPEC asks for a reconnect, not for a clean close of the old stream)
    try:
        closed = harness.wait_until(lambda: prosody.stream_closed_since(pmark, old_jid), 2,
                                    what="the old session's end")
    except TimeoutError:
        closed = None
    print("SIGHUP: old session %s ended on %s: %r" % (old_jid, prosody.name, closed))


def test_sighup_invalid_file_keeps_old_config(make_clawsd, timed_peer):
    d = make_clawsd(**FAST).start()
    c, first = d.wait_connected(timeout=20)
    good = d.config_text()
    # also a new resource: nothing of the bad file may be applied
    bad_lines = good.replace("[xmpp]\n", "[xmpp]\nbogus_key = 1\n", 1) \
                    .replace("resource = ", "resource = ignored-", 1).splitlines()
    bad_line_no = bad_lines.index("bogus_key = 1") + 1
    d.config_path.write_text("\n".join(bad_lines) + "\n")
    mark = log_mark(d)
    d.kill(signal.SIGHUP)
    try:
        wait_log_since(d, mark, r"(?m)^\S+ (error|warn): .*", timeout=5)
        text = log_since(d, mark)
        assert re.search(r"clawsd\.conf:%d\b" % bad_line_no, text), \
            "the bad line is not named:\n" + text
        # still connected with the old configuration: no status change
        for line in c.read_lines_for(1.5):
            el = parse_line(line)
            assert not is_status(el, "disconnected") and not is_status(el, "connected"), line
        assert d.alive
        with d.connect() as c2:
            el = parse_line(c2.read_line(timeout=5))
            assert is_status(el, "connected") and el.get("jid") == first.get("jid"), el.attrib
        # and it works
        peer = timed_peer()
        mid = unique("still")
        c.send(message_xml(PEER, "still here", id=mid))
        assert peer.wait_message(lambda m: m.id == mid, timeout=10).body == "still here"
    finally:
        d.write_config()          # a valid file again for the teardown


# --------------------------------------------------------------------------
# the proxy itself (no XMPP server, no clawsd)

def test_faultproxy_controls():
    import socket as so
    ls = so.socket(so.AF_INET, so.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    ls.settimeout(0.2)
    halt = threading.Event()

    def echo_one(cs):
        with cs:
            cs.settimeout(0.2)
            while not halt.is_set():
                try:
                    data = cs.recv(65536)
                except so.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    cs.shutdown(so.SHUT_WR)
                    return
                cs.sendall(data)

    def echo():
        while not halt.is_set():
            try:
                cs, _ = ls.accept()
            except (so.timeout, OSError):
                continue
            threading.Thread(target=echo_one, args=(cs,), daemon=True).start()
    t = threading.Thread(target=echo, daemon=True)
    t.start()
    p = FaultProxy(ls.getsockname()[1]).start()

    def conn():
        return so.create_connection(("127.0.0.1", p.port), timeout=2)

    def recv_exactly(s, n):
        buf = b""
        while len(buf) < n:
            d = s.recv(65536)
            if not d:
                break
            buf += d
        return buf
    try:
        with pytest.raises(ValueError):
            FaultProxy(5222, target_host="192.0.2.1")
        # plain forwarding, large transfer, half-close
        s = conn()
        big = os.urandom(3 << 20)
        got = {}
        r = threading.Thread(target=lambda: got.setdefault("v", recv_exactly(s, len(big))))
        r.start()
        s.sendall(big)
        r.join(10)
        assert got.get("v") == big
        s.shutdown(so.SHUT_WR)
        assert s.recv(10) == b""
        s.close()
        # delay: each direction
        s = conn()
        p.delay(0.3)
        t0 = time.monotonic()
        s.sendall(b"x")
        assert recv_exactly(s, 1) == b"x"
        assert 0.55 <= time.monotonic() - t0 <= 2.0
        p.delay(0)
        # cut: RST
        assert p.cut() == 1 and p.cuts == 1
        with pytest.raises(ConnectionResetError):
            s.recv(10)
        s.close()
        # black hole: nothing through, no close; stays dead after lifting
        s = conn()
        s.sendall(b"a")
        assert recv_exactly(s, 1) == b"a"
        p.blackhole(True)
        s.settimeout(0.5)
        s.sendall(b"b")
        with pytest.raises(so.timeout):
            s.recv(10)
        p.blackhole(False)
        s2 = conn()
        s2.sendall(b"c")
        assert recv_exactly(s2, 1) == b"c"
        s.sendall(b"d")
        with pytest.raises(so.timeout):
            s.recv(10)
        s.close()
        s2.close()
        # refuse: accepted, then reset at once
        p.refuse(True)
        # The reset may already come back from connect() itself.
        with pytest.raises((ConnectionResetError, so.timeout)):
            s = conn()
            try:
                if s.recv(10) == b"":
                    raise ConnectionResetError("closed")
            finally:
                s.close()
        p.refuse(False)
        assert p.refused == 1
        assert not p.errors, p.errors
    finally:
        p.stop()
        halt.set()
        t.join(2)
        ls.close()
    assert p._thread is None
