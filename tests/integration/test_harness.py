"""Checks of the test infrastructure itself (no clawsd needed): the PKI, the
private Prosody, account registration, and slixmpp peers talking over
STARTTLS with certificate verification."""

import os
import socket
import ssl
import subprocess
import time

import pytest

import harness
from harness import TEST_ACCOUNTS as ACCOUNTS


def test_free_ports_distinct():
    ports = harness.free_ports(5)
    assert len(set(ports)) == 5
    assert all(0 < p < 65536 for p in ports)


def test_pki(pki):
    def verify(ca):
        return subprocess.run(["openssl", "verify", "-CAfile", str(ca),
                               "-verify_hostname", "localhost", str(pki.server_cert)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT).returncode
    assert verify(pki.ca_cert) == 0
    assert verify(pki.other_ca_cert) != 0
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(pki.server_cert)],
                          stdout=subprocess.PIPE, check=True).stdout.decode()
    assert "DNS:localhost" in text


def _tls_client(ca):
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = True
    return ctx


def test_direct_tls_port_verifies(prosody, pki):
    data = harness.direct_tls_features(prosody, pki.ca_cert)
    assert b"stream:features" in data
    assert b"urn:ietf:params:xml:ns:xmpp-sasl" in data
    with socket.create_connection(("127.0.0.1", prosody.direct_tls_port), timeout=5) as s:
        with pytest.raises(ssl.SSLCertVerificationError):
            _tls_client(pki.other_ca_cert).wrap_socket(s, server_hostname="localhost")


def test_starttls_port_offers_starttls(prosody):
    with socket.create_connection(("127.0.0.1", prosody.c2s_port), timeout=5) as s:
        s.sendall(b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
                  b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        data = b""
        deadline = time.monotonic() + 5
        while b"</stream:features>" not in data and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert b"urn:ietf:params:xml:ns:xmpp-tls" in data


def test_registered_peers_exchange_messages_over_starttls(prosody, make_peer):
    alice = make_peer("alice")
    bob = make_peer("bob")
    body = "héllo ✓ 日本 <&>\"' tab\there\nnext line"
    mid = harness.unique("m")
    alice.send_message(prosody.jid("bob"), body, id=mid)
    m = bob.wait_message(lambda m: m.id == mid, timeout=10)
    assert m.body == body
    assert m.frm.startswith(prosody.jid("alice") + "/")
    # and back
    mid2 = harness.unique("m")
    bob.send_message(alice.jid, "reply", id=mid2)
    assert alice.wait_message(lambda m: m.id == mid2, timeout=10).body == "reply"


def test_peer_wrong_password_raises(prosody, pki):
    p = harness.Peer(prosody.jid("alice"), "wrong-" + ACCOUNTS["alice"], prosody.c2s_port,
                     ca_file=pki.ca_cert, connect_timeout=10)
    with pytest.raises(harness.HarnessError):
        p.start()


def test_peer_untrusted_ca_raises(prosody, pki):
    p = harness.Peer(prosody.jid("alice"), ACCOUNTS["alice"], prosody.c2s_port,
                     ca_file=pki.other_ca_cert, connect_timeout=10)
    with pytest.raises(harness.HarnessError):
        p.start()


def test_prosody_restart_same_ports(prosody, make_peer):
    ports = (prosody.c2s_port, prosody.direct_tls_port)
    prosody.stop()
    assert not harness.port_open(prosody.c2s_port)
    prosody.start()
    assert (prosody.c2s_port, prosody.direct_tls_port) == ports
    # accounts survive the restart
    alice = make_peer("alice")
    bob = make_peer("bob")
    mid = harness.unique("m")
    bob.send_message(prosody.jid("alice"), "after restart", id=mid)
    assert alice.wait_message(lambda m: m.id == mid, timeout=10).body == "after restart"


def test_prosody_files_stay_in_temp(prosody):
    assert prosody.log_path.exists() and prosody.log()
    assert str(prosody.dir).startswith(os.path.realpath(os.environ.get("TMPDIR", "/tmp"))) \
        or str(prosody.dir).startswith("/tmp")
    assert str(prosody.data_dir).startswith(str(prosody.dir))
    assert prosody.account_exists("bot")
    assert not prosody.account_exists("nobody-" + harness.unique())


def test_parse_line_helpers():
    el = harness.parse_line('<message xmlns="jabber:client" id="a"><body>x&#13;&#10;y</body></message>')
    assert harness.namespace(el.tag) == "jabber:client"
    assert harness.local_name(el.tag) == "message"
    assert el.find("{jabber:client}body").text == "x\r\ny"
    s = harness.message_xml("a@b", "1\r\n2\t<&>\"'", id="i")
    el = harness.parse_line(s)
    assert el.find("body").text == "1\r\n2\t<&>\"'"
    assert "\n" not in s and "\r" not in s


def test_stream_closed_since(prosody, make_peer):
    # the server-neutral reading of the server's log that tests use to tell
    # a client's </stream:stream> from a dropped connection
    alice = make_peer("alice")
    bob = make_peer("bob")
    mark = prosody.log_mark()
    alice.stop()                    # slixmpp sends </stream:stream>
    closed = harness.wait_until(lambda: prosody.stream_closed_since(mark, alice.jid), 10,
                                what="alice's stream to be closed")
    assert closed[0], closed
    assert prosody.stream_closed_since(mark, bob.jid) is None


def test_sasl_mechanisms_and_ejabberdctl_stop(server_kind, prosody, pki):
    # ejabberd with auth_password_format: plain offers every SCRAM variant
    data = harness.direct_tls_features(prosody, pki.ca_cert)
    for mech in (b"SCRAM-SHA-1", b"PLAIN"):
        assert b"<mechanism>%s</mechanism>" % mech in data, data
    if server_kind == "ejabberd":
        for mech in (b"SCRAM-SHA-256", b"SCRAM-SHA-512"):
            assert b"<mechanism>%s</mechanism>" % mech in data, data
        prosody.ctl_stop()
        assert not prosody.running
        assert not harness.port_open(prosody.c2s_port)
        prosody.start()
