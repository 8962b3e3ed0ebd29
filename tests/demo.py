#!/usr/bin/python3
"""`make demo`: clawsd against a throwaway Prosody on 127.0.0.1.

Starts a private Prosody (temporary folder: config, test CA and certificate,
data, log) with two accounts, demo@localhost and friend@localhost, writes a
matching clawsd configuration for each (STARTTLS, certificate verified
against the demo CA, sockets in the temporary folder), prints the friend's
credentials and ready command lines to try both directions, runs the
friend's clawsd in the background (quiet) and demo's in the foreground with
its log on this terminal.  Ctrl-C (or SIGTERM) stops both, and Prosody, and
removes the temporary folder.  It needs only Prosody, socat and OpenSSL
besides what builds clawsd (`tests/deps.sh demo`).

    /usr/bin/python3 tests/demo.py [-v]      (from the repository root)
"""

import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "integration"))

import harness  # noqa: E402


class Stop(Exception):
    pass


def _on_signal(signum, _frame):
    raise Stop(signum)


def main(argv):
    verbose = "-v" in argv or "--verbose" in argv
    for binary in (harness.CLAWSD_BIN, harness.CLAWSDCTL_BIN):
        if not binary.exists():
            print("demo: %s is not built: run `make` first" % binary, file=sys.stderr)
            return 1

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)

    top = Path(tempfile.mkdtemp(prefix="clawsd-demo-"))
    prosody = None
    clawsd = friend = None
    rc = 0
    try:
        print("demo: temporary folder %s" % top, flush=True)
        pki = harness.PKI(top / "pki")
        prosody = harness.Prosody(pki, directory=top / "prosody", log_level="info")
        password = secrets.token_urlsafe(12)
        friend_password = secrets.token_urlsafe(12)
        prosody.register("demo", password)
        prosody.register("friend", friend_password)
        prosody.start()
        print("demo: Prosody listening on 127.0.0.1:%d (STARTTLS) and :%d (direct TLS)"
              % (prosody.c2s_port, prosody.direct_tls_port), flush=True)

        def config(user, pw, level):
            return harness.Clawsd(user, pw, prosody.c2s_port, tls="starttls",
                                  ca_file=pki.ca_cert, reconnect_delay=1,
                                  reconnect_max_delay=10, connect_timeout=10,
                                  log_level=level, directory=top / user)
        conf = config("demo", password, "debug" if verbose else "info")
        fconf = config("friend", friend_password, "warn")
        # The friend's clawsd in the background, quiet; demo's in the
        # foreground: its log (stderr) goes to this terminal.  Own process
        # groups, so Ctrl-C reaches us and we stop them by pid.  The command
        # lines are printed once both sockets are there.
        flog = open(fconf.log_path, "ab")
        friend = subprocess.Popen([str(harness.CLAWSD_BIN), "-c", str(fconf.config_path)],
                                  cwd=str(fconf.dir), stdin=subprocess.DEVNULL,
                                  stdout=flog, stderr=flog, start_new_session=True)
        flog.close()
        clawsd = subprocess.Popen([str(harness.CLAWSD_BIN), "-c", str(conf.config_path)],
                                  cwd=str(conf.dir), stdin=subprocess.DEVNULL,
                                  start_new_session=True)
        fconf.proc, conf.proc = friend, clawsd
        fconf.wait_socket()
        conf.wait_socket()
        ctl = shlex.quote(str(harness.CLAWSDCTL_BIN))
        sock = shlex.quote(str(conf.socket_path))
        fsock = shlex.quote(str(fconf.socket_path))
        stanza = '<message to="friend@localhost" type="chat"><body>hello, raw</body></message>'
        bar = "-" * 72
        print(bar)
        print("clawsd runs here as demo@localhost; its socket: %s" % conf.socket_path)
        print()
        print("In another terminal, listen to what demo@localhost receives:")
        print()
        print("    %s -s %s listen -o text" % (ctl, sock))
        print()
        print("A second account, friend@localhost, password %s" % friend_password)
        print("(Prosody on 127.0.0.1 port %d, STARTTLS, CA %s), is online through"
              % (prosody.c2s_port, pki.ca_cert))
        print("a second clawsd.  Make it send a message to demo@localhost (it shows")
        print("up at the listener):")
        print()
        print("    %s -s %s send demo@localhost 'hello from friend & co'" % (ctl, fsock))
        print()
        print("The other way, demo@localhost to friend@localhost, with clawsdctl or")
        print("with socat (watch it with `%s -s %s listen`):" % (ctl, fsock))
        print()
        print("    %s -s %s send friend@localhost 'hello from demo'" % (ctl, sock))
        print("    printf '%s' | socat - UNIX-CONNECT:%s" % (stanza, sock))
        print()
        print("Ctrl-C here stops everything and removes %s" % top)
        print(bar, flush=True)

        rc = clawsd.wait()
        print("demo: clawsd exited with status %d" % rc, file=sys.stderr)
        if rc != 0:
            print("demo: Prosody log tail:\n%s" % harness.tail(prosody.log(), 20),
                  file=sys.stderr)
    except Stop:
        print("\ndemo: stopping", file=sys.stderr, flush=True)
    except harness.HarnessError as e:
        print("demo: %s" % e, file=sys.stderr)
        rc = 1
    finally:
        # no second interruption of the clean-up
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if clawsd is not None:
            code = harness.stop_process(clawsd, timeout=10)
            if code not in (0, None) and rc == 0:
                rc = code if code > 0 else 1
        if friend is not None:
            harness.stop_process(friend, timeout=10)
        if prosody is not None:
            prosody.stop()
        shutil.rmtree(top, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
