"""SASL2 (XEP-0388), Bind2 (XEP-0386), FAST (XEP-0484) and the inline
XEP-0198 resume (issue 14), against the real servers: Prosody 13 with
Debian's prosody-modules and ejabberd 24.12 with mod_auth_fast offer them
(Debian 13, `make check-debian13`); Debian 12's Prosody 0.12 and ejabberd
23.01 do not, and there the daemon logs in as RFC 6120 says.
"""

import os
import re
import stat

import pytest

import harness
from harness import TEST_ACCOUNTS as ACCOUNTS
from harness import is_status, message_xml, unique
from test_tls import TLS_LINE

SASL2_LOGIN = r"authenticated as bot@localhost with (\S+) \(SASL2\)"
HT_LOGIN = r"with (HT-SHA-256-(?:EXPR|ENDP|NONE)) \(SASL2\)"


def state_dir(d):
    return d.dir / "state"


def with_state(make_clawsd, **kw):
    """A clawsd with a state directory of its own (in its folder)."""
    d = make_clawsd(**kw)
    d.xmpp_opts["state_directory"] = str(d.dir / "state")
    d.write_config()
    return d


def token_file(d):
    return state_dir(d) / "sasl2"


def token_mech(d):
    """The mechanism of the token in the daemon's file."""
    lines = token_file(d).read_text().splitlines()
    return [l.split()[1] for l in lines if l.startswith("token ")][0]


def best_ht(d):
    """The HT mechanism the token should have, unless configured otherwise:
    bound to the connection over TLS 1.3 (both Debian 13 servers offer
    HT-SHA-256-EXPR, and clawsd with mbedtls 3.6 makes tls-exporter),
    else to the server's certificate."""
    version = TLS_LINE.search(d.log()).group(1)
    return "HT-SHA-256-EXPR" if version == "TLSv1.3" else "HT-SHA-256-ENDP"


def connected(d, timeout=20):
    c, el = d.wait_connected(timeout=timeout)
    return c, el


def sasl2_only(server):
    if not server.sasl2:
        pytest.skip("%s here offers no SASL2 (Debian 12)" % server.name)


def test_rfc6120_login_where_no_sasl2(make_clawsd, server):
    """Debian 12's servers: the RFC 6120 login, SASL then bind."""
    if server.sasl2:
        pytest.skip("%s here offers SASL2" % server.name)
    d = with_state(make_clawsd).start()
    c, el = connected(d)
    c.close()
    d.wait_log(r"authenticated as bot@localhost with SCRAM-SHA-\S+$",
               flags=re.M)
    assert "(SASL2)" not in d.log()
    assert el.get("jid").endswith("/" + d.xmpp_opts["resource"])


def test_first_login_sasl2_bind2_token(make_clawsd, server):
    """One <authenticate/> with SCRAM, Bind2 with the resource as tag,
    stream management enabled inline, a FAST token kept 0600 and never
    logged."""
    sasl2_only(server)
    d = with_state(make_clawsd).start()
    c, el = connected(d)
    c.close()
    m = d.wait_log(SASL2_LOGIN)
    assert re.search(r"with SCRAM-SHA-\S+ \(SASL2\)", d.log())
    jid = el.get("jid")
    # Bind2: the server makes the resource, from the tag
    assert jid.startswith("bot@localhost/" + d.xmpp_opts["resource"]), jid
    d.wait_log(r"stream management enabled \(resumable\)")
    d.wait_log(r"FAST: got a token")
    f = token_file(d)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    lines = f.read_text().splitlines()
    token = [l.split()[2] for l in lines if l.startswith("token ")]
    assert len(token) == 1 and lines[0].startswith("id ")
    assert token_mech(d) == best_ht(d)
    assert token[0] not in d.log()
    assert ACCOUNTS["bot"] not in d.log()
    assert m


def test_restart_logs_in_with_fast(make_clawsd, server):
    """The token of the first login logs the restarted daemon in, with the
    same client id (the same resource on Prosody)."""
    sasl2_only(server)
    d = with_state(make_clawsd).start()
    c, first = connected(d)
    c.close()
    d.wait_log(r"FAST: got a token")
    ident = token_file(d).read_text().splitlines()[0]
    d.stop()
    mark = server.log_mark()
    d.start()
    c, again = connected(d)
    c.close()
    mech = d.wait_log(HT_LOGIN).group(1)
    assert mech == token_mech(d) == best_ht(d)
    assert token_file(d).read_text().splitlines()[0] == ident
    assert again.get("resumed") == "false"
    # the server saw a login with the token, not the password
    # (ejabberd's log comes a moment later)
    logins = harness.wait_until(lambda: server.sasl_successes_since(mark), 5,
                                what="the server's log of the login")
    assert [m for _, m in logins] == [mech]
    if server.name == "prosody":
        assert again.get("jid") == first.get("jid")


def test_refused_token_falls_back_to_the_password(make_clawsd, server):
    """A token the server does not know (revoked, or the server lost it)
    is dropped; the password logs in at once and a new token comes."""
    sasl2_only(server)
    d = with_state(make_clawsd).start()
    c, _ = connected(d)
    c.close()
    d.wait_log(r"FAST: got a token")
    d.stop()
    lines = token_file(d).read_text().splitlines()
    forged = [l if not l.startswith("token ") else
              " ".join(l.split()[:2] + ["secret-token:fast-forged"]) for l in lines]
    token_file(d).write_text("\n".join(forged) + "\n")
    d.start()
    c, el = connected(d)
    c.close()
    d.wait_log(r"FAST token refused")
    d.wait_log(r"with SCRAM-SHA-\S+ \(SASL2\)")
    d.wait_log(r"FAST: got a token")
    assert "forged" not in token_file(d).read_text()
    # at once: no backoff wait between the refusal and the password
    assert not re.search(r"retrying in [1-9]", d.log())


def test_cut_resumes_inline_nothing_lost(make_clawsd, make_proxy, server, peer):
    """A cut connection: the next <authenticate/> (with the token) carries
    the XEP-0198 resume; what the peer sent meanwhile arrives once."""
    sasl2_only(server)
    proxy = make_proxy(server.c2s_port)
    d = with_state(make_clawsd, port=proxy.port).start()
    c, first = connected(d)
    d.wait_log(r"FAST: got a token")
    d.wait_log(r"stream management enabled \(resumable\)")
    proxy.cut()
    c.wait_for(lambda e: is_status(e, "disconnected"), timeout=20)
    bodies = ["while cut %d" % i for i in range(5)]
    for b in bodies:
        peer.send_message(first.get("jid"), b)
    el = c.wait_for(lambda e: is_status(e, "connected"), timeout=30)
    assert el.get("resumed") == "true"
    assert el.get("jid") == first.get("jid")
    d.wait_log(HT_LOGIN)
    got = []
    while len(got) < len(bodies):
        m = c.wait_for(lambda e: e.tag == "{jabber:client}message"
                       and (e.findtext("{jabber:client}body") or "").startswith("while cut"),
                       timeout=20)
        got.append(m.findtext("{jabber:client}body"))
    assert got == bodies
    c.close()


def test_server_restarted_new_session_nothing_lost(make_clawsd, make_server, make_peer, server):
    """The server restarted (one of the test's own): the session it kept is
    gone, so the inline resume is refused and Bind2 makes a new one in the
    same <authenticate/>; the token still logs in where the server kept it
    (Prosody stores it), else the password does.  What a client wrote while
    the server was down goes out once the new session is up."""
    sasl2_only(server)
    srv = make_server()
    d = with_state(make_clawsd, port=srv.c2s_port, reconnect_delay=1,
                   reconnect_max_delay=2).start()
    c, first = connected(d)
    d.wait_log(r"FAST: got a token")
    d.wait_log(r"stream management enabled \(resumable\)")
    srv.stop()
    c.wait_for(lambda e: is_status(e, "disconnected"), timeout=20)
    mid = unique("restart")
    c.send(message_xml(srv.jid("peer"), "written while the server was down", id=mid))
    srv.start()
    el = c.wait_for(lambda e: is_status(e, "connected"), timeout=30)
    assert el.get("resumed") == "false"
    d.wait_log(r"the server cannot resume the session .*binding a new one")
    m = re.findall(SASL2_LOGIN, d.log())
    print("%s after a restart logged in with %s" % (srv.name, m[-1]))
    # both servers keep their tokens across a restart
    assert len(m) == 2 and m[-1] == token_mech(d) == best_ht(d)
    peer = make_peer(server=srv)
    got = peer.wait_message(lambda msg: msg.id == mid, timeout=15)
    assert got.body == "written while the server was down"
    c.close()


@pytest.mark.parametrize("binding", ["no", "auto", "require"])
def test_token_binding_follows_channel_binding(make_clawsd, server, binding):
    """channel_binding = no asks for an unbound token (HT-SHA-256-NONE) and
    uses it.  auto and require do not use it where a bound one can be had:
    the password logs in (SCRAM-*-PLUS) and a bound token replaces it."""
    sasl2_only(server)
    d = with_state(make_clawsd, xmpp={"channel_binding": "no"}).start()
    c, _ = connected(d)
    c.close()
    d.wait_log(r"FAST: got a token")
    assert token_mech(d) == "HT-SHA-256-NONE"
    d.stop()
    d.xmpp_opts["channel_binding"] = binding
    d.write_config()
    d.start()
    c, _ = connected(d)
    c.close()
    if binding == "no":
        assert d.wait_log(HT_LOGIN).group(1) == "HT-SHA-256-NONE"
        return
    assert re.search(r"with SCRAM-SHA-\S+-PLUS \(SASL2\)", d.log())
    d.wait_log(r"FAST: got a token", count=2)
    assert token_mech(d) == best_ht(d)
