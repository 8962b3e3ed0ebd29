"""`make demo` (tests/demo.py): it comes up, and the command lines it prints
work as printed: a listener on demo's socket gets what the second account
sends with the printed command, and Ctrl-C leaves nothing behind."""

import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time

import pytest

import harness

DEMO = harness.REPO_ROOT / "tests" / "demo.py"


def read_until(proc, buf, pattern, timeout=60):
    deadline = time.monotonic() + timeout
    while not re.search(pattern, buf, re.M):
        left = deadline - time.monotonic()
        r, _, _ = select.select([proc.stdout], [], [], max(left, 0))
        if not r:
            raise TimeoutError("demo output so far:\n" + buf)
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            raise EOFError("demo ended:\n" + buf)
        buf += chunk.decode()
    return buf


def test_demo_both_directions():
    if not harness.CLAWSD_BIN.exists() or not harness.CLAWSDCTL_BIN.exists():
        pytest.skip("run `make` first")
    demo = subprocess.Popen([sys.executable, str(DEMO)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    listener = None
    try:
        out = read_until(demo, "", r"^Ctrl-C here")
        top = re.search(r"^demo: temporary folder (\S+)", out, re.M).group(1)
        cmds = [l.strip() for l in out.splitlines() if l.startswith("    ")]
        listen = next(c for c in cmds if c.endswith(" listen -o text"))
        to_demo = next(c for c in cmds if "send demo@localhost" in c)
        assert re.search(r"friend@localhost, password \S+", out)
        listener = subprocess.Popen(shlex.split(listen), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        got = read_until(listener, "", r"^connected\t", timeout=30)
        # while the friend's daemon still logs in, the message waits in it
        r = subprocess.run(shlex.split(to_demo), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        got = read_until(listener, got, r"hello from friend & co", timeout=30)
        line = [l for l in got.splitlines() if "hello from friend" in l][0]
        assert line.split("\t")[2].startswith("friend@localhost/")
    finally:
        if listener is not None:
            listener.terminate()
            listener.wait(10)
        demo.send_signal(signal.SIGINT)
        demo.wait(30)
    assert not os.path.exists(top)
