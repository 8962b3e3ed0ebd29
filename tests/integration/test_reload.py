"""A reload whose TLS settings cannot be loaded (issue 11).

From `tls_verify = no` to `yes` with a `ca_file` that holds no certificate:
the reload was accepted, the session reconnected with the old TLS settings
(no verification) under the new file's name, and so connected to a server
whose certificate nothing vouched for, without the warning that `tls_verify
= no` gives.  Now the file is refused as a whole (the running configuration
kept, as for any invalid file), and `clawsd -t` refuses it too, so that
start-up never fails on a file that -t passed.
"""

import re
import signal
import subprocess

import harness
from harness import is_status, parse_line


def run_clawsd(args, timeout=15):
    return subprocess.run([str(harness.CLAWSD_BIN)] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout)


def test_reload_to_unloadable_ca_file_refused(make_clawsd, pki, tmpdir_path):
    d = make_clawsd(ca_file=None, xmpp={"tls_verify": "no"}).start()
    c, _ = d.wait_connected(timeout=20)
    try:
        assert "TLS certificate verification is off" in d.log()
        junk = tmpdir_path / "not-a-ca.pem"
        junk.write_text("not a certificate\n")
        d.xmpp_opts.update(tls_verify="yes", ca_file=junk)
        d.write_config()
        mark = len(d.log())
        d.kill(signal.SIGHUP)
        d.wait_log(r"reload: \S+ is invalid, keeping the running configuration")
        log = d.log()[mark:]
        assert re.search(r"clawsd\.conf:\d+: \[xmpp\] ca_file: no certificate could be "
                         r"loaded from", log), log
        # nothing changed: no reconnect, the session stays up
        for line in c.read_lines_for(1.0):
            assert not is_status(parse_line(line)), line
        assert "reconnect" not in d.log()[mark:]
        # and -t says the same
        r = run_clawsd(["-t", "-c", str(d.config_path)])
        err = r.stderr.decode(errors="replace")
        assert r.returncode == 78, err
        assert re.search(r"(?m)^\S*clawsd\.conf:\d+: \[xmpp\] ca_file: no certificate", err), err
        # a loadable one is taken: reconnect, verified this time
        d.xmpp_opts.update(ca_file=pki.ca_cert)
        d.write_config()
        d.kill(signal.SIGHUP)
        d.wait_log(r"reload: \[xmpp\] changed, reconnecting")
        c.wait_for(lambda e: is_status(e, "connected"), timeout=20)
        assert d.log().count("TLS certificate verification is off") == 1
    finally:
        c.close()
