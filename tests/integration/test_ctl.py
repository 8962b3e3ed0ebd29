"""clawsdctl (SPEC section 7) against a real daemon and server: every
command and exit status, and text that arrives at the peer unchanged."""

import json
import os
import select
import signal
import subprocess
import time

import pytest

import harness
from harness import CLAWSD_NS, local_name, parse_line, unique

PEER = "peer@localhost"
BOT = "bot@localhost"
# Markup characters, both quotes, a tab, non-ASCII; line breaks separately.
TEXT = "disk 95% full & load < 5 > 4 \"dq\" 'sq' \ttab héllo ✓ 日本"


@pytest.fixture
def ctl_bin():
    if not harness.CLAWSDCTL_BIN.exists():
        pytest.skip("%s not built (run `make clawsdctl`)" % harness.CLAWSDCTL_BIN)
    return str(harness.CLAWSDCTL_BIN)


def run(ctl_bin, d, *args, input=None, timeout=60, env=None, sock=True):
    argv = [ctl_bin] + (["-s", str(d.socket_path)] if sock and d else []) + list(args)
    e = dict(os.environ)
    e.pop("CLAWSD_SOCKET", None)
    e.update(env or {})
    r = subprocess.run(argv, input=input.encode() if isinstance(input, str) else input,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=e)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


@pytest.fixture
def up(bot):
    """A daemon whose session is up (and one subscriber, unused)."""
    return bot[0]


def peer_got(peer, mid, timeout=15):
    return peer.wait_message(lambda m: m.id == mid, timeout=timeout)


# --------------------------------------------------------------------------
# send

def test_send_text_arrives_unchanged(ctl_bin, up, peer):
    mid = unique("s")
    rc, out, err = run(ctl_bin, up, "send", "-i", mid, PEER, *TEXT.split(" "))
    assert rc == 0, err
    assert out == mid + "\n"
    assert peer_got(peer, mid).body == TEXT


def test_send_stdin_keeps_line_breaks(ctl_bin, up, peer):
    mid = unique("s")
    text = "first line\nsecond & <third>\n\n" + TEXT
    rc, out, err = run(ctl_bin, up, "-q", "send", "-i", mid, PEER, input=text + "\n")
    assert (rc, out) == (0, ""), err
    # one trailing newline removed, the others kept
    assert peer_got(peer, mid).body == text


def test_send_lines(ctl_bin, up, peer):
    mid = unique("l")
    rc, out, err = run(ctl_bin, up, "send", "-l", "-t", "normal", "-i", mid, PEER,
                       input="one\ntwo & <b>\nthree")
    assert rc == 0, err
    ids = [mid, mid + "-2", mid + "-3"]
    assert out.split() == ids
    got = [peer_got(peer, i) for i in ids]
    assert [m.body for m in got] == ["one", "two & <b>", "three"]
    assert {m.type for m in got} == {"normal"}


@pytest.mark.parametrize("sm", ["yes", "no"])
def test_send_bounced(ctl_bin, make_clawsd, server_kind, sm):
    # Prosody bounces before it acknowledges; ejabberd acknowledges first,
    # and `send' has its answer then (clawsdctl(1) says so).  The bounce's
    # routing is tested on both in test_replies.py.
    if server_kind != "prosody":
        pytest.skip("%s acknowledges a message before bouncing it" % server_kind)
    d = make_clawsd(xmpp={"stream_management": sm}).start()
    d.wait_connected(timeout=20)[0].close()
    rc, out, err = run(ctl_bin, d, "send", "nobody@nonexistent.invalid", "hello")
    assert rc == 1, (out, err)
    assert "bounced" in err


def test_send_session_down_past_timeout(ctl_bin, make_clawsd, prosody, peer):
    port = harness.free_port()
    d = make_clawsd(port=port).start()
    mid = unique("late")
    rc, out, err = run(ctl_bin, d, "-T", "2", "send", "-i", mid, PEER, "later & <then>")
    assert rc == 75, (out, err)
    assert "queued in the daemon" in err
    # the session comes up: the message is still delivered
    with harness.Forwarder("127.0.0.1", port, prosody.c2s_port):
        assert peer_got(peer, mid, timeout=30).body == "later & <then>"


def test_send_refused_queue_full(ctl_bin, make_clawsd):
    d = make_clawsd(port=harness.free_port(), xmpp={"queue_max": 0}).start()
    rc, out, err = run(ctl_bin, d, "send", PEER, "x")
    assert rc == 1, (out, err)
    assert "queue-full" in err


# --------------------------------------------------------------------------
# iq

def test_iq_20_of_20(ctl_bin, up):
    for _ in range(20):
        rc, out, err = run(ctl_bin, up, "iq", "localhost",
                           '<query xmlns="jabber:iq:version"/>')
        assert rc == 0, err
        el = parse_line(out.strip())
        assert el.get("type") == "result"
        assert el.find("{jabber:iq:version}query") is not None


def test_iq_error_answer(ctl_bin, up):
    rc, out, err = run(ctl_bin, up, "iq", "-t", "set", "localhost",
                       '<nothing xmlns="urn:x-clawsd-test:none"/>')
    assert rc == 1, (out, err)
    assert parse_line(out.strip()).get("type") == "error"
    assert "error answer" in err


def test_iq_timeout(ctl_bin, make_clawsd):
    d = make_clawsd(port=harness.free_port()).start()
    rc, out, err = run(ctl_bin, d, "-T", "1", "iq", PEER, '<query xmlns="jabber:iq:version"/>')
    assert rc == 75, (out, err)


def test_iq_reply_timeout_is_a_refusal(ctl_bin, make_clawsd):
    d = make_clawsd(socket_opts={"reply_timeout": 1}).start()
    c, el = d.wait_connected(timeout=20)
    with c:
        # to itself: nobody answers; the daemon's timeout comes first
        rc, out, err = run(ctl_bin, d, "-T", "20", "iq", el.get("jid"),
                           '<query xmlns="urn:x-clawsd-test"/>')
    assert rc == 1, (out, err)
    assert "timeout" in err


@pytest.mark.parametrize("payload", ["", "text", "<a>", "<a/><b/>", "<?xml version='1.0'?><a/>",
                                     "<a><!-- c --></a>", "<p:a/>"])
def test_iq_bad_payload_is_usage(ctl_bin, up, payload):
    rc, out, err = run(ctl_bin, up, "iq", "localhost", payload)
    assert rc == 64, (payload, out, err)


# --------------------------------------------------------------------------
# status, raw, listen

def test_status_text_and_json(ctl_bin, up):
    rc, out, err = run(ctl_bin, up, "status")
    assert rc == 0, err
    fields = dict(l.split(": ", 1) for l in out.splitlines())
    assert fields["state"] == "Binded"
    assert fields["jid"].startswith(BOT + "/")
    assert fields["catching_up"] in ("yes", "no")
    assert "room" not in fields
    rc, out, err = run(ctl_bin, up, "status", "-o", "json")
    assert rc == 0, err
    st = json.loads(out)
    assert st["state"] == "Binded" and st["clients"] >= 2
    assert isinstance(st["sm"], bool) and isinstance(st["since"], int)
    assert isinstance(st["catching_up"], bool)
    assert st["queued"] == 0 and st["rooms"] == []


def test_socket_from_environment_and_config(ctl_bin, up):
    rc, out, err = run(ctl_bin, None, "status", env={"CLAWSD_SOCKET": str(up.socket_path)})
    assert rc == 0, err
    rc, out, err = run(ctl_bin, None, "-c", str(up.config_path), "status")
    assert rc == 0, err
    # -s wins over both
    rc, out, err = run(ctl_bin, None, "-s", "/nonexistent/clawsd.sock", "-c",
                       str(up.config_path), "status",
                       env={"CLAWSD_SOCKET": str(up.socket_path)})
    assert rc == 69


def test_raw_prints_the_answer_and_ends(ctl_bin, up):
    rc, out, err = run(ctl_bin, up, "raw",
                       input='<iq type="get" id="raw1" to="localhost">'
                             '<query xmlns="jabber:iq:version"/></iq>')
    assert rc == 0, err
    answers = [parse_line(l) for l in out.splitlines() if 'id="raw1"' in l]
    assert len(answers) == 1 and answers[0].get("type") == "result"


def test_raw_error_line_is_a_failure(ctl_bin, up):
    rc, out, err = run(ctl_bin, up, "raw", input="<message><body>x & y</body></message>")
    assert rc == 1
    assert 'reason="not-well-formed"' in out


class Listener:
    def __init__(self, ctl_bin, d, *args):
        self.p = subprocess.Popen([ctl_bin, "-s", str(d.socket_path), "listen"] + list(args),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = b""

    def line(self, timeout=15):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            r, _, _ = select.select([self.p.stdout], [], [], max(left, 0))
            if not r:
                raise TimeoutError("no line from clawsdctl listen")
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                raise EOFError(self.p.stderr.read().decode())
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def until(self, pred, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            l = self.line(deadline - time.monotonic())
            if pred(l):
                return l

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(10)
        self.p.stdout.close()
        self.p.stderr.close()


def test_listen_text(ctl_bin, up, peer):
    li = Listener(ctl_bin, up, "-k", "message", "-t", "chat", "-o", "text")
    try:
        first = li.line().split("\t")
        assert first[0] == "connected" and first[5].startswith(BOT + "/")
        mid = unique("lt")
        peer.send_message(BOT, "skip me", id=mid + "-h", type="headline")
        peer.send_message(BOT, "a\tb\nc\\d", id=mid)
        fields = li.until(lambda l: mid in l).split("\t")
        assert fields[0] == "message" and fields[1] == "chat"
        assert fields[2].startswith(PEER + "/") and fields[3].startswith(BOT)
        assert fields[4] == mid
        assert fields[5] == "a\\tb\\nc\\\\d"
    finally:
        li.stop()


def test_listen_json_and_xml(ctl_bin, up, peer):
    lj = Listener(ctl_bin, up, "-f", PEER, "-w", "jabber:client", "-o", "json")
    lx = Listener(ctl_bin, up, "-k", "message,iq")
    try:
        assert json.loads(lj.line())["kind"] == "connected"
        assert parse_line(lx.line()).tag == "{%s}connected" % CLAWSD_NS
        mid = unique("lj")
        peer.send_message(BOT, TEXT, id=mid)
        o = json.loads(lj.until(lambda l: mid in l))
        assert (o["kind"], o["type"], o["id"], o["body"]) == ("message", "chat", mid, TEXT)
        assert o["from"].startswith(PEER + "/")
        assert parse_line(o["xml"]).get("id") == mid
        el = parse_line(lx.until(lambda l: mid in l))
        assert local_name(el.tag) == "message"
    finally:
        lj.stop()
        lx.stop()


def test_listen_bad_filter(ctl_bin, up):
    rc, out, err = run(ctl_bin, up, "listen", "-k", "chat")
    assert rc == 1 and "bad-command" in err


# --------------------------------------------------------------------------
# exit statuses without a session

def test_daemon_not_running(ctl_bin, tmpdir_path):
    missing = tmpdir_path / "none.sock"
    for args in (["status"], ["send", PEER, "x"], ["iq", "localhost", "<a/>"],
                 ["listen"], ["raw"]):
        rc, out, err = run(ctl_bin, None, "-s", str(missing), *args, input="")
        assert rc == 69, (args, err)
        assert "cannot reach the daemon" in err
    # a socket file nobody listens on
    import socket as so
    s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    s.bind(str(tmpdir_path / "dead.sock"))
    s.close()
    rc, out, err = run(ctl_bin, None, "-s", str(tmpdir_path / "dead.sock"), "status")
    assert rc == 69


@pytest.mark.parametrize("args", [[], ["frob"], ["-T", "0", "status"], ["-T", "x", "status"],
                                  ["send"], ["send", "-l", PEER, "text"], ["iq", PEER],
                                  ["iq", "-t", "result", PEER, "<a/>"], ["status", "-o", "xml"],
                                  ["listen", "-o", "yaml"], ["raw", "x"], ["-Z"]])
def test_usage(ctl_bin, args):
    rc, out, err = run(ctl_bin, None, "-s", "/nonexistent", *args, input="")
    assert rc == 64, (args, err)
