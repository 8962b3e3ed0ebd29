"""Test harness for clawsd: a throwaway PKI, a real Prosody, the daemon, socket
clients and an independent XMPP peer (slixmpp).

Used by the pytest suite in this folder and by tests/demo.py.  Everything it
writes lives in temporary folders; every process it starts is stopped by pid;
every wait is bounded by a timeout.

Run with /usr/bin/python3 (Debian's python3-slixmpp lives there).
"""

import asyncio
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# the daemon under test; CLAWSD_BIN in the environment overrides (e.g. a
# build elsewhere, or under valgrind via a wrapper script)
CLAWSD_BIN = Path(os.environ.get("CLAWSD_BIN") or REPO_ROOT / "clawsd")

CLAWSD_NS = "urn:x-clawsd"
CLIENT_NS = "jabber:client"

# The accounts the test suite registers (fresh random passwords each run):
# bot for clawsd, peer for the independent slixmpp client, alice and bob for
# the harness self-tests.
TEST_ACCOUNTS = {u: uuid.uuid4().hex[:16] for u in ("bot", "peer", "alice", "bob")}

PROSODY_BIN = shutil.which("prosody") or "/usr/bin/prosody"
PROSODYCTL_BIN = shutil.which("prosodyctl") or "/usr/bin/prosodyctl"
OPENSSL_BIN = shutil.which("openssl") or "/usr/bin/openssl"


class HarnessError(Exception):
    pass


# --------------------------------------------------------------------------
# small helpers

def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (all held open while choosing,
    so they are distinct)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Poll pred() until it returns a true value (returned) or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(proc, timeout=10.0):
    """SIGTERM the process (by pid), wait, SIGKILL after timeout.
    Returns its exit code (negative signal number if killed by a signal)."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    return proc.returncode


def _unique(seq):
    out = []
    for x in seq:
        if x not in out:
            out.append(x)
    return out


def tail(text, n=40):
    return "\n".join(text.splitlines()[-n:])


def parse_line(line):
    """Parse one line of the socket protocol into an ElementTree element."""
    if isinstance(line, bytes):
        line = line.decode("utf-8")
    return ET.fromstring(line)


def local_name(tag):
    return tag.split("}", 1)[1] if tag.startswith("{") else tag


def namespace(tag):
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def is_status(el, name=None):
    """True if el is a clawsd status/error element (optionally of that name)."""
    if namespace(el.tag) != CLAWSD_NS:
        return False
    return name is None or local_name(el.tag) == name


def xml_escape(s):
    """Escape text for an XML attribute value or character data.  CR, LF and
    TAB are written as character references so they survive attribute
    normalisation and are unambiguous in text."""
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
             .replace('"', "&quot;").replace("'", "&apos;")
             .replace("\r", "&#13;").replace("\n", "&#10;").replace("\t", "&#9;"))


def message_xml(to, body, id=None, type="chat"):
    """A <message/> stanza as a str, with body escaped."""
    attrs = 'to="%s" type="%s"' % (xml_escape(to), xml_escape(type))
    if id is not None:
        attrs += ' id="%s"' % xml_escape(id)
    return "<message %s><body>%s</body></message>" % (attrs, xml_escape(body))


def unique(prefix="t"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


# --------------------------------------------------------------------------
# PKI

_OPENSSL_CNF = """\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ v3_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class PKI:
    """A test CA, a server certificate for DNS:localhost signed by it, and a
    second unrelated CA (for the 'untrusted certificate' test).  Made with the
    openssl command line in a temporary folder."""

    def __init__(self, directory=None):
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="clawsd-pki-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cnf = self.dir / "openssl.cnf"
        self.cnf.write_text(_OPENSSL_CNF)
        self.ca_key = self.dir / "ca.key"
        self.ca_cert = self.dir / "ca.crt"
        self.server_key = self.dir / "localhost.key"
        self.server_cert = self.dir / "localhost.crt"
        self.other_ca_key = self.dir / "other-ca.key"
        self.other_ca_cert = self.dir / "other-ca.crt"
        self._make_ca(self.ca_key, self.ca_cert, "clawsd test CA")
        self._make_ca(self.other_ca_key, self.other_ca_cert, "clawsd unrelated CA")
        self._make_server()

    def _openssl(self, *args):
        env = dict(os.environ, OPENSSL_CONF=str(self.cnf))
        r = subprocess.run([OPENSSL_BIN] + [str(a) for a in args], cwd=self.dir,
                           env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise HarnessError("openssl %s failed:\n%s"
                               % (" ".join(map(str, args)), r.stdout.decode(errors="replace")))

    def _make_ca(self, key, cert, cn):
        self._openssl("req", "-config", self.cnf, "-x509", "-newkey", "rsa:2048",
                      "-nodes", "-sha256", "-keyout", key, "-out", cert,
                      "-days", "30", "-subj", "/CN=" + cn, "-extensions", "v3_ca")

    def _make_server(self):
        csr = self.dir / "localhost.csr"
        self._openssl("req", "-config", self.cnf, "-new", "-newkey", "rsa:2048",
                      "-nodes", "-sha256", "-keyout", self.server_key, "-out", csr,
                      "-subj", "/CN=localhost")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert,
                      "-CAkey", self.ca_key, "-set_serial",
                      str(int.from_bytes(os.urandom(8), "big")),
                      "-days", "30", "-sha256", "-out", self.server_cert,
                      "-extfile", self.cnf, "-extensions", "v3_server")
        os.chmod(self.server_key, 0o600)

    def cleanup(self):
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# Prosody

def _lua_str(s):
    return '"%s"' % str(s).replace("\\", "\\\\").replace('"', '\\"')


class Prosody:
    """A private Prosody instance on 127.0.0.1: STARTTLS on c2s_port, direct
    TLS on direct_tls_port, virtual host `domain`, all state in a temporary
    folder (config, data, pid file, log)."""

    def __init__(self, pki, domain="localhost", directory=None, log_level="debug"):
        self.pki = pki
        self.domain = domain
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="clawsd-prosody-"))
        self.data_dir = self.dir / "data"
        self.certs_dir = self.dir / "certs"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        # Prosody also looks up certificates by host name in `certificates`.
        shutil.copy(pki.server_cert, self.certs_dir / (domain + ".crt"))
        shutil.copy(pki.server_key, self.certs_dir / (domain + ".key"))
        self.cert = self.certs_dir / (domain + ".crt")
        self.key = self.certs_dir / (domain + ".key")
        self.config_path = self.dir / "prosody.cfg.lua"
        self.log_path = self.dir / "prosody.log"
        self.console_path = self.dir / "prosody.console"
        self.pid_path = self.dir / "prosody.pid"
        self.log_level = log_level
        self.c2s_port, self.direct_tls_port = free_ports(2)
        self.proc = None
        self._console = None
        self.write_config()

    def write_config(self):
        lines = [
            "-- written by tests/integration/harness.py",
            "pidfile = %s" % _lua_str(self.pid_path),
            "data_path = %s" % _lua_str(self.data_dir),
            "daemonize = false",
        ]
        if os.getuid() == 0:
            # Prosody (and prosodyctl, which would otherwise setuid to the
            # 'prosody' user) refuse or misbehave as root without this.
            lines.append("run_as_root = true")
        lines += [
            'interfaces = { "127.0.0.1" }',
            'local_interfaces = { "127.0.0.1" }',
            "c2s_ports = { %d }" % self.c2s_port,
            "c2s_direct_tls_ports = { %d }" % self.direct_tls_port,
            "s2s_ports = { }",
            "http_ports = { }",
            "https_ports = { }",
            "c2s_require_encryption = false",
            "s2s_require_encryption = false",
            "allow_registration = false",
            'authentication = "internal_hashed"',
            'storage = "internal"',
            "modules_enabled = {",
            '  "roster", "saslauth", "tls", "disco", "ping", "smacks",',
            '  "version", "time",',
            "}",
            'modules_disabled = { "s2s", "s2s_auth_certs" }',
            "ssl = { certificate = %s; key = %s; }" % (_lua_str(self.cert), _lua_str(self.key)),
            "certificates = %s" % _lua_str(self.certs_dir),
            "log = {",
            "  { levels = { min = %s }, to = \"file\", filename = %s };"
            % (_lua_str(self.log_level), _lua_str(self.log_path)),
            "}",
            "smacks_hibernation_time = 30",
            "",
            "VirtualHost %s" % _lua_str(self.domain),
            "  ssl = { certificate = %s; key = %s; }" % (_lua_str(self.cert), _lua_str(self.key)),
            "",
        ]
        self.config_path.write_text("\n".join(lines))

    # -- lifecycle

    def start(self, timeout=20.0):
        if self.proc is not None and self.proc.poll() is None:
            return
        self._console = open(self.console_path, "ab")
        self.proc = subprocess.Popen(
            [PROSODY_BIN, "--config", str(self.config_path), "-F"],
            cwd=str(self.dir), stdin=subprocess.DEVNULL,
            stdout=self._console, stderr=subprocess.STDOUT,
            start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError("prosody exited with %s during start-up\n--- console:\n%s\n--- log:\n%s"
                                   % (self.proc.returncode, tail(self.console()), tail(self.log())))
            return port_open(self.c2s_port) and port_open(self.direct_tls_port)

        try:
            wait_until(ready, timeout, what="prosody to listen on %d and %d"
                       % (self.c2s_port, self.direct_tls_port))
        except TimeoutError:
            self.stop()
            raise HarnessError("prosody did not start listening in %.0fs\n--- log:\n%s"
                               % (timeout, tail(self.log())))

    def stop(self, timeout=10.0):
        rc = stop_process(self.proc, timeout)
        self.proc = None
        if self._console is not None:
            self._console.close()
            self._console = None
        # make sure the ports are really released before anyone restarts
        try:
            wait_until(lambda: not port_open(self.c2s_port)
                       and not port_open(self.direct_tls_port), 5,
                       what="prosody ports to close")
        except TimeoutError:
            pass
        return rc

    def restart(self, timeout=20.0):
        """Stop and start again on the same ports with the same data."""
        self.stop()
        self.start(timeout)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- accounts

    def prosodyctl(self, *args, timeout=30.0):
        # prosodyctl reads --config before the command.  As root it switches
        # to the 'prosody' user unless the config says run_as_root = true
        # (written above when uid is 0).  Its own logging goes to the console.
        env = dict(os.environ)
        env.pop("PROSODY_CONFIG", None)
        r = subprocess.run([PROSODYCTL_BIN, "--config", str(self.config_path)] + list(args),
                           cwd=str(self.dir), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, env=env)
        return r.returncode, r.stdout.decode("utf-8", "replace")

    def register(self, user, password):
        rc, out = self.prosodyctl("register", user, self.domain, password)
        if rc != 0:
            raise HarnessError("prosodyctl register %s failed (%d):\n%s" % (user, rc, out))

    def jid(self, user):
        return "%s@%s" % (user, self.domain)

    # -- debugging

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        """A position in Prosody's log, for log_since()."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def c2s_connections_since(self, mark):
        """Ids of the client connections Prosody accepted since mark (needs
        log level debug or info)."""
        return _unique(re.findall(r"(?m)^.*?\s(c2s[0-9a-f]+)\s+info\s+Client connected",
                                  self.log_since(mark)))

    def sasl_failures_since(self, mark):
        """Ids of the client connections Prosody sent a SASL <failure/> to
        since mark (needs log level debug)."""
        return _unique(re.findall(
            r"(?m)^.*?\s(c2s[0-9a-f]+)\s+debug\s+Sending\[c2s_unauthed\]: "
            r"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'", self.log_since(mark)))

    def console(self):
        try:
            return self.console_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cleanup(self):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# clawsd

class Clawsd:
    """One clawsd daemon with its own config, socket and log in a temp folder.

    xmpp / socket_opts: extra keys for the [xmpp] / [socket] sections (they
    override the defaults chosen here; a value of None removes a key)."""

    def __init__(self, user, password, port, tls="starttls", ca_file=None,
                 domain="localhost", host="127.0.0.1", reconnect_delay=1,
                 reconnect_max_delay=2, connect_timeout=5, log_level="debug",
                 xmpp=None, socket_opts=None, directory=None, binary=None):
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="clawsd-d-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = Path(binary or CLAWSD_BIN)
        self.config_path = self.dir / "clawsd.conf"
        self.socket_path = self.dir / "clawsd.sock"
        self.log_path = self.dir / "clawsd.log"
        self.proc = None
        self._logf = None
        self.user = user
        self.domain = domain
        x = {
            "user": user,
            "domain": domain,
            "password": password,
            "host": host,
            "port": port,
            "tls": tls,
            "ca_file": ca_file,
            "reconnect_delay": reconnect_delay,
            "reconnect_max_delay": reconnect_max_delay,
            "connect_timeout": connect_timeout,
        }
        x.update(xmpp or {})
        s = {"path": self.socket_path}
        s.update(socket_opts or {})
        self.xmpp_opts = {k: v for k, v in x.items() if v is not None}
        self.socket_opts = {k: v for k, v in s.items() if v is not None}
        self.log_level = log_level
        self.write_config()

    def config_text(self):
        out = ["# written by tests/integration/harness.py", "[xmpp]"]
        out += ["%s = %s" % (k, v) for k, v in self.xmpp_opts.items()]
        out += ["", "[socket]"]
        out += ["%s = %s" % (k, v) for k, v in self.socket_opts.items()]
        out += ["", "[log]", "level = %s" % self.log_level, ""]
        return "\n".join(out)

    def write_config(self):
        self.config_path.write_text(self.config_text())
        os.chmod(self.config_path, 0o600)

    def start(self, wait_socket=True, timeout=10.0, args=()):
        if not self.binary.exists():
            raise HarnessError("%s does not exist: run `make clawsd`" % self.binary)
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "-c", str(self.config_path)] + list(args),
            cwd=str(self.dir), stdin=subprocess.DEVNULL,
            stdout=self._logf, stderr=self._logf, start_new_session=True)
        if wait_socket:
            self.wait_socket(timeout)
        return self

    def wait_socket(self, timeout=10.0):
        def ready():
            if self.proc.poll() is not None:
                raise HarnessError("clawsd exited with %s before its socket appeared\n--- log:\n%s"
                                   % (self.proc.returncode, tail(self.log())))
            return self.socket_path.exists()
        wait_until(ready, timeout, what="clawsd socket %s" % self.socket_path)

    def stop(self, timeout=10.0):
        """SIGTERM by pid; returns the exit code (SIGKILL after timeout)."""
        rc = stop_process(self.proc, timeout)
        if self._logf is not None:
            self._logf.close()
            self._logf = None
        return rc

    def kill(self, sig=signal.SIGTERM):
        os.kill(self.proc.pid, sig)

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, regex, timeout=10.0, count=1, flags=0):
        """Wait until regex matches the log (at least `count` times).
        Returns the last match."""
        rx = re.compile(regex, flags)

        def found():
            ms = list(rx.finditer(self.log()))
            return ms[count - 1] if len(ms) >= count else None
        try:
            return wait_until(found, timeout, interval=0.1,
                              what="clawsd log to match %r x%d" % (regex, count))
        except TimeoutError as e:
            raise TimeoutError("%s\n--- clawsd log:\n%s" % (e, tail(self.log(), 60))) from None

    def connect(self, timeout=5.0):
        return SockClient(self.socket_path, timeout=timeout)

    def wait_connected(self, timeout=15.0):
        """Open a client and wait for a `connected` status line. Returns
        (client, element)."""
        c = self.connect()
        try:
            el = c.wait_for(lambda e: is_status(e, "connected"), timeout)
        except Exception:
            c.close()
            raise TimeoutError("clawsd did not reach `connected` in %.0fs\n--- clawsd log:\n%s"
                               % (timeout, tail(self.log(), 60)))
        return c, el

    def cleanup(self):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# Unix socket client

class SockClient:
    """AF_UNIX stream client speaking the clawsd socket protocol."""

    def __init__(self, path, timeout=5.0):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(self.path)
        self.sock.setblocking(False)
        self.buf = b""
        self.eof = False
        self.lines = []  # every line read, for debugging

    def send(self, data, chunk=None, delay=0.0):
        """Send bytes (or str, UTF-8). With chunk=N, in writes of N bytes."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if chunk is None:
            self._sendall(data)
        else:
            for i in range(0, len(data), chunk):
                self._sendall(data[i:i + chunk])
                if delay:
                    time.sleep(delay)

    def _sendall(self, data, timeout=10.0):
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("send timed out")
            _, w, _ = select.select([], [self.sock], [], remaining)
            if not w:
                continue
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                continue
            view = view[n:]

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete line before timeout (buffered: %r)" % self.buf[:200])
        r, _, _ = select.select([self.sock], [], [], remaining)
        if not r:
            raise TimeoutError("no complete line before timeout (buffered: %r)" % self.buf[:200])
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        if not data:
            self.eof = True
            raise EOFError("connection closed by clawsd (buffered: %r)" % self.buf[:200])
        self.buf += data

    def read_line(self, timeout=5.0):
        """One line, without its '\\n', as str. Raises TimeoutError / EOFError."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if self.eof:
                raise EOFError("connection closed by clawsd (buffered: %r)" % self.buf[:200])
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\n", 1)
        s = line.decode("utf-8")
        self.lines.append(s)
        return s

    def read_element(self, timeout=5.0):
        line = self.read_line(timeout)
        return parse_line(line)

    def wait_for(self, predicate, timeout=10.0, raw=False):
        """Read lines until predicate(element) (or predicate(line) if raw) is
        true; returns that element (or line). Non-matching lines are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching line in %.1fs; last lines: %r"
                                   % (timeout, self.lines[-5:]))
            line = self.read_line(remaining)
            item = line if raw else parse_line(line)
            if predicate(item):
                return item

    def read_lines_for(self, duration):
        """All lines that arrive within `duration` seconds (stops at EOF)."""
        out = []
        deadline = time.monotonic() + duration
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return out
            try:
                out.append(self.read_line(remaining))
            except (TimeoutError, EOFError):
                return out

    def wait_eof(self, timeout=5.0):
        """Read (and drop) lines until the daemon closes the connection.
        Returns True on EOF (or reset), raises TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("connection still open after %.1fs" % timeout)
            try:
                self.read_line(remaining)
            except EOFError:
                return True
            except ConnectionResetError:
                return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# XMPP peer (slixmpp in its own thread and event loop)

class ReceivedMessage:
    __slots__ = ("body", "frm", "id", "type", "xml")

    def __init__(self, body, frm, id, type, xml):
        self.body, self.frm, self.id, self.type, self.xml = body, frm, id, type, xml

    def __repr__(self):
        return "ReceivedMessage(from=%r, id=%r, type=%r, body=%r)" % (
            self.frm, self.id, self.type, self.body)


class Peer:
    """An independent XMPP client (slixmpp ClientXMPP) connected to Prosody's
    STARTTLS port, verifying the server certificate against the test CA
    (slixmpp's `ca_certs`; hostname checked against the domain)."""

    def __init__(self, jid, password, port, ca_file=None, host="127.0.0.1",
                 resource=None, connect_timeout=15.0):
        self.jid = "%s/%s" % (jid, resource or unique("peer"))
        self.password = password
        self.host = host
        self.port = port
        self.ca_file = ca_file
        self.connect_timeout = connect_timeout
        self._cond = threading.Condition()
        self._messages = []       # every message received, in order
        self._consumed = set()    # indexes already returned by wait_message
        self._started = threading.Event()
        self._failed = None
        self._stopping = False
        self.loop = None
        self.xmpp = None
        self.thread = None
        self.errors = queue.Queue()

    # -- life cycle

    def start(self):
        self.thread = threading.Thread(target=self._run, name="peer-" + self.jid, daemon=True)
        self.thread.start()
        if not self._started.wait(self.connect_timeout):
            self.stop()
            raise HarnessError("peer %s: no session within %.0fs" % (self.jid, self.connect_timeout))
        if self._failed:
            self.stop()
            raise HarnessError("peer %s: %s" % (self.jid, self._failed))
        return self

    def _run(self):
        import slixmpp  # noqa: imported here so the module loads without it
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            x = slixmpp.ClientXMPP(self.jid, self.password)
            x.loop = self.loop
            if self.ca_file:
                x.ca_certs = Path(self.ca_file)
            x.register_plugin("xep_0030")
            x.register_plugin("xep_0199")
            x.add_event_handler("session_start", self._on_session_start)
            x.add_event_handler("message", self._on_message)
            x.add_event_handler("failed_all_auth", lambda *_: self._fail("authentication failed"))
            x.add_event_handler("connection_failed", lambda e: self._fail("connection failed: %s" % e))
            x.add_event_handler("disconnected", self._on_disconnected)
            self.xmpp = x
            # slixmpp quirk: given an IP address, connect() leaves
            # default_domain empty (so TLS would have no server name to
            # verify) and resolves it through DNS.  Name the domain for SNI
            # and certificate verification, and answer the "DNS" lookup
            # ourselves with the address we were given.
            domain = self.jid.split("@", 1)[1].split("/", 1)[0]
            x.default_domain = domain
            x.use_ipv6 = False
            host, port = self.host, self.port

            async def _records(*_a, **_k):
                return [(domain, host, port)]
            x.get_dns_records = _records
            # STARTTLS on c2s_port: use_ssl=False, TLS negotiated in-band
            x.connect(address=(host, port), use_ssl=False, force_starttls=True,
                      disable_starttls=False)
            self.loop.run_forever()
        except Exception as e:  # pragma: no cover - reported to start()
            self._fail("%s: %s" % (type(e).__name__, e))
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            except Exception:
                pass
            self.loop.close()

    def _fail(self, why):
        if not self._started.is_set():
            self._failed = why
            self._started.set()
        else:
            self.errors.put(why)

    async def _on_session_start(self, _event):
        self.xmpp.send_presence()
        try:
            await self.xmpp.get_roster(timeout=5)
        except Exception:
            pass
        self._started.set()

    def _on_disconnected(self, reason):
        if not self._started.is_set() and not self._stopping:
            self._fail("disconnected before session: %s" % (reason,))

    def _on_message(self, msg):
        if msg["type"] not in ("chat", "normal", "headline", "groupchat", "error", ""):
            return
        m = ReceivedMessage(msg["body"], str(msg["from"]), msg["id"] or None,
                            msg["type"], str(msg))
        with self._cond:
            self._messages.append(m)
            self._cond.notify_all()

    def stop(self, timeout=5.0):
        self._stopping = True
        if self.loop is None or self.thread is None:
            return
        if self.loop.is_closed():
            return

        async def _shutdown():
            try:
                if self.xmpp is not None and self.xmpp.transport is not None:
                    await asyncio.wait_for(self.xmpp.disconnect(wait=1.0), timeout)
            except Exception:
                pass
            self.loop.stop()
        try:
            asyncio.run_coroutine_threadsafe(_shutdown(), self.loop)
        except RuntimeError:
            pass
        self.thread.join(timeout + 2)
        if self.thread.is_alive():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:
                pass
            self.thread.join(5)

    # -- messages

    def send_message(self, to, body, id=None, type="chat"):
        if not self._started.is_set() or self._failed:
            raise HarnessError("peer not connected")

        def _send():
            m = self.xmpp.make_message(mto=to, mbody=body, mtype=type)
            if id is not None:
                m["id"] = id
            m.send()
        done = threading.Event()

        def _wrapped():
            try:
                _send()
            finally:
                done.set()
        self.loop.call_soon_threadsafe(_wrapped)
        if not done.wait(5):
            raise HarnessError("peer: send_message did not run in 5s")

    def wait_message(self, predicate=lambda m: True, timeout=10.0):
        """The first not-yet-returned received message matching predicate."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, m in enumerate(self._messages):
                    if i not in self._consumed and predicate(m):
                        self._consumed.add(i)
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("peer %s: no matching message in %.1fs; got %r"
                                       % (self.jid, timeout, self._messages[-5:]))
                self._cond.wait(remaining)

    @property
    def messages(self):
        with self._cond:
            return list(self._messages)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
