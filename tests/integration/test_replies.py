"""Replies go to the client that asked (SPEC 4.3), the end of a client's
input (4.4), the commands status, receipts and filter (4.5), and error
lines with n and id (4.1.3), against the real servers."""

import re

import pytest

import harness
from harness import (CLAWSD_NS, is_status, local_name, message_xml,
                     parse_line, unique)

PEER = "peer@localhost"
BOT = "bot@localhost"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
VERSION = '<query xmlns="jabber:iq:version"/>'
DISCO = '<query xmlns="http://jabber.org/protocol/disco#info"/>'


def ctl(name, **attrs):
    a = "".join(' %s="%s"' % (k, harness.xml_escape(v)) for k, v in attrs.items())
    return '<%s xmlns="urn:x-clawsd"%s/>' % (name, a)


def is_ctl(el, name):
    return el.tag == "{%s}%s" % (CLAWSD_NS, name)


def until_status(c, timeout=10):
    """Every line before the answer to a status command sent now: the
    daemon writes its lines to a client in order, so whatever was meant
    for it before is in there."""
    c.send(ctl("status"))
    out = []
    while True:
        el = c.read_element(timeout)
        if is_ctl(el, "status"):
            return out
        out.append(el)


def connected(d):
    c, el = d.wait_connected(timeout=20)
    return c, el.get("jid")


def assert_service_unavailable(answer):
    """An iq error of type cancel, service-unavailable (RFC 6120 8.4), as
    slixmpp hands it over (jabber:client or no namespace)."""
    el = parse_line(answer)
    assert el.get("type") == "error", answer
    err = [e for e in el if local_name(e.tag) == "error"]
    assert len(err) == 1 and err[0].get("type") == "cancel", answer
    assert [local_name(e.tag) for e in err[0]
            if e.tag == "{%s}service-unavailable" % STANZAS_NS], answer


def iq_lines(els):
    return [e for e in els if local_name(e.tag) == "iq"]


# --------------------------------------------------------------------------
# 4.3: answers to the asker

def test_same_id_from_two_clients(bot, peer):
    d, third = bot
    third.send(ctl("filter", stanzas="message"))
    a, _ = connected(d)
    b, _ = connected(d)
    with a, b:
        # both at once, the same id, different questions
        a.send('<iq type="get" id="1" to="localhost">%s</iq>' % VERSION)
        b.send('<iq type="get" id="1" to="localhost">%s</iq>' % DISCO)
        ea = a.wait_for(lambda e: local_name(e.tag) == "iq", timeout=10)
        eb = b.wait_for(lambda e: local_name(e.tag) == "iq", timeout=10)
        assert ea.get("id") == "1" and ea.get("type") == "result"
        assert eb.get("id") == "1" and eb.get("type") == "result"
        assert ea.find("{jabber:iq:version}query") is not None
        assert eb.find("{http://jabber.org/protocol/disco#info}query") is not None
        # nobody saw anybody else's answer
        assert iq_lines(until_status(a)) == []
        assert iq_lines(until_status(b)) == []
        assert iq_lines(until_status(third)) == []
        # the third client's filter still holds, its lines still come
        mid = unique("third")
        peer.send_message(BOT, "still here", id=mid)
        el = third.wait_for(lambda e: local_name(e.tag) == "message", timeout=10)
        assert el.get("id") == mid


def test_many_requests_same_id_each_its_own(bot):
    d, c = bot
    others = [connected(d)[0] for _ in range(3)]
    try:
        for o in others:
            for _ in range(5):
                o.send('<iq type="get" id="same" to="localhost">%s</iq>' % VERSION)
        for o in others:
            for _ in range(5):
                el = o.wait_for(lambda e: local_name(e.tag) == "iq", timeout=10)
                assert el.get("id") == "same" and el.get("type") == "result"
            assert iq_lines(until_status(o)) == []
        assert iq_lines(until_status(c)) == []
    finally:
        for o in others:
            o.close()


def test_half_close_gets_the_answer(bot):
    d, _ = bot
    for i in range(20):
        with d.connect() as c:
            c.send('<iq type="get" id="v%d" to="localhost">%s</iq>' % (i, VERSION))
            c.shutdown_write()
            lines = []
            with pytest.raises(EOFError):
                while True:
                    lines.append(c.read_line(timeout=10))
            answers = [l for l in lines if 'id="v%d"' % i in l]
            assert len(answers) == 1, lines
            assert parse_line(answers[0]).get("type") == "result"


def test_half_close_with_nothing_pending_closes(clawsd):
    with clawsd.connect() as c:
        c.read_line(timeout=5)
        c.shutdown_write()
        assert c.wait_eof(timeout=5)


def test_input_ending_inside_an_element(clawsd):
    with clawsd.connect() as c:
        c.read_line(timeout=5)
        c.send('<message to="%s"><body>cut' % PEER)
        c.shutdown_write()
        el = c.wait_for(lambda e: is_ctl(e, "error"), timeout=5)
        assert el.get("reason") == "not-well-formed"
        assert c.wait_eof(timeout=5)


def test_bounce_goes_only_to_its_sender(bot):
    d, other = bot
    a, _ = connected(d)
    with a:
        mid = unique("bounce")
        a.send(message_xml("nobody@nonexistent.invalid", "hello?", id=mid))
        el = a.wait_for(lambda e: local_name(e.tag) == "message", timeout=15)
        assert el.get("id") == mid and el.get("type") == "error"
        assert [e for e in until_status(other)
                if local_name(e.tag) == "message"] == []


def test_reply_timeout(make_clawsd):
    d = make_clawsd(socket_opts={"reply_timeout": 2}).start()
    c, jid = connected(d)
    with c:
        # to itself: the request comes back to the socket, and nobody answers
        c.send('<message to="%s" id="m0"><body>first</body></message>' % PEER)
        c.send('<iq type="get" id="t1" to="%s"><query xmlns="urn:x-clawsd-test"/></iq>'
               % harness.xml_escape(jid))
        el = c.wait_for(lambda e: is_ctl(e, "error"), timeout=10)
        assert el.get("reason") == "timeout"
        assert el.get("n") == "2" and el.get("id") == "t1"


def test_request_waits_for_the_session(make_clawsd, prosody):
    # reply_timeout counts from when the request can go out: queued while
    # the session is down (past several reconnect attempts), it gets its answer
    port = harness.free_port()
    d = make_clawsd(port=port, socket_opts={"reply_timeout": 2}).start()
    with d.connect() as c:
        c.read_line(timeout=5)
        c.send('<iq type="get" id="w1" to="localhost">%s</iq>' % VERSION)
        d.wait_log(r"retrying in", timeout=20, count=3)
        with harness.Forwarder("127.0.0.1", port, prosody.c2s_port):
            el = c.wait_for(lambda e: local_name(e.tag) == "iq" or is_ctl(e, "error"),
                            timeout=30)
        assert el.get("id") == "w1" and el.get("type") == "result", harness.tail(d.log())


def test_request_from_the_peer_with_no_client(clawsd, peer):
    c, jid = connected(clawsd)
    c.close()
    harness.wait_until(lambda: "client 1: closed" in clawsd.log(), 5,
                       what="the client to be gone")
    answer = peer.send_iq(jid, '<query xmlns="urn:x-clawsd-test"/>')
    assert_service_unavailable(answer)


def test_request_from_the_peer_refused_by_every_filter(bot, peer):
    d, c = bot
    c.send(ctl("filter", stanzas="message presence"))
    until_status(c)
    jid = [e for e in map(parse_line, c.lines) if is_ctl(e, "connected")][0].get("jid")
    assert_service_unavailable(peer.send_iq(jid, '<query xmlns="urn:x-clawsd-test"/>'))
    # a client that takes it answers it itself
    c.send(ctl("filter"))
    until_status(c)
    import threading
    result = {}
    t = threading.Thread(target=lambda: result.update(
        a=peer.send_iq(jid, '<query xmlns="urn:x-clawsd-test"/>')))
    t.start()
    el = c.wait_for(lambda e: local_name(e.tag) == "iq" and e.get("type") == "get",
                    timeout=10)
    c.send('<iq type="result" id="%s" to="%s"/>'
           % (harness.xml_escape(el.get("id")), harness.xml_escape(el.get("from"))))
    t.join(15)
    assert "result" in result.get("a", ""), result


# --------------------------------------------------------------------------
# 4.1.3: error lines with n and id

def test_queue_full_says_which(make_clawsd):
    d = make_clawsd(port=harness.free_port(), xmpp={"queue_max": 2}).start()
    with d.connect() as c:
        c.read_line(timeout=5)
        c.send(message_xml(PEER, "1", id="q1"))
        c.send(ctl("status"))               # commands are not counted
        c.send(message_xml(PEER, "2", id="q2"))
        c.send(message_xml(PEER, "3", id="q3"))
        c.send(message_xml(PEER, "4"))
        errors = []
        while len(errors) < 2:
            el = c.read_element(timeout=5)
            if is_ctl(el, "error"):
                errors.append(el)
        assert [(e.get("reason"), e.get("n"), e.get("id")) for e in errors] == \
            [("queue-full", "3", "q3"), ("queue-full", "4", None)]


def test_too_many_requests_in_flight(make_clawsd):
    d = make_clawsd(port=harness.free_port(), xmpp={"queue_max": 1000}).start()
    with d.connect() as c:
        c.read_line(timeout=5)
        c.send("".join('<iq type="get" id="r%d" to="%s">%s</iq>' % (i, PEER, VERSION)
                       for i in range(257)))
        el = c.wait_for(lambda e: is_ctl(e, "error"), timeout=5)
        assert (el.get("reason"), el.get("n"), el.get("id")) == ("queue-full", "257", "r256")


# --------------------------------------------------------------------------
# 4.5: commands

def test_status(bot):
    d, c = bot
    c.send(ctl("status"))
    el = c.wait_for(lambda e: is_ctl(e, "status"), timeout=5)
    assert el.get("state") == "Binded"
    assert re.fullmatch(r"bot@localhost/.+", el.get("jid") or "")
    assert el.get("sm") in ("yes", "no")
    assert el.get("queued") == "0"
    assert int(el.get("unacked")) >= 0
    assert el.get("clients") == "1"
    assert int(el.get("since")) >= 0
    assert el.get("catching_up") in ("yes", "no")
    assert len(el) == 0  # no rooms configured: no <room/> child


def test_status_while_down(make_clawsd):
    d = make_clawsd(port=harness.free_port()).start()
    with d.connect() as c, d.connect() as c2:
        c.read_line(timeout=5)
        c.send(message_xml(PEER, "x"))
        c.send(ctl("status"))
        el = c.wait_for(lambda e: is_ctl(e, "status"), timeout=5)
        assert el.get("state") in ("Connecting", "Retrying", "Connected")
        assert el.get("jid") is None
        assert el.get("sm") == "no"
        assert el.get("queued") == "1"
        assert el.get("clients") == "2"


def test_unknown_and_bad_commands(clawsd):
    with clawsd.connect() as c:
        c.read_line(timeout=5)
        c.send(ctl("frobnicate"))
        c.send(ctl("filter", stanzas="message chat"))
        c.send(ctl("status", verbose="yes"))
        c.send(ctl("filter", colour="red"))
        reasons = [c.wait_for(lambda e: is_ctl(e, "error"), timeout=5).get("reason")
                   for _ in range(4)]
        assert reasons == ["unknown-command", "bad-command", "bad-command", "bad-command"]
        # the connection stays open
        c.send(ctl("status"))
        assert c.wait_for(lambda e: is_ctl(e, "status"), timeout=5) is not None


@pytest.mark.parametrize("sm", ["yes", "no"])
def test_receipts(make_clawsd, peer, sm):
    d = make_clawsd(xmpp={"stream_management": sm}).start()
    c, _ = connected(d)
    with c:
        c.send(ctl("status"))
        st = c.wait_for(lambda e: is_ctl(e, "status"), timeout=5)
        assert st.get("sm") == sm
        c.send(ctl("receipts"))
        ids = [unique("rc") for _ in range(3)]
        for mid in ids:
            c.send(message_xml(PEER, "receipt " + mid, id=mid))
        c.send('<presence/>')
        acks = [c.wait_for(lambda e: is_ctl(e, "ack"), timeout=10) for _ in range(4)]
        assert [(a.get("n"), a.get("id")) for a in acks] == \
            [("1", ids[0]), ("2", ids[1]), ("3", ids[2]), ("4", None)]
        for mid in ids:
            peer.wait_message(lambda m, mid=mid: m.id == mid, timeout=10)


def test_receipts_then_half_close(make_clawsd, peer):
    d = make_clawsd(xmpp={"stream_management": "no"}).start()
    c, _ = connected(d)
    with c:
        mid = unique("hc")
        c.send(ctl("receipts") + message_xml(PEER, "bye", id=mid))
        c.shutdown_write()
        lines = []
        with pytest.raises(EOFError):
            while True:
                lines.append(c.read_line(timeout=10))
        acks = [parse_line(l) for l in lines if l.startswith("<ack")]
        assert [(a.get("n"), a.get("id")) for a in acks] == [("1", mid)]
    peer.wait_message(lambda m: m.id == mid, timeout=10)


# --------------------------------------------------------------------------
# 4.5: filters

def _received_until(c, marker, timeout=15):
    """Ids of the messages a client gets up to the one with id `marker`."""
    got = []
    while True:
        el = c.read_element(timeout)
        if local_name(el.tag) in ("message", "iq", "presence"):
            got.append(el.get("id"))
            if el.get("id") == marker:
                return got


def _send_kinds(peer, tag):
    """From the peer: messages of several types, one with a chat state."""
    sent = {}
    for t in ("chat", "normal", "headline"):
        sent[t] = "%s-%s" % (tag, t)
        peer.send_message(BOT, "type " + t, id=sent[t], type=t)
    sent["state"] = "%s-state" % tag
    peer.send_raw('<message to="%s" type="chat" id="%s"><active '
                  'xmlns="http://jabber.org/protocol/chatstates"/></message>'
                  % (BOT, sent["state"]))
    return sent


@pytest.mark.parametrize("attrs,want", [
    ({"stanzas": "message"}, ["chat", "normal", "headline", "state"]),
    ({"types": "chat"}, ["chat", "state"]),
    ({"types": "headline normal"}, ["normal", "headline"]),
    ({"from": PEER}, ["chat", "normal", "headline", "state"]),
    ({"from": "localhost"}, ["chat", "normal", "headline", "state"]),
    ({"from": "someone@localhost"}, []),
    ({"with": "http://jabber.org/protocol/chatstates"}, ["state"]),
    ({"types": "chat", "with": "jabber:client"}, ["chat"]),
    ({"stanzas": "presence iq"}, []),
    ({"stanzas": ""}, []),
])
def test_filter(bot, peer, attrs, want):
    d, c = bot
    c.send(ctl("filter", **attrs))
    until_status(c)
    tag = unique("f")
    sent = _send_kinds(peer, tag)
    # the marker: every filter above lets a listener with no filter see it
    other, _ = connected(d)
    with other:
        marker = tag + "-marker"
        peer.send_message(BOT, "marker", id=marker, type="chat")
        _received_until(other, marker)
    got = [i for i in (e.get("id") for e in until_status(c)
                       if local_name(e.tag) == "message") if i != marker]
    assert got == [sent[k] for k in want]


def test_filter_replaced_and_reset(bot, peer):
    d, c = bot
    c.send(ctl("filter", types="headline"))
    c.send(ctl("filter", types="chat"))
    until_status(c)     # what came before the filters
    tag = unique("r")
    peer.send_message(BOT, "h", id=tag + "-h", type="headline")
    peer.send_message(BOT, "c", id=tag + "-c", type="chat")
    assert _received_until(c, tag + "-c") == [tag + "-c"]
    c.send(ctl("filter"))
    until_status(c)
    peer.send_message(BOT, "h", id=tag + "-h2", type="headline")
    peer.send_message(BOT, "c", id=tag + "-c2", type="chat")
    assert _received_until(c, tag + "-c2") == [tag + "-h2", tag + "-c2"]


def test_filter_keeps_status_and_answers(bot):
    d, c = bot
    c.send(ctl("filter", stanzas=""))
    c.send('<iq type="get" id="mine" to="localhost">%s</iq>' % VERSION)
    el = c.wait_for(lambda e: local_name(e.tag) == "iq", timeout=10)
    assert el.get("id") == "mine"
    c.send(ctl("frobnicate"))
    assert c.wait_for(lambda e: is_ctl(e, "error"), timeout=5).get("reason") == \
        "unknown-command"
