"""Finding the server (SPEC section 2: `host` absent -> DNS SRV
_xmpps-client._tcp / _xmpp-client._tcp of the domain first, every target in
order, then the domain's own A/AAAA on 5222; the certificate is always
checked against the JID's domain), and IPv4/IPv6 (every address of a host is
tried; ::1 works).

A private dnsmasq on 127.X.Y.Z:53 holds the records; clawsd (and srvq, the
SRV module on its own: tests/tools/srvq.c) run in a private mount namespace
whose /etc/resolv.conf names it and whose /etc/hosts is the test's own
(harness.DnsServer.wrapper): the daemon resolves exactly as in production,
with no test hook.  The test certificate is for `localhost`, so the XMPP
domain is `localhost` and the SRV targets are names like a.test.
"""

import os
import re

import pytest

import harness
from harness import DnsServer, Forwarder, is_status, message_xml, unique

_problem = harness.dns_sandbox_problem()
pytestmark = pytest.mark.skipif(bool(_problem), reason="DNS sandbox: %s" % _problem)

SRVQ = harness.REPO_ROOT / "build" / "tests" / "srvq"
PEER = "peer@localhost"
XMPP = "_xmpp-client._tcp.localhost"
XMPPS = "_xmpps-client._tcp.localhost"
FAST = dict(reconnect_delay=1, reconnect_max_delay=2, connect_timeout=5)


@pytest.fixture
def make_dns():
    """make_dns(srv=..., hosts=..., etc_hosts=...) -> a started DnsServer,
    stopped and removed at teardown (its query log is printed there)."""
    made = []

    def make(**kw):
        d = DnsServer(**kw)
        made.append(d)
        return d.start()
    yield make
    for d in made:
        print("---- dnsmasq %s queries: %r" % (d.address, d.queries()))
        d.cleanup()


@pytest.fixture
def srvq():
    if not SRVQ.exists():
        pytest.skip("%s not built (run `make %s`)" % (SRVQ, SRVQ.relative_to(harness.REPO_ROOT)))
    return SRVQ


def run_srvq(dns, *args):
    r = dns.run([SRVQ] + list(args))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    lines = r.stdout.decode().splitlines()
    status = lines[0].split()[1]
    err = next((l[4:] for l in lines if l.startswith("err ")), None)
    targets = [tuple(l.split()) for l in lines[1:] if not l.startswith("err ")]
    return status, err, [(h, int(p), k, int(pr), int(w)) for h, p, k, pr, w in targets]


def free_loopback_address():
    """A 127.X.Y.Z other than 127.0.0.1 (nothing listens there)."""
    return "127.%d.%d.%d" % tuple(os.urandom(1)[0] % 200 + 50 for _ in range(3))


def first_lookup(dns, names):
    """Which of `names` the daemon looked up (A or AAAA) first."""
    for qtype, name in dns.queries():
        if qtype in ("A", "AAAA") and name in names:
            return name
    return None


def connected_over(d, timeout=20):
    c, el = d.wait_connected(timeout=timeout)
    assert re.fullmatch(r"bot@localhost/.+", el.get("jid") or ""), el.attrib
    return c


# --------------------------------------------------------------------------
# daemon/srv.c on its own (srvq)

def test_srvq_one_set_ordered_by_priority_direct_first(make_dns, srvq):
    dns = make_dns(srv=[
        ("_xmpp-client._tcp.example.test", "s20.test", 5222, 20, 0),
        ("_xmpp-client._tcp.example.test", "s10.test", 5222, 10, 0),
        ("_xmpps-client._tcp.example.test", "d10.test", 5223, 10, 0),
        ("_xmpp-client._tcp.example.test", "s5.test", 5222, 5, 7),
        ("_xmpps-client._tcp.example.test", "d30.test", 443, 30, 0),
    ], domains=("test",))
    status, err, targets = run_srvq(dns, "example.test")
    assert (status, err) == ("FOUND", None)
    assert targets == [
        ("s5.test", 5222, "starttls", 5, 7),
        ("d10.test", 5223, "direct", 10, 0),
        ("s10.test", 5222, "starttls", 10, 0),
        ("s20.test", 5222, "starttls", 20, 0),
        ("d30.test", 443, "direct", 30, 0),
    ]
    # both services asked, in one go
    names = [n for t, n in dns.queries() if t == "SRV"]
    assert sorted(names) == ["_xmpp-client._tcp.example.test", "_xmpps-client._tcp.example.test"]


def test_srvq_weights_shuffle_equal_priorities(make_dns, srvq):
    dns = make_dns(srv=[
        ("_xmpp-client._tcp.example.test", "w1.test", 5222, 1, 1),
        ("_xmpp-client._tcp.example.test", "w9.test", 5222, 1, 9),
    ], domains=("test",))
    firsts = [run_srvq(dns, "example.test")[2][0][0] for _ in range(40)]
    heavy = firsts.count("w9.test")
    # expected 9/11 of the time (r in [0, 10]): 32.7 of 40
    assert 20 <= heavy < 40, firsts


@pytest.mark.parametrize("records, status, kinds", [
    # nothing published: fall back
    ([], "NONE", []),
    # "." for both: the domain says it has no client service
    ([("_xmpp-client._tcp.example.test", None, 0, 0, 0),
      ("_xmpps-client._tcp.example.test", None, 0, 0, 0)], "NOT_OFFERED", []),
    # "." for STARTTLS, nothing for direct TLS: the same
    ([("_xmpp-client._tcp.example.test", None, 0, 0, 0)], "NOT_OFFERED", []),
    # "." for direct TLS only: nothing said about STARTTLS, fall back
    ([("_xmpps-client._tcp.example.test", None, 0, 0, 0)], "NONE", []),
    # "." for direct TLS, a STARTTLS target
    ([("_xmpps-client._tcp.example.test", None, 0, 0, 0),
      ("_xmpp-client._tcp.example.test", "s.test", 5222, 0, 0)], "FOUND", ["starttls"]),
    # "." for STARTTLS, a direct TLS target
    ([("_xmpp-client._tcp.example.test", None, 0, 0, 0),
      ("_xmpps-client._tcp.example.test", "d.test", 5223, 0, 0)], "FOUND", ["direct"]),
], ids=["none", "dot-both", "dot-starttls", "dot-direct", "dot-direct+starttls",
        "dot-starttls+direct"])
def test_srvq_dot_target_and_no_records(make_dns, srvq, records, status, kinds):
    dns = make_dns(srv=records, domains=("test",))
    got, err, targets = run_srvq(dns, "example.test")
    assert got == status, (got, err, targets)
    assert [t[2] for t in targets] == kinds
    if status == "NOT_OFFERED":
        assert err and "offers no XMPP client service" in err


def test_srvq_failure_and_cancel(make_dns, srvq):
    # a name outside the server's own domains: REFUSED (it has no upstream)
    dns = make_dns(domains=("test",))
    status, err, targets = run_srvq(dns, "example.org")
    assert status == "FAILED" and targets == []
    assert "_xmpp-client._tcp.example.org" in err and "_xmpps-client._tcp.example.org" in err
    # cancelled at once: the callback never runs, nothing leaks or crashes
    r = dns.run([SRVQ, "-c", "example.test"])
    assert (r.returncode, r.stdout.decode().strip()) == (0, "cancelled"), r


# --------------------------------------------------------------------------
# clawsd with `host` absent: SRV first (needs daemon/srv.c in the session)

def srv_clawsd(make_clawsd, dns, **kw):
    """A clawsd for bot@localhost with no `host` (nor `port`), resolving
    through dns."""
    kw.setdefault("xmpp", {})
    return make_clawsd(binary=dns.wrapper(), host=None, port=None, **FAST, **kw)


def test_srv_target_used_certificate_checked_against_domain(make_clawsd, prosody, peer, make_dns):
    # the target's name (a.test) is not in the certificate (localhost):
    # it is the domain that must match
    dns = make_dns(srv=[(XMPP, "a.test", prosody.c2s_port, 0, 0)],
                   hosts=[("a.test", ["127.0.0.1"])])
    d = srv_clawsd(make_clawsd, dns).start()
    c = connected_over(d)
    mid = unique("srv")
    c.send(message_xml(PEER, "found by SRV", id=mid))
    assert peer.wait_message(lambda m: m.id == mid, timeout=10).body == "found by SRV"
    c.close()
    q = dns.queries()
    assert ("SRV", XMPP) in q and ("SRV", XMPPS) in q, q
    assert first_lookup(dns, ["a.test"]) == "a.test", q


def test_srv_targets_tried_in_order_direct_tls_target(make_clawsd, prosody, make_dns):
    # priority 1: refused; priority 2: a direct TLS target (TLS from the
    # first byte: STARTTLS there would fail); priority 3 never needed
    dead = harness.free_port()
    dns = make_dns(srv=[(XMPP, "dead.test", dead, 1, 0),
                        (XMPPS, "tls.test", prosody.direct_tls_port, 2, 0),
                        (XMPP, "late.test", prosody.c2s_port, 3, 0)],
                   hosts=[("dead.test", ["127.0.0.1"]), ("tls.test", ["127.0.0.1"]),
                          ("late.test", ["127.0.0.1"])])
    d = srv_clawsd(make_clawsd, dns).start()
    connected_over(d).close()
    looked_up = [n for t, n in dns.queries() if t in ("A", "AAAA")]
    assert looked_up and looked_up[0] == "dead.test", looked_up
    assert "tls.test" in looked_up and "late.test" not in looked_up, looked_up


def test_srv_direct_tls_first_on_equal_priority(make_clawsd, prosody, make_dns):
    dns = make_dns(srv=[(XMPP, "plain.test", prosody.c2s_port, 5, 0),
                        (XMPPS, "tls.test", prosody.direct_tls_port, 5, 0)],
                   hosts=[("plain.test", ["127.0.0.1"]), ("tls.test", ["127.0.0.1"])])
    d = srv_clawsd(make_clawsd, dns).start()
    connected_over(d).close()
    assert first_lookup(dns, ["plain.test", "tls.test"]) == "tls.test", dns.queries()


def test_srv_ipv6_only_target(make_clawsd, prosody, make_dns):
    if not harness.ipv6_loopback():
        pytest.skip("no ::1 on this machine")
    dns = make_dns(srv=[(XMPP, "v6.test", prosody.c2s_port, 0, 0)],
                   hosts=[("v6.test", ["::1"])])
    d = srv_clawsd(make_clawsd, dns).start()
    connected_over(d).close()


@pytest.mark.parametrize("records", ["dead-targets", "no-records"])
def test_srv_fallback_to_domain_port_5222(make_clawsd, prosody, make_dns, records):
    # every SRV target fails (or there is none): the domain's own address
    # on 5222.  `localhost' is 127.X.Y.Z in the daemon's /etc/hosts, where
    # a forwarder to the server listens on 5222.
    addr = free_loopback_address()
    dead = harness.free_port()
    srv = [(XMPP, "dead.test", dead, 0, 0), (XMPPS, "dead.test", dead, 1, 0)] \
        if records == "dead-targets" else []
    dns = make_dns(srv=srv, hosts=[("dead.test", ["127.0.0.1"])],
                   etc_hosts=["%s localhost" % addr])
    with Forwarder(addr, 5222, prosody.c2s_port) as fwd:
        d = srv_clawsd(make_clawsd, dns).start()
        connected_over(d).close()
        assert fwd.accepted >= 1
    q = dns.queries()
    assert ("SRV", XMPP) in q, q
    if records == "dead-targets":
        assert first_lookup(dns, ["dead.test"]) == "dead.test", q


def test_srv_dot_target_no_fallback(make_clawsd, prosody, make_dns):
    # _xmpp-client is "." and there is no _xmpps-client: the domain says it
    # offers no client service (RFC 2782, RFC 6120 3.2.1): no fallback to
    # port 5222; logged; tried again later
    addr = free_loopback_address()
    dns = make_dns(srv=[(XMPP, None, 0, 0, 0)], etc_hosts=["%s localhost" % addr])
    with Forwarder(addr, 5222, prosody.c2s_port) as fwd:
        d = srv_clawsd(make_clawsd, dns).start()
        harness.wait_until(lambda: [n for t, n in dns.queries() if n == XMPP][1:], 10,
                           what="a second SRV lookup (a retry)")
        assert fwd.accepted == 0
        assert d.alive
        assert re.search(r"(?i)not offered|no XMPP client service|\"\.\"", d.log()), \
            harness.tail(d.log(), 30)
        with d.connect() as c:
            assert is_status(harness.parse_line(c.read_line(5)), "disconnected")


# --------------------------------------------------------------------------
# IPv6 and every address of a host (works without SRV)

@pytest.mark.parametrize("tls", ["starttls", "direct"])
def test_ipv6_literal_host(make_clawsd, prosody, peer, tls):
    if not harness.ipv6_loopback():
        pytest.skip("no ::1 on this machine")
    port = prosody.direct_tls_port if tls == "direct" else prosody.c2s_port
    d = make_clawsd(host="::1", port=port, tls=tls).start()
    c = connected_over(d)
    mid = unique("v6")
    c.send(message_xml(PEER, "over ::1", id=mid))
    assert peer.wait_message(lambda m: m.id == mid, timeout=10).body == "over ::1"
    c.close()
    assert re.search(r"::1", d.log()), harness.tail(d.log(), 20)


@pytest.mark.parametrize("dead", ["ipv4", "ipv6"])
def test_every_address_of_host_tried(make_clawsd, prosody, make_dns, dead):
    # dual.test has an A and an AAAA record; one of them refuses the
    # connection: clawsd goes on to the other, whatever the order
    if not harness.ipv6_loopback():
        pytest.skip("no ::1 on this machine")
    addr = free_loopback_address()
    if dead == "ipv4":
        # nothing on 127.X.Y.Z; the server itself on ::1
        port, fwd = prosody.c2s_port, None
    else:
        # a forwarder on 127.X.Y.Z:port; nothing on [::1]:port
        port = harness.free_port()
        fwd = Forwarder(addr, port, prosody.c2s_port).start()
    try:
        dns = make_dns(hosts=[("dual.test", [addr, "::1"])])
        d = make_clawsd(binary=dns.wrapper(), host="dual.test", port=port, **FAST).start()
        connected_over(d).close()
        if fwd is not None:
            assert fwd.accepted >= 1
    finally:
        if fwd is not None:
            fwd.stop()
