"""The session against a hostile or broken server (issue 11): the scripted
server of fakexmpp.py, over STARTTLS with the harness's PKI and over plain
TCP (`tls = none`), with stream management on and off where it matters.

In every case the daemon stays up, logs a reason, and goes back to
Retrying (or, where the server's behaviour is legal, carries on).  The
only figures asserted are generous bounds on "it did reconnect" and "it did
not reconnect too often"; waits are read from the daemon's log.
"""

import base64
import re
import signal
import socket
import threading
import time

import pytest

import fakexmpp
import harness
from harness import is_status, message_xml, parse_line, unique

SM = fakexmpp.SM_NS
STREAMS = fakexmpp.STREAMS_NS
STREAM_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
PASSWORD = "fake-password"
TLS_MODES = ["starttls", "none"]
SM_MODES = ["sm", "nosm"]


@pytest.fixture
def fake(pki):
    """fake(tls, sm=False, hooks=None) -> a started FakeXmppServer."""
    servers = []

    def make(tls="none", sm=False, hooks=None, **kw):
        srv = fakexmpp.FakeXmppServer("bot", PASSWORD, sm=sm, hooks=hooks,
                                      tls=pki if tls == "starttls" else None, **kw)
        servers.append(srv.start())
        return srv
    yield make
    for srv in servers:
        srv.stop()


def clawsd_for(daemons, pki, srv, tls="none", sm=False, start=True, **kw):
    """A clawsd logging in to the fake server."""
    # the fake server keeps no archive: no catch-up query (SPEC 9) to
    # answer, nor to count among the stanzas
    xmpp = {"sasl_mechanisms": "SCRAM-SHA-1",
            "stream_management": "yes" if sm else "no", "catch_up": "no"}
    xmpp.update(kw.pop("xmpp", {}))
    kw.setdefault("reconnect_delay", 1)
    kw.setdefault("reconnect_max_delay", 2)
    d = harness.Clawsd(user="bot", password=PASSWORD, port=srv.port, tls=tls,
                       ca_file=pki.ca_cert if tls == "starttls" else None,
                       xmpp=xmpp, **kw)
    daemons(d)
    return d.start() if start else d


def retry_waits(d, reason=""):
    """The waits logged on entering Retrying, in seconds, for reasons
    matching `reason`."""
    return [float(m.group(1)) for m in re.finditer(
        r"(?m)state: [^\n]*-> Retrying: in (\d+\.\d) s: ([^\n]*)$", d.log())
        if re.search(reason, m.group(2))]


def wait_retrying(d, reason, timeout=10):
    """The log shows a failure with this reason, then Retrying."""
    d.wait_log(r"connection (failed|lost) in [\w ]+: [^\n]*%s" % reason, timeout)
    d.wait_log(r"-> Retrying: in [\d.]+ s: [^\n]*%s" % reason, timeout)
    assert d.alive


def no_answer(conn, e):
    return b""


MODES = [(t, s) for t in TLS_MODES for s in SM_MODES]
MODE_IDS = ["%s-%s" % m for m in MODES]


# --------------------------------------------------------------------------
# negotiation

def test_starttls_stripped_no_auth_in_clear(fake, daemons, pki):
    """The server's first features lose <starttls/>: clawsd never sends
    <auth> (or anything of SASL) on the plaintext stream."""
    mechs = ("<stream:features><mechanisms xmlns='%s'><mechanism>SCRAM-SHA-1"
             "</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
             % fakexmpp.SASL_NS)
    srv = fake("starttls", hooks={"features": lambda conn, e: mechs})
    d = clawsd_for(daemons, pki, srv, "starttls")
    wait_retrying(d, "TLS: the server does not offer STARTTLS")
    srv.wait_connections(2, timeout=10)
    assert srv.received("auth") == []
    assert [e for e in srv.elements if e[2] == fakexmpp.SASL_NS] == []


@pytest.mark.parametrize("tls,sm", MODES, ids=MODE_IDS)
def test_features_without_bind(fake, daemons, pki, tls, sm):
    feats = "<stream:features>%s</stream:features>" % (
        "<sm xmlns='%s'/>" % SM if sm == "sm" else "")
    srv = fake(tls, sm=sm == "sm", hooks={"bind_features": lambda conn, e: feats})
    d = clawsd_for(daemons, pki, srv, tls, sm == "sm")
    wait_retrying(d, "protocol error: the server offers no resource binding")
    srv.wait_connections(2, timeout=10)
    assert srv.received("iq") == []


@pytest.mark.parametrize("tls", TLS_MODES)
def test_bind_error(fake, daemons, pki, tls):
    def bind(conn, e):
        return ("<iq type='error' id='%s'><error type='cancel'><not-allowed "
                "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                % e.attrs.get("id", ""))
    srv = fake(tls, hooks={"bind": bind})
    d = clawsd_for(daemons, pki, srv, tls)
    wait_retrying(d, "bind: not-allowed")
    srv.wait_connections(2, timeout=10)


FOREIGN_JIDS = ["bot@evil.example/clawsd", "mallory@localhost/clawsd", "localhost",
                "bot@localhost", "bot@localhost/", "garbage", "bot@localhost.evil/x"]


@pytest.mark.parametrize("jid", FOREIGN_JIDS)
@pytest.mark.parametrize("tls", TLS_MODES)
def test_bind_foreign_jid_refused(fake, daemons, pki, tls, jid):
    """RFC 6120 7.6.3: the bound JID is our bare JID plus a resource."""
    def bind(conn, e):
        return ("<iq type='result' id='%s'><bind xmlns='%s'><jid>%s</jid></bind></iq>"
                % (e.attrs.get("id", ""), fakexmpp.BIND_NS, jid))
    srv = fake(tls, hooks={"bind": bind})
    d = clawsd_for(daemons, pki, srv, tls)
    wait_retrying(d, "protocol error: bind: the server bound a JID that is not")
    with d.connect() as c:
        for line in [c.read_line(5)] + c.read_lines_for(0.3):
            assert not is_status(parse_line(line), "connected"), line
    assert srv.received("presence") == []


@pytest.mark.parametrize("tls,sm", MODES, ids=MODE_IDS)
def test_unsolicited_resumed_during_bind(fake, daemons, pki, tls, sm):
    """A <resumed/> nobody asked for, instead of the bind result (on a
    first connection: no JID yet).  It crashed the daemon."""
    resumed = "<resumed xmlns='%s' h='0' previd='never-asked'/>" % SM
    srv = fake(tls, sm=sm == "sm", hooks={"bind": lambda conn, e: resumed})
    d = clawsd_for(daemons, pki, srv, tls, sm == "sm")
    wait_retrying(d, "protocol error: unexpected <resumed xmlns='%s'> in Binding" % SM)
    srv.wait_connections(2, timeout=10)
    assert d.alive


# --------------------------------------------------------------------------
# stream management counts

def bound_with_unacked(fake, daemons, pki, tls, n, hooks=None, **kw):
    """A session with stream management whose <r/> the server never answers,
    and n client messages it received: (server, daemon, client, ids)."""
    h = {"r": no_answer}
    h.update(hooks or {})
    srv = fake(tls, sm=True, hooks=h)
    d = clawsd_for(daemons, pki, srv, tls, True, **kw)
    c, _ = d.wait_connected(timeout=15)
    sess = srv.wait_session(timeout=10)
    ids = [unique("m") for _ in range(n)]
    for mid in ids:
        c.send(message_xml("peer@localhost", "x", id=mid))
    harness.wait_until(lambda: len(received_ids(sess, ids)) == n, 10,
                       what="the server to get the messages")
    return srv, d, c, sess, ids


def received_ids(sess, ids):
    return [e.attrs.get("id") for e in sess.received
            if e.name == "message" and e.attrs.get("id") in ids]


@pytest.mark.parametrize("tls", TLS_MODES)
def test_ack_higher_than_sent(fake, daemons, pki, tls):
    srv, d, c, s1, ids = bound_with_unacked(fake, daemons, pki, tls, 2)
    s1.send("<a xmlns='%s' h='1000'/>" % SM)
    wait_retrying(d, "protocol error: stream management: <a h='1000'/> with 3 "
                     "unacknowledged: h is higher")
    # nothing lost: a new session gets them again (the presence is the third)
    s2 = srv.wait_session(timeout=10)
    harness.wait_until(lambda: received_ids(s2, ids) == ids, 10,
                       what="the unacknowledged messages sent again")
    c.close()


@pytest.mark.parametrize("tls", TLS_MODES)
def test_ack_going_backwards_loses_nothing(fake, daemons, pki, tls):
    """An h lower than the last one: a protocol error, and what was not
    acknowledged goes again on the next session.  It dropped everything."""
    srv, d, c, s1, ids = bound_with_unacked(fake, daemons, pki, tls, 4)
    # the presence and the first two messages, then backwards
    s1.send("<a xmlns='%s' h='3'/><a xmlns='%s' h='2'/>" % (SM, SM))
    wait_retrying(d, "h went backwards")
    s2 = srv.wait_session(timeout=10)
    harness.wait_until(lambda: received_ids(s2, ids) == ids[2:], 10,
                       what="the two unacknowledged messages sent again: got %r"
                       % (received_ids(s2, ids),))
    time.sleep(0.3)
    assert received_ids(s2, ids) == ids[2:]
    c.close()


@pytest.mark.parametrize("tls", TLS_MODES)
def test_sent_while_enabling_goes_again(fake, daemons, pki, tls):
    """Sent after <enable/>, and the connection dies before <enabled/>:
    nothing to resume, so the message goes again on the next session (at
    least once).  It was dropped with the half-enabled counters."""
    def enable(conn, e):
        return b"" if conn.number == 1 else None    # the first: no answer
    srv = fake(tls, sm=True, hooks={"enable": enable})
    d = clawsd_for(daemons, pki, srv, tls, True)
    c, _ = d.wait_connected(timeout=15)
    s1 = srv.wait_session(timeout=10)
    mid = unique("enabling")
    c.send(message_xml("peer@localhost", "sent while enabling", id=mid))
    harness.wait_until(lambda: received_ids(s1, [mid]), 10, what="the message")
    assert "stream management enabled" not in d.log()
    s1.close()
    s2 = srv.wait_session(2, timeout=15)
    harness.wait_until(lambda: received_ids(s2, [mid]) == [mid], 10,
                       what="the message sent again on the new session")
    c.close()


def test_resumed_h_higher_than_sent(fake, daemons, pki):
    def resume(conn, e):
        return "<resumed xmlns='%s' h='50' previd='%s'/>" % (SM, e.attrs.get("previd"))
    srv, d, c, s1, ids = bound_with_unacked(fake, daemons, pki, "starttls", 1,
                                            hooks={"resume": resume})
    s1.close()
    wait_retrying(d, "protocol error: stream management: <resumed h='50'/>: "
                     "h is higher")
    # a new session then, not another resume, and the message goes again
    s3 = srv.wait_session(3, timeout=10)
    assert len(srv.received("resume")) == 1
    harness.wait_until(lambda: received_ids(s3, ids) == ids, 10,
                       what="the message sent again")
    c.close()


def test_resume_with_nothing_to_resend(fake, daemons, pki):
    """The legal case: the server has everything; resumed, nothing sent
    again, the counts go on."""
    state = {}

    def resume(conn, e):
        state["h"] = e.attrs.get("h")
        return "<resumed xmlns='%s' h='%d' previd='%s'/>" % (
            SM, srv.sessions[0].conn.h_in, e.attrs.get("previd"))
    srv = fake("starttls", sm=True, hooks={"resume": resume})
    d = clawsd_for(daemons, pki, srv, "starttls", True)
    c, _ = d.wait_connected(timeout=15)
    s1 = srv.wait_session(timeout=10)
    mid = unique("m")
    c.send(message_xml("peer@localhost", "x", id=mid))
    harness.wait_until(lambda: received_ids(s1, [mid]), 10, what="the message")
    d.wait_log(r"stream management enabled \(resumable\)", 5)
    s1.send("<message id='in-1'/><message id='in-2'/>")
    c.wait_for(lambda e: e.get("id") == "in-2", timeout=5)
    time.sleep(0.3)             # the server's <a/> for our <r/>
    s1.close()
    el = c.wait_for(lambda e: is_status(e, "connected"), timeout=10)
    assert el.get("resumed") == "true"
    assert state["h"] == "2"    # the two stanzas we handled
    s2 = srv.wait_session(timeout=10)
    time.sleep(0.3)
    assert received_ids(s2, [mid]) == []
    assert "resent" not in d.log()
    c.close()


@pytest.mark.parametrize("tls,sm", MODES, ids=MODE_IDS)
def test_ten_thousand_ack_requests(fake, daemons, pki, tls, sm):
    """Legal with stream management (each answered, the session goes on),
    a protocol error without (once: the rest of that stream is dropped)."""
    srv = fake(tls, sm=sm == "sm")
    d = clawsd_for(daemons, pki, srv, tls, sm == "sm")
    c, _ = d.wait_connected(timeout=15)
    s1 = srv.wait_session(timeout=10)
    if sm == "sm":
        d.wait_log(r"stream management enabled", 5)
    try:
        s1.send(("<r xmlns='%s'/>" % SM) * 10000 + "<message id='after-r'/>")
    except OSError:
        assert sm == "nosm"     # the daemon hung up at the first one
    if sm == "sm":
        c.wait_for(lambda e: e.get("id") == "after-r", timeout=20)
        harness.wait_until(lambda: len([e for e in s1.received if e.name == "a"])
                           >= 10000, 20, what="10,000 answers")
        assert "connection lost" not in d.log()
    else:
        wait_retrying(d, r"protocol error: stream management: <r/> while it is "
                         "not enabled")
        assert len(re.findall("protocol error", d.log())) == 2   # warn + state
        srv.wait_session(2, timeout=10)
    c.close()


def test_queue_max_zero_with_stream_management(fake, daemons, pki):
    """queue_max = 0: nothing held while down, but a session that is up
    still sends.  It blocked every client forever."""
    srv = fake("starttls", sm=True)
    d = clawsd_for(daemons, pki, srv, "starttls", True, xmpp={"queue_max": 0})
    c, _ = d.wait_connected(timeout=15)
    s1 = srv.wait_session(timeout=10)
    ids = [unique("q0") for _ in range(5)]
    for mid in ids:
        c.send(message_xml("peer@localhost", "x", id=mid))
    harness.wait_until(lambda: received_ids(s1, ids) == ids, 10,
                       what="the messages at the server")
    c.close()


# --------------------------------------------------------------------------
# the stream itself

@pytest.mark.parametrize("tls,sm", MODES, ids=MODE_IDS)
def test_second_stream_header_mid_session(fake, daemons, pki, tls, sm):
    """It swallowed everything after it: no relay, no reconnect."""
    srv = fake(tls, sm=sm == "sm")
    d = clawsd_for(daemons, pki, srv, tls, sm == "sm")
    c, _ = d.wait_connected(timeout=15)
    s1 = srv.wait_session(timeout=10)
    s1.send("<stream:stream xmlns='jabber:client' xmlns:stream='%s' version='1.0'>"
            "<message id='swallowed'/>" % STREAMS)
    el = c.wait_for(lambda e: is_status(e), timeout=5)
    assert is_status(el, "disconnected"), el.attrib
    assert "a second stream header" in el.get("reason")
    wait_retrying(d, "a second stream header inside the stream")
    srv.wait_session(2, timeout=10)
    assert not [l for l in c.lines if "swallowed" in l]
    c.close()


def trickle(conn, data, every=0.1):
    for b in data:
        try:
            conn.send(bytes([b]))
        except OSError:
            return
        time.sleep(every)


def test_trickled_features_hit_the_handshake_deadline(fake, daemons, pki):
    """One byte every 100 ms: connect_timeout still holds."""
    feats = ("<stream:features><mechanisms xmlns='%s'><mechanism>SCRAM-SHA-1"
             "</mechanism></mechanisms></stream:features>" % fakexmpp.SASL_NS).encode()

    def slow(conn, e):
        if conn.number == 1:
            trickle(conn, feats)
            return b""
        return None
    srv = fake("none", hooks={"features": slow})
    d = clawsd_for(daemons, pki, srv, "none", connect_timeout=2)
    wait_retrying(d, r"handshake timeout \(2 s\) in Stream Init")
    d.wait_connected(timeout=15)[0].close()


def test_trickled_stanza_is_silence(fake, daemons, pki):
    """A stanza trickled one byte per 100 ms in a bound session: no whole
    element, so a ping goes out, and its pong cannot come: the connection
    is dead after ping_interval + ping_timeout.  Every byte used to count
    as life: the session hung on for as long as the trickle."""
    srv = fake("starttls")
    d = clawsd_for(daemons, pki, srv, "starttls",
                   xmpp={"ping_interval": 2, "ping_timeout": 2})
    c, _ = d.wait_connected(timeout=15)
    s1 = srv.wait_session(timeout=10)
    body = ("<message id='slow'><body>%s</body></message>" % ("z" * 200)).encode()
    t = threading.Thread(target=trickle, args=(s1.conn, body), daemon=True)
    t0 = time.monotonic()
    t.start()
    el = c.wait_for(lambda e: is_status(e), timeout=2 + 2 + 4)
    took = time.monotonic() - t0
    assert is_status(el, "disconnected"), el.attrib
    assert "ping timeout" in el.get("reason")
    s1.close()
    t.join(30)
    print("TRICKLE: the session was dropped %.1f s into the trickle" % took)


def test_only_the_pong_answers_a_ping(fake, daemons, pki):
    """A space every second keeps the connection busy but answers no
    ping (SPEC 2): a ping timeout all the same.  It was kept."""
    srv = fake("starttls")
    d = clawsd_for(daemons, pki, srv, "starttls",
                   xmpp={"ping_interval": 2, "ping_timeout": 2})
    c, _ = d.wait_connected(timeout=15)
    s1 = srv.wait_session(timeout=10)
    stop = threading.Event()

    def spaces():
        while not stop.wait(1.0):
            try:
                s1.send(b" ")
            except OSError:
                return
    t = threading.Thread(target=spaces, daemon=True)
    t.start()
    try:
        el = c.wait_for(lambda e: is_status(e), timeout=2 + 2 + 4)
        assert is_status(el, "disconnected"), el.attrib
        assert "ping timeout" in el.get("reason")
    finally:
        stop.set()
        t.join(5)
    pings = [e for e in s1.received if e.name == "iq" and e.child("ping") is not None]
    assert len(pings) == 1


def test_answered_pings_keep_the_session(fake, daemons, pki):
    def stanza(conn, e):
        if e.name == "iq" and e.attrs.get("type") == "get" and e.child("ping") is not None:
            return "<iq type='result' id='%s' from='localhost'/>" % e.attrs.get("id")
        return None
    srv = fake("starttls", hooks={"stanza": stanza})
    d = clawsd_for(daemons, pki, srv, "starttls",
                   xmpp={"ping_interval": 1, "ping_timeout": 1})
    c, _ = d.wait_connected(timeout=15)
    s1 = srv.wait_session(timeout=10)
    time.sleep(5)
    pings = [e for e in s1.received if e.name == "iq" and e.child("ping") is not None]
    assert len(pings) >= 2, "%d pings in 5 s with ping_interval = 1" % len(pings)
    assert "connection lost" not in d.log()
    c.close()


# --------------------------------------------------------------------------
# stream errors: see-other-host, conflict

def see_other_host(to):
    return ("<stream:error><see-other-host xmlns='%s'>%s</see-other-host>"
            "</stream:error></stream:stream>" % (STREAM_ERR, to))


@pytest.mark.parametrize("tls", TLS_MODES)
def test_redirect_loop_is_bounded(fake, daemons, pki, tls):
    """A server that redirects to itself, after TLS (or in clear to
    loopback): at most 3 redirects per attempt, each counted for the
    backoff.  It used to make thousands of connections a second."""
    holder = {}

    def features(conn, e):
        if tls == "none" or conn.secure:
            return see_other_host("127.0.0.1:%d" % holder["port"])
        return None
    srv = fake(tls, hooks={"features": features})
    holder["port"] = srv.port
    d = clawsd_for(daemons, pki, srv, tls, reconnect_delay=1, reconnect_max_delay=30)
    d.wait_log(r"not followed: 3 redirects already in this attempt", 10)
    time.sleep(3)
    assert d.alive
    # the first attempt and its 3 redirects; the next wait is 8 s +-20%
    # (1 doubled by each redirect), so nothing else in these 3 s
    assert 4 <= srv.connections <= 5, srv.connections
    waits = retry_waits(d, "see-other-host")
    assert waits[:3] == [0.0, 0.0, 0.0], waits
    assert 6.4 <= waits[3] <= 9.6, waits


def test_redirect_before_tls_not_followed(fake, daemons, pki):
    """On the plaintext stream anyone on the path could have said it."""
    lure = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lure.bind(("127.0.0.1", 0))
    lure.listen(4)
    lure.settimeout(0.1)
    try:
        port = lure.getsockname()[1]

        def features(conn, e):
            return None if conn.secure else see_other_host("127.0.0.1:%d" % port)
        srv = fake("starttls", hooks={"features": features})
        d = clawsd_for(daemons, pki, srv, "starttls")
        d.wait_log(r"see-other-host 127.0.0.1:%d: not followed: the stream is not "
                   r"encrypted yet" % port, 10)
        wait_retrying(d, "stream error: see-other-host")
        srv.wait_connections(2, timeout=10)
        with pytest.raises(socket.timeout):
            lure.accept()
    finally:
        lure.close()


def test_redirect_in_clear_only_to_loopback(fake, daemons, pki):
    srv = fake("none", hooks={"features": lambda conn, e: see_other_host(
        "xmpp.evil.example:5222")})
    d = clawsd_for(daemons, pki, srv, "none")
    d.wait_log(r"see-other-host xmpp.evil.example:5222: not followed: not a "
               r"loopback host \(tls = none\)", 10)
    srv.wait_connections(2, timeout=10)
    assert "connecting to xmpp.evil.example" not in d.log()


def test_conflict_on_every_login_backs_off(fake, daemons, pki):
    """Two daemons with one account and resource kicked each other every
    1-3 s forever: after `conflict` the wait grows as after a failure."""
    kick = ("<stream:error><conflict xmlns='%s'/></stream:error></stream:stream>"
            % STREAM_ERR)
    srv = fake("none", hooks={"bound": lambda conn, e: kick})
    d = clawsd_for(daemons, pki, srv, "none", reconnect_delay=1, reconnect_max_delay=8)
    d.wait_log(r"-> Retrying: in [\d.]+ s: stream error: conflict", 20, count=4)
    waits = retry_waits(d, "conflict")
    assert len(waits) >= 4, waits
    # 1, 2, 4, 8 s +-20%: each at least 4/3 of the one before
    for a, b in zip(waits, waits[1:4]):
        assert b >= a * 1.3, waits
    assert re.search(r"conflict: another client uses bot@localhost/\S+ with the "
                     r"same resource", d.log())


def test_backoff_cap_is_a_cap(daemons, pki):
    """reconnect_max_delay = 1 and nothing listening: every wait is at the
    cap, and jitter never takes it past (waits of 340 s with 300)."""
    port = harness.free_port()
    d = harness.Clawsd(user="bot", password=PASSWORD, port=port, tls="none",
                       reconnect_delay=1, reconnect_max_delay=1)
    daemons(d).start()
    d.wait_log(r"-> Retrying: in", 15, count=7)
    waits = retry_waits(d)
    assert len(waits) >= 7
    assert max(waits) <= 1.0, waits
    assert min(waits) >= 0.8, waits


# --------------------------------------------------------------------------
# reload and shutdown

def test_sighup_during_shutdown_does_not_reconnect(fake, daemons, pki):
    """SIGTERM, the server does not close its stream (clawsd waits 3 s),
    and a SIGHUP with a changed file comes meanwhile: no reconnect."""
    srv = fake("starttls", hooks={"close": no_answer})
    d = clawsd_for(daemons, pki, srv, "starttls")
    c, _ = d.wait_connected(timeout=15)
    srv.wait_session(timeout=10)
    d.xmpp_opts["resource"] = unique("other")
    d.write_config()
    d.kill(signal.SIGTERM)
    d.wait_log(r"shutting down", 5)
    d.kill(signal.SIGHUP)
    rc = d.proc.wait(timeout=10)
    assert rc == 0
    assert srv.connections == 1
    assert "connecting to" not in d.log().split("shutting down", 1)[1]
    c.close()


def test_nothing_written_after_our_close(fake, daemons, pki):
    """SIGTERM: after clawsd's </stream:stream> an <a/> comes that leaves
    stanzas unacknowledged.  Nothing may follow the close, not even the
    <r/> an <a/> otherwise brings (Prosody resets a connection that sends
    after its close, and with it what it still had to say)."""
    at_close = []

    def close(conn, e):
        at_close.append(len(srv.elements))
        conn.send(("<a xmlns='urn:xmpp:sm:3' h='%d'/>" % (conn.h_in - 1)).encode())
        return b""      # and no </stream:stream>: clawsd waits for it
    srv = fake("starttls", sm=True, hooks={"r": no_answer, "close": close})
    d = clawsd_for(daemons, pki, srv, "starttls", sm=True)
    c, _ = d.wait_connected(timeout=15)
    c.send("".join(message_xml("peer@localhost", "bye %d" % i) for i in range(5)))
    srv.wait_session(timeout=10)
    harness.wait_until(lambda: sum(1 for e in srv.elements if e[3] == "message") == 5, 10,
                       what="the messages at the server")
    d.kill(signal.SIGTERM)
    assert d.proc.wait(timeout=10) == 0
    assert at_close, "no </stream:stream> from clawsd"
    # after the end of the document, any element is junk to the parser
    assert not srv.errors, srv.errors
    after = [e[3] for e in srv.elements[at_close[0]:]]
    assert after == [], "written after </stream:stream>: %r" % after
    d.wait_log(r"the server did not close its stream in time")
    c.close()


@pytest.mark.parametrize("tls", TLS_MODES)
def test_reload_resends_nothing_the_server_has(fake, daemons, pki, tls):
    """A reload closes the stream on both sides: the server has handled
    all we sent (RFC 6120 4.4), acknowledged or not; nothing goes twice,
    and no ack is called bad.  Every reload resent the unacknowledged."""
    srv, d, c, s1, ids = bound_with_unacked(fake, daemons, pki, tls, 20)
    d.xmpp_opts["resource"] = unique("reloaded")
    d.write_config()
    d.kill(signal.SIGHUP)
    s2 = srv.wait_session(timeout=10)
    c.wait_for(lambda e: is_status(e, "connected"), timeout=10)
    after = unique("after")
    c.send(message_xml("peer@localhost", "x", id=after))
    harness.wait_until(lambda: received_ids(s2, [after]), 10, what="a new message")
    assert received_ids(s2, ids) == []
    assert "bad ack" not in d.log() and "protocol error" not in d.log()
    c.close()


# --------------------------------------------------------------------------
# RFC 3921 sessions, and two daemons on one resource (a real server)

SESSION_NS = "urn:ietf:params:xml:ns:xmpp-session"


@pytest.mark.parametrize("answer", ["result", "error"])
def test_rfc3921_session(fake, daemons, pki, answer):
    """A server that still requires the session iq: it goes before the
    presence, and a refusal is a failure (the SESSION state)."""
    feats = ("<stream:features><bind xmlns='%s'/><session xmlns='%s'/>"
             "</stream:features>" % (fakexmpp.BIND_NS, SESSION_NS))

    def stanza(conn, e):
        if e.name == "iq" and e.child("session") is not None:
            return ("<message id='before-session-result'/><iq type='%s' id='%s'/>"
                    % (answer, e.attrs.get("id")))
        return None
    srv = fake("starttls", hooks={"bind_features": lambda conn, e: feats,
                                  "stanza": stanza})
    d = clawsd_for(daemons, pki, srv, "starttls")
    if answer == "error":
        wait_retrying(d, "session: refused by the server")
        assert srv.received("presence") == []
        return
    c, _ = d.wait_connected(timeout=15)
    s1 = srv.wait_session(timeout=10)
    harness.wait_until(lambda: [e.name for e in s1.received][:2] == ["iq", "presence"],
                       10, what="the session iq, then the presence")
    assert "state: Binding -> Binding: session" in d.log()
    c.close()


def test_two_daemons_on_one_resource_back_off(make_clawsd, server):
    """The real server kicks the older session with `conflict` each time
    the other daemon binds: each daemon's waits grow (they reset at every
    session and the two kicked each other every 1-3 s forever)."""
    resource = unique("twin")
    kw = dict(reconnect_delay=1, reconnect_max_delay=16,
              xmpp={"resource": resource})
    a = make_clawsd(**kw).start()
    ja = a.wait_connected(timeout=20)
    ja[0].close()
    b = make_clawsd(**kw).start()
    if server.sasl2:
        # Bind2: the server makes each daemon's resource from the tag and
        # the daemon's client id: two daemons are two sessions, no conflict
        jb = b.wait_connected(timeout=20)
        jb[0].close()
        assert ja[1].get("jid") != jb[1].get("jid")
        for el in (ja[1], jb[1]):
            assert el.get("jid").startswith("bot@localhost/" + resource)
        time.sleep(3)
        assert "conflict" not in a.log() + b.log()
        return

    def enough():
        return max(len(retry_waits(a, "conflict")), len(retry_waits(b, "conflict"))) >= 3
    harness.wait_until(enough, 40, what="three conflicts for one of the daemons")
    for d in (a, b):
        waits = retry_waits(d, "conflict")
        for x, y in zip(waits, waits[1:]):
            assert y >= x * 1.3, (waits, d.log())
        if waits:
            assert re.search(r"conflict: another client uses bot@localhost/%s with the "
                             r"same resource" % resource, d.log())


# --------------------------------------------------------------------------
# SASL2 (XEP-0388) and Bind2 (XEP-0386): the <success/> is checked against
# what <authenticate/> asked for

SASL2 = "urn:xmpp:sasl:2"


def sasl2_success(v64, authz, inner=""):
    return ("<success xmlns='%s'><additional-data>%s</additional-data>"
            "<authorization-identifier>%s</authorization-identifier>%s</success>"
            % (SASL2, base64.b64encode(("v=" + v64).encode()).decode(), authz, inner))


def test_sasl2_login_bind2_sm(fake, daemons, pki):
    srv = fake(tls="starttls", sm=True, sasl2=True)
    d = clawsd_for(daemons, pki, srv, tls="starttls", sm=True)
    _, el = d.wait_connected(timeout=15)
    assert re.fullmatch(r"bot@localhost/\S+\.fake", el.get("jid"))
    d.wait_log(r"authenticated as bot@localhost with SCRAM-SHA-1 \(SASL2\)")
    d.wait_log(r"stream management enabled \(resumable\)")
    auth = [a for _, _, ns, name, a in srv.elements if name == "authenticate"]
    assert auth and auth[0]["mechanism"] == "SCRAM-SHA-1"


def test_sasl2_continue_is_not_a_login(fake, daemons, pki):
    """<continue/> (XEP-0388 2.5): the server wants tasks done (a password
    upgrade, a second factor) that a daemon cannot do.  The log names them,
    and the wait is the longest, as after a wrong password."""
    def cont(conn, e):
        return ("<continue xmlns='%s'><additional-data>%s</additional-data>"
                "<tasks><task>UPGR-SCRAM-SHA-256</task><task>HOTP-EXAMPLE</task></tasks>"
                "<text>second factor needed</text></continue>"
                % (SASL2, base64.b64encode(("v=" + conn.v64).encode()).decode()))
    srv = fake(tls="starttls", sasl2=True, hooks={"sasl2_success": cont})
    d = clawsd_for(daemons, pki, srv, tls="starttls", reconnect_max_delay=30)
    wait_retrying(d, r"SASL2: the server asks for tasks clawsd cannot do: "
                  r"UPGR-SCRAM-SHA-256 HOTP-EXAMPLE \(second factor needed\)", timeout=15)
    wait = float(d.wait_log(r"retrying in ([\d.]+) s").group(1))
    assert 24 <= wait <= 30, wait
    assert "connected xmlns" not in d.log()


@pytest.mark.parametrize("case", ["unasked-resumed", "foreign-authz", "bad-proof",
                                  "foreign-bound", "no-authz"])
def test_sasl2_hostile_success(fake, daemons, pki, case):
    def success(conn, e):
        foreign = "eve@localhost/x"
        if case == "unasked-resumed":
            return sasl2_success(conn.v64, conn.jid,
                                 "<resumed xmlns='urn:xmpp:sm:3' h='0' previd='x'/>")
        if case == "foreign-authz":
            return sasl2_success(conn.v64, foreign, "<bound xmlns='urn:xmpp:bind:0'/>")
        if case == "bad-proof":
            return sasl2_success(base64.b64encode(b"\0" * 20).decode(), conn.jid,
                                 "<bound xmlns='urn:xmpp:bind:0'/>")
        if case == "foreign-bound":
            # a bare JID is no binding
            return sasl2_success(conn.v64, "bot@localhost",
                                 "<bound xmlns='urn:xmpp:bind:0'/>")
        return sasl2_success(conn.v64, "", "<bound xmlns='urn:xmpp:bind:0'/>")
    srv = fake(tls="starttls", sasl2=True, hooks={"sasl2_success": success})
    d = clawsd_for(daemons, pki, srv, tls="starttls")
    reason = {"unasked-resumed": r"protocol error: SASL2: <success/> answers what was not asked",
              "foreign-authz": r"protocol error: SASL2: the authorization identifier is not",
              "bad-proof": r"SASL2: server signature mismatch",
              "foreign-bound": r"protocol error: Bind2: the server bound a JID that is not",
              "no-authz": r"protocol error: SASL2: the authorization identifier is not"}[case]
    wait_retrying(d, reason, timeout=15)
    assert "connected xmlns" not in d.log()
    assert not srv.sessions or all(not s.received for s in srv.sessions)
