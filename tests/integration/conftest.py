"""pytest fixtures for the clawsd integration tests.

One PKI for the whole session; one XMPP server at a time, shared by the tests
(127.0.0.1 and ::1, free ports, temp folder) with the accounts below, and a
fresh clawsd per test.  Under pytest-xdist (`make` runs -n 4) each worker
is such a session: its own PKI and servers.  The server fixture is parametrized: every test that
uses it (directly or through `prosody`, `server`, `make_clawsd`, `bot`,
`peer`...) runs once against Prosody and once against ejabberd, with ids
like `test_x[prosody]` and `test_x[ejabberd]`.  pytest groups the tests by
server, so each server starts once.  CLAWSD_TEST_SERVERS=prosody (or
ejabberd, or a comma-separated list) restricts the run.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402

ACCOUNTS = harness.TEST_ACCOUNTS

SERVER_KINDS = [k.strip() for k in
                (os.environ.get("CLAWSD_TEST_SERVERS") or "prosody,ejabberd").split(",")
                if k.strip()]
for _k in SERVER_KINDS:
    if _k not in harness.SERVERS:
        raise ValueError("CLAWSD_TEST_SERVERS: unknown server %r (known: %s)"
                         % (_k, ", ".join(harness.SERVERS)))


@pytest.fixture(scope="session")
def pki():
    p = harness.PKI()
    yield p
    p.cleanup()


def start_server(kind, pki, users=ACCOUNTS, **kw):
    """A started server of that kind with those accounts (the caller
    cleans it up); kw: harness.make_server's."""
    srv = harness.make_server(kind, pki, **kw)
    try:
        for user in users:
            srv.register(user, ACCOUNTS[user])
        srv.start()
    except Exception:
        srv.cleanup()
        raise
    return srv


@pytest.fixture(scope="session", params=SERVER_KINDS)
def xmpp_server(pki, request):
    srv = start_server(request.param, pki)
    yield srv
    srv.cleanup()


@pytest.fixture
def server(xmpp_server):
    """The shared server under test (Prosody or ejabberd: server.name),
    (re)started if an earlier test left it stopped.  Its log tail is printed
    at teardown (shown by pytest when a test fails)."""
    if not xmpp_server.running:
        xmpp_server.start()
    yield xmpp_server
    print("---- %s log tail:\n%s" % (xmpp_server.name, harness.tail(xmpp_server.log(), 30)))
    if not xmpp_server.running:
        xmpp_server.start()


@pytest.fixture
def prosody(server):
    """The historical name of `server`: whichever server the test runs
    against, Prosody or ejabberd."""
    return server


@pytest.fixture
def server_kind(xmpp_server):
    return xmpp_server.name


@pytest.fixture
def make_server(pki, xmpp_server):
    """make_server(users=("bot", "peer"), **kw) -> a started server of the
    test's own, of the same kind as the shared one (for tests that kill it,
    or must not meet the sessions other tests left behind); cleaned up at
    teardown.  kw: harness.make_server's (cert=, key=, archive=)."""
    made = []

    def make(users=("bot", "peer"), **kw):
        srv = start_server(xmpp_server.name, pki, users, **kw)
        made.append(srv)
        return srv
    yield make
    for srv in made:
        print("---- own %s log tail:\n%s" % (srv.name, harness.tail(srv.log(), 30)))
        srv.cleanup()


@pytest.fixture
def make_proxy():
    """make_proxy(port) -> a started FaultProxy (tests/integration/
    faultproxy.py) to 127.0.0.1:port, stopped at teardown."""
    made = []

    def make(port):
        p = FaultProxy(port).start()
        made.append(p)
        return p
    yield make
    for p in made:
        print("---- proxy %d counters: %r errors: %r" % (p.port, p.counters(), p.errors[:5]))
        p.stop()


@pytest.fixture
def daemons():
    """daemons(clawsd) registers a Clawsd to stop and remove at teardown
    (with the sanitizer check of Clawsd.stop)."""
    made = []

    def add(d):
        made.append(d)
        return d
    yield add
    errors = []
    for d in made:
        try:
            d.retire(40)
        except harness.HarnessError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture
def tmpdir_path():
    """A temporary folder removed after the test (pytest's tmp_path keeps
    the last runs' folders around)."""
    d = tempfile.mkdtemp(prefix="clawsd-t-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def accounts():
    return dict(ACCOUNTS)


def _peer(prosody, pki, user):
    return harness.Peer(prosody.jid(user), ACCOUNTS[user], prosody.c2s_port,
                        ca_file=pki.ca_cert)


@pytest.fixture
def make_peer(prosody, pki):
    """make_peer(user='peer', server=None) -> a started Peer on that server
    (the shared one by default), stopped at teardown."""
    peers = []

    def make(user="peer", server=None):
        p = _peer(server or prosody, pki, user)
        peers.append(p)
        return p.start()
    yield make
    for p in peers:
        p.stop()


@pytest.fixture
def peer(make_peer):
    return make_peer("peer")


def require_clawsd():
    if not harness.CLAWSD_BIN.exists():
        pytest.skip("%s not built (run `make clawsd`)" % harness.CLAWSD_BIN)


@pytest.fixture
def clawsd_bin():
    require_clawsd()
    return harness.CLAWSD_BIN


@pytest.fixture
def make_clawsd(prosody, pki):
    """make_clawsd(**overrides) -> a configured (not started) Clawsd logging
    in as bot with STARTTLS, verification against the test CA and a unique
    resource.  Stopped and removed at teardown; its log is printed there, so
    pytest shows it for a failing test."""
    require_clawsd()
    made = []

    def make(**kw):
        kw.setdefault("user", "bot")
        kw.setdefault("password", ACCOUNTS["bot"])
        kw.setdefault("port", prosody.c2s_port)
        kw.setdefault("ca_file", pki.ca_cert)
        xmpp = {"resource": harness.unique("clawsd")}
        xmpp.update(kw.pop("xmpp", {}) or {})
        kw["xmpp"] = xmpp
        d = harness.Clawsd(**kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.retire()


@pytest.fixture
def clawsd(make_clawsd):
    """A started clawsd (socket up; the session may still be connecting)."""
    return make_clawsd().start()


@pytest.fixture
def bot(clawsd):
    """A clawsd whose session is up: (daemon, client already past `connected`)."""
    client, _ = clawsd.wait_connected(timeout=20)
    yield clawsd, client
    client.close()
