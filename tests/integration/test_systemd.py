"""clawsd as a system service (SPEC sections 1 and 6).

The tests play systemd: a datagram socket as NOTIFY_SOCKET, WATCHDOG_USEC,
a listening socket passed as fd 3 with LISTEN_FDS/LISTEN_PID, JOURNAL_STREAM.
Then the shipped files: the units through `systemd-analyze verify' and
`systemd-analyze security --offline=true', `make install'/`make uninstall'
into a staging folder, sysusers.d/tmpfiles.d applied to it, and the man pages
through `mandoc -Tlint'.  No running systemd is needed.
"""

import os
import re
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import time

import pytest

import harness
from harness import NotifySocket, is_status, message_xml, unique

REPO = harness.REPO_ROOT
PEER = "peer@localhost"
UNITS = ["clawsd.service", "clawsd@.service", "clawsd.socket", "clawsd@.socket"]
MAX_EXPOSURE = 1.5

# What `make install DESTDIR=...' puts where, with the default PREFIX.
INSTALLED = {
    "usr/local/sbin/clawsd": 0o755,
    "usr/local/bin/clawsdctl": 0o755,
    "usr/local/lib/systemd/system/clawsd.service": 0o644,
    "usr/local/lib/systemd/system/clawsd@.service": 0o644,
    "usr/local/lib/systemd/system/clawsd.socket": 0o644,
    "usr/local/lib/systemd/system/clawsd@.socket": 0o644,
    "usr/local/lib/sysusers.d/clawsd.conf": 0o644,
    "usr/local/lib/tmpfiles.d/clawsd.conf": 0o644,
    "usr/local/share/man/man8/clawsd.8": 0o644,
    "usr/local/share/man/man1/clawsdctl.1": 0o644,
    "usr/local/share/man/man5/clawsd.conf.5": 0o644,
    "etc/clawsd/clawsd.conf": 0o640,
}


def sd_env(notify=None, **more):
    """The daemon's environment as systemd would set it up: nothing of the
    test runner's own service manager leaks in."""
    env = {k: None for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                             "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                             "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY")}
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify.address()
    env.update(more)
    return env


def fail_with_log(d, what):
    pytest.fail("%s\n--- clawsd log:\n%s" % (what, harness.tail(d.log(), 60)))


def wait_notify(notify, d, predicate, timeout=10.0, start=0, what="message"):
    try:
        return notify.wait(predicate, timeout, start)
    except TimeoutError as e:
        fail_with_log(d, "no notify %s: %s" % (what, e))


@pytest.fixture
def offline(clawsd_bin):
    """offline() -> a configured clawsd whose server never answers (nothing
    listens on its port): for what does not need a session, on no server."""
    made = []

    def make():
        d = harness.Clawsd(user="bot", password="unused", port=harness.free_port())
        made.append(d)
        return d
    yield make
    for d in made:
        d.retire(40)


@pytest.fixture
def notify(tmpdir_path):
    n = NotifySocket(tmpdir_path / "notify.sock")
    yield n
    n.close()


def tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        pytest.fail("%s is missing: run `make deps' (tests/deps.sh)" % name)
    return path


# --------------------------------------------------------------------------
# sd_notify

def test_ready_status_reload_stopping(make_clawsd, notify):
    d = make_clawsd()
    d.start(wait_socket=False, env=sd_env(notify))
    wait_notify(notify, d, lambda t: t == "READY=1", what="READY=1")
    # READY=1 means the socket listens: a client gets in at once
    with d.connect() as c:
        first = harness.parse_line(c.read_line(timeout=5))
        assert is_status(first)
    assert notify.texts()[0] == "READY=1"

    # the resource, or with Bind2 (SASL2) one the server made from it
    jid = "bot@localhost/%s" % d.xmpp_opts["resource"]
    wait_notify(notify, d, lambda t: re.fullmatch(r"STATUS=Binded as %s(?:[~.]\S+)?"
                                                  % re.escape(jid), t), 20,
                what="STATUS=Binded as " + jid)
    texts = notify.texts()
    assert "STATUS=Connecting" in texts
    assert any(re.fullmatch(r"STATUS=Authenticate (?:SASL2 )?SCRAM-SHA-\d+(?:-PLUS)?", t) for t in texts), texts
    # only the main process speaks (NotifyAccess=main)
    assert {pid for _, pid, _ in notify.messages} == {d.proc.pid}

    # SIGHUP: RELOADING=1 with the time it began, then READY=1
    mark = len(notify.messages)
    t0 = time.monotonic()
    d.kill(signal.SIGHUP)
    i = wait_notify(notify, d, lambda t: t.startswith("RELOADING=1"), 5,
                    mark, "RELOADING=1")
    t1 = time.monotonic()
    # one session, one "Binded" (with SASL2 the features that follow the
    # success change nothing the user sees)
    before = [t for _, _, t in notify.messages[:i]]
    assert len([t for t in before if t.startswith("STATUS=Binded as")]) == 1, before
    m = re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=(\d+)", notify.messages[i][2])
    assert m, notify.messages[i][2]
    assert int(t0 * 1e6) - 1000 <= int(m.group(1)) <= int(t1 * 1e6) + 1000
    wait_notify(notify, d, lambda t: t == "READY=1", 5, i + 1, "READY=1 after reload")

    # an invalid file: reported, the running configuration kept, READY=1
    good = d.config_path.read_text()
    d.config_path.write_text(good + "\n[nonsense]\n")
    mark = len(notify.messages)
    d.kill(signal.SIGHUP)
    i = wait_notify(notify, d, lambda t: t.startswith("RELOADING=1"), 5, mark)
    wait_notify(notify, d, lambda t: t == "READY=1", 5, i + 1, "READY=1 after a failed reload")
    d.wait_log(r"keeping the running configuration")
    assert d.alive
    d.config_path.write_text(good)

    # SIGTERM: STOPPING=1, then a clean exit
    mark = len(notify.messages)
    d.kill(signal.SIGTERM)
    wait_notify(notify, d, lambda t: t.split("\n")[0] == "STOPPING=1", 5, mark, "STOPPING=1")
    assert d.proc.wait(timeout=15) == 0
    assert not d.socket_path.exists()


def test_abstract_notify_socket(offline):
    with NotifySocket(abstract=True) as notify:
        assert notify.address().startswith("@")
        d = offline()
        d.start(env=sd_env(notify))
        wait_notify(notify, d, lambda t: t == "READY=1", what="READY=1")


def test_status_retrying_has_the_reason_on_one_line(offline, notify):
    # nothing listens on this port: Connecting, then Retrying with the reason
    d = offline()
    d.start(env=sd_env(notify))
    i = wait_notify(notify, d, lambda t: t.startswith("STATUS=Retrying"), 10,
                    what="STATUS=Retrying")
    text = notify.messages[i][2]
    assert re.fullmatch(r"STATUS=Retrying in \d+\.\d s: .+", text), text
    assert "\n" not in text
    assert "READY=1" in notify.texts()


def test_no_notify_socket_no_problem(offline):
    # outside systemd nothing is sent and nothing is logged about it
    d = offline()
    d.start(env=sd_env(None))
    d.kill(signal.SIGHUP)
    d.wait_log(r"reloading")
    assert d.stop() == 0
    assert "notify" not in d.log()


# --------------------------------------------------------------------------
# watchdog

def test_watchdog_fed_at_half_the_interval(offline, notify):
    d = offline()
    # WATCHDOG_PID names the daemon itself, as systemd sets it
    d.start(wait_socket=False, env=sd_env(notify, WATCHDOG_USEC=400000),
            pid_env=("WATCHDOG_PID",))
    wait_notify(notify, d, lambda t: t == "READY=1", what="READY=1")
    deadline = time.monotonic() + 10
    while sum(t == "WATCHDOG=1" for t in notify.texts()) < 7:
        if time.monotonic() > deadline:
            fail_with_log(d, "fewer than 7 WATCHDOG=1 in 10 s: %r" % notify.texts())
        time.sleep(0.05)
    times = [m[0] for m in notify.messages if m[2] == "WATCHDOG=1"]
    gaps = [b - a for a, b in zip(times[1:], times[2:])]
    assert 0.12 <= statistics.median(gaps) <= 0.3, gaps
    # never near a whole interval without one (some slack for a busy box)
    assert max(gaps) < 0.6, gaps

    mark = len(notify.messages)
    d.kill(signal.SIGTERM)
    i = wait_notify(notify, d, lambda t: t.startswith("STOPPING=1"), 5, mark)
    assert d.proc.wait(timeout=15) == 0
    # not fed once shutting down
    assert "WATCHDOG=1" not in notify.texts()[i:]


def test_watchdog_for_another_pid_is_ignored(offline, notify):
    d = offline()
    d.start(env=sd_env(notify, WATCHDOG_USEC=200000, WATCHDOG_PID=1))
    wait_notify(notify, d, lambda t: t == "READY=1", what="READY=1")
    time.sleep(0.8)
    assert "WATCHDOG=1" not in notify.texts()


# --------------------------------------------------------------------------
# socket activation

def test_socket_activation_serves_on_the_passed_socket(make_clawsd, notify, peer):
    d = make_clawsd()
    passed = d.dir / "activated.sock"
    listener = harness.unix_listener(passed)
    try:
        d.start(wait_socket=False, env=sd_env(notify), listen_fd=listener.fileno())
        wait_notify(notify, d, lambda t: t == "READY=1", what="READY=1")
        d.wait_log(r"listening on the socket passed by systemd")
        # [socket] path is ignored
        assert not d.socket_path.exists()

        c = harness.SockClient(passed)
        try:
            c.wait_for(lambda e: is_status(e, "connected"), timeout=20)
            body = unique("activated")
            c.send(message_xml(PEER, body))
            assert peer.wait_message(lambda m: m.body == body, timeout=10).body == body
        finally:
            c.close()

        # a changed [socket] does not replace systemd's socket
        d.socket_opts["path"] = d.dir / "other.sock"
        d.write_config()
        mark = len(notify.messages)
        d.kill(signal.SIGHUP)
        i = wait_notify(notify, d, lambda t: t.startswith("RELOADING=1"), 5, mark)
        wait_notify(notify, d, lambda t: t == "READY=1", 5, i + 1)
        with harness.SockClient(passed) as c2:
            assert is_status(c2.read_element(timeout=5))
        assert not (d.dir / "other.sock").exists()

        d.kill(signal.SIGTERM)
        assert d.proc.wait(timeout=15) == 0
        # systemd's socket file is systemd's to remove
        assert stat.S_ISSOCK(os.lstat(passed).st_mode)
    finally:
        listener.close()


def test_listen_fds_for_another_pid_are_ignored(offline, notify):
    # LISTEN_PID is not the daemon: the variables are a parent's, not ours
    d = offline()
    d.start(env=sd_env(notify, LISTEN_FDS=1, LISTEN_PID=1))
    wait_notify(notify, d, lambda t: t == "READY=1", what="READY=1")
    assert d.socket_path.exists()
    with d.connect() as c:
        assert is_status(c.read_element(timeout=5))


@pytest.mark.parametrize("kind", ["datagram", "tcp"])
def test_unusable_passed_socket_is_fatal(offline, notify, kind):
    d = offline()
    if kind == "datagram":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(str(d.dir / "dgram.sock"))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(1)
    try:
        d.start(wait_socket=False, env=sd_env(notify), listen_fd=s.fileno())
        assert d.proc.wait(timeout=10) == 1
    finally:
        s.close()
    assert "socket activation" in d.log()
    assert "READY=1" not in notify.texts()


# --------------------------------------------------------------------------
# journal

def test_journal_priority_prefixes(offline):
    d = offline()
    # JOURNAL_STREAM names the device and inode of stderr, as systemd does
    d.log_path.touch()
    st = os.stat(d.log_path)
    d.start(env=sd_env(None, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino)))
    d.wait_log(r"retrying in")
    assert d.stop() == 0
    lines = d.log().splitlines()
    assert lines
    for line in lines:
        assert re.match(r"<[3467]>\S", line), line
    assert any(line.startswith("<6>") for line in lines)
    assert any(line.startswith("<4>") for line in lines)   # the failed connect
    assert any(line.startswith("<7>") for line in lines)   # debug
    assert not any(re.search(r"\d{4}-\d\d-\d\dT\d\d:", line) for line in lines)


def test_timestamps_outside_the_journal(offline):
    d = offline()
    d.start(env=sd_env(None))
    d.wait_log(r"retrying in")
    assert d.stop() == 0
    for line in d.log().splitlines():
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug): ",
                        line), line


# --------------------------------------------------------------------------
# the units

def make_install(*args):
    r = subprocess.run(["make", "-s", "-C", str(REPO), "install"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=300)
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    return r.stdout.decode(errors="replace")


def unit_lines(name):
    return [line.strip() for line in (REPO / "systemd" / name).read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_systemd_analyze_verify(tmpdir_path):
    # installed under a PREFIX of its own: ExecStart names a real binary and
    # man:clawsd(8) is found through MANPATH
    prefix = tmpdir_path / "usr"
    make_install("PREFIX=%s" % prefix,
                 "CONFDIR=%s" % (tmpdir_path / "etc" / "clawsd"))
    unitdir = prefix / "lib" / "systemd" / "system"
    env = dict(os.environ, MANPATH=str(prefix / "share" / "man"),
               SYSTEMD_LOG_LEVEL="notice")
    analyze = tool("systemd-analyze")
    # Documentation=man:... is checked with man(1), when there is one
    man = [] if shutil.which("man") else ["--man=no"]
    for unit in UNITS + ["clawsd@example.service", "clawsd@example.socket"]:
        r = subprocess.run([analyze, "verify"] + man + [str(unitdir / unit)], env=env,
                           cwd=str(tmpdir_path), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0 and out.strip() == "", "%s:\n%s" % (unit, out)
    assert "ExecStart=%s/sbin/clawsd -c /etc/clawsd/clawsd.conf" % prefix \
        in (unitdir / "clawsd.service").read_text()


@pytest.mark.parametrize("unit", ["clawsd.service", "clawsd@.service"])
def test_systemd_analyze_security(unit, tmpdir_path):
    r = subprocess.run([tool("systemd-analyze"), "security", "--offline=true",
                        "--threshold=%d" % int(MAX_EXPOSURE * 10), "--no-pager",
                        str(REPO / "systemd" / unit)], cwd=str(tmpdir_path),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)
    assert m, out
    print("%s: exposure %s" % (unit, m.group(1)))
    assert float(m.group(1)) <= MAX_EXPOSURE, out
    assert r.returncode == 0, out


def test_service_unit_settings():
    for name in ("clawsd.service", "clawsd@.service"):
        lines = unit_lines(name)
        for want in ("Type=notify", "NotifyAccess=main", "User=clawsd", "Group=clawsd",
                     "RuntimeDirectory=clawsd", "ExecReload=/bin/kill -HUP $MAINPID",
                     "Restart=on-failure", "RestartPreventExitStatus=78",
                     "WatchdogSec=30", "ProtectSystem=strict", "ProtectHome=yes",
                     "PrivateTmp=yes", "PrivateDevices=yes", "NoNewPrivileges=yes",
                     "CapabilityBoundingSet=",
                     "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                     "SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes"):
            assert want in lines, "%s lacks %s" % (name, want)
    # the archive position survives a restart (SPEC 9), one per instance
    assert "StateDirectory=clawsd" in unit_lines("clawsd.service")
    assert "StateDirectory=clawsd/%i" in unit_lines("clawsd@.service")
    for name in ("clawsd.service", "clawsd@.service"):
        assert "StateDirectoryMode=0700" in unit_lines(name)
    assert "LoadCredential=password:/etc/clawsd/password" in unit_lines("clawsd.service")
    assert "ExecStart=/usr/local/sbin/clawsd -c /etc/clawsd/clawsd.conf" \
        in unit_lines("clawsd.service")
    assert "LoadCredential=password:/etc/clawsd/%i.password" in unit_lines("clawsd@.service")
    assert "ExecStart=/usr/local/sbin/clawsd -c /etc/clawsd/%i.conf" \
        in unit_lines("clawsd@.service")
    sock = unit_lines("clawsd.socket")
    for want in ("ListenStream=/run/clawsd/clawsd.sock", "SocketMode=0660",
                 "SocketGroup=clawsd"):
        assert want in sock
    assert "ListenStream=/run/clawsd/%i.sock" in unit_lines("clawsd@.socket")


# --------------------------------------------------------------------------
# make install

def installed_files(root):
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
            for p in root.rglob("*") if p.is_file()}


def test_make_install_and_uninstall(tmpdir_path):
    dest = tmpdir_path / "dest"
    make_install("DESTDIR=%s" % dest)
    assert installed_files(dest) == INSTALLED
    unit = (dest / "usr/local/lib/systemd/system/clawsd.service").read_text()
    assert "ExecStart=/usr/local/sbin/clawsd -c /etc/clawsd/clawsd.conf" in unit
    assert (dest / "etc/clawsd/clawsd.conf").read_text() \
        == (REPO / "conf/clawsd.conf").read_text()
    assert (dest / "usr/local/sbin/clawsd").read_bytes() == (REPO / "clawsd").read_bytes()

    # an existing configuration is never replaced
    (dest / "etc/clawsd/clawsd.conf").write_text("# mine\n")
    out = make_install("DESTDIR=%s" % dest)
    assert "kept" in out
    assert (dest / "etc/clawsd/clawsd.conf").read_text() == "# mine\n"

    r = subprocess.run(["make", "-s", "-C", str(REPO), "uninstall", "DESTDIR=%s" % dest],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert r.returncode == 0, r.stdout
    assert set(installed_files(dest)) == {"etc/clawsd/clawsd.conf"}


def test_make_install_other_prefix(tmpdir_path):
    dest = tmpdir_path / "dest"
    make_install("DESTDIR=%s" % dest, "PREFIX=/usr")
    files = set(installed_files(dest))
    assert "usr/sbin/clawsd" in files
    assert "usr/bin/clawsdctl" in files
    assert "usr/lib/systemd/system/clawsd@.service" in files
    assert "usr/share/man/man8/clawsd.8" in files
    for unit in ("clawsd.service", "clawsd@.service"):
        text = (dest / "usr/lib/systemd/system" / unit).read_text()
        assert "ExecStart=/usr/sbin/clawsd -c" in text
        assert "/usr/local" not in text


@pytest.mark.skipif(os.getuid() != 0, reason="tmpfiles must be root to chown")
def test_sysusers_and_tmpfiles(tmpdir_path):
    root = tmpdir_path / "root"
    make_install("DESTDIR=%s" % root)
    (root / "etc/clawsd/password").write_text("secret\n")
    (root / "etc/clawsd/work.conf").write_text("")
    (root / "etc/clawsd/work.password").write_text("secret\n")
    r = subprocess.run([tool("systemd-sysusers"), "--root=%s" % root,
                        str(root / "usr/local/lib/sysusers.d/clawsd.conf")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert r.returncode == 0, r.stdout
    passwd = (root / "etc/passwd").read_text()
    m = re.search(r"(?m)^clawsd:x:(\d+):(\d+):", passwd)
    assert m, passwd
    uid, gid = int(m.group(1)), int(m.group(2))
    assert 0 < uid < 1000 and 0 < gid < 1000    # a system user

    (root / "run").mkdir()
    r = subprocess.run([tool("systemd-tmpfiles"), "--root=%s" % root, "--create",
                        str(root / "usr/local/lib/tmpfiles.d/clawsd.conf")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert r.returncode == 0, r.stdout

    def owner_mode(rel):
        st = os.lstat(root / rel)
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
    assert owner_mode("run/clawsd") == (uid, gid, 0o750)
    assert owner_mode("etc/clawsd") == (0, gid, 0o750)
    assert owner_mode("etc/clawsd/clawsd.conf") == (0, gid, 0o640)
    assert owner_mode("etc/clawsd/work.conf") == (0, gid, 0o640)
    assert owner_mode("etc/clawsd/password") == (0, 0, 0o600)
    assert owner_mode("etc/clawsd/work.password") == (0, 0, 0o600)


# --------------------------------------------------------------------------
# man pages

MAN_PAGES = ["daemon/clawsd.8", "conf/clawsd.conf.5", "ctl/clawsdctl.1"]


def test_man_pages_lint_clean():
    # warnings and worse; style notes depend on the manuals installed here
    r = subprocess.run([tool("mandoc"), "-Tlint", "-Wwarning"]
                       + [str(REPO / p) for p in MAN_PAGES],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and out == "", out


def test_man_pages_cover_options_and_keys():
    page8 = (REPO / "daemon/clawsd.8").read_text()
    for flag in ("c", "t", "v", "V", "h"):
        assert re.search(r"(?m)^\.It Fl %s\b" % flag, page8), flag
    for long_opt in ("config", "check-config", "verbose", "version", "help"):
        assert "Fl \\-%s" % long_opt.replace("-", "\\-") in page8, long_opt
    for word in ("READY=1", "STATUS=", "RELOADING=1", "STOPPING=1", "WATCHDOG=1",
                 "LISTEN_FDS", "NOTIFY_SOCKET", "JOURNAL_STREAM", "clawsd@.service",
                 "/run/clawsd/"):
        assert word in page8, word

    # every command and option of clawsdctl(1), as SPEC section 7 lists them
    page1 = (REPO / "ctl/clawsdctl.1").read_text()
    for flag in ("s", "c", "T", "q"):
        assert re.search(r"(?m)^\.It Fl %s\b" % flag, page1), flag
    for cmd in ("send", "iq", "listen", "status", "raw"):
        assert re.search(r"(?m)^\.It Cm %s\b" % cmd, page1), cmd
    for status in ("0", "1", "64", "69", "75"):
        assert re.search(r"(?m)^\.It %s$" % status, page1), status

    # every key of the example configuration is described in clawsd.conf(5)
    example = (REPO / "conf/clawsd.conf").read_text()
    keys = set(re.findall(r"(?m)^#? ?([a-z_]+) = ", example))
    page5 = (REPO / "conf/clawsd.conf.5").read_text()
    described = set(re.findall(r"(?m)^\.It Cm ([a-z_]+) Ns =", page5))
    assert len(keys) >= 25, keys
    assert keys == described, (keys ^ described)
