"""TLS with the real servers: the version clawsd negotiates over STARTTLS
and direct TLS, read from its connect log line, is the newest that both it
(its mbedtls, as `clawsd -V` says: TLS 1.3 with mbedtls 3.x, 1.2 with 2.28)
and the server (probed with Python's OpenSSL) speak; and with that version,
verification still refuses a certificate from an untrusted CA and a trusted
certificate for another name, before any authentication."""

import re
import socket
import ssl
import subprocess

import pytest

import harness
from harness import message_xml, unique

PEER = "peer@localhost"

# mbedtls_ssl_get_version()'s names, oldest first
VERSIONS = ["TLSv1.2", "TLSv1.3"]
TLS_LINE = re.compile(r"TLS: (TLSv1\.[0-9]) with (\S+)")


def clawsd_newest_tls():
    """The newest TLS version the daemon's mbedtls has, from `clawsd -V`
    ("mbedtls 3.6.4 (TLS 1.2, TLS 1.3)")."""
    out = subprocess.run([str(harness.CLAWSD_BIN), "-V"], stdout=subprocess.PIPE,
                         check=True, timeout=10).stdout.decode()
    m = re.search(r"(?m)^mbedtls \S+ \(([^)]*)\)$", out)
    assert m, out
    return "TLSv" + m.group(1).split(", ")[-1].split()[-1]


def server_newest_tls(server, ca_file):
    """The version the server's direct TLS port agrees with a client that
    offers every version OpenSSL has."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", server.direct_tls_port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=server.domain) as t:
            return t.version()


def negotiated(d, timeout=20):
    """(version, suite) from the daemon's connect log line."""
    d.wait_log(TLS_LINE.pattern, timeout=timeout)
    return TLS_LINE.search(d.log()).groups()


@pytest.mark.parametrize("tls", ["starttls", "direct"])
def test_newest_common_version_negotiated(make_clawsd, prosody, pki, peer, tls):
    expect = min(clawsd_newest_tls(), server_newest_tls(prosody, pki.ca_cert),
                 key=VERSIONS.index)
    port = prosody.direct_tls_port if tls == "direct" else prosody.c2s_port
    d = make_clawsd(tls=tls, port=port).start()
    c, _ = d.wait_connected(timeout=20)
    try:
        version, suite = negotiated(d)
        print("%s %s: %s with %s" % (prosody.name, tls, version, suite))
        assert version == expect
        # TLS 1.3 suites are named TLS1-3-*; 1.2 ones must be forward secret
        assert suite.startswith("TLS1-3-" if version == "TLSv1.3" else "TLS-ECDHE-"), suite
        mid = unique(tls)
        c.send(message_xml(PEER, "over " + version, id=mid))
        assert peer.wait_message(lambda m: m.id == mid, timeout=10).body == "over " + version
    finally:
        c.close()


def assert_refused(d, server, mark, why):
    """The daemon logs `why` as the certificate problem, authenticates
    nowhere, and its clients hear it is disconnected."""
    d.wait_log(why, timeout=20, flags=re.I)
    assert not server.sasl_successes_since(mark)
    assert not server.sasl_failures_since(mark)
    assert not TLS_LINE.search(d.log())
    with d.connect() as c:
        assert harness.is_status(harness.parse_line(c.read_line(5)), "disconnected")
    assert d.alive


@pytest.mark.parametrize("tls", ["starttls", "direct"])
def test_untrusted_ca_refused(make_clawsd, prosody, pki, tls):
    mark = prosody.log_mark()
    port = prosody.direct_tls_port if tls == "direct" else prosody.c2s_port
    d = make_clawsd(tls=tls, port=port, ca_file=pki.other_ca_cert).start()
    assert_refused(d, prosody, mark, r"not correctly signed by the trusted CA")


@pytest.mark.parametrize("tls", ["starttls", "direct"])
def test_wrong_name_refused(make_clawsd, make_server, pki, tls):
    """A server for localhost whose certificate, from the trusted CA, is
    for elsewhere.test."""
    srv = make_server(cert=pki.elsewhere_cert, key=pki.elsewhere_key)
    mark = srv.log_mark()
    port = srv.direct_tls_port if tls == "direct" else srv.c2s_port
    d = make_clawsd(tls=tls, port=port).start()
    assert_refused(d, srv, mark, r"Common Name \(CN\) does not match")
