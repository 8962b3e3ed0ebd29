"""clawsd against a real Prosody: the socket protocol (SPEC section 4), the
connection (section 3), the command line (section 1) and shutdown (section 5).
"""

import os
import re
import shutil
import signal
import socket
import subprocess

import pytest

import harness
from harness import TEST_ACCOUNTS as ACCOUNTS
from harness import (CLAWSD_NS, CLIENT_NS, Peer, is_status, local_name,
                     message_xml, parse_line, unique)

PEER = "peer@localhost"
BOT = "bot@localhost"

# Everything a line must survive: line breaks, CR, tab, markup characters,
# both quotes, non-ASCII.
TRICKY = "first line\nsecond\r\nthird\rx\ttab <b>&amp; \"dq\" 'sq' héllo ✓ 日本"


def xml_normalized(s):
    """What an XML parser makes of text once it was written with raw line
    ends: CRLF and lone CR become LF (XML 1.0 section 2.11).  Prosody
    serializes CR in text raw (its escape table has no &#13;), so a CR never
    survives a trip through it, in either direction."""
    return s.replace("\r\n", "\n").replace("\r", "\n")


def is_msg_id(mid):
    return lambda e: local_name(e.tag) == "message" and e.get("id") == mid


def body_of(el):
    b = el.find("{%s}body" % CLIENT_NS)
    return None if b is None else (b.text or "")


def wait_or_fail(pred, timeout, what, daemon):
    try:
        return harness.wait_until(pred, timeout, interval=0.1, what=what)
    except TimeoutError:
        pytest.fail("no %s within %ss; clawsd log:\n%s"
                    % (what, timeout, harness.tail(daemon.log(), 60)))


def assert_no_status(client, name=None, duration=0.5):
    for line in client.read_lines_for(duration):
        el = parse_line(line)
        assert not is_status(el, name), "unexpected status line %r" % line


# --------------------------------------------------------------------------
# status lines

def test_first_line_is_disconnected_while_session_down(make_clawsd):
    # nothing listens on this port: the session can never come up
    d = make_clawsd(port=harness.free_port()).start()
    with d.connect() as c:
        line = c.read_line(timeout=5)
        el = parse_line(line)
        assert is_status(el, "disconnected"), line
        assert line.startswith("<disconnected")
        assert el.get("reason") is not None
        assert_no_status(c, "connected", 1.0)
    assert d.alive


def test_first_line_is_connected_once_session_up(clawsd):
    # a client connecting right away sees `disconnected` or `connected` first,
    # and `connected` once the session is up
    with clawsd.connect() as early:
        first = parse_line(early.read_line(timeout=5))
        assert is_status(first, "disconnected") or is_status(first, "connected")
        if is_status(first, "disconnected"):
            early.wait_for(lambda e: is_status(e, "connected"), timeout=20)
    # a new client now gets exactly one status line: connected
    with clawsd.connect() as c:
        line = c.read_line(timeout=5)
        el = parse_line(line)
        assert line.startswith("<connected"), line
        assert el.tag == "{%s}connected" % CLAWSD_NS
        assert re.fullmatch(r"bot@localhost/.+", el.get("jid") or ""), line
        assert el.get("resumed") == "false"
        assert_no_status(c, None, 0.5)


# --------------------------------------------------------------------------
# server -> socket

def test_message_from_peer_is_one_line(bot, peer):
    d, c = bot
    mid = unique("in")
    peer.send_message(BOT, TRICKY, id=mid)
    line = c.wait_for(lambda l: mid in l, timeout=10, raw=True)
    assert "\r" not in line and "\n" not in line and "\t" not in line
    assert re.match(r'<message\b[^>]*\sxmlns="jabber:client"', line), line
    el = parse_line(line)  # the line alone is a whole XML document
    assert el.tag == "{jabber:client}message"
    assert el.get("id") == mid
    assert el.get("type") == "chat"
    assert el.get("from", "").startswith(PEER + "/")
    assert body_of(el) == xml_normalized(TRICKY)
    # every line the daemon sends parses alone
    for other in c.read_lines_for(0.5):
        parse_line(other)


def test_attribute_escaping_from_peer(bot, peer):
    # quotes, markup characters and non-ASCII in attribute values survive
    d, c = bot
    mid = unique("attr") + "\"'<&>é"
    peer.send_message(BOT, "x", id=mid)
    el = c.wait_for(lambda e: e.get("id") == mid, timeout=10)
    assert body_of(el) == "x"


def test_two_subscribers_get_every_line(bot, peer):
    d, c1 = bot
    with d.connect() as c2:
        assert is_status(parse_line(c2.read_line(5)), "connected")
        ids = [unique("both") for _ in range(3)]
        for i, mid in enumerate(ids):
            peer.send_message(BOT, "n%d" % i, id=mid)
        for c in (c1, c2):
            got = []
            for mid in ids:
                el = c.wait_for(lambda e, mid=mid: e.get("id") == mid, timeout=10)
                got.append(body_of(el))
            assert got == ["n0", "n1", "n2"]


def _bulk_body(i, size):
    return ("%d:" % i + "abcdefghij<&>\u00e9" * size)[:size]


def test_bulk_from_peer_arrives_whole_and_in_order(bot, peer):
    # ~1 MB at once: clawsd reads it 64 KiB at a time, opens and parses
    # it record by record, and writes the lines to both subscribers once
    # a loop turn (or as soon as 64 KiB wait for one).
    d, c1 = bot
    with d.connect() as c2:
        assert is_status(parse_line(c2.read_line(5)), "connected")
        ids = [unique("bulk") for _ in range(50)]
        for i, mid in enumerate(ids):
            peer.send_message(BOT, _bulk_body(i, 20000), id=mid)
        for c in (c1, c2):
            for i, mid in enumerate(ids):
                el = c.wait_for(lambda e, mid=mid: e.get("id") == mid,
                                timeout=20)
                assert body_of(el) == _bulk_body(i, 20000)


def test_bulk_to_peer_arrives_whole_and_in_order(bot, peer):
    # The same the other way: one 1 MB write, sealed into 16 KiB TLS
    # records once a loop turn.
    d, c = bot
    ids = [unique("bulk") for _ in range(50)]
    c.send(b"".join(message_xml(PEER, _bulk_body(i, 20000), id=mid)
                    .encode("utf-8") for i, mid in enumerate(ids)))
    got = [peer.wait_message(lambda m, mid=mid: m.id == mid, timeout=20)
           for mid in ids]
    for i, m in enumerate(got):
        assert m.body == _bulk_body(i, 20000)
    order = [m.id for m in peer._messages if m.id in set(ids)]
    assert order == ids


def test_sigterm_during_bulk_exits_0(bot, peer):
    # The daemon stops in the middle of a burst, with records half read
    # and lines waiting for the subscriber: it frees everything (the ASan
    # run checks this) and exits 0.
    d, c = bot
    ids = [unique("stop") for _ in range(50)]
    for i, mid in enumerate(ids):
        peer.send_message(BOT, _bulk_body(i, 20000), id=mid)
    c.wait_for(lambda e: e.get("id") == ids[0], timeout=20)
    assert d.stop(timeout=15) == 0, harness.tail(d.log())


def test_iq_reply_is_relayed(bot):
    d, c = bot
    c.send('<iq type="get" id="v1" to="localhost"><query xmlns="jabber:iq:version"/></iq>')
    el = c.wait_for(lambda e: local_name(e.tag) == "iq" and e.get("id") == "v1", timeout=10)
    assert el.tag == "{jabber:client}iq"
    assert el.get("type") == "result"
    q = el.find("{jabber:iq:version}query")
    assert q is not None and q.find("{jabber:iq:version}name") is not None


# --------------------------------------------------------------------------
# socket -> server

def _send_and_expect(peer, send, body=TRICKY, timeout=10):
    mid = unique("out")
    send(message_xml(PEER, body, id=mid).encode("utf-8"))
    m = peer.wait_message(lambda m: m.id == mid, timeout=timeout)
    assert m.body == xml_normalized(body)
    assert m.frm.startswith(BOT + "/")
    return m


def test_message_to_peer_one_write(bot, peer):
    d, c = bot
    _send_and_expect(peer, c.send)


def test_message_to_peer_one_byte_writes(bot, peer):
    d, c = bot
    # 1-byte writes split the UTF-8 sequences too.  Debian 12's expat
    # (2.5.0 with the CVE-2023-52425 fix backported) defers re-parsing an
    # unfinished token until enough new data arrives, so without
    # XML_SetReparseDeferralEnabled(parser, XML_FALSE) the final `>` of an
    # element written byte by byte is not seen until the client writes more.
    _send_and_expect(peer, lambda b: c.send(b, chunk=1, delay=0.001))


def test_message_to_peer_with_xml_declaration_and_whitespace(bot, peer):
    d, c = bot
    mid = unique("decl")
    c.send('<?xml version="1.0" encoding="UTF-8"?>\n\n  <message to="%s" type="chat" id="%s">\n'
           '  <body>declared</body>\n</message>\n' % (PEER, mid))
    assert peer.wait_message(lambda m: m.id == mid, timeout=10).body == "declared"


def test_message_to_peer_socat_write_and_close(clawsd, peer):
    socat = shutil.which("socat")
    if not socat:
        pytest.skip("socat not installed")
    clawsd.wait_connected(timeout=20)[0].close()
    mid = unique("socat")
    data = message_xml(PEER, "via socat ✓", id=mid).encode("utf-8")
    r = subprocess.run([socat, "-", "UNIX-CONNECT:%s" % clawsd.socket_path], input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert r.returncode == 0, r.stderr
    assert peer.wait_message(lambda m: m.id == mid, timeout=10).body == "via socat ✓"


def test_message_to_peer_write_and_close_at_once(clawsd, peer):
    clawsd.wait_connected(timeout=20)[0].close()
    mid = unique("close")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(clawsd.socket_path))
    s.sendall(message_xml(PEER, "write and close", id=mid).encode("utf-8"))
    s.close()  # without reading the status line, without shutdown
    assert peer.wait_message(lambda m: m.id == mid, timeout=10).body == "write and close"


def test_message_to_peer_write_shutdown_close(clawsd, peer):
    clawsd.wait_connected(timeout=20)[0].close()
    mid = unique("shut")
    with clawsd.connect() as c:
        c.send(message_xml(PEER, "write, shutdown, close", id=mid))
        c.shutdown_write()
    assert peer.wait_message(lambda m: m.id == mid, timeout=10).body == "write, shutdown, close"


def test_several_stanzas_in_one_write_keep_order(bot, peer):
    d, c = bot
    tag = unique("order")
    ids = ["%s-%d" % (tag, i) for i in range(6)]
    c.send("\n".join(message_xml(PEER, "#%d" % i, id=mid) for i, mid in enumerate(ids)))
    for mid in ids:
        peer.wait_message(lambda m, mid=mid: m.id == mid, timeout=10)
    got = [m.id for m in peer.messages if m.id and m.id.startswith(tag)]
    assert got == ids


def test_stanzas_from_two_clients_not_interleaved(bot, peer):
    d, c1 = bot
    with d.connect() as c2:
        tag = unique("mix")
        a = message_xml(PEER, "A" * 3000, id=tag + "-a").encode()
        b = message_xml(PEER, "B" * 3000, id=tag + "-b").encode()
        # interleave the bytes of the two clients' writes
        for i in range(0, max(len(a), len(b)), 100):
            c1.send(a[i:i + 100])
            c2.send(b[i:i + 100])
        ma = peer.wait_message(lambda m: m.id == tag + "-a", timeout=10)
        mb = peer.wait_message(lambda m: m.id == tag + "-b", timeout=10)
        assert ma.body == "A" * 3000 and mb.body == "B" * 3000


# --------------------------------------------------------------------------
# TLS modes

@pytest.mark.parametrize("tls", ["starttls", "direct", "none"])
def test_tls_modes_connect(make_clawsd, prosody, peer, tls):
    port = prosody.direct_tls_port if tls == "direct" else prosody.c2s_port
    d = make_clawsd(tls=tls, port=port).start()
    c, el = d.wait_connected(timeout=20)
    try:
        assert re.fullmatch(r"bot@localhost/.+", el.get("jid") or "")
        # and the session works
        mid = unique(tls)
        c.send(message_xml(PEER, "over " + tls, id=mid))
        assert peer.wait_message(lambda m: m.id == mid, timeout=10).body == "over " + tls
    finally:
        c.close()


# --------------------------------------------------------------------------
# failures: logged, retried, no crash

def test_wrong_password_logged_and_retried(make_clawsd, prosody):
    mark = prosody.log_mark()
    d = make_clawsd(password="not-" + ACCOUNTS["bot"]).start()
    d.wait_log(r"not-authorized", timeout=20)  # the SASL condition, in the log
    # it tried again: Prosody refused at least two separate connections
    wait_or_fail(lambda: len(prosody.sasl_failures_since(mark)) >= 2, 20,
                 "a second SASL attempt", d)
    assert d.alive
    assert ACCOUNTS["bot"] not in d.log()
    with d.connect() as c:
        el = parse_line(c.read_line(5))
        assert is_status(el, "disconnected")
        assert_no_status(c, "connected", 0.5)
    assert d.alive


CERT_WORDS = re.compile(r"(?i)certif|x\.?509|verif|trust|issuer|\bCA\b")
FAIL_WORDS = re.compile(r"(?i)fail|not|untrusted|invalid|error|unknown|bad|refus|reject")


def test_untrusted_certificate_logged_and_retried(make_clawsd, pki, prosody):
    mark = prosody.log_mark()
    d = make_clawsd(ca_file=pki.other_ca_cert).start()

    def cert_failures():
        return [l for l in d.log().splitlines()
                if CERT_WORDS.search(l) and FAIL_WORDS.search(l)]
    wait_or_fail(cert_failures, 20, "a certificate problem in the log", d)
    # it tried again: a second connection reached Prosody
    wait_or_fail(lambda: len(prosody.c2s_connections_since(mark)) >= 2, 20,
                 "a second connection attempt", d)
    assert not prosody.sasl_failures_since(mark)
    assert d.alive
    with d.connect() as c:
        assert is_status(parse_line(c.read_line(5)), "disconnected")
        assert_no_status(c, "connected", 1.0)
    assert d.alive


# --------------------------------------------------------------------------
# bad input on the socket

@pytest.mark.parametrize("junk", ['<foo/>', '<foo xmlns="urn:example:x"><bar>t</bar></foo>',
                                  '<message xmlns="urn:example:not-client"/>'])
def test_not_a_stanza(bot, peer, junk):
    d, c = bot
    with d.connect() as other:
        other.read_line(5)
        c.send(junk)
        el = c.wait_for(lambda e: is_status(e, "error"), timeout=10)
        assert el.get("reason") == "not-a-stanza"
        # only the client that caused it gets the error
        for line in other.read_lines_for(0.5):
            assert not is_status(parse_line(line), "error"), line
    # the connection stays open and usable
    mid = unique("after")
    c.send(message_xml(PEER, "still here", id=mid))
    assert peer.wait_message(lambda m: m.id == mid, timeout=10).body == "still here"
    c.send('<iq type="get" id="ping-after" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>')
    el = c.wait_for(lambda e: e.get("id") == "ping-after", timeout=10)
    assert el.get("type") == "result"


def test_not_well_formed_closes_connection(bot, peer):
    d, c = bot
    mid = unique("before")
    # the complete element before the fault is accepted
    c.send(message_xml(PEER, "before the fault", id=mid) + "<message><body>x</message>")
    el = c.wait_for(lambda e: is_status(e, "error"), timeout=10)
    assert el.get("reason") == "not-well-formed"
    assert c.wait_eof(timeout=5)
    assert peer.wait_message(lambda m: m.id == mid, timeout=10).body == "before the fault"
    assert d.alive
    with d.connect() as again:  # the daemon still serves others
        assert is_status(parse_line(again.read_line(5)), "connected")


@pytest.mark.parametrize("junk", [
    '<message to="peer@localhost"><!-- a comment --><body>x</body></message>',
    '<message to="peer@localhost"><?pi data?><body>x</body></message>',
    '<!DOCTYPE message [<!ENTITY e "boom">]><message><body>&e;</body></message>',
])
def test_restricted_xml_closes_connection(bot, junk):
    d, c = bot
    c.send(junk)
    el = c.wait_for(lambda e: is_status(e, "error"), timeout=10)
    assert el.get("reason") == "restricted-xml"
    assert c.wait_eof(timeout=5)
    assert d.alive


def test_too_large_closes_connection(make_clawsd):
    d = make_clawsd(xmpp={"max_stanza_size": 16384}).start()
    c, _ = d.wait_connected(timeout=20)
    try:
        try:
            c.send(message_xml(PEER, "x" * 40000, id="big"))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may close before reading it all
        el = c.wait_for(lambda e: is_status(e, "error"), timeout=10)
        assert el.get("reason") == "too-large"
        assert c.wait_eof(timeout=5)
    finally:
        c.close()
    assert d.alive


# --------------------------------------------------------------------------
# server restart: disconnected, queued, reconnected, delivered

def test_prosody_restart_queue_and_reconnect(make_clawsd, prosody, pki):
    d = make_clawsd(reconnect_delay=1, reconnect_max_delay=2).start()
    c, _ = d.wait_connected(timeout=20)
    try:
        prosody.stop()
        el = c.wait_for(lambda e: is_status(e, "disconnected"), timeout=15)
        assert el.get("reason") is not None
        mid = unique("queued")
        c.send(message_xml(PEER, "queued while down ✓", id=mid))
        assert_no_status(c, "error", 0.5)  # accepted, not refused
        assert d.alive
        prosody.start()
        # reconnect_delay + backoff (max 2s, jitter) + a few seconds
        el = c.wait_for(lambda e: is_status(e, "connected"), timeout=1 + 2 + 6)
        assert el.get("resumed") == "false"  # a restarted server cannot resume
        # the peer comes online now: it gets the message live or from
        # Prosody's offline store (sent to the bare JID while it was away)
        mark = prosody.log_mark()
        p = Peer(PEER, ACCOUNTS["peer"], prosody.c2s_port, ca_file=pki.ca_cert)
        p.start()
        try:
            m = p.wait_message(lambda m: m.id == mid, timeout=15)
            assert m.body == "queued while down ✓"
        except TimeoutError as e:
            # what the daemon relayed (a bounce?) and what the server did
            pytest.fail("%s\nclient lines: %r\nserver log since the peer:\n%s" % (
                e, c.lines[-8:], harness.tail(prosody.log_since(mark), 40)))
        finally:
            p.stop()
    finally:
        c.close()


# --------------------------------------------------------------------------
# command line and shutdown

def _run(args, timeout=15):
    return subprocess.run([str(harness.CLAWSD_BIN)] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout)


def test_check_config_valid(make_clawsd):
    d = make_clawsd()
    r = _run(["-t", "-c", str(d.config_path)])
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    r = _run(["--check-config", "--config", str(d.config_path)])
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert not d.socket_path.exists()


def test_check_config_invalid(clawsd_bin, tmpdir_path):
    cfg = tmpdir_path / "clawsd-bad.conf"
    cfg.write_text("[xmpp]\n"                    # 1
                   "user = bot\n"                # 2
                   "domain = localhost\n"        # 3
                   "password = x\n"              # 4
                   "bogus_key = 1\n"             # 5
                   "tls = sometimes\n"           # 6
                   "[socket]\n"                  # 7
                   "path = %s\n" % (tmpdir_path / "s.sock"))  # 8
    r = _run(["-t", "-c", str(cfg)])
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 78, err
    assert re.search(r"(?m)^\S*clawsd-bad\.conf:5: \S", err), err
    assert re.search(r"(?m)^\S*clawsd-bad\.conf:6: \S", err), err
    assert not (tmpdir_path / "s.sock").exists()


def test_check_config_missing_required_key(clawsd_bin, tmpdir_path):
    cfg = tmpdir_path / "clawsd-nouser.conf"
    cfg.write_text("[xmpp]\ndomain = localhost\npassword = x\n")
    r = _run(["-t", "-c", str(cfg)])
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 78, err
    assert re.search(r"(?m)^\S*clawsd-nouser\.conf:\d+: \S", err), err


def test_version(clawsd_bin):
    r = _run(["-V"])
    assert r.returncode == 0
    out = r.stdout.decode(errors="replace")
    m = re.match(r"clawsd (\d+\.\d+\.\d+)\b", out)
    assert m, out
    mk = (harness.REPO_ROOT / "Makefile").read_text()
    v = re.search(r"(?m)^VERSION\s*=\s*(\S+)", mk)
    if v:
        assert m.group(1) == v.group(1)


def test_help(clawsd_bin):
    r = _run(["-h"])
    assert r.returncode == 0
    assert b"-c" in r.stdout + r.stderr


def test_sigterm_exit_0_and_socket_removed(bot):
    d, c = bot
    assert d.socket_path.exists()
    rc = d.stop(timeout=15)
    assert rc == 0, harness.tail(d.log())
    assert not d.socket_path.exists()
    assert c.wait_eof(timeout=5)


def test_sigterm_sends_what_clients_wrote(bot, peer):
    d, c = bot
    mid = unique("last")
    c.send(message_xml(PEER, "last words", id=mid))
    d.kill(signal.SIGTERM)  # right after the write
    assert d.proc.wait(timeout=15) == 0
    assert peer.wait_message(lambda m: m.id == mid, timeout=10).body == "last words"


def test_sigint_exit_0(clawsd):
    clawsd.wait_socket()
    clawsd.kill(signal.SIGINT)
    assert clawsd.proc.wait(timeout=15) == 0
    assert not clawsd.socket_path.exists()


def test_socket_folder_writable_by_everyone_refused(make_clawsd):
    """Anyone could put a socket of their own in its place: exit 1."""
    d = make_clawsd()
    os.chmod(d.dir, 0o777)
    try:
        d.start(wait_socket=False)
        harness.wait_until(lambda: not d.alive, 10, what="clawsd to exit")
        assert d.returncode == 1
        assert "writable by everyone" in d.log()
        assert not d.socket_path.exists()
    finally:
        os.chmod(d.dir, 0o700)


def test_socket_folder_sticky_accepted(make_clawsd):
    """A sticky folder such as /tmp protects the file: accepted."""
    d = make_clawsd()
    os.chmod(d.dir, 0o1777)
    try:
        d.start()
        assert d.socket_path.exists()
    finally:
        os.chmod(d.dir, 0o700)
