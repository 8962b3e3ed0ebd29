#!/usr/bin/python3
"""clawsd benchmark: clawsd and a libstrophe relay measured in the same run,
next to the expat and mbedtls limits, the single-thread limit they make
(1 / (1/expat + 1/mbedtls)), and the synthetic server's ceiling.  One table.

Run by `make bench' once the tools are built (tests/bench/README.md).
Environment:
  BENCH_N       stanzas per throughput run (default 500000; 50000 is a
                quick smoke run)
  BENCH_LAT_N   stanzas of the latency run at 10,000/s (default N/10,
                between 5,000 and 50,000)
  BENCH_ONLY    comma-separated rows to run: tls-1 tls-16 plain-1 plain-16
                up-tls up-plain latency limits (default: all), and
                callgrind (only when named: instructions per stanza, each
                relay under valgrind, about two minutes)
  BENCH_RELAYS  comma-separated: clawsd,strophe (default both)
  BENCH_REPEAT  throughput runs per row and relay, best kept (default 1;
                3 on a busy machine), the relays taking turns
  BENCH_TLS     starttls (default) or direct, for the TLS rows
  BENCH_SUITE   TLS ciphersuite xmppd insists on (mbedtls name, or
                "default" for mbedtls' own choice)
  BENCH_CLIENT_BUFFER  client_buffer of both relays (default 64 MiB)
  BENCH_QUEUE_MAX      clawsd's queue_max (default: clawsd's own, 1000)
  BENCH_STROPHE_FLAGS  extra options for strophe_relay (e.g. --per-stanza)
  BENCH_KEEP    keep the temporary directory (logs, configuration)
  BENCH_CLAWSD  the clawsd binary to run (default: the one `make' built)
Every process started here is stopped by its pid; files live in one
temporary directory, removed at the end.
"""

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOOLS = os.environ.get("BENCH_BUILD", os.path.join(ROOT, "build", "bench"))
CLAWSD = os.environ.get("BENCH_CLAWSD") or os.path.join(ROOT, "clawsd")

N = int(os.environ.get("BENCH_N", "500000"))
RATE = 10000
LAT_N = int(os.environ.get("BENCH_LAT_N",
                           str(max(5000, min(50000, N // 10)))))
ONLY = [r for r in os.environ.get("BENCH_ONLY", "").split(",") if r]
RELAYS = [r for r in os.environ.get("BENCH_RELAYS",
                                    "clawsd,strophe").split(",") if r]
TLS_MODE = os.environ.get("BENCH_TLS", "starttls")
REPEAT = max(1, int(os.environ.get("BENCH_REPEAT", "1")))
SUITE = os.environ.get("BENCH_SUITE",
                       "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256")
PASSWORD = "bench-password"
CLIENT_BUFFER = int(os.environ.get("BENCH_CLIENT_BUFFER", str(64 << 20)))
QUEUE_MAX = os.environ.get("BENCH_QUEUE_MAX")
CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_S = 2.0
# Generous bounds: a run that takes longer has failed.
RUN_TIMEOUT = 30 + N / 20000

TMP = None
PROCS = []


class Timeout(Exception):
    pass


class Proc:
    """A child with a line-oriented stdout, stopped by pid at the end."""

    def __init__(self, name, argv, stdin=True):
        self.name = name
        self.log = os.path.join(TMP, name + ".log")
        self.p = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=open(self.log, "ab"),
            cwd=TMP)
        self.pid = self.p.pid
        self.buf = b""
        self.lines = []
        PROCS.append(self)

    def send(self, line):
        try:
            self.p.stdin.write((line + "\n").encode())
            self.p.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def _read(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            return False
        data = os.read(self.p.stdout.fileno(), 65536)
        if not data:
            raise Timeout(f"{self.name} exited ({self.tail()})")
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.lines.append(line.decode(errors="replace").split())
        return True

    def expect(self, word, timeout):
        """The fields after `word' of the next line that starts with it."""
        end = time.monotonic() + timeout
        while True:
            for i, fields in enumerate(self.lines):
                if fields and fields[0] == word:
                    del self.lines[i]
                    return fields[1:]
            left = end - time.monotonic()
            if left <= 0:
                raise Timeout(f"{self.name}: no '{word}' in {timeout:.0f} s"
                              f" ({self.tail()})")
            self._read(left)

    def tail(self):
        try:
            with open(self.log, errors="replace") as f:
                lines = f.read().strip().splitlines()
            return lines[-1] if lines else "nothing on stderr"
        except OSError:
            return "no log"

    def stop(self):
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait()
            except ProcessLookupError:
                pass
        for f in (self.p.stdin, self.p.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        if self in PROCS:
            PROCS.remove(self)


def stop_all():
    for p in list(reversed(PROCS)):
        p.stop()


def tool(name):
    return os.path.join(TOOLS, name)


def run(argv):
    return subprocess.run(argv, cwd=TMP or ROOT, check=True,
                          capture_output=True, text=True).stdout


def make_certs():
    """A throwaway CA and a certificate for localhost, both P-256."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes"]
    run(["openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out",
         "ca.pem", "-days", "2", "-subj", "/CN=clawsd bench CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    run(["openssl", "req", *ec, "-keyout", "srv.key", "-out", "srv.csr",
         "-subj", "/CN=localhost"])
    with open(os.path.join(TMP, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    run(["openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem",
         "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem",
         "-days", "2", "-extfile", "ext.cnf"])


def proc_status(pid, key):
    """A /proc/PID/status field in KiB, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wakeups(pid):
    return proc_status(pid, "voluntary_ctxt_switches") or 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])      # utime + stime


SEQ = [0]


def xmppd(args, name="xmppd"):
    SEQ[0] += 1
    x = Proc(f"{name}{SEQ[0]}",
             [tool("xmppd"), "--tls-port", "0", "--cert", "srv.pem",
              "--key", "srv.key", "--ciphersuite", SUITE,
              "--password", PASSWORD, *args])
    port = int(x.expect("port", 10)[0])
    tls_port = int(x.expect("tls-port", 10)[0])
    return x, port, tls_port


def start_relay(relay, tls, port, tls_port, wrapper=()):
    """Start a relay; returns (Proc, socket path)."""
    SEQ[0] += 1
    sock = os.path.join(TMP, f"{relay}{SEQ[0]}.sock")
    p = tls_port if tls == "direct" else port
    if relay == "clawsd":
        conf = os.path.join(TMP, f"clawsd{SEQ[0]}.conf")
        with open(conf, "w") as f:
            f.write(f"""[xmpp]
user = bench
domain = localhost
password = {PASSWORD}
host = 127.0.0.1
port = {p}
tls = {tls}
ca_file = {TMP}/ca.pem
stream_management = no
ping_interval = 0
presence = yes
{f"queue_max = {QUEUE_MAX}" if QUEUE_MAX else ""}

[socket]
path = {sock}
client_buffer = {CLIENT_BUFFER}

[log]
level = warn
""")
        argv = [CLAWSD, "-c", conf]
    else:
        argv = [tool("strophe_relay"), "--socket", sock, "--port", str(p),
                "--password", PASSWORD, "--jid", "bench@localhost/clawsd",
                "--host", "127.0.0.1", "--tls", tls, "--ca",
                os.path.join(TMP, "ca.pem"), "--client-buffer",
                str(CLIENT_BUFFER),
                *os.environ.get("BENCH_STROPHE_FLAGS", "").split()]
    return Proc(f"{relay}{SEQ[0]}", [*wrapper, *argv], stdin=False), sock


class Results:
    def __init__(self):
        self.rows = {}            # (row, relay) -> value
        self.connect = {r: [] for r in RELAYS}
        self.peak = {r: 0 for r in RELAYS}
        self.notes = []

    def peak_of(self, relay, pid):
        hwm = proc_status(pid, "VmHWM")
        if hwm:
            self.peak[relay] = max(self.peak[relay], hwm)


R = Results()


def blast(relay, tls, nsubs):
    """Server -> nsubs subscribers: N stanzas, rate from first byte sent to
    the last line read by the last subscriber."""
    x, port, tls_port = xmppd(["--blast", str(N), "--wait"])
    t0 = time.monotonic_ns()
    r, sock = start_relay(relay, tls, port, tls_port)
    s = Proc(f"sub{SEQ[0]}", [tool("sub"), "-s", sock, "-c", str(nsubs),
                               "-n", str(N), "-t", str(int(RUN_TIMEOUT))])
    try:
        ready = int(s.expect("ready", 30)[0])
        if tls != "none":
            R.connect[relay].append((ready - t0) / 1e6)
        x.expect("session", 30)
        x.expect("sealed", 120)
        x.send("go")
        start = int(x.expect("start", 10)[0])
        done = s.expect("done", RUN_TIMEOUT)
        last = int(done[1])
        R.peak_of(relay, r.pid)
        return N / ((last - start) / 1e9)
    except Timeout as e:
        R.peak_of(relay, r.pid)
        return f"FAIL: {e}; {relay}: {r.tail()}"
    finally:
        x.stop()
        r.stop()
        s.stop()


def upstream(relay, tls):
    """Client -> server: pub writes N stanzas to the socket, xmppd counts
    them; rate from pub's first write to the server's last message."""
    x, port, tls_port = xmppd(["--sink", str(N), "--wait"])
    t0 = time.monotonic_ns()
    r, sock = start_relay(relay, tls, port, tls_port)
    p = Proc(f"pub{SEQ[0]}", [tool("pub"), "-s", sock, "-n", str(N),
                               "-t", str(int(RUN_TIMEOUT))])
    try:
        ready = int(p.expect("ready", 30)[0])
        if tls != "none":
            R.connect[relay].append((ready - t0) / 1e6)
        start = int(p.expect("start", 10)[0])
        p.expect("written", RUN_TIMEOUT)
        # The sink reports by itself at N; short of that, ask until the
        # count stops moving.
        count, last_count, still = 0, -1, 0
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            try:
                res = x.expect("sink", 0.5)
            except Timeout:
                x.send("report")
                continue
            count = int(res[0])
            if count >= N:
                R.peak_of(relay, r.pid)
                return N / ((int(res[2]) - start) / 1e9)
            still = still + 1 if count == last_count else 0
            last_count = count
            if still >= 4:
                break
            time.sleep(0.5)
            x.send("report")
        R.peak_of(relay, r.pid)
        p.send("quit")
        errors = int(p.expect("errors", 10)[0])
        return (f"FAIL: {count}/{N} arrived" +
                (f", {errors} error lines" if errors else "") +
                f"; {relay}: {r.tail()}")
    except Timeout as e:
        R.peak_of(relay, r.pid)
        return f"FAIL: {e}"
    finally:
        x.stop()
        r.stop()
        p.stop()


def latency(relay, tls):
    """LAT_N stanzas at RATE/s, each stamped when sent; latency to the
    subscriber's read; CPU of the relay over the run; idle RSS before."""
    x, port, tls_port = xmppd(["--rate", str(RATE), "--count", str(LAT_N),
                               "--wait"])
    t0 = time.monotonic_ns()
    r, sock = start_relay(relay, tls, port, tls_port)
    s = Proc(f"sub{SEQ[0]}", [tool("sub"), "-s", sock, "-n", str(LAT_N),
                               "-l", "-t", str(int(RUN_TIMEOUT))])
    try:
        ready = int(s.expect("ready", 30)[0])
        R.connect[relay].append((ready - t0) / 1e6)
        x.expect("session", 30)
        time.sleep(0.5)
        # Idle: wake-ups are voluntary context switches (each poll or
        # epoll_wait that sleeps and returns).
        v0, w0 = wakeups(r.pid), time.monotonic()
        time.sleep(IDLE_S)
        wake = (wakeups(r.pid) - v0) / (time.monotonic() - w0)
        rss = proc_status(r.pid, "VmRSS")
        c0, w0 = cpu_ticks(r.pid), time.monotonic()
        x.send("go")
        s.expect("done", RUN_TIMEOUT + LAT_N / RATE)
        c1, w1 = cpu_ticks(r.pid), time.monotonic()
        lat = [int(v) for v in s.expect("lat", 10)]
        R.peak_of(relay, r.pid)
        cpu = 100.0 * (c1 - c0) / CLK_TCK / (w1 - w0)
        return lat, cpu, rss, wake
    except Timeout as e:
        R.peak_of(relay, r.pid)
        return f"FAIL: {e}", None, None, None
    finally:
        x.stop()
        r.stop()
        s.stop()


def ceiling(direction, tls):
    """xmppd against xmppd, no relay: what the harness itself moves."""
    if direction == "blast":
        srv, port, tls_port = xmppd(["--raw", "--blast", str(N)], "ceil")
        cli_args = ["--sink", str(N)]
    else:
        srv, port, tls_port = xmppd(["--raw", "--sink", str(N)], "ceil")
        cli_args = ["--blast", str(N)]
    argv = [tool("xmppd"), "--connect", str(tls_port if tls else port)]
    if tls:
        argv += ["--ca", "ca.pem"]
    SEQ[0] += 1
    cli = Proc(f"ceilc{SEQ[0]}", argv + cli_args)
    try:
        if direction == "blast":
            start = int(srv.expect("start", 60)[0])
            end = int(cli.expect("sink", RUN_TIMEOUT)[2])
        else:
            start = int(cli.expect("start", 60)[0])
            end = int(srv.expect("sink", RUN_TIMEOUT)[2])
        return N / ((end - start) / 1e9)
    except Timeout as e:
        return f"FAIL: {e}"
    finally:
        cli.stop()
        srv.stop()


CG_N = (2000, 10000)
CG_RATE = 2000


def callgrind_ir(relay, direction, tls, n):
    """Instructions the relay executed in a whole run with n stanzas."""
    SEQ[0] += 1
    out = os.path.join(TMP, f"callgrind.{SEQ[0]}.out")
    wrapper = ["valgrind", "--tool=callgrind", "--dump-instr=no",
               f"--callgrind-out-file={out}"]
    x, port, tls_port = xmppd([f"--{direction}", str(n), "--wait"])
    r, sock = start_relay(relay, tls, port, tls_port, wrapper)
    try:
        if direction == "blast":
            c = Proc(f"sub{SEQ[0]}", [tool("sub"), "-s", sock, "-n",
                                       str(n), "-t", "120"])
            c.expect("ready", 120)
            x.expect("sealed", 120)
            x.send("go")
            c.expect("done", 120)
        else:
            c = Proc(f"pub{SEQ[0]}", [tool("pub"), "-s", sock, "-n", str(n),
                                       "-r", str(CG_RATE), "-t", "120"])
            c.expect("ready", 120)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if int(x.expect("sink", 1)[0]) >= n:
                        break
                except Timeout:
                    x.send("report")
            else:
                raise Timeout(f"{relay}: {n} stanzas did not arrive")
        c.stop()
        x.stop()        # the relay then has no server to say goodbye to
        os.kill(r.pid, signal.SIGTERM)
        r.p.wait(timeout=60)
    finally:
        for p in (x, r):
            p.stop()
    with open(out) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise Timeout(f"{relay}: no callgrind summary")


def callgrind(relay, direction, tls):
    """Instructions per stanza: the difference of two runs, so that start
    (TLS handshake, SCRAM) and shutdown cancel out."""
    try:
        a = callgrind_ir(relay, direction, tls, CG_N[0])
        b = callgrind_ir(relay, direction, tls, CG_N[1])
        return (b - a) / (CG_N[1] - CG_N[0])
    except (Timeout, subprocess.TimeoutExpired) as e:
        return f"FAIL: {e}"


def expat(args):
    out = run([tool("expat_limit"), "-n", str(N), "-r", "5", *args]).split()
    return int(out[1]) / (int(out[2]) / 1e9), int(out[3])


def tls_alone(args):
    out = run([tool("tls_limit"), "-n", str(N), "-r", "3", *args]).split()
    return int(out[1]) / (int(out[2]) / 1e9)


def alone(lim):
    """expat and mbedtls alone; the best so far is kept in `lim'."""
    srv, lim["size"] = expat([])
    for key, v in (("expat-srv", srv), ("expat-cli", expat(["-c"])[0]),
                   ("expat-nons", expat(["-x"])[0]),
                   ("tls-open", tls_alone(["-d"])),
                   ("tls-seal", tls_alone([]))):
        lim[key] = max(v, lim.get(key, 0.0))


def pbkdf2():
    """Seconds of PBKDF2 at sasl.c's cap, per hash: what one SCRAM login
    costs (on the thread pool: daemon/kdf.c)."""
    out = run([tool("pbkdf2_limit"), "-r", "3"]).splitlines()
    return [(f.split()[1], int(f.split()[2]), int(f.split()[3]) / 1e9) for f in out]


def best(key, relay, v):
    """Keep the best of the repeated runs; a failure only if all failed."""
    old = R.rows.get((key, relay))
    if old is None or isinstance(old, str) or \
            (not isinstance(v, str) and v > old):
        R.rows[(key, relay)] = v


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def want(row):
    return not ONLY or row in ONLY


# Presentation

def fmt_rate(v):
    if isinstance(v, str):
        return v
    if v is None:
        return "-"
    return f"{v / 1000:,.0f}k/s"


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.2f}x"
    return ""


def versions():
    v = {}
    try:
        v["clawsd"] = run([CLAWSD, "-V"]).replace("\n", "; ").strip("; ")
    except (subprocess.CalledProcessError, OSError):
        v["clawsd"] = "clawsd ?"
    try:
        v["strophe"] = "libstrophe " + run(
            ["pkg-config", "--modversion", "libstrophe"]).strip()
    except (subprocess.CalledProcessError, OSError):
        v["strophe"] = "libstrophe ?"
    try:
        v["openssl"] = run(["openssl", "version"]).split()[1]
    except (subprocess.CalledProcessError, OSError, IndexError):
        v["openssl"] = "?"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    v["cpu"] = cpu
    return v


def one_thread(expat_rate, tls_rate):
    """The rate of one thread that does both jobs, one after the other."""
    if isinstance(expat_rate, float) and isinstance(tls_rate, float):
        return 1 / (1 / expat_rate + 1 / tls_rate)
    return None


def table(lim, v):
    rel = [r for r in ("clawsd", "strophe") if r in RELAYS]
    head = {"clawsd": "clawsd", "strophe": "libstrophe relay"}
    tlsname = "STARTTLS" if TLS_MODE == "starttls" else "direct TLS"
    w0, w = 44, 20
    out = []
    out.append(f"clawsd benchmark: N = {N:,} stanzas (~{lim.get('size', 250)}"
               f" bytes), latency run {LAT_N:,} at {RATE:,}/s")
    out.append(f"  {os.cpu_count()} cores, {v['cpu']}; load average "
               f"{v['load']}" + (f"; best of {REPEAT}" if REPEAT > 1 else ""))
    out.append(f"  {v['clawsd']}")
    out.append(f"  {v['strophe']} (OpenSSL {v['openssl']});"
               f" TLS 1.2 {SUITE}")
    out.append(f"  client_buffer {CLIENT_BUFFER:,}" +
               (f", clawsd queue_max {QUEUE_MAX}" if QUEUE_MAX else ""))
    out.append("")
    line = f"{'':<{w0}}" + "".join(f"{head[r]:>{w}}" for r in rel)
    if len(rel) == 2:
        line += f"{'clawsd/relay':>14}"
    out.append(line)
    out.append("-" * len(line))

    def row(label, key, f=fmt_rate, better_ratio=True):
        vals = [R.rows.get((key, r)) for r in rel]
        if all(x is None for x in vals):
            return
        s = f"{label:<{w0}}" + "".join(f"{f(x):>{w}}" for x in vals)
        if len(rel) == 2 and better_ratio:
            s += f"{ratio(vals[0], vals[1]):>14}"
        out.append(s)
        for x in vals:
            if isinstance(x, str) and len(x) > w:
                R.notes.append(f"{label}: {x}")

    def short(x):
        if isinstance(x, str) and x.startswith("FAIL"):
            return x.split(":")[0] + (" " + x.split(":")[1].strip().split()[0]
                                      if "/" in x else "")
        return x

    def rate_short(x):
        return fmt_rate(short(x))

    row(f"server -> 1 subscriber, {tlsname}", "tls-1", rate_short)
    row(f"server -> 16 subscribers, {tlsname}", "tls-16", rate_short)
    row("server -> 1 subscriber, plaintext", "plain-1", rate_short)
    row("server -> 16 subscribers, plaintext", "plain-16", rate_short)
    row(f"client -> server, {tlsname}", "up-tls", rate_short)
    row("client -> server, plaintext", "up-plain", rate_short)

    def lat(x):
        if isinstance(x, list):
            return f"{x[1] / 1000:.0f}/{x[2] / 1000:.0f}/{x[3] / 1000:.0f}"
        return short(x) if x is not None else "-"

    row(f"latency p50/p99/max µs, {RATE // 1000}k/s, {tlsname}", "lat",
        lat, False)
    row(f"CPU % at {RATE // 1000}k/s", "cpu",
        lambda x: "-" if x is None else f"{x:.1f}%", False)
    row(f"start -> connected ms ({tlsname}, median)", "conn",
        lambda x: "-" if x is None else f"{x:.1f}", False)
    row(f"idle wake-ups/s (over {IDLE_S:.0f} s)", "wake",
        lambda x: "-" if x is None else f"{x:.1f}", False)
    row("VmRSS idle, TLS session + 1 subscriber", "rss",
        lambda x: "-" if x is None else f"{x / 1024:.1f} MiB", False)
    row("VmHWM peak over all runs", "peak",
        lambda x: "-" if not x else f"{x / 1024:.1f} MiB", False)

    def instr(x):
        return short(x) if isinstance(x, str) else \
            "-" if x is None else f"{x:,.0f}"

    row(f"instructions/stanza, server -> sub, {tlsname}", "cg-down-tls",
        instr, False)
    row("instructions/stanza, server -> sub, plaintext", "cg-down-plain",
        instr, False)
    row(f"instructions/stanza, client -> server, {tlsname}", "cg-up-tls",
        instr, False)
    row("instructions/stanza, client -> server, plaintext", "cg-up-plain",
        instr, False)

    if lim:
        out.append("")
        out.append("limits, same run")
        for label, key in (
                ("expat alone, server stanzas", "expat-srv"),
                ("expat alone, client stanzas", "expat-cli"),
                ("expat alone, server stanzas, no namespaces",
                 "expat-nons"),
                ("mbedtls ChaCha20-Poly1305 alone, decrypt", "tls-open"),
                ("mbedtls ChaCha20-Poly1305 alone, encrypt", "tls-seal"),
                ("xmppd ceiling, blast over TLS", "ceil-blast-tls"),
                ("xmppd ceiling, blast plaintext", "ceil-blast-plain"),
                ("xmppd ceiling, sink over TLS", "ceil-sink-tls"),
                ("xmppd ceiling, sink plaintext", "ceil-sink-plain")):
            if key in lim:
                out.append(f"{label:<{w0}}{fmt_rate(short(lim[key])):>{w}}")
                if isinstance(lim[key], str):
                    R.notes.append(f"{label}: {lim[key]}")
        # What one thread that decrypts and parses every stanza can do.
        down = one_thread(lim.get("expat-srv"), lim.get("tls-open"))
        up = one_thread(lim.get("expat-cli"), lim.get("tls-seal"))
        if down is not None:
            out.append(f"{'single-thread limit, server -> sub':<{w0}}"
                       f"{fmt_rate(down):>{w}}")
        if up is not None:
            out.append(f"{'single-thread limit, client -> server':<{w0}}"
                       f"{fmt_rate(up):>{w}}")
        if down is not None or up is not None:
            out.append("  (1 / (1/expat + 1/mbedtls): expat alone, server "
                       "or client stanzas; mbedtls decrypt or encrypt)")
        for r in rel:
            parts = []
            for key, label, lim1 in (
                    ("tls-1", "server -> 1 subscriber", down),
                    ("tls-16", "server -> 16 subscribers", down),
                    ("up-tls", "client -> server", up)):
                a = R.rows.get((key, r))
                if isinstance(a, float) and lim1 is not None:
                    parts.append(f"{label} {100 * a / lim1:.0f}%")
            if parts:
                out.append(f"{head[r]} vs single-thread limit ({tlsname}): "
                           + ", ".join(parts))
    if lim.get("pbkdf2"):
        iters = lim["pbkdf2"][0][1]
        out.append(f"SCRAM PBKDF2 at the cap ({iters:,} iterations, on the "
                   "thread pool): " + ", ".join(f"{name} {sec:.2f} s"
                                                for name, _, sec in lim["pbkdf2"]))
    if R.notes:
        out.append("")
        out.extend("note: " + n for n in R.notes)
    return "\n".join(out)


def main():
    global TMP
    missing = [t for t in ("xmppd", "sub", "pub", "strophe_relay",
                           "expat_limit", "tls_limit", "pbkdf2_limit")
               if not os.access(tool(t), os.X_OK)]
    if missing or not os.access(CLAWSD, os.X_OK):
        sys.exit("bench: build first: make bench (missing: " +
                 " ".join(missing + ([] if os.access(CLAWSD, os.X_OK)
                                     else ["clawsd"])) + ")")
    TMP = tempfile.mkdtemp(prefix="clawsd-bench.")
    t_begin = time.monotonic()
    v = versions()
    v["load"] = loadavg()
    lim = {}
    tls = TLS_MODE
    try:
        make_certs()
        if want("limits") and REPEAT > 1:
            # Once before the rows as well, so that the limits, like the
            # rows, are the best of runs spread over the whole run.
            progress("limits (1/2)")
            alone(lim)
        rows = [(key, lambda rl, m=mode, k=nsubs: blast(rl, m, k))
                for key, mode, nsubs in (("tls-1", tls, 1),
                                         ("tls-16", tls, 16),
                                         ("plain-1", "none", 1),
                                         ("plain-16", "none", 16))]
        rows += [(key, lambda rl, m=mode: upstream(rl, m))
                 for key, mode in (("up-tls", tls), ("up-plain", "none"))]
        for key, fn in rows:
            if not want(key):
                continue
            for i in range(REPEAT):
                for relay in RELAYS:
                    progress(f"{key} {relay}" +
                             (f" ({i + 1}/{REPEAT})" if REPEAT > 1 else ""))
                    best(key, relay, fn(relay))
        if want("latency"):
            for relay in RELAYS:
                progress(f"latency {relay}")
                lat, cpu, rss, wake = latency(relay, tls)
                R.rows[("lat", relay)] = lat
                R.rows[("cpu", relay)] = cpu
                R.rows[("rss", relay)] = rss
                R.rows[("wake", relay)] = wake
        if "callgrind" in ONLY:
            for key, d, t in (("cg-down-tls", "blast", tls),
                              ("cg-down-plain", "blast", "none"),
                              ("cg-up-tls", "sink", tls),
                              ("cg-up-plain", "sink", "none")):
                for relay in RELAYS:
                    progress(f"{key} {relay} (callgrind)")
                    R.rows[(key, relay)] = callgrind(relay, d, t)
        for relay in RELAYS:
            c = sorted(R.connect[relay])
            if c:
                R.rows[("conn", relay)] = c[len(c) // 2]
            R.rows[("peak", relay)] = R.peak[relay] or None
        if want("limits"):
            progress("limits")
            alone(lim)
            lim["pbkdf2"] = pbkdf2()
            for d in ("blast", "sink"):
                for t in (True, False):
                    lim[f"ceil-{d}-{'tls' if t else 'plain'}"] = \
                        ceiling(d, t)
    finally:
        stop_all()
        if os.environ.get("BENCH_KEEP"):
            print(f"bench: kept {TMP}", file=sys.stderr)
        else:
            shutil.rmtree(TMP, ignore_errors=True)
    print(file=sys.stderr)
    v["load"] += " -> " + loadavg()
    print(table(lim, v))
    print(f"\n({time.monotonic() - t_begin:.0f} s)")


def progress(what):
    print(f"bench: {what}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
