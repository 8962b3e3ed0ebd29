"""No gap across a new session (issue 15, SPEC sections 8 and 9): the
archive catch-up after a session that could not be resumed (the server
restarted, the daemon restarted), its bound, and the rooms kept joined.

Against real servers (Prosody with mod_mam and a MUC component with
muc_mam, ejabberd with mod_mam and mod_muc: harness.py configures both).
Modest counts keep `make check` fast; the figures (catch-up time, self-ping
detection time) are printed on lines starting with NOGAP: (pytest -s).
"""

import json
import os
import re
import signal
import threading
import time

import pytest

import harness
from harness import TEST_ACCOUNTS as ACCOUNTS
from harness import Peer, is_status, parse_line, unique
from test_ctl import run as run_ctl

# messages missed in each outage (NOGAP_N=1000 for the figure)
N = int(os.environ.get("NOGAP_N") or 200)
DELAY_NS = "urn:xmpp:delay"
CLIENT = "{jabber:client}"


@pytest.fixture
def own(make_server, pki):
    """A server of the test's own (it is restarted, or its archive must be
    empty) and a way to make peers on it."""
    srv = make_server(archive=True)
    peers = []

    def peer(user="peer"):
        p = Peer(srv.jid(user), ACCOUNTS[user], srv.c2s_port, ca_file=pki.ca_cert)
        peers.append(p)
        return p.start()
    yield srv, peer
    for p in peers:
        p.stop()


def bodies_of(lines, run):
    """[(body, element)] of the relayed messages of this run, in order."""
    out = []
    for line in lines:
        el = parse_line(line)
        if el.tag != CLIENT + "message":
            continue
        body = el.find(CLIENT + "body")
        if body is not None and body.text and body.text.startswith(run + " "):
            out.append((body.text, el))
    return out


def collect(c, run, want, timeout):
    """Read the socket until `want' messages of this run came (or the time
    is up), then a little longer to see any duplicate; the lines read."""
    lines = []
    deadline = time.monotonic() + timeout
    while len(bodies_of(lines, run)) < want and time.monotonic() < deadline:
        lines += c.read_lines_for(min(0.5, max(0.05, deadline - time.monotonic())))
    lines += c.read_lines_for(1.0)
    return lines


def assert_exactly_once_in_order(got, run, first, n):
    texts = [b for b, _ in got]
    want = ["%s %d" % (run, i) for i in range(first, first + n)]
    missing = sorted(set(want) - set(texts), key=lambda t: int(t.split()[1]))
    assert not missing, "%d lost, first %r" % (len(missing), missing[:5])
    assert len(texts) == len(set(texts)), "duplicates: %r" % sorted(
        {t for t in texts if texts.count(t) > 1})[:5]
    assert texts == want, "out of order"


def has_delay(el):
    return el.find("{%s}delay" % DELAY_NS) is not None


def send_all(peer, to, run, n, first=0):
    for i in range(first, first + n):
        peer.send_message(to, "%s %d" % (run, i))


def settle(srv):
    """ejabberd's mnesia writes lazily: a SIGKILL right after changes
    loses them."""
    if srv.name == "ejabberd":
        time.sleep(2)


# --------------------------------------------------------------------------
# the daemon restarted: from the state file
#
# The loss this prevents: the daemon's connection vanishes without a close
# (a NAT or a proxy lost it), the server goes on sending into it, and the
# daemon is restarted.  Its new session takes the resource over, and the
# old session's unacknowledged messages are not delivered again: Prosody
# bounces them when the account has another client online (the bot's
# owner on a phone), and drops those it archived once the session has used
# the archive (expecting the client to fetch them).  Only the archive has
# them.

def start_attached(d, proxy):
    """Start the daemon (through `proxy') with a client attached before its
    session comes up, so that the client sees all it relays: (client, its
    `connected' line)."""
    proxy.refuse(True)
    d.start()
    c = d.connect()
    proxy.refuse(False)
    return c, c.wait_for(lambda e: is_status(e, "connected"), timeout=20)


def vanish_and_restart(srv, make_peer, d, c, proxy, run, n, first):
    """Messages `first'..`first+n' sent into a connection that vanished,
    the daemon restarted (SIGTERM, start): the new client and its first
    line."""
    peer = make_peer()
    proxy.blackhole(True)
    send_all(peer, srv.jid("bot"), run, n, first=first)
    # the server has them all on its side of the dead connection
    time.sleep(1.0)
    c.close()
    d.kill(signal.SIGTERM)
    assert d.proc.wait(15) == 0
    proxy.blackhole(False)
    # the new client must be there before the catch-up (a FAST login is
    # quick)
    return start_attached(d, proxy)


def test_daemon_restart_catches_up_from_state_file(own, make_clawsd, make_proxy,
                                                    tmpdir_path):
    srv, make_peer = own
    state = tmpdir_path / "state"
    proxy = make_proxy(srv.c2s_port)
    d = make_clawsd(port=proxy.port, xmpp={"state_directory": state}).start()
    c, _ = d.wait_connected(timeout=20)
    run = unique("dr")
    bot = srv.jid("bot")
    make_peer("bot")        # the account's other client

    # live, and remembered
    peer = make_peer()
    send_all(peer, bot, run, 10)
    got = bodies_of(collect(c, run, 10, 15), run)
    assert_exactly_once_in_order(got, run, 0, 10)
    assert not any(has_delay(e) for _, e in got)
    time.sleep(1.5)         # the state file is written within a second
    saved = (state / "archive-ids").read_text()
    assert saved.startswith(bot + " "), saved
    assert oct((state).stat().st_mode & 0o777) == "0o700"

    t0 = time.monotonic()
    c, first = vanish_and_restart(srv, make_peer, d, c, proxy, run, N, 10)
    assert first.get("resumed") == "false"
    got = bodies_of(collect(c, run, N, 60), run)
    took = time.monotonic() - t0
    assert_exactly_once_in_order(got, run, 10, N)
    assert all(has_delay(e) for _, e in got), "archived without a delay"
    d.wait_log(r"catch-up: %s: %d archived messages relayed" % (re.escape(bot), N),
               timeout=5)
    m = re.search(r"catch-up: %s: %d archived messages relayed in ([\d.]+) s"
                  % (re.escape(bot), N), d.log())
    print("NOGAP: %s: daemon restart: %d messages caught up in %s s (query to "
          "last line), %.2f s from SIGTERM to the last line"
          % (srv.name, N, m.group(1), took))
    c.close()


def test_catch_up_max_relays_the_most_recent(own, make_clawsd, make_proxy,
                                             tmpdir_path):
    srv, make_peer = own
    state = tmpdir_path / "state"
    proxy = make_proxy(srv.c2s_port)
    d = make_clawsd(port=proxy.port, xmpp={"state_directory": state,
                                           "catch_up_max": 50}).start()
    c, _ = d.wait_connected(timeout=20)
    run = unique("cm")
    peer = make_peer()
    send_all(peer, srv.jid("bot"), run, 1)
    assert len(bodies_of(collect(c, run, 1, 15), run)) == 1
    time.sleep(1.5)

    c, _ = vanish_and_restart(srv, make_peer, d, c, proxy, run, 120, 1)
    got = bodies_of(collect(c, run, 50, 60), run)
    assert_exactly_once_in_order(got, run, 71, 50)
    d.wait_log(r"catch-up: %s: 70 more messages were missed than "
               r"catch_up_max \(50\): skipped" % re.escape(srv.jid("bot")), timeout=5)
    c.close()


# --------------------------------------------------------------------------
# the server restarted: the session cannot be resumed

def test_server_restart_catches_up_from_archive(own, make_clawsd):
    srv, make_peer = own
    settle(srv)
    # a wait long enough for the peer to send while the daemon is away
    d = make_clawsd(port=srv.c2s_port, reconnect_delay=4, reconnect_max_delay=4).start()
    c, _ = d.wait_connected(timeout=20)
    peer = make_peer()
    run = unique("sr")
    bot = srv.jid("bot")
    send_all(peer, bot, run, 10)
    got = bodies_of(collect(c, run, 10, 15), run)
    assert len(got) == 10
    settle(srv)

    srv.kill(signal.SIGKILL)
    c.wait_for(lambda e: is_status(e, "disconnected"), timeout=10)
    peer.stop()
    srv.start()
    peer = make_peer()
    mark = len(d.log())
    send_all(peer, bot, run, N, first=10)
    t0 = time.monotonic()
    el = c.wait_for(lambda e: is_status(e, "connected"), timeout=20)
    assert el.get("resumed") == "false"
    got = bodies_of(collect(c, run, N, 60), run)
    took = time.monotonic() - t0
    assert_exactly_once_in_order(got, run, 10, N)
    archived = sum(1 for _, e in got if has_delay(e))
    assert archived > 0
    assert re.search(r"catch-up: %s: \d+ archived messages relayed" % re.escape(bot),
                     d.log()[mark:])
    print("NOGAP: %s: server restart: %d messages, %d with a delay, all by "
          "%.2f s after the session came back" % (srv.name, N, archived, took))
    c.close()


# --------------------------------------------------------------------------
# rooms (SPEC 8)

MUC = "http://jabber.org/protocol/muc"
MUC_ADMIN = "http://jabber.org/protocol/muc#admin"


def room_jid(srv):
    return "%s@%s" % (unique("room").lower(), srv.muc_domain)


def own_room(peer, room, nick="owner"):
    """The peer creates the room (its owner) and is in it."""
    peer.send_raw('<presence to="%s/%s"><x xmlns="%s"/></presence>' % (room, nick, MUC))
    time.sleep(0.5)


def start_with_client(make_clawsd, make_proxy, server, **kw):
    """A clawsd (through a proxy) whose first session comes up only once a
    client listens, so that the client sees every joined line: (daemon,
    client, proxy)."""
    proxy = make_proxy(server.c2s_port)
    d = make_clawsd(port=proxy.port, **kw)
    c, _ = start_attached(d, proxy)
    return d, c, proxy


def status_line(c, name, room, timeout=15):
    return c.wait_for(lambda e: is_status(e, name) and e.get("room") == room,
                      timeout=timeout)


def ask_status(c):
    """The answer to a status command (SPEC 4.5) sent now."""
    c.send('<status xmlns="%s"/>' % harness.CLAWSD_NS)
    return c.wait_for(lambda e: is_status(e, "status"), timeout=10)


def rooms_in(status):
    """{room: (nick, joined)} from the <room/> children of a status answer."""
    return {r.get("jid"): (r.get("nick"), r.get("joined"))
            for r in status.findall("{%s}room" % harness.CLAWSD_NS)}


def joins_logged(d, room):
    return len(re.findall(r"rooms: joining %s as " % re.escape(room), d.log()))


def test_room_joined_relayed_and_kept_on_resume(make_clawsd, make_proxy, server, make_peer):
    room = room_jid(server)
    peer = make_peer()
    own_room(peer, room)
    d, c, proxy = start_with_client(make_clawsd, make_proxy, server,
                                    rooms={room: "bot"})
    el = status_line(c, "joined", room)
    assert el.get("nick") == "bot"
    peer.send_raw('<message to="%s" type="groupchat"><body>hello room</body></message>'
                  % room)
    el = c.wait_for(lambda e: e.tag == CLIENT + "message"
                    and e.get("type") == "groupchat"
                    and e.findtext(CLIENT + "body") == "hello room", timeout=10)
    assert el.get("from") == room + "/owner"
    assert joins_logged(d, room) == 1
    # the live message came after the catch-up: it is over; the room is in
    st = ask_status(c)
    assert st.get("catching_up") == "no"
    assert rooms_in(st) == {room: ("bot", "yes")}
    # clawsdctl status shows the same (SPEC 7)
    rc, out, err = run_ctl(str(harness.CLAWSDCTL_BIN), d, "status", "-o", "json")
    assert rc == 0, err
    st = json.loads(out)
    assert st["catching_up"] is False
    assert st["rooms"] == [{"jid": room, "nick": "bot", "joined": True}]
    rc, out, err = run_ctl(str(harness.CLAWSDCTL_BIN), d, "status")
    assert rc == 0, err
    assert "room: %s yes bot\n" % room in out and "catching_up: no\n" in out

    # a resumed session keeps its rooms: no second join
    proxy.cut()
    el = c.wait_for(lambda e: is_status(e, "connected"), timeout=20)
    assert el.get("resumed") == "true"
    peer.send_raw('<message to="%s" type="groupchat"><body>still here</body></message>'
                  % room)
    c.wait_for(lambda e: e.tag == CLIENT + "message"
               and e.findtext(CLIENT + "body") == "still here", timeout=10)
    assert joins_logged(d, room) == 1
    c.close()


def test_room_nickname_taken(make_clawsd, make_proxy, server, make_peer):
    room = room_jid(server)
    peer = make_peer()
    own_room(peer, room, nick="bot")        # the nickname is taken
    d, c, _ = start_with_client(make_clawsd, make_proxy, server, rooms={room: "bot"})
    el = status_line(c, "joined", room)
    assert el.get("nick") == "bot_"
    d.wait_log(r"nickname bot taken, trying bot_")
    c.close()


def test_room_kicked_rejoined_banned_not(make_clawsd, make_proxy, server, make_peer):
    room = room_jid(server)
    peer = make_peer()
    own_room(peer, room)
    d, c, _ = start_with_client(make_clawsd, make_proxy, server, rooms={room: "bot"})
    status_line(c, "joined", room)

    peer.send_raw('<iq type="set" id="%s" to="%s"><query xmlns="%s"><item nick="bot" '
                  'role="none"/></query></iq>' % (unique("kick"), room, MUC_ADMIN))
    el = status_line(c, "left", room)
    assert el.get("reason") == "kicked"
    t0 = time.monotonic()
    status_line(c, "joined", room, timeout=15)
    print("NOGAP: %s: kicked -> joined again in %.2f s" % (server.name, time.monotonic() - t0))

    peer.send_raw('<iq type="set" id="%s" to="%s"><query xmlns="%s"><item jid="%s" '
                  'affiliation="outcast"/></query></iq>'
                  % (unique("ban"), room, MUC_ADMIN, server.jid("bot")))
    el = status_line(c, "left", room)
    assert el.get("reason") == "banned"
    d.wait_log(r"rooms: %s: banned, not joining again" % re.escape(room))
    # the backoff (1 s, doubling) passes several times: no join
    for line in c.read_lines_for(4):
        el = parse_line(line)
        assert not (is_status(el, "joined") and el.get("room") == room), line
    assert rooms_in(ask_status(c)) == {room: ("bot", "no")}
    c.close()


def test_room_reload_adds_and_removes(make_clawsd, make_proxy, server, make_peer):
    a, b = room_jid(server), room_jid(server)
    peer = make_peer()
    own_room(peer, a)
    own_room(peer, b)
    d, c, _ = start_with_client(make_clawsd, make_proxy, server, rooms={a: "bot"})
    status_line(c, "joined", a)
    d.rooms = {b: "bot2"}
    d.write_config()
    d.kill(signal.SIGHUP)
    el = status_line(c, "left", a)
    assert el.get("reason") == "removed from the configuration"
    el = status_line(c, "joined", b)
    assert el.get("nick") == "bot2"
    # no reconnect for that
    assert [l for l in c.lines if is_status(parse_line(l), "connected")] == \
        [c.lines[[is_status(parse_line(l), "connected") for l in c.lines].index(True)]]
    c.close()


def test_room_self_ping_detects_silent_removal(make_clawsd, make_proxy, server, make_peer):
    if server.name != "prosody":
        pytest.skip("the occupant is removed silently through Prosody's admin shell")
    room = room_jid(server)
    peer = make_peer()
    own_room(peer, room)
    interval = 2
    d, c, _ = start_with_client(make_clawsd, make_proxy, server, rooms={
        room: "bot", "rooms_ping_interval": interval})
    status_line(c, "joined", room)
    # the room forgets the occupant without a word (as when the service
    # restarts without its occupants)
    out = server.shell(
        'local r = prosody.hosts[%r].modules.muc.get_room_from_jid(%r); '
        'local o = r:get_occupant_by_nick(%r); '
        'for real in o:each_session() do r._jid_nick[real] = nil end; '
        'r._occupants[%r] = nil; return "removed"'
        % (server.muc_domain, room, room + "/bot", room + "/bot"))
    assert "removed" in out, out
    t0 = time.monotonic()
    el = status_line(c, "left", room, timeout=interval + 15)
    t_left = time.monotonic() - t0
    assert el.get("reason") == "no longer an occupant"
    status_line(c, "joined", room, timeout=10)
    t_back = time.monotonic() - t0
    assert t_left <= interval + 10
    print("NOGAP: %s: self-ping (interval %d s) found the room had forgotten us "
          "in %.2f s, joined again in %.2f s" % (server.name, interval, t_left, t_back))
    c.close()


def test_room_catches_up_from_its_archive(own, make_clawsd, make_proxy, tmpdir_path):
    """More room messages missed than the room's history holds (50): only
    the room's archive has them all."""
    srv, make_peer = own
    room = room_jid(srv)
    peer = make_peer()
    own_room(peer, room)
    state = tmpdir_path / "state"
    d, c, proxy = start_with_client(make_clawsd, make_proxy, srv, rooms={room: "bot"},
                                    xmpp={"state_directory": state})
    status_line(c, "joined", room)
    run = unique("rm")

    def say(i):
        peer.send_raw('<message to="%s" type="groupchat"><body>%s %d</body></message>'
                      % (room, run, i))
    say(0)
    assert len(bodies_of(collect(c, run, 1, 15), run)) == 1
    time.sleep(1.5)         # the room's archive id is in the state file
    assert room in (state / "archive-ids").read_text()

    proxy.blackhole(True)
    for i in range(1, 81):
        say(i)
    time.sleep(1.0)
    c.close()
    d.kill(signal.SIGTERM)
    assert d.proc.wait(15) == 0
    proxy.blackhole(False)
    # the new session comes up only once the client listens: it sees the
    # joined line and every archived message
    proxy.refuse(True)
    d.start()
    c = d.connect()
    proxy.refuse(False)
    status_line(c, "joined", room, timeout=20)
    got = bodies_of(collect(c, run, 80, 30), run)
    assert_exactly_once_in_order(got, run, 1, 80)
    assert all(has_delay(e) for _, e in got)
    d.wait_log(r"catch-up: %s: 80 archived messages relayed" % re.escape(room))
    c.close()
