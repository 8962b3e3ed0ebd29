"""TLS session resumption on reconnect.  The real servers' own TLS is probed
with Python's OpenSSL (does a second connection resume the first one's
session?) and clawsd must resume exactly when it does.  To prove it resumes
where a server allows it, clawsd connects through a TLS terminator (Python's
OpenSSL server side, which resumes TLS 1.2 session ids and tickets and TLS
1.3 tickets) in front of the real server's direct TLS port; the terminator
tells whether each handshake resumed, and clawsd's log must say the same."""

import re
import select
import socket
import ssl
import threading

import pytest

from faultproxy import FaultProxy
from harness import message_xml, unique
from test_tls import clawsd_newest_tls

PEER = "peer@localhost"
RESUMED = re.compile(r"TLS: (TLSv1\.[0-9]) with \S+ \(resumed\)")
FULL = re.compile(r"TLS: (TLSv1\.[0-9]) with \S+$", re.M)


class TlsTerminator:
    """Direct TLS on 127.0.0.1:port with the PKI's localhost certificate,
    piped to the server's direct TLS port.  max_version pins a TLS version;
    tickets=False: TLS 1.2 resumes by session id only; resume=False: a new
    context (session cache and ticket keys) per connection, so no session is
    ever resumed.  (A cut is unclean, and OpenSSL resumes no session id
    after that: session ids are not tested here.)  reused: session_reused of each connection, in order."""

    def __init__(self, server, pki, max_version=None, tickets=True, resume=True):
        self.server, self.pki = server, pki
        self.max_version, self.tickets, self.resume = max_version, tickets, resume
        self.ctx = self._context()
        self.reused = []
        self.generation = 0
        self.lock = threading.Lock()
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.pki.server_cert), str(self.pki.server_key))
        if self.max_version:
            ctx.maximum_version = self.max_version
        if not self.tickets:
            ctx.options |= ssl.OP_NO_TICKET
        return ctx

    def start(self):
        self.thread.start()
        return self

    def _accept(self):
        while True:
            try:
                raw, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        ctx = self.ctx if self.resume else self._context()
        try:
            raw.settimeout(10)
            down = ctx.wrap_socket(raw, server_side=True)
            cctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
            up = cctx.wrap_socket(socket.create_connection(
                ("127.0.0.1", self.server.direct_tls_port), timeout=10),
                server_hostname=self.server.domain)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        down.settimeout(None)
        up.settimeout(None)
        with self.lock:
            self.reused.append(down.session_reused)
            gen = self.generation
        self._pipe(down, up, gen)

    def _pipe(self, down, up, gen):
        """Both directions in this one thread (an SSL socket read in one
        thread while another writes or closes it can crash the
        interpreter), until a cut() or either side closes."""
        peer = {down: up, up: down}
        try:
            while self.generation == gen:
                ready = [s for s in peer if s.pending()] or \
                    select.select(list(peer), [], [], 0.05)[0]
                for a in ready:
                    data = a.recv(65536)
                    if not data:
                        return
                    peer[a].sendall(data)
        except (OSError, ssl.SSLError):
            pass
        finally:
            for s in (down, up):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        """Every connection's thread closes it (within 50 ms)."""
        with self.lock:
            self.generation += 1

    def stop(self):
        self.lsock.close()
        self.cut()
        self.thread.join(5)


@pytest.fixture
def terminator(prosody, pki):
    made = []

    def make(**kw):
        t = TlsTerminator(prosody, pki, **kw).start()
        made.append(t)
        return t
    yield make
    for t in made:
        t.stop()


def connected_once(make_clawsd, port):
    """A clawsd over direct TLS to port, once connected."""
    # The terminator is a man in the middle: a channel-bound login
    # through it fails, as it should.
    d = make_clawsd(tls="direct", port=port,
                    xmpp={"channel_binding": "no"}).start()
    c, _ = d.wait_connected(timeout=20)
    c.close()
    return d


def cut_and_check(d, t, peer):
    d.wait_log(r"TLS: session kept to resume", timeout=20)
    # the handshake after the cut (an attempt may have failed before it)
    n = len(re.findall(r"TLS: TLSv1\.[0-9] with ", d.log()))
    t.cut()
    d.wait_log(r"TLS: TLSv1\.[0-9] with ", timeout=30, count=n + 1)
    c, _ = d.wait_connected(timeout=20)
    try:
        mid = unique("resumed")
        c.send(message_xml(PEER, "after the reconnect", id=mid))
        assert peer.wait_message(lambda m: m.id == mid, timeout=15).body == "after the reconnect"
    finally:
        c.close()


@pytest.mark.parametrize("version", ["newest", "TLSv1.2-ticket"])
def test_reconnect_resumes(make_clawsd, terminator, peer, version):
    if version != "newest" and clawsd_newest_tls() == "TLSv1.3":
        # OpenSSL marks the downgrade in its random, and mbedtls 3 refuses it
        pytest.skip("a TLS 1.2-only OpenSSL server is a downgrade to mbedtls 3")
    kw = {}
    if version.startswith("TLSv1.2"):
        kw = {"max_version": ssl.TLSVersion.TLSv1_2, "tickets": version.endswith("ticket")}
    t = terminator(**kw)
    d = connected_once(make_clawsd, t.port)
    cut_and_check(d, t, peer)
    log = d.log()
    print(t.reused, [line for line in log.splitlines() if "TLS: " in line])
    assert t.reused[:2] == [False, True]
    assert FULL.search(log)
    assert RESUMED.search(log)
    assert "did not resume" not in log


def test_refused_resumption_full_handshake(make_clawsd, terminator, peer):
    t = terminator(resume=False)
    d = connected_once(make_clawsd, t.port)
    cut_and_check(d, t, peer)
    log = d.log()
    assert t.reused[:2] == [False, False]
    assert len(FULL.findall(log)) >= 2
    assert not RESUMED.search(log)
    d.wait_log(r"TLS: the server did not resume the session", timeout=5)


def server_resumes(server, ca_file):
    """(version, resumed): whether the server's direct TLS port resumes a
    Python client's session on a second connection."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    session = None
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", server.direct_tls_port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname=server.domain, session=session) as t:
                t.sendall(b"<?xml version='1.0'?><stream:stream to='%s' version='1.0' "
                          b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/"
                          b"streams'>" % server.domain.encode())
                t.settimeout(2)
                data = b""
                while b"</stream:features>" not in data:
                    chunk = t.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                session, resumed, version = t.session, t.session_reused, t.version()
    return version, resumed


def test_real_server_resumes_as_it_allows(make_clawsd, prosody, pki, peer):
    """clawsd resumes against the real server exactly when the server
    resumes Python's session (printed: what each server does)."""
    version, allows = server_resumes(prosody, pki.ca_cert)
    print("%s direct TLS %s: resumes a session: %s" % (prosody.name, version, allows))
    with FaultProxy(prosody.direct_tls_port) as proxy:
        d = connected_once(make_clawsd, proxy.port)
        d.wait_log(r"TLS: TLSv1\.[0-9] with ", timeout=20)
        if version == "TLSv1.2" or allows:
            d.wait_log(r"TLS: session kept to resume", timeout=20)
        proxy.cut()
        d.wait_log(r"TLS: TLSv1\.[0-9] with ", timeout=30, count=2)
        d.wait_connected(timeout=20)[0].close()
    assert bool(RESUMED.search(d.log())) == allows
