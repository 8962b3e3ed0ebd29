#!/usr/bin/python3
"""clawsd benchmark, the round-trip row: how many network round trips clawsd
needs from its TCP connect to the `connected' status line (SPEC 4.1), against
a real Prosody and a real ejabberd (tests/integration/harness.py), over
STARTTLS and direct TLS, for:

  first      a fresh daemon with an empty state directory: first login
  restart    that daemon stopped and started again with the same state
             directory (a new session; once the daemon keeps a FAST token
             there, the reconnect that uses it)
  reconnect  a cut the server cannot resume: the link is cut, the server
             restarted (its sessions gone), then the daemon comes back
  resume     a cut the server can resume (XEP-0198)

The daemon's host and port are those of tests/bench/delayproxy.py, which
holds every chunk for RTT_DELAY_MS in each direction; the domain, and so the
name the certificate is checked against, stays the server's.  The time runs
from the proxy's accept of the connection that comes up to the moment the
line is read on the daemon's socket; round trips = 1 + time / RTT, the 1
being the TCP handshake, which the proxy cannot delay (it is over when
accept returns).  The median of RTT_RUNS runs is kept.

Run by `make bench-rtt' and `make bench' (tests/bench/README.md).
Environment:
  RTT_DELAY_MS  one-way delay (default 50: an RTT of 100 ms)
  RTT_RUNS      runs per case, median kept (default 3)
  RTT_SERVERS   comma-separated: prosody,ejabberd (default both)
  RTT_TLS       comma-separated: starttls,direct (default both)
  RTT_CASES     comma-separated: first,restart,reconnect,resume (default all)
  BENCH_CLAWSD  the clawsd binary to run (default: the one `make' built)
  BENCH_KEEP    keep the temporary directory (logs, configurations)
Every process started here is stopped by its pid; files live in one
temporary directory, removed at the end.
"""

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if os.environ.get("BENCH_CLAWSD"):
    os.environ["CLAWSD_BIN"] = os.environ["BENCH_CLAWSD"]
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from delayproxy import DelayProxy  # noqa: E402


def _list(name, default):
    return [x.strip() for x in os.environ.get(name, default).split(",")
            if x.strip()]


DELAY = float(os.environ.get("RTT_DELAY_MS", "50")) / 1000
RTT = 2 * DELAY
RUNS = max(1, int(os.environ.get("RTT_RUNS", "3")))
SERVERS = _list("RTT_SERVERS", "prosody,ejabberd")
TRANSPORTS = _list("RTT_TLS", "starttls,direct")
CASES = _list("RTT_CASES", "first,restart,reconnect,resume")
ALL_CASES = ("first", "restart", "reconnect", "resume")
# every wait is bounded: a case that takes longer has failed
WAIT = 30 + 40 * RTT
TLS_LINE = re.compile(r"TLS: (TLSv1\.[0-9])")
UP_LINE = re.compile(r"session (established|resumed) as ")
SM_LINE = re.compile(r"stream management enabled \(resumable\)")
AUTH_LINE = re.compile(r"authenticated as ")

TMP = None
NOTES = []


class Fail(Exception):
    pass


class Rig:
    """One transport against one server: its account, its proxy in front
    of the server's port, and the daemon of the moment."""

    def __init__(self, srv, pki, tls, user, password):
        self.srv, self.pki, self.tls = srv, pki, tls
        self.user, self.password = user, password
        port = srv.direct_tls_port if tls == "direct" else srv.c2s_port
        self.proxy = DelayProxy(port, DELAY).start()
        self.daemon = None
        self.client = None
        self.state = None
        self.n = 0

    def new_daemon(self):
        """A daemon with a state directory of its own, not yet started."""
        self.stop_daemon()
        self.n += 1
        base = os.path.join(TMP, "%s-%s-%d" % (self.srv.name, self.tls, self.n))
        self.state = os.path.join(base, "state")
        self.daemon = harness.Clawsd(
            self.user, self.password, self.proxy.port, tls=self.tls,
            ca_file=self.pki.ca_cert, domain=self.srv.domain,
            host="127.0.0.1", reconnect_delay=1, reconnect_max_delay=2,
            connect_timeout=int(WAIT), log_level="info", directory=base,
            xmpp={"state_directory": self.state})

    def start_daemon(self):
        """Start the daemon and attach a client while it is still on its
        way: its first line must say `disconnected'."""
        self.close_client()
        self.daemon.start(timeout=WAIT)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client = self.daemon.connect()
                break
            except OSError:
                # the previous daemon's socket file, until this one binds
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        first = harness.parse_line(self.client.read_line(WAIT))
        if not harness.is_status(first, "disconnected"):
            raise Fail("the client came too late: the session was up")

    def stop_daemon(self):
        self.close_client()
        if self.daemon is not None:
            self.daemon.stop()

    def close_client(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    def mark(self):
        return len(self.proxy.conns)

    def connected(self, mark, resumed):
        """Wait for `connected'; seconds from the accept of the connection
        it came on.  Fail when it says the wrong thing about resumption or
        came on another connection than the only one that reached the
        server since mark."""
        try:
            el = self.client.wait_for(
                lambda e: harness.is_status(e, "connected"), WAIT)
        except (TimeoutError, EOFError) as e:
            raise Fail("no connected line (%s); daemon: %s"
                       % (str(e).splitlines()[0], self.log_tail()))
        t = time.monotonic()
        if (el.get("resumed") == "true") != resumed:
            raise Fail("connected resumed=%s, wanted %s"
                       % (el.get("resumed"), "true" if resumed else "false"))
        up = [c for c in self.proxy.conns[mark:] if c.upstream]
        if len(up) != 1:
            raise Fail("%d connections reached the server, wanted 1"
                       % len(up))
        return t - up[0].accepted

    def wait_resumable(self):
        """Wait until the session can be resumed.  The daemon writes
        `connected' once bound, before the server's <enabled/> (status
        says sm="yes" as soon as it asked): a cut before that leaves
        nothing to resume.  Its log says when it has come."""
        def resumable():
            log = self.daemon.log()
            up = list(UP_LINE.finditer(log))
            if not up:
                return False
            last = up[-1]
            # after the login: with Bind2 (SASL2) <enabled/> comes with
            # the bind, before the session is up
            auth = [m.start() for m in AUTH_LINE.finditer(log, 0, last.start())]
            return last.group(1) == "resumed" or \
                SM_LINE.search(log, auth[-1] if auth else last.end()) is not None
        try:
            harness.wait_until(resumable, WAIT, interval=0.02,
                               what="stream management")
        except TimeoutError as e:
            raise Fail(str(e))

    def tls_version(self):
        m = TLS_LINE.findall(self.daemon.log())
        return m[-1] if m else "?"

    def log_tail(self):
        return harness.tail(self.daemon.log(), 1) if self.daemon else "-"

    def close(self):
        self.stop_daemon()
        self.proxy.stop()


# ---- the cases

def case_first(rig):
    rig.new_daemon()
    m = rig.mark()
    rig.start_daemon()
    return rig.connected(m, False)


def case_restart(rig):
    rig.stop_daemon()
    m = rig.mark()
    rig.start_daemon()
    return rig.connected(m, False)


def case_resume(rig):
    rig.wait_resumable()
    m = rig.mark()
    if rig.proxy.cut() != 1:
        raise Fail("no connection to cut")
    return rig.connected(m, True)


def cut_and_restart(srv, rigs):
    """Every rig's link cut while the server restarts: none can resume."""
    for r in rigs:
        r.wait_resumable()
        r.proxy.refuse(True)
        r.proxy.cut()
    srv.restart()


def case_reconnect(rig):
    m = rig.mark()
    rig.proxy.refuse(False)
    return rig.connected(m, False)


# ---- running

def progress(what):
    print("rtt: " + what, file=sys.stderr, flush=True)


def record(results, key, fn, rig):
    """Run one case; its time, or its failure as a note."""
    try:
        s = fn(rig)
        results.setdefault(key, []).append(s)
        results[key + ("tls",)] = rig.tls_version()
    except (Fail, harness.HarnessError, TimeoutError, OSError) as e:
        results.setdefault(key + ("fail",), str(e).splitlines()[0])
        return False
    return True


def run_server(kind, pki, results):
    srv = harness.make_server(kind, pki, directory=os.path.join(TMP, kind),
                              log_level="info")
    rigs = []
    try:
        users = {}
        for tls in TRANSPORTS:
            users[tls] = ("bench-" + tls, uuid.uuid4().hex[:16])
            srv.register(*users[tls])
        srv.start()
        for tls in TRANSPORTS:
            rig = Rig(srv, pki, tls, *users[tls])
            rigs.append(rig)
            # a first login at least: the other cases start from its session
            for i in range(RUNS if want("first") or want("restart") else 1):
                progress("%s %s first%s (%d/%d)" % (
                    kind, tls, "/restart" if want("restart") else "", i + 1,
                    RUNS))
                if not record(results, (kind, tls, "first"), case_first, rig):
                    break
                if want("restart"):
                    record(results, (kind, tls, "restart"), case_restart, rig)
            if want("resume"):
                for i in range(RUNS):
                    progress("%s %s resume (%d/%d)" % (kind, tls, i + 1, RUNS))
                    if not record(results, (kind, tls, "resume"), case_resume, rig):
                        break
        if want("reconnect"):
            for i in range(RUNS):
                progress("%s reconnect (%d/%d)" % (kind, i + 1, RUNS))
                live = [r for r in rigs if r.daemon is not None]
                cut_and_restart(srv, live)
                for r in live:
                    record(results, (kind, r.tls, "reconnect"), case_reconnect, r)
    except (harness.HarnessError, TimeoutError, OSError, Fail) as e:
        NOTES.append("%s: %s" % (kind, str(e).splitlines()[0]))
    finally:
        for r in rigs:
            r.close()
        srv.stop()


def want(case):
    return case in CASES


def versions():
    def pkg(name):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return r.stdout.decode().strip() or "?"
    try:
        with open("/etc/debian_version") as f:
            debian = "Debian " + f.read().strip()
    except OSError:
        debian = "?"
    try:
        out = subprocess.run([str(harness.CLAWSD_BIN), "-V"],
                             stdout=subprocess.PIPE, timeout=10).stdout.decode()
        mbed = [l for l in out.splitlines() if l.startswith("mbedtls")]
        mbed = mbed[0] if mbed else "mbedtls ?"
    except OSError:
        mbed = "mbedtls ?"
    return "%s, %s, Prosody %s, ejabberd %s" % (
        debian, mbed, pkg("prosody"), pkg("ejabberd"))


def table(results, header):
    out = ["== round trips from TCP connect to `connected' "
           "(tests/bench/rtt.py)",
           header,
           "link: %g ms each way through delayproxy.py (RTT %g ms); "
           "round trips = 1 (TCP handshake) + time / RTT; median of %d"
           % (DELAY * 1000, RTT * 1000, RUNS),
           "",
           "%-9s %-9s %-10s %-8s %9s %12s   %s"
           % ("server", "transport", "case", "TLS", "seconds", "round trips",
              "runs (round trips)")]
    for kind in SERVERS:
        for tls in TRANSPORTS:
            for case in ALL_CASES:
                if not want(case):
                    continue
                key = (kind, tls, case)
                times = results.get(key)
                fail = results.get(key + ("fail",))
                if fail:
                    NOTES.append("%s %s %s: %s" % (kind, tls, case, fail))
                if not times:
                    out.append("%-9s %-9s %-10s %-8s %9s %12s"
                               % (kind, tls, case, "", "FAIL", "FAIL"))
                    continue
                s = statistics.median(times)
                runs = " ".join("%.1f" % (1 + t / RTT) for t in times)
                out.append("%-9s %-9s %-10s %-8s %9.3f %12.1f   %s%s"
                           % (kind, tls, case, results.get(key + ("tls",), "?"),
                              s, 1 + s / RTT, runs,
                              " (FAIL in %d)" % (RUNS - len(times))
                              if len(times) < RUNS else ""))
    if NOTES:
        out.append("")
        out.extend("note: " + n for n in NOTES)
    return "\n".join(out)


def main():
    global TMP
    if not os.access(harness.CLAWSD_BIN, os.X_OK):
        sys.exit("rtt: build first: make clawsd (%s)" % harness.CLAWSD_BIN)
    for c in CASES:
        if c not in ALL_CASES:
            sys.exit("rtt: RTT_CASES: unknown case %r" % c)
    t_begin = time.monotonic()
    TMP = tempfile.mkdtemp(prefix="clawsd-rtt.")
    results = {}
    try:
        pki = harness.PKI(directory=os.path.join(TMP, "pki"))
        for kind in SERVERS:
            run_server(kind, pki, results)
    finally:
        if os.environ.get("BENCH_KEEP"):
            print("rtt: kept " + TMP, file=sys.stderr)
        else:
            shutil.rmtree(TMP, ignore_errors=True)
    print(table(results, versions()))
    print("\n(%.0f s)" % (time.monotonic() - t_begin))
    return 1 if NOTES else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
