"""Test harness for clawsd: a throwaway PKI, a real Prosody, the daemon, socket
clients and an independent XMPP peer (slixmpp).

Used by the pytest suite in this folder and by tests/demo.py.  Everything it
writes lives in temporary folders; every process it starts is stopped by pid;
every wait is bounded by a timeout.

Run with /usr/bin/python3 (Debian's python3-slixmpp lives there).
"""

import asyncio
import glob
import os
import queue
import re
import select
import shlex
import shutil
import signal
import socket
import ssl
import struct
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
CLAWSDCTL_BIN = Path(os.environ.get("CLAWSDCTL_BIN") or REPO_ROOT / "clawsdctl")
# a command the daemon runs under, e.g. "valgrind --leak-check=full
# --error-exitcode=99" (`make valgrind`); empty: none
CLAWSD_WRAPPER = shlex.split(os.environ.get("CLAWSD_WRAPPER", ""))
# Clawsd.stop() fails (HarnessError) when the daemon's log holds an
# ASan/LSan/UBSan or valgrind report; CLAWSD_SANITIZER_CHECK=0 turns that off
SANITIZER_CHECK = os.environ.get("CLAWSD_SANITIZER_CHECK", "1") != "0"

CLAWSD_NS = "urn:x-clawsd"
CLIENT_NS = "jabber:client"

# The accounts the test suite registers (fresh random passwords each run):
# bot for clawsd, peer for the independent slixmpp client, alice and bob for
# the harness self-tests.
TEST_ACCOUNTS = {u: uuid.uuid4().hex[:16] for u in ("bot", "peer", "alice", "bob")}

PROSODY_BIN = shutil.which("prosody") or "/usr/bin/prosody"
PROSODY_LIB = Path("/usr/lib/prosody")


def prosody_sasl2():
    """Prosody 13 with Debian's prosody-modules: the SASL2 (XEP-0388),
    Bind2 (XEP-0386), FAST (XEP-0484) and inline stream management
    modules.  Debian 12's Prosody 0.12 stays on the RFC 6120 login."""
    try:
        major = int(read_text(PROSODY_LIB / "prosody.version").split(".")[0])
    except (OSError, ValueError):
        return False
    return major >= 13 and (PROSODY_LIB / "modules" / "mod_sasl2_fast").is_dir()
PROSODYCTL_BIN = shutil.which("prosodyctl") or "/usr/bin/prosodyctl"
OPENSSL_BIN = shutil.which("openssl") or "/usr/bin/openssl"


class HarnessError(Exception):
    pass


# --------------------------------------------------------------------------
# small helpers

def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def ipv6_loopback():
    """True if this machine has a usable ::1 (bind and connect work)."""
    global _IPV6
    if _IPV6 is None:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.bind(("::1", 0))
                s.listen(1)
                with socket.create_connection(s.getsockname()[:2], timeout=2):
                    pass
            _IPV6 = True
        except OSError:
            _IPV6 = False
    return _IPV6


_IPV6 = None


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (all held open while choosing,
    so they are distinct), also free on ::1 when the machine has it (the
    servers listen on both)."""
    socks, rejected = [], []
    try:
        while len(socks) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            if ipv6_loopback():
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                    try:
                        s6.bind(("::1", s.getsockname()[1]))
                    except OSError:
                        rejected.append(s)  # held, so not chosen again
                        if len(rejected) > 100:
                            raise HarnessError("no port free on both 127.0.0.1 and ::1")
                        continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks + rejected:
            s.close()


def listen_hosts():
    """The loopback addresses the test servers listen on."""
    return ["127.0.0.1", "::1"] if ipv6_loopback() else ["127.0.0.1"]


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
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ v3_elsewhere ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:elsewhere.test
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class PKI:
    """A test CA, a server certificate for DNS:localhost (or `names`) signed
    by it, one for DNS:elsewhere.test signed by it too (a trusted certificate
    with the wrong name), and a second unrelated CA (for the 'untrusted
    certificate' test).  Made with the openssl command line in a temporary
    folder."""

    def __init__(self, directory=None, names=("localhost",)):
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="clawsd-pki-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cnf = self.dir / "openssl.cnf"
        self.cnf.write_text(_OPENSSL_CNF.replace(
            "{san}", ",".join("DNS:" + n for n in names)))
        self.ca_key = self.dir / "ca.key"
        self.ca_cert = self.dir / "ca.crt"
        self.server_key = self.dir / "localhost.key"
        self.server_cert = self.dir / "localhost.crt"
        self.other_ca_key = self.dir / "other-ca.key"
        self.other_ca_cert = self.dir / "other-ca.crt"
        self.elsewhere_key = self.dir / "elsewhere.key"
        self.elsewhere_cert = self.dir / "elsewhere.crt"
        self._make_ca(self.ca_key, self.ca_cert, "clawsd test CA")
        self._make_ca(self.other_ca_key, self.other_ca_cert, "clawsd unrelated CA")
        self._make_server(self.server_key, self.server_cert, "localhost", "v3_server")
        self._make_server(self.elsewhere_key, self.elsewhere_cert, "elsewhere.test",
                          "v3_elsewhere")

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

    def _make_server(self, key, cert, name, extensions):
        csr = self.dir / (name + ".csr")
        self._openssl("req", "-config", self.cnf, "-new", "-newkey", "rsa:2048",
                      "-nodes", "-sha256", "-keyout", key, "-out", csr,
                      "-subj", "/CN=" + name)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert,
                      "-CAkey", self.ca_key, "-set_serial",
                      str(int.from_bytes(os.urandom(8), "big")),
                      "-days", "30", "-sha256", "-out", cert,
                      "-extfile", self.cnf, "-extensions", extensions)
        os.chmod(key, 0o600)

    def cleanup(self):
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# Prosody

def _lua_str(s):
    return '"%s"' % str(s).replace("\\", "\\\\").replace('"', '\\"')


def read_text(path):
    """A file's text, or "" while it does not exist."""
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def direct_tls_features(server, ca_file, timeout=5.0):
    """Open a client stream on the server's direct TLS port (certificate
    checked against ca_file and the server's domain); the bytes received
    up to the end of its stream features (or what came within timeout)."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", server.direct_tls_port), timeout=timeout) as s:
        with ctx.wrap_socket(s, server_hostname=server.domain) as t:
            t.sendall(b"<?xml version='1.0'?><stream:stream to='%s' version='1.0' "
                      b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                      % server.domain.encode())
            data = b""
            deadline = time.monotonic() + timeout
            while b"</stream:features>" not in data and time.monotonic() < deadline:
                chunk = t.recv(4096)
                if not chunk:
                    break
                data += chunk
    return data


class XmppServer:
    """What Prosody and Ejabberd share.  The interface the tests may use:
    name, domain, dir, data_dir, log_path, c2s_port, direct_tls_port,
    hosts, proc, start(), stop(), restart(), kill(sig), running,
    register(user, pw), account_exists(user), jid(user), log(),
    log_mark(), log_since(mark), c2s_connections_since(mark),
    sasl_failures_since(mark), sasl_successes_since(mark),
    stream_closed_since(mark, jid), cleanup(), sasl2 (the server offers
    SASL2, Bind2 and FAST)."""

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def muc_domain(self):
        """The group chat service (XEP-0045) both servers run."""
        return "conference." + self.domain

    def jid(self, user):
        return "%s@%s" % (user, self.domain)

    def log(self):
        return read_text(self.log_path)

    def log_mark(self):
        """A position in the server's log, for log_since()."""
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

    def console(self):
        return read_text(self.console_path)

    def cleanup(self):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _wait_listening(self, timeout):
        """Wait for both ports on every host; HarnessError, the server
        stopped, if it exits first or does not listen in time."""
        def ready():
            if self.proc.poll() is not None:
                raise HarnessError("%s exited with %s during start-up\n--- console:\n%s\n--- log:\n%s"
                                   % (self.name, self.proc.returncode, tail(self.console()),
                                      tail(self.log())))
            return all(port_open(p, h) for p in (self.c2s_port, self.direct_tls_port)
                       for h in self.hosts)

        try:
            wait_until(ready, timeout, what="%s to listen on %d and %d"
                       % (self.name, self.c2s_port, self.direct_tls_port))
        except TimeoutError:
            self.stop()
            raise HarnessError("%s did not start listening in %.0fs\n--- console:\n%s\n--- log:\n%s"
                               % (self.name, timeout, tail(self.console()), tail(self.log())))


class Prosody(XmppServer):
    """A private Prosody instance on 127.0.0.1 (and ::1 if available):
    STARTTLS on c2s_port, direct TLS on direct_tls_port, virtual host
    `domain`, all state in a temporary folder (config, data, pid file, log)."""

    name = "prosody"

    def __init__(self, pki, domain="localhost", directory=None, log_level="debug",
                 cert=None, key=None, archive=True):
        # mod_mam (and muc_mam) unless archive=False: Prosody drops what a
        # vanished session had not acknowledged once it is archived, and
        # the daemon's catch-up (SPEC 9) is what the fault tests then see
        self.archive = archive
        # SASL2, Bind2, FAST, inline resumption: Prosody 13 only
        self.sasl2 = prosody_sasl2()
        self.pki = pki
        self.domain = domain
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="clawsd-prosody-"))
        self.data_dir = self.dir / "data"
        self.certs_dir = self.dir / "certs"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        # Prosody also looks up certificates by host name in `certificates`.
        shutil.copy(cert or pki.server_cert, self.certs_dir / (domain + ".crt"))
        shutil.copy(key or pki.server_key, self.certs_dir / (domain + ".key"))
        self.cert = self.certs_dir / (domain + ".crt")
        self.key = self.certs_dir / (domain + ".key")
        self.config_path = self.dir / "prosody.cfg.lua"
        self.log_path = self.dir / "prosody.log"
        self.console_path = self.dir / "prosody.console"
        self.pid_path = self.dir / "prosody.pid"
        self.log_level = log_level
        self.c2s_port, self.direct_tls_port = free_ports(2)
        # 127.0.0.1, and ::1 when the machine has it
        self.hosts = listen_hosts()
        self.proc = None
        self._console = None
        self.write_config()

    def write_config(self):
        lines = [
            "-- written by tests/integration/harness.py",
            "pidfile = %s" % _lua_str(self.pid_path),
            "data_path = %s" % _lua_str(self.data_dir),
        ]
        if os.getuid() == 0:
            # Prosody (and prosodyctl, which would otherwise setuid to the
            # 'prosody' user) refuse or misbehave as root without this.
            lines.append("run_as_root = true")
        lines += [
            "interfaces = { %s }" % ", ".join(map(_lua_str, self.hosts)),
            "local_interfaces = { %s }" % ", ".join(map(_lua_str, self.hosts)),
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
            '  "version", "time", "admin_shell",' + (' "mam",' if self.archive else ''),
            ('  "sasl2", "sasl2_bind2", "sasl2_fast", "sasl2_sm",' if self.sasl2 else ''),
            "}",
            'modules_disabled = { "s2s", "s2s_auth_certs" }',
            "ssl = { certificate = %s; key = %s; }" % (_lua_str(self.cert), _lua_str(self.key)),
            "certificates = %s" % _lua_str(self.certs_dir),
            "log = {",
            "  { levels = { min = %s }, to = \"file\", filename = %s };"
            % (_lua_str(self.log_level), _lua_str(self.log_path)),
            "}",
            "smacks_hibernation_time = 30",
            # every message archived, for the catch-up tests (SPEC 9)
            'default_archive_policy = true',
            'archive_expires_after = "never"',
            "max_archive_query_results = 100",
            "",
            "VirtualHost %s" % _lua_str(self.domain),
            "  ssl = { certificate = %s; key = %s; }" % (_lua_str(self.cert), _lua_str(self.key)),
            "",
            # group chats (SPEC 8), archived too
            "Component %s %s" % (_lua_str(self.muc_domain), _lua_str("muc")),
            '  modules_enabled = { %s }' % ('"muc_mam"' if self.archive else ''),
            "  muc_room_default_persistent = true",
            "  muc_room_locking = false",
            "  muc_room_default_history_length = 50",
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
        self._wait_listening(timeout)

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

    def kill(self, sig=signal.SIGKILL):
        """Send sig to the server process (by pid) and, for SIGKILL, reap
        it.  stop() or start() afterwards clean up as usual."""
        os.kill(self.proc.pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=10)

    # -- accounts

    def account_exists(self, user):
        return (self.data_dir / self.domain.replace(".", "%2e")
                / "accounts" / (user + ".dat")).exists()

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

    def shell(self, lua, timeout=30.0):
        """Run one line of Lua in the running server (mod_admin_shell);
        its output."""
        r = subprocess.run([PROSODYCTL_BIN, "--config", str(self.config_path), "shell"],
                           input=("> " + lua + "\n").encode(), cwd=str(self.dir),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        return r.stdout.decode("utf-8", "replace")

    def register(self, user, password):
        rc, out = self.prosodyctl("register", user, self.domain, password)
        if rc != 0:
            raise HarnessError("prosodyctl register %s failed (%d):\n%s" % (user, rc, out))

    # -- debugging

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
            r"<failure xmlns='urn:(?:ietf:params:xml:ns:xmpp-sasl|xmpp:sasl:2)'",
            self.log_since(mark)))

    def sasl_successes_since(self, mark):
        """[(bare JID, SASL mechanism)] of the authentications Prosody
        accepted since mark, in order (needs log level debug)."""
        mech, out = {}, []
        for m in re.finditer(r"(?m)^.*?\s(c2s[0-9a-f]+)\s+(?:debug\s+Received\[c2s_unauthed\]: "
                             r"<auth(?:enticate)? [^>]*mechanism='([^']+)'|info\s+Authenticated as (\S+))",
                             self.log_since(mark)):
            sid, mechanism, jid = m.groups()
            if mechanism:
                mech[sid] = mechanism
            else:
                out.append((jid, mech.get(sid)))
        return out

    def stream_closed_since(self, mark, jid):
        """How the c2s stream of full JID `jid` ended since mark (needs log
        level debug): None while it has not, else (by_client, why) with
        by_client true when the client sent </stream:stream> and `why` the
        server's own wording of the reason."""
        text = self.log_since(mark)
        m = re.search(r"(?m)^.*?\s(c2s[0-9a-f]+)\s+debug\s+c2s stream for %s closed: ([^\n]*)$"
                      % re.escape(jid), text)
        if not m:
            return None
        sid, why = m.groups()
        by_client = bool(re.search(r"(?m)^.*?\s%s\s+debug\s+Received </stream:stream>" % sid,
                                   text))
        return by_client, why

# --------------------------------------------------------------------------
# ejabberd

EJABBERDCTL_BIN = shutil.which("ejabberdctl") or "/usr/sbin/ejabberdctl"


def ejabberd_fast():
    """ejabberd 24.12 (Debian 13) has SASL2 and Bind2 built in, and FAST
    in mod_auth_fast; Debian 12's 23.01 has none of them."""
    return bool(glob.glob("/usr/lib/*/ejabberd-*/ebin/mod_auth_fast.beam"))


def _yaml_str(s):
    return '"%s"' % str(s).replace("\\", "\\\\").replace('"', '\\"')


class Ejabberd(XmppServer):
    """A private ejabberd (Debian's package) on 127.0.0.1 (and ::1 if
    available), with the same interface as Prosody: STARTTLS on c2s_port,
    direct TLS (`tls: true`) on direct_tls_port, virtual host `domain`,
    accounts stored in plain (so it offers SCRAM-SHA-1/256/512 and PLAIN).

    Everything lives in a temporary folder: ejabberd.yml, the mnesia spool,
    the logs, the Erlang cookie (in $HOME/.erlang.cookie, HOME being that
    folder), the certificate (the test PKI's one for `localhost`), and a
    private copy of Debian's ejabberdctl with two lines changed: it runs as
    the calling user (Debian's switches root to the `ejabberd` user with su
    and refuses anybody else) and exec's the Erlang VM (so the pid we hold
    is the server's own, for stop and SIGKILL by pid).

    No epmd: the node's distribution port is fixed (ERL_DIST_PORT, a free
    port on 127.0.0.1; `-erl_epmd_port`, `-start_epmd false`), which is how
    ejabberdctl reaches the node for `register` and `stop`."""

    name = "ejabberd"

    def __init__(self, pki, domain="localhost", directory=None, log_level="info",
                 cert=None, key=None, archive=False):
        # mod_mam only where a test asks (archive=True): with it, ejabberd
        # changes what a resumed stream redelivers, which the fault tests
        # measure against the plain server
        self.archive = archive
        # SASL2 and Bind2 (built in), FAST (mod_auth_fast): 24.12 only
        self.sasl2 = ejabberd_fast()
        self.pki = pki
        self.domain = domain
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="clawsd-ejabberd-"))
        self.data_dir = self.dir / "spool"
        self.logs_dir = self.dir / "logs"
        for d in (self.data_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        # one PEM with the certificate, its key and the CA, for certfiles
        self.cert = self.dir / (domain + ".pem")
        self.cert.write_bytes(Path(cert or pki.server_cert).read_bytes()
                              + Path(key or pki.server_key).read_bytes()
                              + Path(pki.ca_cert).read_bytes())
        os.chmod(self.cert, 0o600)
        self.config_path = self.dir / "ejabberd.yml"
        self.ctl_config_path = self.dir / "ejabberdctl.cfg"
        self.ctl_path = self.dir / "ejabberdctl"
        self.log_path = self.logs_dir / "ejabberd.log"
        self.console_path = self.dir / "ejabberd.console"
        self.pid_path = self.dir / "ejabberd.pid"
        self.log_level = log_level
        self.c2s_port, self.direct_tls_port, self.dist_port = free_ports(3)
        self.hosts = listen_hosts()
        self.node = "clawsd_%s@localhost" % uuid.uuid4().hex[:10]
        self.proc = None
        self._console = None
        cookie = self.dir / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
        os.chmod(cookie, 0o400)
        self._write_ctl()
        self.write_config()

    def _write_ctl(self):
        text = Path(EJABBERDCTL_BIN).read_text()
        text, n1 = re.subn(r"(?m)^INSTALLUSER=\S*$", "INSTALLUSER=", text)
        text, n2 = re.subn(r'(?m)^(\s*as_current_user\)\s*)"\$@"(\s*;;)', r'\1exec "$@"\2', text)
        if n1 != 1 or n2 != 1:
            raise HarnessError("%s: not the ejabberdctl this harness knows "
                               "(INSTALLUSER: %d, as_current_user: %d)" % (EJABBERDCTL_BIN, n1, n2))
        self.ctl_path.write_text(text)
        os.chmod(self.ctl_path, 0o755)
        self.ctl_config_path.write_text("\n".join([
            "# written by tests/integration/harness.py",
            "ERLANG_NODE=%s" % self.node,
            "ERL_DIST_PORT=%d" % self.dist_port,
            'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"',
            "EJABBERD_PID_PATH=%s" % self.pid_path,
            "EJABBERD_BYPASS_WARNINGS=true",
            "CONTRIB_MODULES_PATH=%s" % (self.dir / "contrib"),
            "CONTRIB_MODULES_CONF_DIR=%s" % (self.dir / "contrib"),
            "",
        ]))
        # read by ejabberdctl from --config-dir: the distribution listens on
        # loopback only; host names from /etc/hosts, then the resolver
        (self.dir / "vm.args").write_text("-kernel inet_dist_use_interface {127,0,0,1}\n")
        (self.dir / "inetrc").write_text('{lookup,["file","native"]}.\n'
                                         '{host,{127,0,0,1}, ["localhost"]}.\n')

    def write_config(self):
        def listener(host, port, tls):
            return [
                "  -",
                "    port: %d" % port,
                "    ip: %s" % _yaml_str(host),
                "    module: ejabberd_c2s",
                "    max_stanza_size: 262144",
                "    access: c2s",
                "    tls: true" if tls else "    starttls: true",
            ]
        lines = [
            "# written by tests/integration/harness.py",
            "hosts:",
            "  - %s" % _yaml_str(self.domain),
            "loglevel: %s" % self.log_level,
            "log_rotate_count: 0",
            "hide_sensitive_log_data: false",
            "certfiles:",
            "  - %s" % _yaml_str(self.cert),
            "ca_file: %s" % _yaml_str(self.pki.ca_cert),
            "listen:",
        ]
        for h in self.hosts:
            lines += listener(h, self.c2s_port, False)
            lines += listener(h, self.direct_tls_port, True)
        lines += [
            "auth_method: internal",
            "auth_password_format: plain",
            "disable_sasl_mechanisms:",
            '  - "DIGEST-MD5"',
            '  - "X-OAUTH2"',
            "s2s_access: none",
            "acl:",
            "  local:",
            '    user_regexp: ""',
            "access_rules:",
            "  local:",
            "    allow: local",
            "  c2s:",
            "    allow: all",
            "shaper_rules:",
            "  max_user_sessions: 100",
            "  max_user_offline_messages: 5000",
            "api_permissions:",
            '  "console commands":',
            "    from:",
            "      - ejabberd_ctl",
            "    who: all",
            '    what: "*"',
            "modules:",
            "  mod_disco: {}",
            "  mod_ping: {}",
            "  mod_roster: {}",
            "  mod_offline:",
            "    access_max_user_messages: max_user_offline_messages",
            "  mod_stream_mgmt:",
            "    resume_timeout: 30",
            "  mod_version:",
            "    show_os: false",
            "  mod_time: {}",
        ] + (["  mod_auth_fast: {}"] if self.sasl2 else []) + [
            # group chats (SPEC 8)
            "  mod_muc:",
            "    host: %s" % _yaml_str(self.muc_domain),
            "    access_create: all",
            "    history_size: 50",
            "    default_room_options:",
            "      persistent: true",
            "      mam: %s" % ("true" if self.archive else "false"),
        ]
        if self.archive:
            # every message archived, for the catch-up tests (SPEC 9)
            lines += ["  mod_mam:", "    default: always"]
        lines += [
            "",
        ]
        self.config_path.write_text("\n".join(lines))

    # -- ejabberdctl

    def _ctl_argv(self, *args):
        return [str(self.ctl_path),
                "--config-dir", str(self.dir),
                "--config", str(self.config_path),
                "--ctl-config", str(self.ctl_config_path),
                "--spool", str(self.data_dir),
                "--logs", str(self.logs_dir)] + [str(a) for a in args]

    def _env(self):
        env = dict(os.environ)
        env["HOME"] = str(self.dir)     # the cookie
        for k in ("EJABBERD_CONFIG_PATH", "EJABBERDCTL_CONFIG_PATH", "ERLANG_NODE",
                  "ERL_LIBS", "ERL_FLAGS", "ERL_AFLAGS", "ERL_ZFLAGS"):
            env.pop(k, None)
        return env

    def ejabberdctl(self, *args, timeout=30.0):
        r = subprocess.run(self._ctl_argv(*args), cwd=str(self.dir),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, env=self._env())
        out = r.stdout.decode("utf-8", "replace")
        # as root: "WARNING: It is not recommended to run ejabberd as root"
        out = "\n".join(l for l in out.splitlines() if "recommended to run ejabberd as root" not in l)
        return r.returncode, out

    # -- lifecycle

    def start(self, timeout=30.0):
        if self.proc is not None and self.proc.poll() is None:
            return
        self._console = open(self.console_path, "ab")
        self.proc = subprocess.Popen(
            self._ctl_argv("foreground"), cwd=str(self.dir), stdin=subprocess.DEVNULL,
            stdout=self._console, stderr=subprocess.STDOUT, env=self._env(),
            start_new_session=True)
        self._wait_listening(timeout)

    def stop(self, timeout=10.0):
        """SIGTERM to the VM (our child, by pid): Erlang's init:stop(), the
        same orderly shutdown as `ejabberdctl stop` (streams closed with
        <system-shutdown/>) without a second VM to start first; SIGKILL
        after timeout.  Returns the exit code."""
        rc = None
        if self.proc is not None:
            rc = stop_process(self.proc, timeout)
            # whatever the VM started (erl_child_setup, inet_gethost, memsup)
            # is in its session; nothing of it may outlive the server
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc = None
        if self._console is not None:
            self._console.close()
            self._console = None
        try:
            wait_until(lambda: not port_open(self.c2s_port)
                       and not port_open(self.direct_tls_port)
                       and not port_open(self.dist_port), 5,
                       what="ejabberd ports to close")
        except TimeoutError:
            pass
        return rc

    def ctl_stop(self, timeout=20.0):
        """`ejabberdctl stop` and wait for the VM to exit (by pid)."""
        rc, out = self.ejabberdctl("stop", timeout=timeout)
        if rc != 0:
            raise HarnessError("ejabberdctl stop failed (%d):\n%s" % (rc, out))
        return self.stop(timeout)

    def restart(self, timeout=30.0):
        """Stop and start again on the same ports with the same data."""
        self.stop()
        self.start(timeout)

    def kill(self, sig=signal.SIGKILL):
        """Send sig to the server process (by pid) and, for SIGKILL, reap
        it.  stop() or start() afterwards clean up as usual.  Mind that
        mnesia keeps the accounts in dets files with delayed writes: an
        account registered less than ~2 s before a SIGKILL is gone after
        the restart."""
        os.kill(self.proc.pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=10)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    # -- accounts

    def register(self, user, password):
        started = self.running
        if not started:
            # ejabberdctl talks to the running node
            self.start()
        # the listeners can be up a moment before the auth tables (seen
        # under load): "no_exists" means "not yet"
        deadline = time.monotonic() + 10
        while True:
            rc, out = self.ejabberdctl("register", user, self.domain, password)
            if rc == 0:
                return
            if "no_exists" not in out or time.monotonic() > deadline:
                raise HarnessError("ejabberdctl register %s failed (%d):\n%s" % (user, rc, out))
            time.sleep(0.2)

    def account_exists(self, user):
        rc, out = self.ejabberdctl("registered_users", self.domain)
        if rc != 0:
            raise HarnessError("ejabberdctl registered_users failed (%d):\n%s" % (rc, out))
        return user in out.split()

    # -- debugging

    def c2s_connections_since(self, mark):
        """Ids (Erlang pids) of the client connections ejabberd accepted on
        its c2s ports since mark (log level info)."""
        ports = "|".join(str(p) for p in (self.c2s_port, self.direct_tls_port))
        return _unique(re.findall(
            r"(?m)^.*\[info\].*?\((<[0-9.]+>)\) Accepted connection \S+ -> \S+:(?:%s)$" % ports,
            self.log_since(mark)))

    def sasl_failures_since(self, mark):
        """Ids (Erlang pids) of the client connections whose SASL
        authentication ejabberd refused since mark (log level info)."""
        return _unique(re.findall(r"(?m)^.*?\((?:tls\|)?(<[0-9.]+>)\) Failed c2s \S+ authentication",
                                  self.log_since(mark)))

    def sasl_successes_since(self, mark):
        """[(bare JID, SASL mechanism)] of the authentications ejabberd
        accepted since mark, in order (log level info)."""
        return [(jid, mech) for mech, jid in re.findall(
            r"(?m)Accepted c2s (\S+) authentication for ([^/\s]+)\S* by", self.log_since(mark))]

    def stream_closed_since(self, mark, jid):
        """How the c2s stream of full JID `jid` ended since mark: None while
        it has not, else (by_client, why); by_client is true when the
        client closed its stream: ejabberd (xmpp_stream_in) reports a
        received </stream:stream> as "Stream reset by peer", a dropped
        connection as "Connection failed: connection closed"."""
        m = re.search(r"(?m)^.*Closing c2s session for %s: ([^\n]*)$" % re.escape(jid),
                      self.log_since(mark))
        if not m:
            return None
        why = m.group(1)
        return why.startswith("Stream reset by peer"), why

SERVERS = {"prosody": Prosody, "ejabberd": Ejabberd}


def make_server(kind, pki, **kw):
    """A configured (not started) server of that kind ("prosody" or
    "ejabberd"); cert= and key= (files) replace the PKI's certificate for
    localhost."""
    return SERVERS[kind](pki, **kw)


# --------------------------------------------------------------------------
# DNS: a private dnsmasq, and processes that use it as their resolver

DNSMASQ_BIN = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
UNSHARE_BIN = shutil.which("unshare") or "/usr/bin/unshare"


def dns_sandbox_problem():
    """Why DnsServer cannot work here (None if it can): it needs root (a
    DNS server on port 53 of a loopback address, since resolv.conf has no
    port syntax; a mount namespace for the private resolv.conf), dnsmasq
    and unshare."""
    global _DNS_PROBLEM
    if _DNS_PROBLEM is None:
        if os.geteuid() != 0:
            _DNS_PROBLEM = "needs root (port 53, mount namespace)"
        elif not os.path.exists(DNSMASQ_BIN):
            _DNS_PROBLEM = "dnsmasq is not installed (Debian: dnsmasq-base)"
        elif not os.path.exists(UNSHARE_BIN):
            _DNS_PROBLEM = "unshare is not installed (util-linux)"
        else:
            r = subprocess.run([UNSHARE_BIN, "--mount", "--propagation", "private", "--",
                                "/bin/sh", "-c", "mount --bind /etc/hostname /etc/hosts"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
            _DNS_PROBLEM = "" if r.returncode == 0 else \
                "no private mount namespace: %s" % r.stdout.decode(errors="replace").strip()
    return _DNS_PROBLEM or None


_DNS_PROBLEM = None


def dns_query(server, name, qtype=1, timeout=1.0):
    """One UDP query to (host, port); returns the reply's RCODE."""
    import struct
    qid = int.from_bytes(os.urandom(2), "big")
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split(".")) + b"\0"
    q += struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, server)
        data, _ = s.recvfrom(4096)
    return data[3] & 0x0f


class DnsServer:
    """dnsmasq on port 53 of a random loopback address 127.X.Y.Z, answering
    only from its own records (unknown names in its domains: NXDOMAIN), and
    the means to run a process that resolves through it: wrapper() writes
    a script that runs its arguments in a private mount namespace where
    /etc/resolv.conf names this server and /etc/hosts is this folder's own
    (so the daemon needs no test hook: it resolves as in production).

    srv: (name, target, port, priority, weight) tuples, name like
         "_xmpp-client._tcp.localhost"; target None publishes the "." target
         (service not offered)
    hosts: (name, [addresses]) tuples for A/AAAA
    etc_hosts: the lines of the private /etc/hosts
    domains: the domains it answers alone (NXDOMAIN for unknown names)"""

    PROBE = "probe.clawsd-harness.invalid"

    def __init__(self, srv=(), hosts=(), etc_hosts=("127.0.0.1 localhost", "::1 localhost"),
                 domains=("localhost", "test"), directory=None):
        problem = dns_sandbox_problem()
        if problem:
            raise HarnessError("DnsServer: " + problem)
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="clawsd-dns-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "dnsmasq.log"
        self.resolv_path = self.dir / "resolv.conf"
        self.hosts_path = self.dir / "hosts"
        self.srv = list(srv)
        self.hosts = list(hosts)
        self.domains = list(domains)
        self.hosts_path.write_text("\n".join(etc_hosts) + "\n")
        self.address = None
        self.proc = None

    def _argv(self):
        argv = [DNSMASQ_BIN, "--keep-in-foreground", "--conf-file=/dev/null",
                "--no-resolv", "--no-hosts", "--pid-file=", "--user=root",
                "--listen-address=%s" % self.address, "--bind-interfaces", "--port=53",
                "--log-queries", "--log-facility=%s" % self.log_path]
        argv += ["--local=/%s/" % d for d in self.domains]
        for name, target, port, prio, weight in self.srv:
            if target is None:
                argv.append("--srv-host=%s" % name)
            else:
                argv.append("--srv-host=%s,%s,%d,%d,%d" % (name, target, port, prio, weight))
        for name, addrs in self.hosts:
            argv.append("--host-record=%s,%s" % (name, ",".join(addrs)))
        return argv

    def start(self, timeout=10.0):
        for _ in range(10):
            self.address = "127.%d.%d.%d" % tuple(os.urandom(1)[0] % 200 + 50 for _ in range(3))
            try:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind((self.address, 53))
            except OSError:
                continue
            self.proc = subprocess.Popen(self._argv(), cwd=str(self.dir),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.STDOUT, start_new_session=True)

            def ready():
                if self.proc.poll() is not None:
                    return "exited"
                try:
                    dns_query((self.address, 53), self.PROBE, timeout=0.2)
                    return "up"
                except OSError:
                    return None
            state = wait_until(ready, timeout, what="dnsmasq on %s:53" % self.address)
            if state == "up":
                self.resolv_path.write_text("nameserver %s\noptions timeout:1 attempts:2\n"
                                            % self.address)
                return self
        raise HarnessError("dnsmasq did not start\n--- log:\n%s" % tail(self.log()))

    def wrapper(self, binary=None):
        """A script that runs `binary ARGS...` with this server as its only
        resolver and the private /etc/hosts; it exec's all the way, so its
        pid is the program's (stop by pid works).  Use as Clawsd(binary=)."""
        binary = Path(binary or CLAWSD_BIN)
        path = self.dir / ("%s-with-dns" % binary.name)
        path.write_text(
            "#!/bin/sh\n"
            "# written by tests/integration/harness.py: %s with the test DNS server\n"
            "exec %s --mount --propagation private -- /bin/sh -c "
            "'mount --bind \"$1\" /etc/resolv.conf && mount --bind \"$2\" /etc/hosts "
            "&& shift 2 && exec \"$@\"' sh %s %s %s \"$@\"\n"
            % (binary, UNSHARE_BIN, self.resolv_path, self.hosts_path, binary))
        os.chmod(path, 0o755)
        return path

    def run(self, argv, timeout=30.0):
        """Run argv through the wrapper; returns the CompletedProcess."""
        return subprocess.run([str(self.wrapper(argv[0]))] + [str(a) for a in argv[1:]],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)

    def log(self):
        return read_text(self.log_path)

    def queries(self):
        """[(type, name)] of every query received, in order (but the
        harness's own start-up probe)."""
        return [q for q in re.findall(r"(?m)query\[(\w+)\] (\S+) from ", self.log())
                if q[1] != self.PROBE]

    def stop(self):
        rc = stop_process(self.proc, 5)
        self.proc = None
        return rc

    def cleanup(self):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


class Forwarder:
    """A plain TCP forwarder (threads) from (listen_host, listen_port) to
    (target_host, target_port), both on loopback, for listeners on fixed
    ports (e.g. 5222, the SRV fallback) or addresses other than 127.0.0.1.
    `accepted' counts the connections."""

    def __init__(self, listen_host, listen_port, target_port, target_host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in listen_host else socket.AF_INET
        self._lsock = socket.socket(fam, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((listen_host, listen_port))
        self._lsock.listen(16)
        self.host, self.port = listen_host, self._lsock.getsockname()[1]
        self.target = (target_host, target_port)
        self.accepted = 0
        self._socks = []
        self._stop = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _accept_loop(self):
        while not self._stop:
            try:
                c, _ = self._lsock.accept()
            except OSError:
                return
            with self._lock:
                if self._stop:
                    c.close()
                    return
                self.accepted += 1
                try:
                    u = socket.create_connection(self.target, timeout=5)
                except OSError:
                    c.close()
                    continue
                self._socks += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            a.settimeout(None)
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def stop(self):
        with self._lock:
            self._stop = True
            socks, self._socks = self._socks, []
        try:
            self._lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._lsock.close()
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# clawsd

class Clawsd:
    """One clawsd daemon with its own config, socket and log in a temp folder.

    xmpp / socket_opts: extra keys for the [xmpp] / [socket] sections (they
    override the defaults chosen here; a value of None removes a key)."""

    def __init__(self, user, password, port, tls="starttls", ca_file=None,
                 domain="localhost", host="127.0.0.1", reconnect_delay=1,
                 reconnect_max_delay=2, connect_timeout=5, log_level="debug",
                 xmpp=None, socket_opts=None, directory=None, binary=None,
                 rooms=None):
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
        # [rooms]: ROOM@SERVICE = NICK [password=...], rooms_ping_interval
        self.rooms = dict(rooms or {})
        self.log_level = log_level
        self.write_config()

    def config_text(self):
        out = ["# written by tests/integration/harness.py", "[xmpp]"]
        out += ["%s = %s" % (k, v) for k, v in self.xmpp_opts.items()]
        if self.rooms:
            out += ["", "[rooms]"]
            out += ["%s = %s" % (k, v) for k, v in self.rooms.items()]
        out += ["", "[socket]"]
        out += ["%s = %s" % (k, v) for k, v in self.socket_opts.items()]
        out += ["", "[log]", "level = %s" % self.log_level, ""]
        return "\n".join(out)

    def write_config(self):
        self.config_path.write_text(self.config_text())
        os.chmod(self.config_path, 0o600)

    def start(self, wait_socket=True, timeout=10.0, args=(), env=None,
              listen_fd=None, pid_env=()):
        """env: variables to add to the daemon's environment (None removes
        one).  listen_fd: a socket to pass the way systemd does (as fd 3,
        LISTEN_FDS=1, LISTEN_PID=the daemon's pid).  pid_env: names of more
        variables to set to the daemon's pid (e.g. WATCHDOG_PID)."""
        if not self.binary.exists():
            raise HarnessError("%s does not exist: run `make clawsd`" % self.binary)
        argv = CLAWSD_WRAPPER + [str(self.binary), "-c", str(self.config_path)] + list(args)
        daemon_env = None
        if env is not None:
            daemon_env = dict(os.environ)
            for k, v in env.items():
                if v is None:
                    daemon_env.pop(k, None)
                else:
                    daemon_env[k] = str(v)
        pass_fds = ()
        if listen_fd is not None or pid_env:
            argv = sd_exec_argv(argv, listen_fd, pid_env)
            if listen_fd is not None:
                pass_fds = (listen_fd,)
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            argv, cwd=str(self.dir), stdin=subprocess.DEVNULL,
            stdout=self._logf, stderr=self._logf, start_new_session=True,
            env=daemon_env, pass_fds=pass_fds)
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
        """SIGTERM by pid; returns the exit code (SIGKILL after timeout).
        Raises HarnessError, once per process, when the log holds a
        sanitizer or valgrind report (see SANITIZER_CHECK)."""
        rc = stop_process(self.proc, timeout * (3 if CLAWSD_WRAPPER else 1))
        if self._logf is not None:
            self._logf.close()
            self._logf = None
        self.check_sanitizers(rc)
        return rc

    def check_sanitizers(self, rc=None):
        """HarnessError if this daemon's log holds an ASan, LSan, UBSan or
        valgrind report, or it exited with valgrind's error code (99).
        Checked once per process; a no-op when SANITIZER_CHECK is off."""
        if not SANITIZER_CHECK or self.proc is None:
            return
        if getattr(self, "_sanitizers_checked", None) is self.proc:
            return
        self._sanitizers_checked = self.proc
        report = sanitizer_report(self.log())
        if report is None and rc == 99 and CLAWSD_WRAPPER:
            report = "exit status 99 under %s" % " ".join(CLAWSD_WRAPPER)
        if report is not None:
            raise HarnessError("clawsd (%s) reported a memory or undefined-"
                               "behaviour error:\n%s" % (self.log_path, report))

    def rss_kib(self):
        """The daemon's resident memory (VmRSS) in KiB."""
        return vm_rss_kib(self.proc.pid)

    def kill(self, sig=signal.SIGTERM):
        os.kill(self.proc.pid, sig)

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    def log(self):
        return read_text(self.log_path)

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
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def retire(self, lines=80):
        """The end of a fixture: stop, print the log's tail for the test
        report, remove the folder.  A sanitizer report still raises."""
        try:
            rc = self.stop()
            print("---- clawsd %s (exit %s) log tail:\n%s"
                  % (self.config_path, rc, tail(self.log(), lines)))
        finally:
            self.cleanup()


# sanitizer and valgrind reports in a daemon's log, and memory figures

_SANITIZER_RX = re.compile(
    r"(?m)^(==\d+==ERROR: (AddressSanitizer|LeakSanitizer)\b.*"
    r"|WARNING: ThreadSanitizer: .*"
    r"|SUMMARY: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer"
    r"|ThreadSanitizer)\b.*"
    r"|.*:\d+:\d+: runtime error: .*"
    r"|==\d+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised"
    r"|Syscall param|Mismatched free|Source and destination overlap).*"
    r"|==\d+== .* (definitely|indirectly) lost in .*"
    r"|==\d+== ERROR SUMMARY: [1-9]\d* errors.*)$")


def sanitizer_report(text):
    """The part of a log from its first sanitizer or valgrind report on
    (at most 60 lines), or None when there is none."""
    m = _SANITIZER_RX.search(text)
    if m is None:
        return None
    lines = text[m.start():].splitlines()
    # a valgrind report starts a few lines before its first marker line
    before = text[:m.start()].splitlines()[-3:]
    return "\n".join(before + lines[:60])


def vm_rss_kib(pid):
    """VmRSS of a process, in KiB (from /proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise HarnessError("no VmRSS for pid %d" % pid)


_INSTRUMENTED = {}


def instrumented(binary=None):
    """True when the daemon's memory figures say little about the daemon:
    it runs under CLAWSD_WRAPPER (valgrind) or is built with a sanitizer
    (whose allocator keeps freed memory in quarantine)."""
    if CLAWSD_WRAPPER:
        return True
    path = Path(binary or CLAWSD_BIN)
    if path not in _INSTRUMENTED:
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        _INSTRUMENTED[path] = (b"__asan_init" in data or b"__ubsan_handle" in data
                               or b"__msan_init" in data or b"__tsan_init" in data)
    return _INSTRUMENTED[path]


# --------------------------------------------------------------------------
# playing systemd: socket activation and the sd_notify protocol

# Run in the child, then exec'd into the daemon (same pid): put the listening
# socket on fd 3 and name the pid, as systemd does after its fork.
_SD_EXEC = """\
import os, sys
fd, names, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
if fd >= 0:
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())
for name in filter(None, names.split(",")):
    os.environ[name] = str(os.getpid())
os.execv(argv[0], argv)
"""


def sd_exec_argv(argv, listen_fd=None, pid_env=()):
    """argv wrapped so that the daemon gets listen_fd as fd 3 with
    LISTEN_FDS/LISTEN_PID, and the variables in pid_env set to its pid."""
    return (["/usr/bin/python3", "-c", _SD_EXEC,
             str(-1 if listen_fd is None else listen_fd), ",".join(pid_env)]
            + list(argv))


def unix_listener(path):
    """A listening AF_UNIX stream socket at path, as clawsd.socket makes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(16)
    return s


class NotifySocket:
    """The service manager's end of sd_notify: a datagram socket at a path,
    or an abstract one (address() then starts with '@').  A thread collects
    every datagram with its arrival time (time.monotonic()) and the sender's
    pid (SO_PASSCRED)."""

    def __init__(self, path=None, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            self.name = "@clawsd-test-%s" % uuid.uuid4().hex[:12]
            self.sock.bind("\0" + self.name[1:])
        else:
            self.name = str(path)
            self.sock.bind(self.name)
        self.sock.settimeout(0.2)
        self._cond = threading.Condition()
        self._messages = []      # (time, pid, text)
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def address(self):
        return self.name

    def _run(self):
        csize = socket.CMSG_SPACE(12)
        while not self._closed:
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, csize)
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("=iII", cdata[:12])[0]
            with self._cond:
                self._messages.append((time.monotonic(), pid,
                                       data.decode("utf-8", "replace")))
                self._cond.notify_all()

    @property
    def messages(self):
        """Every message so far, as (time, pid, text)."""
        with self._cond:
            return list(self._messages)

    def texts(self):
        return [m[2] for m in self.messages]

    def wait(self, predicate, timeout=10.0, start=0):
        """The index of the first message from index `start' whose text
        satisfies predicate; TimeoutError after timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self._messages)):
                    if predicate(self._messages[i][2]):
                        return i
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no matching notify message in %.1fs; got %r"
                                       % (timeout, [m[2] for m in self._messages[-10:]]))
                self._cond.wait(remaining)

    def close(self):
        self._closed = True
        self._thread.join(2)
        self.sock.close()
        if not self.name.startswith("@"):
            try:
                os.unlink(self.name)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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


def _connect_starttls(x, host, port):
    """Connect slixmpp client x to host:port with STARTTLS, TLS required.
    slixmpp 1.10 (Debian 13) is told which ways it may use by attributes
    and takes connect(host, port); 1.8 (Debian 12) takes keywords."""
    if hasattr(x, "enable_direct_tls"):
        x.enable_direct_tls = False
        x.enable_starttls = True
        x.enable_plaintext = False
        x.connect(host, port)
    else:
        x.connect(address=(host, port), use_ssl=False, force_starttls=True,
                  disable_starttls=False)


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
            # One mechanism without channel binding: slixmpp 1.10 (Debian
            # 13) tries SCRAM-*-PLUS first, which ejabberd 24.12 refuses
            # under TLS 1.3, each try an authentication failure in the
            # server's log that the tests would count as clawsd's.
            x = slixmpp.ClientXMPP(self.jid, self.password, sasl_mech="SCRAM-SHA-1")
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
            _connect_starttls(x, host, port)
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

    def send_raw(self, data):
        """Write an XML stanza as is on the peer's stream."""
        if not self._started.is_set() or self._failed:
            raise HarnessError("peer not connected")
        done = threading.Event()

        def _send():
            try:
                self.xmpp.send_raw(data)
            finally:
                done.set()
        self.loop.call_soon_threadsafe(_send)
        if not done.wait(5):
            raise HarnessError("peer: send_raw did not run in 5s")

    def send_iq(self, to, payload, type="get", timeout=10.0):
        """Send an iq of `type` to `to` with the XML element `payload` as
        its child; the answer (result or error) as an XML string."""
        if not self._started.is_set() or self._failed:
            raise HarnessError("peer not connected")
        import xml.etree.ElementTree as ET
        from slixmpp.exceptions import IqError

        async def _ask():
            iq = self.xmpp.make_iq(ito=to, itype=type)
            iq.append(ET.fromstring(payload))
            try:
                return str(await iq.send(timeout=timeout))
            except IqError as e:
                return str(e.iq)
        fut = asyncio.run_coroutine_threadsafe(_ask(), self.loop)
        return fut.result(timeout + 5)

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
