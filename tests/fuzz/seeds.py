#!/usr/bin/python3
"""Write the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

    /usr/bin/python3 tests/fuzz/seeds.py

The files are checked in; this script documents where they came from and
makes them again (it replaces the files it names, and leaves any other file
in the corpus folders alone: reproducers of fixed crashes are added there by
hand, named crash-*).  Realistic inputs, each small.
"""

import base64
import hashlib
import hmac
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

STREAM_NS = "http://etherx.jabber.org/streams"
HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='%s' id='abc123' from='localhost' version='1.0' "
          "xml:lang='en'>" % STREAM_NS)
HEADER_PREFIXES = ("<stream:stream xmlns='jabber:client' xmlns:stream='%s' "
                   "xmlns:x='urn:example:x' xmlns:db='jabber:server:dialback' "
                   "id='p1' version='1.0'>" % STREAM_NS)


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    (d / name).write_bytes(data)


# ---------------------------------------------------------------- client input

FRAME = {
    "message": "<message to='peer@localhost' type='chat' id='m1'><body>hello</body></message>",
    "message-dq": '<message to="peer@localhost" type="chat"><body>hi &amp; bye</body></message>\n',
    "presence": "<presence/>",
    "presence-show": "<presence><show>away</show><status>out</status><priority>5</priority></presence>",
    "iq-ping": "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    "iq-roster": "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
    "decl": "<?xml version='1.0' encoding='UTF-8'?>\n<message to='a@b'><body>x</body></message>",
    "decl-bom": "\ufeff<?xml version='1.0'?><presence/>",
    "bom": "\ufeff<message to='a@b'/>",
    "several": "<message to='a@b'><body>1</body></message>\n  <message to='a@b'><body>2</body></message>\r\n\t<presence/>",
    "not-a-stanza": "<foo xmlns='urn:example:x'><bar>t</bar></foo><message to='a@b'/>",
    "foreign-message": "<message xmlns='urn:example:not-client'/>",
    "jabber-server": "<message xmlns='jabber:server' to='a@b'><body>x</body></message>",
    "child-rebinds-client": "<message to='a@b'><x xmlns='jabber:client'><body>y</body></x></message>",
    "prefixed-stanza": "<c:message xmlns:c='jabber:client' to='a@b'><c:body>x</c:body></c:message>",
    "undeclare-default": "<message to='a@b'><x xmlns=''><y/></x></message>",
    "stream-prefix-inside": "<message><stream:error/><stream:x xmlns:stream='urn:other'/></message>",
    "stream-close": "</stream:stream>",
    "stream-open": "<stream:stream xmlns='jabber:client' xmlns:stream='%s' to='localhost' version='1.0'>" % STREAM_NS,
    "stream-open-decl": "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='%s' to='localhost' version='1.0'><message to='a@b'/></stream:stream>" % STREAM_NS,
    "stream-features": "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
    "starttls": "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    "auth": "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGJvdABwdw==</auth>",
    "sm": "<enable xmlns='urn:xmpp:sm:3' resume='true'/><r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='7'/><resume xmlns='urn:xmpp:sm:3' h='0' previd='x'/>",
    "partial": "<message to='peer@localhost'><body>never fini",
    "undeclared-prefix": "<message to='a@b'><foo:bar/></message>",
    "undeclared-attr-prefix": "<message foo:x='1' to='a@b'/>",
    "xml-prefix-rebind": "<message xmlns:xml='urn:bad'/>",
    "xmlns-prefix": "<message xmlns:xmlns='urn:bad'/>",
    "nul": "<message to='a@b'><body>a\x00b</body></message>",
    "invalid-utf8": b"<message to='a@b'><body>\xff\xfe\xc0\xaf\xed\xa0\x80</body></message>",
    "control-char": "<message><body>\x01</body></message>",
    "charref-bad": "<message><body>&#0;&#x1;</body></message>",
    "charrefs": "<message to='a@b' id='a&#10;b&#13;c&#9;d'><body>l1&#10;l2&#13;&#x2713;</body></message>",
    "raw-newlines-attr": "<message to='a@b' id='line1\nline2\r\nline3\ttab'><body>t\r\nu\rv</body></message>",
    "cdata": "<message><body><![CDATA[<not markup> & ]]></body></message>",
    "entity-undefined": "<message><body>&lol9;</body></message>",
    "billion-laughs": ("<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
                       + "".join("<!ENTITY lol%d '%s'>" % (i, ("&lol%s;" % (i - 1 if i > 1 else "")) * 10)
                                 for i in range(1, 10))
                       + "]><lolz>&lol9;</lolz>"),
    "doctype": "<!DOCTYPE message><message/>",
    "comment": "<message><!-- hi --><body>x</body></message>",
    "comment-between": "<presence/><!-- x --><presence/>",
    "pi": "<message><?pi data?></message>",
    "pi-xml-late": "<presence/><?xml version='1.0'?>",
    "text-outside": "<presence/>junk<presence/>",
    "close-wrapper": "<presence/></clawsd-input><presence/>",
    "mismatch": "<message><body>x</message>",
    "xml-lang": "<message xml:lang='de' to='a@b'><body xml:lang='en'>x</body></message>",
    "deep": "<message>" + "<a>" * 40 + "x" + "</a>" * 40 + "</message>",
    "big": "<message to='a@b'><body>" + "x" * 1100 + "</body></message>",
    "big-attr": "<message to='" + "y" * 1100 + "'/>",
    "many-ns": "<message xmlns:a='urn:a' xmlns:b='urn:a' to='x'><a:q b:r='1'/><b:q/></message>",
    "dup-attr-ns": "<message xmlns:a='urn:a' xmlns:b='urn:a' a:r='1' b:r='2'/>",
    "utf8": "<message to='a@b'><body>héllo ✓ 日本 \U0001F600</body></message>",
    "whitespace-only": " \n\r\t ",
    "space-in-tags": "<message\n to = 'a@b'\n><body >x</body\n></message >",
}

# ---------------------------------------------------------------- server stream

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STREAM = {
    "features-sasl": HEADER + "<stream:features><mechanisms xmlns='%s'><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>" % SASL,
    "proceed": HEADER + "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><stream:stream xmlns='jabber:client'>",
    "challenge": HEADER + "<challenge xmlns='%s'>cj1meWtvK2QybGJiRmdPTlJ2OXFreGRhd0wzcmZjTkhZSlkxWlZ2V1ZzN2oscz1RU1hDUitRNnNlazhiZjkyLGk9NDA5Ng==</challenge><success xmlns='%s'>dj1ybUY5cHFWOFM3c3VBb1pXamE0ZEpSa0ZzS1E9</success>" % (SASL, SASL),
    "bind": HEADER + "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><sm xmlns='urn:xmpp:sm:3'/></stream:features><iq type='result' id='bind-1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>bot@localhost/r</jid></bind></iq>",
    "message": HEADER + "<message from='peer@localhost/x' to='bot@localhost/r' type='chat' id='m1'><body>hello</body></message>",
    "message-tricky": HEADER + "<message from='p@l' id='a&#10;b&#13;c&#9;d\"q' type='chat'><body>l1\nl2\r\nl3\rl4\t&lt;&amp;&gt;\"'</body></message>",
    "raw-newline-attr": HEADER + "<message id='x\ny\r\nz\tw'><body a='1'>t</body></message>",
    "header-prefixes": HEADER_PREFIXES + "<message><x:data x:attr='v'>t</x:data><db:result/></message><iq type='get' id='i'><x:q/></iq>",
    "prefixed-stanza": HEADER + "<c:message xmlns:c='jabber:client'><c:body>x</c:body></c:message>",
    "stream-prefix-child": HEADER + "<message><stream:error><x/></stream:error></message>",
    "default-undeclared": HEADER + "<message><x xmlns=''><y xmlns='urn:y'><z xmlns=''/></y></x></message>",
    "rebind-prefix": HEADER_PREFIXES + "<message><x:a xmlns:x='urn:other'><x:b/></x:a><x:c/></message>",
    "xml-lang": HEADER + "<message xml:lang='de'><body xml:lang='en'>x</body></message>",
    "presence-prefixed": HEADER + "<presence from='a@b/c'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v='/><x xmlns='vcard-temp:x:update'><photo/></x></presence>",
    "iq-ping": HEADER + "<iq from='localhost' type='get' id='s2c1'><ping xmlns='urn:xmpp:ping'/></iq>",
    "sm": HEADER + "<r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='3'/><enabled xmlns='urn:xmpp:sm:3' id='x' resume='true'/>",
    "stream-error": HEADER + "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced</text></stream:error></stream:stream>",
    "close": HEADER + "<presence/></stream:stream>",
    "keepalive": HEADER + " \n \n<message/>\n ",
    "comment": HEADER + "<message><!-- x --></message>",
    "pi": HEADER + "<?pi x?><message/>",
    "doctype": "<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY x 'y'>]>" + HEADER[len("<?xml version='1.0'?>"):] + "<message>&x;</message>",
    "too-large": HEADER + "<message><body>" + "z" * 1100 + "</body></message><presence/>",
    "too-large-attr": HEADER + "<message id='" + "z" * 1200,
    "invalid-utf8": HEADER.encode() + b"<message><body>\xc3\x28</body></message>",
    "nul": HEADER + "<message>\x00</message>",
    "not-a-stream": "<html><body/></html>",
    "cdata": HEADER + "<message><body><![CDATA[a]]>b<![CDATA[]]>c]]&gt;</body></message>",
    "utf8": HEADER + "<message><body>✓ 日本 \U0001F600</body><x:y xmlns:x='urn:ü'/></message>",
    "many-attrs": HEADER + "<message a='1' b='2' c='3' xmlns:p='urn:p' p:a='4' p:b='5' xml:space='preserve'/>",
    "no-default-ns": "<stream:stream xmlns:stream='%s'><message/><x:y xmlns:x='urn:x'/></stream:stream>" % STREAM_NS,
    "empty-ns-attr-prefix": HEADER + "<message xmlns:a='urn:a'><b a:c='1' xmlns='urn:b'><a:d/></b></message>",
    "deep": HEADER + "<message>" + "<a xmlns='urn:a'>" * 30 + "x" + "</a>" * 30 + "</message>",
    "decl-encoding": "<?xml version='1.0' encoding='ISO-8859-1'?>" + HEADER[len("<?xml version='1.0'?>"):] + "<message><body>é</body></message>",
}

# ---------------------------------------------------------------- SCRAM


def scram_server(mech, cnonce, snonce, salt, iters, password="pencil",
                 user="user", ext=""):
    """A whole SCRAM exchange as the server sees it: (server-first,
    server-final) for our client-first-bare 'n=user,r=cnonce'."""
    h = {"SHA-1": hashlib.sha1, "SHA-256": hashlib.sha256,
         "SHA-512": hashlib.sha512}[mech]
    name = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}[mech]
    first = "r=%s%s,s=%s,i=%d%s" % (cnonce, snonce,
                                    base64.b64encode(salt).decode(), iters, ext)
    salted = hashlib.pbkdf2_hmac(name, password.encode(), salt, iters)
    server_key = hmac.new(salted, b"Server Key", h).digest()
    bare = "n=%s,r=%s" % (user, cnonce)
    without_proof = "c=biws,r=%s%s" % (cnonce, snonce)
    auth = ",".join([bare, first, without_proof])
    sig = hmac.new(server_key, auth.encode(), h).digest()
    return first, "v=" + base64.b64encode(sig).decode()


def ssdp(mech, mechs, cbs, sep, listsep):
    h = {"SHA-1": hashlib.sha1, "SHA-256": hashlib.sha256,
         "SHA-512": hashlib.sha512}[mech]
    s = sep.join(sorted(mechs))
    if cbs:
        s += listsep + sep.join(sorted(cbs))
    return base64.b64encode(h(s.encode()).digest()).decode()


N5802 = "fyko+d2lbbFgONRv9qkxdawL"
N7677 = "rOprNGfwEbeRWgbNEkqO"
OFFERED = ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
CBTYPES = ["tls-exporter", "tls-server-end-point"]


def padded(first, final, want_mod):
    """first\\nfinal with extension padding on the final message so that
    the length is want_mod modulo 3 (the target picks the XEP-0474 lists
    by size % 3)."""
    for pad in ("", ",x=1", ",x=12", ",x=123"):
        data = first + "\n" + final + pad
        if len(data.encode()) % 3 == want_mod:
            return data
    raise AssertionError


SCRAM = {
    "rfc5802": "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096\nv=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    "rfc7677": "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096\nv=6rriTRBi23WpRR/wtup+mMhUq1e/ifUn6DRnq4Ir9Sk=",
    "wrong-signature": "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096\nv=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "server-error": "r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=4096\ne=invalid-proof",
    "no-final": "r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=4096",
    "nonce-not-ours": "r=someoneelse,s=QSXCR+Q6sek8bf92,i=4096\nv=x",
    "nonce-equal": "r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096\nv=x",
    "nonce-unprintable": "r=fyko+d2lbbFgONRv9qkxdawL\x7f,s=QSXCR+Q6sek8bf92,i=4096\n",
    "mandatory-ext": "m=x,r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=4096\n",
    "missing-salt": "r=fyko+d2lbbFgONRv9qkxdawLx,i=4096\n",
    "bad-salt": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf9,i=4096\n",
    "empty-salt": "r=fyko+d2lbbFgONRv9qkxdawLx,s=,i=4096\n",
    "salt-newline": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6\r\nsek8bf92,i=4096\n",
    "iter-low": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=4095\n",
    "iter-zero": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=0\n",
    "iter-huge": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=99999999999999999999\n",
    "iter-sign": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=-1\n",
    "iter-missing": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92\n",
    "nul": "r=fyko+d2lbbFgONRv9qkxdawLx\x00,s=QSXCR+Q6sek8bf92,i=4096\n",
    "extensions": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=4096,q=1,z=,\nv=AAAA,extra",
    "empty": "",
    "only-newline": "\n",
    "final-bad-b64": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=4096\nv=!!!!",
    "final-short": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=4096\nv=AAAA",
    "final-missing-v": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=4096\nx=AAAA",
    "ssdp-wrong-h": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=4096,h=AAAA\nv=x",
    "ssdp-wrong-d": "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=4096,d=AAAA\nv=x",
}


def scram_seeds():
    out = {}
    for mech, n in (("SHA-1", N5802), ("SHA-512", N5802), ("SHA-256", N7677)):
        salt = hashlib.sha1(mech.encode()).digest()[:12]
        first, final = scram_server(mech, n, "srv" + mech, salt, 4096)
        out["ok-%s" % mech.lower()] = first + "\n" + final
        # XEP-0474, both versions, mechanisms only (size % 3 == 1) and with
        # channel bindings (size % 3 == 2)
        for want, cbs in ((1, []), (2, CBTYPES)):
            for attr, sep, listsep in (("h", "\x1e", "\x1f"), ("d", ",", "|")):
                ext = ",%s=%s" % (attr, ssdp(mech, OFFERED, cbs, sep, listsep))
                first, final = scram_server(mech, n, "ssdp", salt, 4096, ext=ext)
                out["ssdp-%s-%s-%d" % (mech.lower(), attr, want)] = padded(first, final, want)
    return out


# ---------------------------------------------------------------- configuration

MIN = "[xmpp]\njid = bot@example.com\npassword = secret\n\n[socket]\npath = /tmp/clawsd-fuzz.sock\n"
CONF = {
    "minimal": MIN,
    "example": (HERE.parents[1] / "conf" / "clawsd.conf").read_text()
    if (HERE.parents[1] / "conf" / "clawsd.conf").exists() else MIN,
    "user-domain": "[xmpp]\nuser = bot\ndomain = example.com\nresource = r1\npassword = pw\n",
    "all-keys": ("[xmpp]\nuser = bot\ndomain = example.com\nresource = clawsd\npassword = pw\n"
                 "host = 127.0.0.1\nport = 5222\ntls = none\ntls_verify = no\n"
                 "sasl_mechanisms = SCRAM-SHA-1\npresence = no\npriority = -5\n"
                 "stream_management = no\nping_interval = 0\nping_timeout = 5\n"
                 "connect_timeout = 10\nreconnect_delay = 1\nreconnect_max_delay = 2\n"
                 "queue_max = 2\nmax_stanza_size = 16384\n[socket]\npath = /tmp/x.sock\n"
                 "mode = 0600\ngroup = root\nmax_clients = 2\nclient_buffer = 65536\n"
                 "[log]\nlevel = debug\n"),
    "crlf": MIN.replace("\n", "\r\n"),
    "bom": "\ufeff" + MIN,
    "comments": "; a comment\n# another\n" + MIN + "  ; indented\n",
    "inline-comment": "[xmpp]\njid = bot@example.com ; not part of it\npassword = a;b\n",
    "duplicate": MIN + "[xmpp]\npassword = again\n",
    "conflict": "[xmpp]\njid = a@b\nuser = c\npassword = x\npassword_file = pw\n",
    "missing": "[xmpp]\n",
    "no-xmpp": "[socket]\npath = /tmp/a\n",
    "empty": "",
    "unknown": MIN + "[other]\nkey = v\n[xmpp]\nfoo = bar\n",
    "outside": "key = value\n" + MIN,
    "bad-values": ("[xmpp]\njid = @@/\npassword = x\nport = 70000\ntls = maybe\npriority = 200\n"
                   "ping_interval = -1\nqueue_max = 0x10\nmax_stanza_size = 1e9\npresence = perhaps\n"
                   "[socket]\nmode = 0999\ngroup = no-such-group-here\nmax_clients = 18446744073709551616\n"
                   "[log]\nlevel = loud\n"),
    "tls-none-remote": "[xmpp]\njid = a@b.c\npassword = x\nhost = example.com\ntls = none\n",
    "tls-none-plain": "[xmpp]\njid = a@b.c\npassword = x\nhost = ::1\ntls = none\nsasl_mechanisms = PLAIN\n",
    "delays": "[xmpp]\njid = a@b.c\npassword = x\nreconnect_delay = 10\nreconnect_max_delay = 5\n",
    "long-line": "[xmpp]\njid = a@b.c\npassword = " + "p" * 400 + "\n",
    "nul": "[xmpp]\njid = a@b.c\npass\x00word = x\n",
    "password-file": "[xmpp]\njid = a@b.c\npassword_file = does-not-exist\n",
    "ca-file": "[xmpp]\njid = a@b.c\npassword = x\nca_file = /etc/hostname\n",
    "socket-path-long": MIN + "path = /" + "d" * 120 + "\n",
    "section-syntax": "[xmpp\njid = a@b.c\n[ socket ]\n[]\n=novalue\nnokey\n",
    "empty-values": "[xmpp]\njid =\npassword = \n",
    "sasl": "[xmpp]\njid = a@b.c\npassword = x\nsasl_mechanisms = scram-sha-256 PLAIN BOGUS\n",
    "jid-forms": "[xmpp]\njid = user@[::1]/res/with/slashes\npassword = x\n",
    "upper-case-keys": "[XMPP]\nJID = a@b.c\nPassword = x\n",
    "group-numeric": MIN + "group = 4294967295\nmode = 660\n",
    "unicode": "[xmpp]\njid = usér@exämple.com/✓\npassword = pässwörd\n",
}


def main():
    for name, data in FRAME.items():
        write("fuzz_frame", name, data)
    for name, data in STREAM.items():
        write("fuzz_stream", name, data)
    for name, data in list(SCRAM.items()) + list(scram_seeds().items()):
        write("fuzz_scram", name, data)
    for name, data in CONF.items():
        write("fuzz_conf", name, data)
    total = sum(f.stat().st_size for f in CORPUS.rglob("*") if f.is_file())
    print("corpus: %d files, %d bytes" % (
        sum(1 for f in CORPUS.rglob("*") if f.is_file()), total))


if __name__ == "__main__":
    main()
