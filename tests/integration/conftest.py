"""pytest fixtures for the clawsd integration tests.

One PKI and one Prosody (127.0.0.1, free ports, temp folder) for the whole
session, with the accounts below; a fresh clawsd per test.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

ACCOUNTS = harness.TEST_ACCOUNTS


@pytest.fixture(scope="session")
def pki():
    p = harness.PKI()
    yield p
    p.cleanup()


@pytest.fixture(scope="session")
def prosody_server(pki):
    srv = harness.Prosody(pki)
    try:
        for user, pw in ACCOUNTS.items():
            srv.register(user, pw)
        srv.start()
    except Exception:
        srv.cleanup()
        raise
    yield srv
    srv.cleanup()


@pytest.fixture
def prosody(prosody_server, request):
    """The shared Prosody, (re)started if an earlier test left it stopped.
    Its log tail is printed at teardown (shown by pytest when a test fails)."""
    if not prosody_server.running:
        prosody_server.start()
    yield prosody_server
    print("---- prosody log tail:\n%s" % harness.tail(prosody_server.log(), 30))
    if not prosody_server.running:
        prosody_server.start()


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
    """make_peer(user='peer') -> a started Peer, stopped at teardown."""
    peers = []

    def make(user="peer"):
        p = _peer(prosody, pki, user)
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
        rc = d.stop()
        print("---- clawsd %s (exit %s) log tail:\n%s"
              % (d.config_path, rc, harness.tail(d.log(), 80)))
        d.cleanup()


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
