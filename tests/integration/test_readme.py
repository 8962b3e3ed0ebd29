"""Every `sh` block of README.md, run as written against a real Prosody
serving example.com (its certificate from the test CA), with clawsd logged
in as bot@example.com and alice@example.com as the other side.  The blocks
are read from the README, never retyped here: each is matched to a check of
what it must do, and a block without a check fails the test."""

import os
import re
import select
import signal
import socket
import subprocess
import time

import pytest

import harness
from harness import parse_line, local_name, unique

README = harness.REPO_ROOT / "README.md"
DOMAIN = "example.com"
ALICE = "alice@example.com"
# the room of the README's Rooms examples, joined by clawsd and alice
ROOM = "ops@conference." + DOMAIN
MUC = "http://jabber.org/protocol/muc"


def sh_blocks():
    return re.findall(r"(?ms)^```sh\n(.*?)^```", README.read_text())


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """Prosody for example.com, clawsd as bot, alice as a peer, and the
    environment the examples run in."""
    if not harness.CLAWSD_BIN.exists() or not harness.CLAWSDCTL_BIN.exists():
        pytest.skip("run `make` first")
    top = tmp_path_factory.mktemp("readme")
    pki = harness.PKI(top / "pki", names=(DOMAIN,))
    srv = harness.Prosody(pki, domain=DOMAIN, directory=top / "prosody")
    d = alice = None
    try:
        for user in ("bot", "alice"):
            srv.register(user, harness.TEST_ACCOUNTS[user])
        srv.start()
        d = harness.Clawsd("bot", harness.TEST_ACCOUNTS["bot"], srv.c2s_port,
                           domain=DOMAIN, ca_file=pki.ca_cert,
                           directory=top / "clawsd", rooms={ROOM: "bot"}).start()
        c = d.wait_connected(timeout=20)[0]
        # in the room: the status answer says so, or the joined line follows
        c.send('<status xmlns="%s"/>' % harness.CLAWSD_NS)
        st = c.wait_for(lambda e: harness.is_status(e, "status"), timeout=10)
        if not any(r.get("jid") == ROOM and r.get("joined") == "yes" for r in st):
            c.wait_for(lambda e: harness.is_status(e, "joined") and e.get("room") == ROOM,
                       timeout=20)
        alice = harness.Peer(ALICE, harness.TEST_ACCOUNTS["alice"], srv.c2s_port,
                             ca_file=pki.ca_cert).start()
        alice.send_raw('<presence to="%s/alice"><x xmlns="%s"/></presence>' % (ROOM, MUC))
        # alice is in the room once the room tells its occupant bot
        c.wait_for(lambda e: local_name(e.tag) == "presence"
                   and e.get("from") == ROOM + "/alice", timeout=20)
        c.close()
        bindir = top / "bin"
        bindir.mkdir()
        os.symlink(harness.CLAWSDCTL_BIN, bindir / "clawsdctl")
        env = dict(os.environ, CLAWSD_SOCKET=str(d.socket_path),
                   PATH="%s:%s" % (bindir, os.environ.get("PATH", "/usr/bin:/bin")))
        yield d, alice, env
    finally:
        if alice is not None:
            alice.stop()
        if d is not None:
            d.retire()
        srv.cleanup()
        pki.cleanup()


def run(block, env, timeout=60):
    r = subprocess.run(["/bin/sh", "-c", block], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


class Background:
    """A block that runs until interrupted, in its own process group."""

    def __init__(self, block, env):
        self.p = subprocess.Popen(["/bin/sh", "-c", block], env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, start_new_session=True)
        self.buf = b""

    def until(self, pred, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if pred(line.decode()):
                    return line.decode()
            left = deadline - time.monotonic()
            r, _, _ = select.select([self.p.stdout], [], [], max(left, 0))
            if not r:
                raise TimeoutError("no matching line from %r" % self.p.args)
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                raise EOFError(self.p.stderr.read().decode())
            self.buf += chunk

    def stop(self):
        os.killpg(self.p.pid, signal.SIGTERM)
        self.p.wait(10)
        self.p.stdout.close()
        self.p.stderr.close()


def alice_gets(alice, pred, timeout=15):
    return alice.wait_message(lambda m: m.body is not None and pred(m.body), timeout)


def check_send_text(block, example):
    d, alice, env = example
    rc, out, err = run(block, env)
    assert rc == 0, err
    want = "disk 95% full & load < 5 on " + socket.gethostname()
    alice_gets(alice, lambda b: b == want)


def check_send_stdin(block, example):
    d, alice, env = example
    rc, out, err = run(block, env)
    assert rc == 0, err
    # two lines of df: the one trailing newline removed, the other kept
    m = alice_gets(alice, lambda b: b.startswith("Filesystem"))
    assert m.body.count("\n") == 1 and not m.body.endswith("\n")


def check_iq(block, example):
    d, alice, env = example
    for _ in range(20):
        rc, out, err = run(block, env)
        assert rc == 0, err
        lines = out.splitlines()
        assert len(lines) == 1, out
        el = parse_line(lines[0])
        assert el.get("type") == "result"
        assert el.find("{jabber:iq:version}query") is not None


def check_listen(block, example):
    d, alice, env = example
    bg = Background(block, env)
    try:
        bg.until(lambda l: l.startswith("connected\t"))
        mid = unique("readme")
        alice.send_message("bot@" + DOMAIN, "a\tb", id=mid, type="headline")
        alice.send_message("bot@" + DOMAIN, "tab\there", id=mid, type="chat")
        fields = bg.until(lambda l: mid in l).split("\t")
        assert fields[:2] == ["message", "chat"] and fields[4] == mid
        assert fields[5] == "tab\\there"
    finally:
        bg.stop()


def check_listen_groupchat(block, example):
    d, alice, env = example
    bg = Background(block, env)
    try:
        bg.until(lambda l: l.startswith("connected\t"))
        mid = unique("readme")
        alice.send_message("bot@" + DOMAIN, "not a room's", id=mid, type="chat")
        alice.send_raw('<message to="%s" type="groupchat" id="%s"><body>in the room'
                       '</body></message>' % (ROOM, mid))
        fields = bg.until(lambda l: mid in l).split("\t")
        assert fields[:3] == ["message", "groupchat", ROOM + "/alice"], fields
        assert fields[5] == "in the room"
    finally:
        bg.stop()


def check_send_groupchat(block, example):
    d, alice, env = example
    rc, out, err = run(block, env)
    assert rc == 0, err
    m = alice_gets(alice, lambda b: b == "disk full on db1")
    assert (m.frm, m.type) == (ROOM + "/bot", "groupchat")


def check_status(block, example):
    d, alice, env = example
    rc, out, err = run(block, env)
    assert rc == 0, err
    assert "state: Binded" in out.splitlines()


def check_socat_send(block, example):
    d, alice, env = example
    rc, out, err = run(block, env)
    assert rc == 0, err
    alice_gets(alice, lambda b: b == "disk full on " + socket.gethostname())


def check_socat_iq(block, example):
    d, alice, env = example
    for _ in range(20):
        rc, out, err = run(block, env)
        assert rc == 0, err
        el = parse_line(out.strip())
        assert el.get("id") == "v1" and el.get("type") == "result"


def check_socat_subscribe(block, example):
    d, alice, env = example
    bg = Background(block, env)
    try:
        bg.until(lambda l: l.startswith("<connected"))
        mid = unique("readme")
        alice.send_message("bot@" + DOMAIN, "to the subscriber", id=mid)
        el = parse_line(bg.until(lambda l: mid in l))
        assert local_name(el.tag) == "message"
    finally:
        bg.stop()


CHECKS = [
    (r"^df -h / \| clawsdctl send ", check_send_stdin),
    (r"^clawsdctl send -t groupchat ", check_send_groupchat),
    (r"^clawsdctl listen -t groupchat ", check_listen_groupchat),
    (r"^clawsdctl send ", check_send_text),
    (r"^clawsdctl iq ", check_iq),
    (r"^clawsdctl listen ", check_listen),
    (r"^clawsdctl status\n$", check_status),
    (r"^printf '<message .*\| socat - UNIX-CONNECT", check_socat_send),
    (r"^printf '<iq .*\| socat -t 30 - UNIX-CONNECT", check_socat_iq),
    (r"^socat -u UNIX-CONNECT", check_socat_subscribe),
]


def check_for(block):
    found = [f for pattern, f in CHECKS if re.search(pattern, block, re.S)]
    return found[0] if found else None


def test_every_block_has_a_check():
    blocks = sh_blocks()
    assert len(blocks) >= len(CHECKS)
    missing = [b for b in blocks if check_for(b) is None]
    assert missing == [], "README sh blocks without a check: %r" % missing
    assert {check_for(b) for b in blocks} == {f for _, f in CHECKS}


@pytest.mark.parametrize("index", range(len(sh_blocks())))
def test_readme_block(example, index):
    block = sh_blocks()[index]
    check = check_for(block)
    assert check is not None, block
    check(block, example)
