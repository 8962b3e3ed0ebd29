"""What differs between the servers, proven on each (Prosody, ejabberd): the
SASL mechanisms they offer and the one clawsd then uses, seen from the
server's own log.  Prosody (internal_hashed) offers SCRAM-SHA-1 only;
ejabberd with `auth_password_format: plain` offers SCRAM-SHA-1, -256 and
-512.
"""

import re

import pytest

import harness

SCRAMS = ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1"]


def offered_mechanisms(server, ca_file):
    """The SASL mechanisms in the stream features after TLS (direct TLS
    port), in the server's order."""
    data = harness.direct_tls_features(server, ca_file)
    return re.findall(r"<mechanism>([^<]+)</mechanism>", data.decode())


def wait_success(server, mark, timeout=20):
    return harness.wait_until(lambda: [m for j, m in server.sasl_successes_since(mark)
                                       if j == "bot@localhost"], timeout,
                              what="%s to accept bot's authentication" % server.name)


def test_offered_mechanisms(prosody, pki):
    offered = offered_mechanisms(prosody, pki.ca_cert)
    assert "SCRAM-SHA-1" in offered and "PLAIN" in offered, offered
    if prosody.name == "ejabberd":
        assert {"SCRAM-SHA-256", "SCRAM-SHA-512"} <= set(offered), offered
    else:
        assert not {"SCRAM-SHA-256", "SCRAM-SHA-512"} & set(offered), offered


def test_strongest_scram_by_default(make_clawsd, prosody, pki):
    # the default preference, SCRAM-SHA-512 SCRAM-SHA-256 SCRAM-SHA-1 PLAIN,
    # among what this server offers
    offered = offered_mechanisms(prosody, pki.ca_cert)
    want = next(m for m in SCRAMS if m in offered)
    mark = prosody.log_mark()
    d = make_clawsd().start()
    d.wait_connected(timeout=20)[0].close()
    # its -PLUS variant where the login can be channel-bound (test_cb.py)
    assert wait_success(prosody, mark) in ([want], [want + "-PLUS"])


@pytest.mark.parametrize("mech", SCRAMS + ["PLAIN"])
def test_each_mechanism(make_clawsd, prosody, pki, mech):
    # one mechanism allowed: used when offered (PLAIN: after STARTTLS);
    # when not, no login (and no other mechanism behind the
    # administrator's back), the reason logged
    offered = offered_mechanisms(prosody, pki.ca_cert)
    mark = prosody.log_mark()
    d = make_clawsd(xmpp={"sasl_mechanisms": mech}).start()
    if mech in offered:
        d.wait_connected(timeout=20)[0].close()
        assert wait_success(prosody, mark) in ([mech], [mech + "-PLUS"])
    else:
        d.wait_log(r"(?i)mechanism", timeout=10)
        with d.connect() as c:
            assert harness.is_status(harness.parse_line(c.read_line(5)), "disconnected")
            assert not any(harness.is_status(harness.parse_line(l), "connected")
                           for l in c.read_lines_for(1.0))
        assert prosody.sasl_successes_since(mark) == []
        assert d.alive
