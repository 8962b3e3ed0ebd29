"""A tiny, deliberately scriptable XMPP server for the hostile-server tests.

Plain TCP on 127.0.0.1 (clawsd with `tls = none`) or STARTTLS with the
harness's PKI (`tls=pki`), SCRAM-SHA-1 only (clawsd never sends PLAIN
unencrypted), resource binding, and stream management (XEP-0198) when
`sm=True`.  Once a session is bound the test sends whatever bytes it likes
with Session.send(), well-formed or not; the server never checks what it
sends.

    srv = FakeXmppServer(user="bot", password="pw")
    srv.start()
    sess = srv.wait_session(timeout=10)      # bound session number 1
    sess.send(b"<message>...</message>")
    sess.wait_closed(timeout=10)            # clawsd hung up
    srv.stop()

`header_attrs` adds attributes (e.g. namespace declarations) to the stream
header the server sends.  `before_header` is sent before the stream header
of the first stream of every connection (e.g. a DOCTYPE).  `encoding`
(e.g. "utf-16", with its byte order mark) is the encoding of that first
header and features, instead of UTF-8.

`hooks` scripts the server: a dict from an event name to a function
hook(conn, elem) that returns the bytes to send instead of the normal
answer (None: the normal answer).  Events: "features" (the first features
of a stream; elem is None), "bind_features" (after SASL), "bind" (the bind
iq), "enable", "resume", "r", "a", "bound" (just after the bind result or
<resumed/>, returns extra bytes), "stanza" (a stanza from the client once
bound; returns extra bytes), "close" (the client's </stream:stream>: the
server answers with its own and closes, unless the hook returns bytes).  conn.number is the connection's number (from
1), conn.secure tells TLS, conn.h_in counts the client's stanzas since
<enable/>.  srv.elements records every element received:
(connection number, secure, namespace, name, attributes).

For hostile SCRAM: `server_first(cnonce, nonce, salt64)` returns the
server-first-message to send instead of "r=NONCE,s=SALT,i=ITERATIONS"
(`nonce` is the client's extended by the server's); `server_final(v64)`
returns the data of <success/> instead of "v=V64" (None: no data).

Everything runs in background threads; every wait is bounded; every
socket is closed by stop().
"""

import base64
import hashlib
import hmac
import os
import select
import socket
import ssl
import threading
import time
import xml.parsers.expat

STREAMS_NS = "http://etherx.jabber.org/streams"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SM_NS = "urn:xmpp:sm:3"
SASL2_NS = "urn:xmpp:sasl:2"
BIND2_NS = "urn:xmpp:bind:0"
STANZAS = ("message", "presence", "iq")


class _Elem:
    __slots__ = ("ns", "name", "attrs", "text", "children")

    def __init__(self, ns, name, attrs):
        self.ns, self.name, self.attrs = ns, name, attrs
        self.text = ""
        self.children = []

    def child(self, name):
        for c in self.children:
            if c.name == name:
                return c
        return None


class _StreamReader:
    """The client's stream, parsed with expat: stream headers and every
    top-level element (as a small tree), in order, into `events`."""

    def __init__(self):
        self.events = []
        self.reset()

    def reset(self):
        p = xml.parsers.expat.ParserCreate(namespace_separator="\x01")
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        self.p = p
        self.stack = []

    @staticmethod
    def _split(name):
        if "\x01" in name:
            ns, local = name.split("\x01", 1)
            return ns, local
        return "", name

    def _start(self, name, attrs):
        ns, local = self._split(name)
        e = _Elem(ns, local, dict(attrs))
        if not self.stack:
            self.events.append(("header", e))
        elif len(self.stack) >= 2:
            self.stack[-1].children.append(e)
        self.stack.append(e)

    def _end(self, name):
        e = self.stack.pop()
        if len(self.stack) == 1:
            self.events.append(("element", e))
        elif not self.stack:
            self.events.append(("close", e))

    def _chars(self, data):
        if len(self.stack) >= 2:
            self.stack[-1].text += data

    def feed(self, data):
        self.p.Parse(data, False)


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


class Session:
    """One TCP connection from clawsd, once it got past SASL and binding."""

    def __init__(self, server, sock, number):
        self.server = server
        self.sock = sock
        self.number = number
        self.jid = None
        self.conn = None
        self.closed = threading.Event()
        self.received = []      # top-level elements after binding

    def send(self, data):
        self.conn.send(data)

    def wait_closed(self, timeout=10.0):
        if not self.closed.wait(timeout):
            raise TimeoutError("fake server: session %d still open after %.1fs"
                               % (self.number, timeout))
        return True

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Conn:
    """One TCP connection from clawsd, as the hooks see it."""

    def __init__(self, server, sock, number):
        self.server = server
        self.sock = sock
        self.number = number
        self.secure = False
        self.h_in = 0           # client stanzas handled since <enable/>
        self.counting = False
        self.session = None
        self._lock = threading.Lock()

    def send(self, data):
        """From the server's thread or the test's: one write at a time."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        with self._lock:
            self.sock.sendall(data)

    def recv(self):
        """What came, b"" at the end, None after a second of silence.  The
        read holds the send lock: one TLS connection is never read and
        written by two threads at once (OpenSSL's record layer is not
        thread-safe; a test trickling bytes while the server read broke
        the connection now and then)."""
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if not pending and not select.select([self.sock], [], [], 1.0)[0]:
            return None
        with self._lock:
            return self.sock.recv(65536)


class FakeXmppServer:
    def __init__(self, user, password, domain="localhost", header_attrs="",
                 before_header=b"", iterations=4096, tls=None, sm=False,
                 hooks=None, encoding="utf-8", server_first=None,
                 server_final=None, sasl2=False):
        """tls: None (plain TCP) or a harness.PKI (STARTTLS with its
        server certificate, required before SASL).  sasl2: offer SASL2
        with Bind2 (once encrypted) instead of SASL; the hook
        "sasl2_success" may replace its <success/> (conn.v64: the server
        signature, conn.jid: the JID Bind2 would bind)."""
        self.sasl2 = sasl2
        self.user = user
        self.password = password
        self.domain = domain
        self.header_attrs = header_attrs
        self.before_header = before_header
        self.encoding = encoding
        self.server_first = server_first
        self.server_final = server_final
        self.iterations = iterations
        self.sm = sm
        self.hooks = dict(hooks or {})
        self.tls_ctx = None
        if tls is not None:
            self.tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_ctx.load_cert_chain(str(tls.server_cert), str(tls.server_key))
            # No TLS 1.3 session tickets: nothing arrives after the
            # handshake that a write from the test's thread could race
            # with.  (Capping the server at TLS 1.2 would do the same, but
            # a client that has TLS 1.3, as clawsd with mbedtls 3, rightly
            # refuses the downgrade OpenSSL then signals.)
            self.tls_ctx.num_tickets = 0
        self.salt = os.urandom(16)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.connections = 0
        self.responses = 0      # SCRAM client-final-messages received
        self.sessions = []
        self.errors = []
        self.elements = []
        self._cond = threading.Condition()
        self._stopping = False
        self._socks = []
        self._threads = []

    # -- life cycle

    def start(self):
        self.lsock.listen(8)
        t = threading.Thread(target=self._accept_loop, name="fakexmpp-accept",
                             daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stopping = True
        # shutdown, not only close: that is what wakes a blocked accept()
        for how in (lambda: self.lsock.shutdown(socket.SHUT_RDWR), self.lsock.close):
            try:
                how()
            except OSError:
                pass
        for s in list(self._socks):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wait_session(self, number=None, timeout=10.0):
        """The bound session `number` (1-based; default: the next one not
        yet returned)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if number is None:
                number = getattr(self, "_next", 1)
            while len(self.sessions) < number:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("fake server: no bound session #%d in %.1fs "
                                       "(connections %d, errors %r)"
                                       % (number, timeout, self.connections, self.errors))
                self._cond.wait(remaining)
            self._next = number + 1
            return self.sessions[number - 1]

    def wait_connections(self, n, timeout=10.0):
        """Wait until at least n connections were accepted."""
        deadline = time.monotonic() + timeout
        while self.connections < n:
            if time.monotonic() >= deadline:
                raise TimeoutError("fake server: %d connections of %d in %.1fs"
                                   % (self.connections, n, timeout))
            time.sleep(0.02)
        return self.connections

    def received(self, name, ns=None):
        """The recorded elements with this name (and namespace)."""
        with self._cond:
            return [e for e in self.elements
                    if e[3] == name and (ns is None or e[2] == ns)]

    # -- the protocol

    def _accept_loop(self):
        while not self._stopping:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            self._socks.append(sock)
            self.connections += 1
            conn = Conn(self, sock, self.connections)
            t = threading.Thread(target=self._serve, args=(conn,),
                                 name="fakexmpp-conn", daemon=True)
            t.start()
            self._threads.append(t)

    def _header(self):
        return ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                "xmlns:stream='%s' id='%s' from='%s' version='1.0' "
                "xml:lang='en' %s>" % (STREAMS_NS, os.urandom(6).hex(),
                                       self.domain, self.header_attrs)).encode()

    def _hook(self, name, conn, e):
        h = self.hooks.get(name)
        if h is None:
            return None
        out = h(conn, e)
        if isinstance(out, str):
            out = out.encode("utf-8")
        return out

    def _features(self, conn, state):
        if state == "header":
            if self.tls_ctx is not None and not conn.secure:
                return ("<stream:features><starttls xmlns='%s'><required/></starttls>"
                        "</stream:features>" % TLS_NS)
            if self.sasl2 and conn.secure:
                return ("<stream:features><authentication xmlns='%s'>"
                        "<mechanism>SCRAM-SHA-1</mechanism><inline>"
                        "<bind xmlns='%s'><inline><feature var='%s'/></inline></bind>"
                        "<sm xmlns='%s'/></inline></authentication></stream:features>"
                        % (SASL2_NS, BIND2_NS, SM_NS, SM_NS))
            return ("<stream:features><mechanisms xmlns='%s'>"
                    "<mechanism>SCRAM-SHA-1</mechanism>"
                    "</mechanisms></stream:features>" % SASL_NS)
        return ("<stream:features><bind xmlns='%s'/>%s</stream:features>"
                % (BIND_NS, "<sm xmlns='%s'/>" % SM_NS if self.sm else ""))

    def _bound(self, conn, jid):
        with self._cond:
            sess = Session(self, conn.sock, len(self.sessions) + 1)
            sess.jid = jid
            sess.conn = conn
            self.sessions.append(sess)
            self._cond.notify_all()
        conn.session = sess
        return sess

    def _serve(self, conn):
        reader = _StreamReader()
        state = "header"
        scram = {}
        conn.sock.settimeout(30)
        try:
            while not self._stopping:
                try:
                    data = conn.recv()
                except socket.timeout:
                    continue
                if data is None:
                    continue
                if not data:
                    break
                try:
                    reader.feed(data)
                except xml.parsers.expat.ExpatError as e:
                    self.errors.append("client sent bad XML: %s" % e)
                    break
                while reader.events:
                    kind, e = reader.events.pop(0)
                    if kind == "close":
                        # RFC 6120 4.4: close ours too, unless told to hang
                        if self._hook("close", conn, e) is None:
                            conn.send(b"</stream:stream>")
                            raise ConnectionAbortedError
                        continue
                    with self._cond:
                        self.elements.append((conn.number, conn.secure, e.ns, e.name,
                                              dict(e.attrs)))
                    if kind == "header":
                        pre = self.before_header if state == "header" else b""
                        first = state == "header"
                        if first and self.encoding != "utf-8":
                            # header and features in one encoding, one BOM
                            conn.send(pre + (self._header().decode()
                                             + self._features(conn, state))
                                      .encode(self.encoding))
                            state = "auth"
                            continue
                        conn.send(pre + self._header())
                        feats = self._hook("features" if first else "bind_features",
                                           conn, None)
                        if feats is None:
                            feats = self._features(conn, state).encode()
                        state = "auth" if first else "bind"
                        conn.send(feats)
                        continue
                    state = self._element(conn, reader, state, e, scram)
        except (OSError, ConnectionAbortedError, ssl.SSLError):
            pass
        finally:
            if conn.session is not None:
                conn.session.closed.set()
            try:
                conn.sock.close()
            except OSError:
                pass

    def _element(self, conn, reader, state, e, scram):
        if state == "auth" and e.name == "starttls" and self.tls_ctx is not None:
            conn.send("<proceed xmlns='%s'/>" % TLS_NS)
            conn.sock = self.tls_ctx.wrap_socket(conn.sock, server_side=True)
            self._socks.append(conn.sock)
            conn.secure = True
            reader.reset()
            return "header"
        if state == "auth" and e.name == "auth":
            return self._scram_first(conn.sock, e, scram)
        if state == "auth" and e.name == "authenticate" and e.ns == SASL2_NS:
            initial = e.child("initial-response")
            e.text = initial.text if initial is not None else ""
            scram["sasl2"] = e
            return self._scram_first(conn.sock, e, scram)
        if state == "challenged" and e.name == "response" and e.ns == SASL2_NS:
            return self._sasl2_final(conn, e, scram)
        if state == "challenged" and e.name == "response":
            state = self._scram_final(conn.sock, e, scram)
            if state == "restart":
                reader.reset()
            return state
        if state == "bind" and e.name == "resume":
            out = self._hook("resume", conn, e)
            if out is None:
                out = ("<failed xmlns='%s'><item-not-found "
                       "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>" % SM_NS).encode()
            conn.send(out)
            if b"<resumed" in out:
                self._bound(conn, "%s@%s/resumed" % (self.user, self.domain))
                extra = self._hook("bound", conn, e)
                if extra:
                    conn.send(extra)
                return "bound"
            return "bind"
        if state == "bind" and e.name == "iq":
            out = self._hook("bind", conn, e)
            b = e.child("bind")
            res = b.child("resource") if b is not None else None
            jid = "%s@%s/%s" % (self.user, self.domain,
                                res.text if res is not None else "fake")
            if out is None:
                out = ("<iq type='result' id='%s'><bind xmlns='%s'>"
                       "<jid>%s</jid></bind></iq>"
                       % (e.attrs.get("id", ""), BIND_NS, jid)).encode()
            conn.send(out)
            self._bound(conn, jid)
            extra = self._hook("bound", conn, e)
            if extra:
                conn.send(extra)
            return "bound"
        if state == "bound":
            return self._bound_element(conn, e)
        self.errors.append("unexpected <%s/> in %s" % (e.name, state))
        return state

    def _bound_element(self, conn, e):
        conn.session.received.append(e)
        if e.ns == SM_NS:
            out = self._hook(e.name, conn, e)
            if out is None and e.name == "enable" and self.sm:
                conn.counting = True
                conn.h_in = 0
                out = ("<enabled xmlns='%s' id='%s' resume='true'/>"
                       % (SM_NS, os.urandom(6).hex())).encode()
            elif out is None and e.name == "r" and conn.counting:
                out = ("<a xmlns='%s' h='%d'/>" % (SM_NS, conn.h_in)).encode()
            if out:
                conn.send(out)
            return "bound"
        if e.name in STANZAS:
            if conn.counting:
                conn.h_in = (conn.h_in + 1) % (1 << 32)
            extra = self._hook("stanza", conn, e)
            if extra:
                conn.send(extra)
        return "bound"

    def _sasl2_final(self, conn, e, scram):
        """SASL2 <success/>: Bind2 with stream management as asked, then
        the features a stream that is not restarted gets."""
        ok, v64 = self._scram_check(e, scram)
        if not ok:
            conn.send(("<failure xmlns='%s'><not-authorized xmlns='%s'/></failure>"
                       % (SASL2_NS, SASL_NS)).encode())
            return "auth"
        auth = scram["sasl2"]
        bind = auth.child("bind")
        tag = bind.child("tag").text if bind is not None else "fake"
        jid = "%s@%s/%s.fake" % (self.user, self.domain, tag)
        enabled = ""
        if bind is not None and bind.child("enable") is not None and self.sm:
            conn.counting, conn.h_in = True, 0
            enabled = "<enabled xmlns='%s' id='%s' resume='true'/>" % (SM_NS, os.urandom(6).hex())
        conn.v64, conn.jid = v64, jid
        out = self._hook("sasl2_success", conn, e)
        if out is None:
            out = ("<success xmlns='%s'><additional-data>%s</additional-data>"
                   "<authorization-identifier>%s</authorization-identifier>"
                   "<bound xmlns='%s'>%s</bound></success>"
                   % (SASL2_NS, base64.b64encode(("v=" + v64).encode()).decode(),
                      jid, BIND2_NS, enabled)).encode()
        conn.send(out + b"<stream:features/>")
        self._bound(conn, jid)
        return "bound"

    def _scram_check(self, e, scram):
        """The client-final-message: (proof right, the server signature)."""
        self.responses += 1
        final = base64.b64decode(e.text).decode()
        without_proof, _, proof = final.rpartition(",p=")
        auth = ",".join([scram["bare"], scram["first"], without_proof])
        salted = hashlib.pbkdf2_hmac("sha1", self.password.encode(), self.salt,
                                     self.iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
        stored = hashlib.sha1(client_key).digest()
        sig = hmac.new(stored, auth.encode(), hashlib.sha1).digest()
        ok = (scram["user"] == self.user
              and ("r=" + scram["nonce"]) in without_proof.split(",")
              and hmac.compare_digest(_xor(client_key, sig), base64.b64decode(proof)))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha1).digest()
        return ok, base64.b64encode(hmac.new(server_key, auth.encode(),
                                             hashlib.sha1).digest()).decode()

    def _scram_first(self, sock, e, scram):
        ns = SASL2_NS if e.ns == SASL2_NS else SASL_NS
        if e.attrs.get("mechanism") != "SCRAM-SHA-1":
            sock.sendall(("<failure xmlns='%s'><invalid-mechanism/></failure>"
                          % ns).encode())
            return "auth"
        msg = base64.b64decode(e.text).decode()
        gs2, _, bare = msg.partition("n=")
        bare = "n=" + bare
        attrs = dict(kv.split("=", 1) for kv in bare.split(","))
        nonce = attrs["r"] + base64.b64encode(os.urandom(12)).decode()
        salt64 = base64.b64encode(self.salt).decode()
        if self.server_first is not None:
            first = self.server_first(attrs["r"], nonce, salt64)
        else:
            first = "r=%s,s=%s,i=%d" % (nonce, salt64, self.iterations)
        scram.update(bare=bare, first=first, nonce=nonce, user=attrs["n"])
        sock.sendall(("<challenge xmlns='%s'>%s</challenge>"
                      % (ns, base64.b64encode(first.encode()).decode())).encode())
        return "challenged"

    def _scram_final(self, sock, e, scram):
        ok, v64 = self._scram_check(e, scram)
        if not ok:
            sock.sendall(("<failure xmlns='%s'><not-authorized/></failure>"
                          % SASL_NS).encode())
            return "auth"
        data = "v=" + v64
        if self.server_final is not None:
            data = self.server_final(v64)
        if data is None:
            sock.sendall(("<success xmlns='%s'/>" % SASL_NS).encode())
        else:
            sock.sendall(("<success xmlns='%s'>%s</success>"
                          % (SASL_NS, base64.b64encode(data.encode()).decode())).encode())
        return "restart"
