#!/usr/bin/python3
"""`make demo`: clawsd against a throwaway Prosody on 127.0.0.1.

Starts a private Prosody (temporary folder: config, test CA and certificate,
data, log) with an account demo@localhost, writes a matching clawsd
configuration (STARTTLS, certificate verified against the demo CA, socket in
the temporary folder), prints two socat command lines to try, and runs clawsd
in the foreground with its log on this terminal.  Ctrl-C (or SIGTERM) stops
clawsd and Prosody and removes the temporary folder.

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
    if not harness.CLAWSD_BIN.exists():
        print("demo: %s is not built: run `make clawsd` first" % harness.CLAWSD_BIN,
              file=sys.stderr)
        return 1

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)

    top = Path(tempfile.mkdtemp(prefix="clawsd-demo-"))
    prosody = None
    clawsd = None
    rc = 0
    try:
        print("demo: temporary folder %s" % top, flush=True)
        pki = harness.PKI(top / "pki")
        prosody = harness.Prosody(pki, directory=top / "prosody", log_level="info")
        password = secrets.token_urlsafe(12)
        prosody.register("demo", password)
        prosody.start()
        print("demo: Prosody listening on 127.0.0.1:%d (STARTTLS) and :%d (direct TLS), "
              "account demo@localhost" % (prosody.c2s_port, prosody.direct_tls_port), flush=True)

        conf = harness.Clawsd("demo", password, prosody.c2s_port, tls="starttls",
                              ca_file=pki.ca_cert, reconnect_delay=1,
                              reconnect_max_delay=10, connect_timeout=10,
                              log_level="debug" if verbose else "info",
                              directory=top / "clawsd")
        sock = shlex.quote(str(conf.socket_path))
        stanza = '<message to="demo@localhost" type="chat"><body>hello</body></message>'
        bar = "-" * 72
        print(bar)
        print("clawsd socket: %s" % conf.socket_path)
        print("In another terminal, subscribe (every stanza, one line each):")
        print()
        print("    socat - UNIX-CONNECT:%s" % sock)
        print()
        print("and in a third one, send a message to demo@localhost itself")
        print("(it shows up at the subscriber):")
        print()
        print("    printf '%s' | socat - UNIX-CONNECT:%s" % (stanza, sock))
        print()
        print("(every client is also a subscriber: the sending socat prints the")
        print("`connected` status line it gets first, too)")
        print()
        print("Ctrl-C here stops clawsd and Prosody and removes %s" % top)
        print(bar, flush=True)

        # clawsd in the foreground: its log (stderr) goes to this terminal.
        # Own process group, so Ctrl-C reaches us and we stop it by pid.
        clawsd = subprocess.Popen([str(harness.CLAWSD_BIN), "-c", str(conf.config_path)],
                                  cwd=str(conf.dir), stdin=subprocess.DEVNULL,
                                  start_new_session=True)
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
        if prosody is not None:
            prosody.stop()
        shutil.rmtree(top, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
