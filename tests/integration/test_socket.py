"""The socket file at start-up, reload and exit (issue 11).

- A socket at the path that we may not connect to (EACCES) is not taken
  for stale: the daemon exits 1 and leaves it alone; only ECONNREFUSED
  means that nobody listens.
- Two daemons starting at once on one path: the path is taken with
  link(), which fails if it exists, so one gets it and the other exits 1
  (with rename, each could replace the other's socket).
- At exit, the daemon removes the socket file only if it is still the one
  it created (device and inode).
- A reload that cannot create the new socket keeps the old one; one that
  changes only the mode replaces our own file in one step.

These need no XMPP server: the daemon stays in Retrying.
"""

import os
import shutil
import socket
import stat
import subprocess
import time

import pytest

import harness
from harness import is_status, parse_line


@pytest.fixture
def daemons():
    made = []

    def make(**kw):
        kw.setdefault("user", "bot")
        kw.setdefault("password", "x")
        kw.setdefault("port", harness.free_port())
        kw.setdefault("log_level", "info")
        d = harness.Clawsd(**kw)
        made.append(d)
        return d
    yield make
    for d in made:
        if d.proc is not None and d.alive:
            d.stop()
        d.cleanup()


def wait_exit(d, timeout=10):
    harness.wait_until(lambda: not d.alive, timeout, what="clawsd to exit")
    return d.returncode


def first_line(path):
    with harness.SockClient(path, timeout=5) as c:
        return parse_line(c.read_line(5))


def foreign_socket(path, listen=True):
    """A socket of someone else's at `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    if listen:
        s.listen(1)
    return s


@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv(1) to make connect() fail with EACCES")
def test_eacces_is_not_stale(daemons, tmpdir_path):
    """A socket owned by another user, mode 0600: without CAP_DAC_OVERRIDE
    the daemon gets EACCES on connect, which says nothing about whether a
    daemon listens there.  It must not remove it."""
    d = daemons()
    other = foreign_socket(d.socket_path)
    try:
        os.chown(d.socket_path, 65534, 65534)
        os.chmod(d.socket_path, 0o600)
        ino = os.lstat(d.socket_path).st_ino
        wrapper = tmpdir_path / "no-dac-override"
        wrapper.write_text("#!/bin/sh\nexec setpriv --bounding-set=-dac_override,"
                           "-dac_read_search --inh-caps=-dac_override,-dac_read_search "
                           "%s \"$@\"\n" % harness.CLAWSD_BIN)
        wrapper.chmod(0o755)
        d.binary = wrapper
        d.start(wait_socket=False)
        assert wait_exit(d) == 1, harness.tail(d.log())
        assert "cannot tell whether a daemon listens there: Permission denied" in d.log()
        assert "removing stale" not in d.log()
        assert os.lstat(d.socket_path).st_ino == ino
    finally:
        other.close()


def test_stale_socket_removed(daemons):
    """ECONNREFUSED: nobody listens, the file is left over: replaced."""
    d = daemons()
    foreign_socket(d.socket_path, listen=False).close()
    d.start(wait_socket=False)
    d.wait_log(r"socket: listening on")
    assert "removing stale" in d.log()
    assert is_status(first_line(d.socket_path), "disconnected")


def test_two_daemons_at_once(daemons, tmpdir_path):
    """Started at the same moment on one path, over and over: each time
    exactly one gets the path and keeps it, the other exits 1, and no
    temporary file is left."""
    for trial in range(12):
        folder = tmpdir_path / ("race%d" % trial)
        folder.mkdir(mode=0o700)
        path = folder / "clawsd.sock"
        pair = [daemons(socket_opts={"path": path}) for _ in range(2)]
        for d in pair:
            d.start(wait_socket=False)
        harness.wait_until(lambda: path.exists() and sum(d.alive for d in pair) <= 1
                           or sum(d.alive for d in pair) == 0, 10,
                           what="one daemon of two to give up")
        alive = [d for d in pair if d.alive]
        assert len(alive) == 1, [harness.tail(d.log()) for d in pair]
        loser = [d for d in pair if not d.alive][0]
        assert loser.returncode == 1, harness.tail(loser.log())
        # the path is the survivor's: it answers, and SIGTERM removes it
        assert is_status(first_line(path), "disconnected")
        assert alive[0].stop() == 0
        assert not path.exists(), "the survivor's socket was not its own"
        assert [p.name for p in folder.iterdir() if p.is_socket()] == []


def test_exit_leaves_a_replaced_socket(daemons):
    """Someone else's socket now at the path (the daemon's was removed and
    the path taken): at exit the daemon leaves it alone."""
    d = daemons()
    d.start()
    os.unlink(d.socket_path)
    other = foreign_socket(d.socket_path)
    try:
        ino = os.lstat(d.socket_path).st_ino
        assert d.stop() == 0
        assert d.socket_path.exists(), "the daemon removed a socket not its own"
        assert os.lstat(d.socket_path).st_ino == ino
    finally:
        other.close()


def test_reload_socket_failure_keeps_old(daemons, tmpdir_path):
    """A reload to a path that cannot be used keeps the old socket: still
    there, still answering."""
    d = daemons()
    d.start()
    bad = tmpdir_path / "everyone"
    bad.mkdir()
    os.chmod(bad, 0o777)        # refused: anyone could replace the socket
    d.socket_opts["path"] = bad / "clawsd.sock"
    d.write_config()
    d.kill(1)                   # SIGHUP
    d.wait_log(r"reload: the socket could not be re-created, keeping the old one")
    assert d.alive
    assert is_status(first_line(d.socket_path), "disconnected")
    assert not (bad / "clawsd.sock").exists()
    # a good path later: the new socket replaces the old one, which goes
    good = tmpdir_path / "good"
    good.mkdir(mode=0o700)
    d.socket_opts["path"] = good / "clawsd.sock"
    d.write_config()
    d.kill(1)
    d.wait_log(r"socket: listening on %s" % (good / "clawsd.sock"))
    assert is_status(first_line(good / "clawsd.sock"), "disconnected")
    assert not d.socket_path.exists()
    assert d.stop() == 0
    assert not (good / "clawsd.sock").exists()


def test_reload_mode_replaces_own_socket(daemons):
    """Same path, new mode: our own socket is replaced in one step (no
    moment without a socket at the path, no "another daemon")."""
    d = daemons(socket_opts={"mode": "0600"})
    d.start()
    with harness.SockClient(d.socket_path, timeout=5) as kept:
        kept.read_line(5)
        d.socket_opts["mode"] = "0660"
        d.write_config()
        d.kill(1)
        d.wait_log(r"socket: listening on .*clawsd\.sock", count=2)
        assert stat.S_IMODE(os.lstat(d.socket_path).st_mode) == 0o660
        assert is_status(first_line(d.socket_path), "disconnected")
        assert "another daemon" not in d.log()
        assert [p.name for p in d.dir.iterdir() if p.is_socket()] == ["clawsd.sock"]
    assert d.stop() == 0
    assert not d.socket_path.exists()
