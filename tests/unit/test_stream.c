/*
 * The server's stream parser, and the serializer through it.
 *
 * The key property: every line is one element, ends in its only '\n', and
 * parses alone to the same tree as the element did inside the stream.
 * Trees are compared in a canonical form built with expat (namespace
 * processing on) on both sides: each element as {uri}local, its attributes
 * as a sorted set of ({uri}local, value), and the text between its children
 * concatenated per position.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <expat.h>

#include "buf.h"
#include "canon.h"
#include "stream.h"
#include "xnode.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))
#define MAXELEM		64
#define KiB		1024

#define HDR_OPEN	"<stream:stream xmlns='jabber:client' " \
			"xmlns:stream='http://etherx.jabber.org/streams' " \
			"from='example.com' id='s1' version='1.0' xml:lang='en'"
#define HDR		"<?xml version='1.0'?>" HDR_OPEN ">"

/*
 * What the stream parser reports.
 */

struct rec {
	struct stream	*s;
	int		 opens;
	int		 closes;
	char		*header;
	size_t		 n;
	char		*line[MAXELEM];
	size_t		 len[MAXELEM];
	int		 stanza[MAXELEM];
	char		*name[MAXELEM];
	char		*tree[MAXELEM];		/* dump, NULL without a tree */
	const char	*reset_on;		/* reset on this element */
};

static void
dump(struct buf *b, const struct xnode *n)
{
	const struct xnode *c;
	char **a;

	buf_printf(b, "{%s}%s", n->ns, n->name);
	for (a = n->attrs; *a != NULL; a += 2)
		buf_printf(b, " %s=%s", a[0], a[1]);
	if (n->text.len > 0)
		buf_printf(b, " '%.*s'", (int)n->text.len, n->text.data);
	if (n->child == NULL)
		return;
	buf_putc(b, '(');
	for (c = n->child; c != NULL; c = c->next) {
		assert_ptr_equal(c->parent, n);
		dump(b, c);
		if (c->next != NULL)
			buf_putc(b, ',');
	}
	buf_putc(b, ')');
}

static char *
dump_str(const struct xnode *n)
{
	struct buf b;
	char *s;

	buf_init(&b);
	dump(&b, n);
	s = xstrdup(buf_cstr(&b));
	buf_free(&b);
	return s;
}

static void
on_open(void *arg, const struct xnode *header)
{
	struct rec *r = arg;

	r->opens++;
	free(r->header);
	r->header = dump_str(header);
}

static void
on_element(void *arg, const struct stream_elem *e)
{
	struct rec *r = arg;

	assert_true(r->n < MAXELEM);
	assert_non_null(e->line);
	r->line[r->n] = xstrndup(e->line, e->len);
	r->len[r->n] = e->len;
	r->stanza[r->n] = e->stanza;
	r->name[r->n] = xstrdup(e->name);
	r->tree[r->n] = e->tree ? dump_str(e->tree) : NULL;
	r->n++;
	if (r->reset_on != NULL && strcmp(e->name, r->reset_on) == 0)
		stream_reset(r->s);
}

static void
on_close(void *arg)
{
	struct rec *r = arg;

	r->closes++;
}

static const struct stream_cb cbs = { on_open, on_element, on_close };

static void
rec_init(struct rec *r, size_t max)
{
	memset(r, 0, sizeof(*r));
	r->s = stream_new(max, &cbs, r);
	assert_non_null(r->s);
}

static void
rec_free(struct rec *r)
{
	size_t i;

	for (i = 0; i < r->n; i++) {
		free(r->line[i]);
		free(r->name[i]);
		free(r->tree[i]);
	}
	free(r->header);
	stream_free(r->s);
	memset(r, 0, sizeof(*r));
}

/* Feed in pieces of `chunk' bytes (0: all at once); stop at a fault. */
static int
feed(struct rec *r, const char *data, size_t len, size_t chunk,
    const char **err)
{
	size_t off, n;

	*err = NULL;
	if (chunk == 0)
		chunk = len;
	for (off = 0; off < len; off += n) {
		n = len - off < chunk ? len - off : chunk;
		if (stream_feed(r->s, data + off, n, err) == -1) {
			assert_non_null(*err);
			return -1;
		}
	}
	return 0;
}

static int
feed_str(struct rec *r, const char *s, size_t chunk, const char **err)
{
	return feed(r, s, strlen(s), chunk, err);
}

/*
 * The round trip.
 */

struct rt_case {
	const char	*what;
	const char	*header;	/* NULL: HDR */
	const char	*body;
};

static const struct rt_case rt_cases[] = {
	{ "simple", NULL,
	  "<message from='a@b/r' to='c@d' type='chat' id='m1'>"
	  "<body>hello</body></message>" },
	{ "several, keepalives between", NULL,
	  " \n<presence/> \n\t<message to='x@y'><body>1</body></message>"
	  "\n\n<iq type='get' id='i1'><ping xmlns='urn:xmpp:ping'/></iq> " },
	{ "escaping in text", NULL,
	  "<message><body>a &amp; b &lt; c &gt; d \"q\" 'a' &#38;&#60;"
	  "</body></message>" },
	{ "quotes and apostrophes in attributes", NULL,
	  "<message a='x \"y\" z' b=\"it's\" c='&lt;&amp;&gt;>' "
	  "d='&quot;&apos;' e=\"&quot;'&apos;\"/>" },
	{ "CR LF TAB in text and attributes", NULL,
	  "<message a='1&#9;2&#10;3&#13;4&#13;&#10;5' b='raw\ttab\nnl\r\ncrlf'>"
	  "<body>l1\nl2\r\nl3\rl4&#13;x&#9;y\tz&#10;&#13;</body>"
	  "<x xmlns='urn:x'>\n</x><y xmlns='urn:x'>&#13;</y></message>" },
	{ "]]> in text", NULL,
	  "<message><body>a]]&gt;b ]]]]&gt;&gt; <![CDATA[<c>&]]]]>"
	  "<![CDATA[>]]></body><x xmlns='urn:x' a=']]>'/></message>" },
	{ "unicode", NULL,
	  "<message to='\xc3\xa9@\xe6\x97\xa5.example'><body>h\xc3\xa9llo "
	  "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 &#x1F600;&#233;&#xFFFD;"
	  "</body><\xc3\xa9l xmlns='urn:\xc3\xa9' \xc3\xa1='\xe2\x82\xac'/>"
	  "</message>" },
	{ "empty elements", NULL,
	  "<presence/><message></message><message><body></body><x xmlns='urn:x'>"
	  "</x></message><iq type='result' id='r'/>" },
	{ "nested namespaces", NULL,
	  "<message><event xmlns='http://jabber.org/protocol/pubsub#event'>"
	  "<items node='n'><item id='1'><entry xmlns='http://www.w3.org/2005/Atom'>"
	  "<title type='text'>t</title></entry></item></items></event></message>" },
	{ "prefixed namespaces", NULL,
	  "<message xmlns:p='urn:p' xmlns:q='urn:q'><p:a><q:b p:attr='1' "
	  "q:attr='2' attr='3'/><p:c xmlns:p='urn:p2'><p:d p:x='y'/></p:c>"
	  "<p:e/></p:a></message>" },
	{ "xml:lang", NULL,
	  "<message xml:lang='en'><body xml:lang='fr'>salut</body>"
	  "<body>hi</body></message>" },
	{ "attribute with a prefixed namespace", NULL,
	  "<iq type='set' id='a'><x xmlns='urn:x' xmlns:y='urn:y' y:attr='v' "
	  "attr='w'><z y:attr='u'/></x></iq>" },
	{ "prefix declared on the stream header",
	  "<stream:stream xmlns='jabber:client' "
	  "xmlns:stream='http://etherx.jabber.org/streams' "
	  "xmlns:h='urn:header' xmlns:db='jabber:server:dialback'>",
	  "<message h:a='1'><h:x h:b='2'>t</h:x><db:result/></message>"
	  "<message><h:x xmlns:h='urn:other'><h:y/></h:x><h:z/></message>"
	  "<h:top><body/></h:top>" },
	{ "default namespace other than jabber:client on the header",
	  "<stream:stream xmlns='urn:weird' "
	  "xmlns:stream='http://etherx.jabber.org/streams'>",
	  "<message><body>x</body></message>"
	  "<message xmlns='jabber:client'><body xmlns='urn:weird'/></message>" },
	{ "redundant re-declarations", NULL,
	  "<message xmlns='jabber:client'><body xmlns='jabber:client'>x</body>"
	  "<x xmlns='urn:x'><y xmlns='urn:x'/></x></message>"
	  "<message xmlns:a='urn:a'><a:x xmlns:a='urn:a'><a:y xmlns:a='urn:a'/>"
	  "</a:x></message>"
	  "<message xmlns:stream='http://etherx.jabber.org/streams'/>" },
	{ "default namespace back to jabber:client", NULL,
	  "<message><x xmlns='urn:x'><y xmlns='jabber:client'><body>z</body>"
	  "</y><w/></x><body/></message>" },
	{ "no namespace inside", NULL,
	  "<message><x xmlns=''><y/></x><z/></message>" },
	{ "mixed content", NULL,
	  "<message><body>a<b/>c<d>e</d>f</body>\n  <html xmlns="
	  "'http://jabber.org/protocol/xhtml-im'><body xmlns="
	  "'http://www.w3.org/1999/xhtml'><p>x <em>y</em> z</p></body></html>"
	  "\n</message>" },
	{ "stream-level elements", NULL,
	  "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
	  "<required/></starttls><mechanisms xmlns='urn:ietf:params:xml:ns:"
	  "xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>"
	  "</stream:features><stream:error><conflict xmlns='urn:ietf:params:"
	  "xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:"
	  "xmpp-streams' xml:lang='en'>x</text></stream:error>"
	  "<r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='5'/>" },
	{ "prefixed stanza", NULL,
	  "<c:message xmlns:c='jabber:client'><body>x</body><c:body/>"
	  "</c:message><c:iq xmlns:c='jabber:client' type='get' id='q'>"
	  "<query xmlns='jabber:iq:version'><c:x/></query></c:iq>" },
	{ "prefixed stanza, jabber:client not the default",
	  "<stream:stream xmlns='urn:weird' "
	  "xmlns:stream='http://etherx.jabber.org/streams' "
	  "xmlns:c='jabber:client'>",
	  "<c:presence><c:status>s</c:status><x/></c:presence>" },
	{ "source declarations stay in scope", NULL,
	  "<message xmlns:soap='http://www.w3.org/2003/05/soap-envelope'>"
	  "<soap:Fault><soap:Code><soap:Value>soap:Sender</soap:Value>"
	  "</soap:Code></soap:Fault><x xmlns:u='urn:unused'>u:q</x>"
	  "</message>" },
	{ "jabber:server message", NULL,
	  "<message xmlns='jabber:server'><body>x</body></message>" },
	{ "namespace URI that needs escaping", NULL,
	  "<message><x xmlns='urn:a&amp;b&quot;c&#9;d'/><p:y xmlns:p="
	  "'urn:&lt;&#10;'/></message>" },
};

static void
check_line(const char *line, size_t len, int stanza)
{
	const char *gt;

	assert_true(len >= 2);
	assert_int_equal(line[len - 1], '\n');
	assert_null(memchr(line, '\n', len - 1));
	assert_null(memchr(line, '\r', len));
	assert_null(memchr(line, '\0', len));
	/* Stanzas are unprefixed and declare jabber:client (SPEC 4.1). */
	if (stanza) {
		if (strncmp(line, "<message ", 9) != 0 &&
		    strncmp(line, "<presence ", 10) != 0 &&
		    strncmp(line, "<iq ", 4) != 0)
			fail_msg("a prefixed stanza: %s", line);
		gt = strchr(line, '>');
		assert_non_null(gt);
		assert_non_null(memmem(line, (size_t)(gt - line),
		    " xmlns=\"jabber:client\"", 22));
	}
}

/* Feed a case; check each line against the original tree. */
static void
run_rt(const struct rt_case *c, size_t chunk, struct rec *r)
{
	struct canon orig, one;
	struct buf doc;
	const char *err;
	size_t i;

	buf_init(&doc);
	buf_puts(&doc, c->header ? c->header : HDR);
	buf_puts(&doc, c->body);
	rec_init(r, 64 * KiB);
	if (feed(r, doc.data, doc.len, chunk, &err) == -1)
		fail_msg("%s (chunk %zu): %s", c->what, chunk, err);
	assert_int_equal(r->opens, 1);
	assert_int_equal(r->closes, 0);
	canon_parse(&orig, doc.data, doc.len, 2, 0);
	if (orig.error)
		fail_msg("%s: the test input does not parse", c->what);
	assert_int_equal(r->n, orig.n);
	for (i = 0; i < r->n; i++) {
		check_line(r->line[i], r->len[i], r->stanza[i]);
		canon_parse(&one, r->line[i], r->len[i], 1, 1);
		if (one.error)
			fail_msg("%s: line %zu does not parse alone: %s",
			    c->what, i, r->line[i]);
		assert_int_equal(one.n, 1);
		if (!canon_equal(&one.elems[0], &orig.elems[i])) {
			canon_dump("got", one.elems[0].form.data,
			    one.elems[0].form.len);
			canon_dump("want", orig.elems[i].form.data,
			    orig.elems[i].form.len);
			fail_msg("%s: line %zu differs: %s", c->what, i,
			    r->line[i]);
		}
		canon_free(&one);
	}
	canon_free(&orig);
	buf_free(&doc);
}

static void
test_roundtrip(void **state)
{
	static const size_t chunks[] = { 1, 2, 3, 7, 64 };
	struct rec whole, r;
	size_t i, j, k;

	for (i = 0; i < NELEM(rt_cases); i++) {
		run_rt(&rt_cases[i], 0, &whole);
		assert_true(whole.n > 0);
		/* Any chunking gives the same lines. */
		for (j = 0; j < NELEM(chunks); j++) {
			run_rt(&rt_cases[i], chunks[j], &r);
			assert_int_equal(r.n, whole.n);
			for (k = 0; k < r.n; k++)
				assert_string_equal(r.line[k], whole.line[k]);
			rec_free(&r);
		}
		rec_free(&whole);
	}
}

/* A few lines byte for byte. */
static void
test_exact_lines(void **state)
{
	static const struct {
		const char	*in;
		const char	*out;
	} cases[] = {
		{ "<message from='a@b' to='c@d'><body>hi</body></message>",
		  "<message xmlns=\"jabber:client\" from=\"a@b\" to=\"c@d\">"
		  "<body>hi</body></message>\n" },
		{ "<presence/>", "<presence xmlns=\"jabber:client\"/>\n" },
		{ "<iq type='result' id='1'><query xmlns='jabber:iq:roster'>"
		  "</query></iq>",
		  "<iq xmlns=\"jabber:client\" type=\"result\" id=\"1\">"
		  "<query xmlns=\"jabber:iq:roster\"/></iq>\n" },
		{ "<message><body>a\nb\r\nc&#13;\td</body></message>",
		  "<message xmlns=\"jabber:client\"><body>a&#10;b&#10;c&#13;&#9;d"
		  "</body></message>\n" },
		{ "<message a='&#10;&#9;&#13;\"'/>",
		  "<message xmlns=\"jabber:client\" a=\"&#10;&#9;&#13;&quot;\"/>\n" },
		{ "<message><x xmlns='urn:x'><y xmlns='jabber:client'/></x></message>",
		  "<message xmlns=\"jabber:client\"><x xmlns=\"urn:x\">"
		  "<y xmlns=\"jabber:client\"/></x></message>\n" },
		{ "<message xml:lang='en'/>",
		  "<message xmlns=\"jabber:client\" xml:lang=\"en\"/>\n" },
		/* A prefix bound to jabber:client: the stanza unprefixed. */
		{ "<c:message xmlns:c='jabber:client' to='a@b'><c:body>x"
		  "</c:body></c:message>",
		  "<message xmlns:c=\"jabber:client\" xmlns=\"jabber:client\" "
		  "to=\"a@b\"><body>x</body></message>\n" },
		/* The source's declarations stay in scope (SPEC 4.1). */
		{ "<message><f xmlns:s='urn:soap'><code>s:Sender</code></f>"
		  "</message>",
		  "<message xmlns=\"jabber:client\"><f xmlns:s=\"urn:soap\">"
		  "<code>s:Sender</code></f></message>\n" },
		{ "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
		  "</stream:features>",
		  "<stream:features xmlns:stream=\"http://etherx.jabber.org/"
		  "streams\"><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/>"
		  "</stream:features>\n" },
	};
	struct rec r;
	const char *err;
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		rec_init(&r, 64 * KiB);
		assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
		assert_int_equal(feed_str(&r, cases[i].in, 0, &err), 0);
		assert_int_equal(r.n, 1);
		assert_string_equal(r.line[0], cases[i].out);
		assert_int_equal(r.len[0], strlen(cases[i].out));
		rec_free(&r);
	}
}

/* The stanza, name and tree of what the session gets. */
static void
test_elem_fields(void **state)
{
	static const struct {
		const char	*in;
		int		 stanza;
		const char	*name;
		const char	*tree;
	} cases[] = {
		{ "<message to='a@b'><body>x</body></message>", 1, "message",
		  NULL },
		{ "<presence><show>away</show></presence>", 1, "presence",
		  NULL },
		{ "<c:presence xmlns:c='jabber:client'/>", 1, "presence", NULL },
		{ "<iq type='get' id='p1' from='example.com'>"
		  "<ping xmlns='urn:xmpp:ping'/></iq>", 1, "iq",
		  "{jabber:client}iq type=get id=p1 from=example.com"
		  "({urn:xmpp:ping}ping)" },
		{ "<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:"
		  "xmpp-bind'><jid>a@b/r</jid></bind></iq>", 1, "iq",
		  "{jabber:client}iq type=result id=b1({urn:ietf:params:xml:ns:"
		  "xmpp-bind}bind({urn:ietf:params:xml:ns:xmpp-bind}jid "
		  "'a@b/r'))" },
		{ "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:"
		  "xmpp-tls'><required/></starttls><mechanisms xmlns='urn:ietf:"
		  "params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
		  "<mechanism>SCRAM-SHA-1</mechanism></mechanisms>"
		  "</stream:features>", 0, "features",
		  "{http://etherx.jabber.org/streams}features("
		  "{urn:ietf:params:xml:ns:xmpp-tls}starttls("
		  "{urn:ietf:params:xml:ns:xmpp-tls}required),"
		  "{urn:ietf:params:xml:ns:xmpp-sasl}mechanisms("
		  "{urn:ietf:params:xml:ns:xmpp-sasl}mechanism 'PLAIN',"
		  "{urn:ietf:params:xml:ns:xmpp-sasl}mechanism 'SCRAM-SHA-1'))" },
		{ "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:"
		  "xmpp-streams'/></stream:error>", 0, "error",
		  "{http://etherx.jabber.org/streams}error("
		  "{urn:ietf:params:xml:ns:xmpp-streams}conflict)" },
		{ "<r xmlns='urn:xmpp:sm:3'/>", 0, "r", "{urn:xmpp:sm:3}r" },
		{ "<a xmlns='urn:xmpp:sm:3' h='12'/>", 0, "a",
		  "{urn:xmpp:sm:3}a h=12" },
		{ "<message xmlns='jabber:server'><body>x</body></message>", 0,
		  "message", "{jabber:server}message({jabber:server}body 'x')" },
		{ "<messages/>", 0, "messages", "{jabber:client}messages" },
		{ "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1y"
		  "</success>", 0, "success",
		  "{urn:ietf:params:xml:ns:xmpp-sasl}success 'dj1y'" },
		/* Namespaced attributes stay out of the tree. */
		{ "<x xmlns='urn:x' xmlns:p='urn:p' p:a='1' xml:lang='en' b='2'/>",
		  0, "x", "{urn:x}x b=2" },
	};
	struct rec r;
	const char *err;
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		rec_init(&r, 64 * KiB);
		assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
		assert_int_equal(feed_str(&r, cases[i].in, 0, &err), 0);
		assert_int_equal(r.n, 1);
		assert_int_equal(r.stanza[0], cases[i].stanza);
		assert_string_equal(r.name[0], cases[i].name);
		if (cases[i].tree == NULL)
			assert_null(r.tree[0]);
		else if (r.tree[0] == NULL)
			fail_msg("%s: no tree", cases[i].in);
		else
			assert_string_equal(r.tree[0], cases[i].tree);
		rec_free(&r);
	}
}

static void
test_header(void **state)
{
	struct rec r;
	const char *err;

	rec_init(&r, 64 * KiB);
	assert_int_equal(feed_str(&r, "<?xml version='1.0'?>", 0, &err), 0);
	assert_int_equal(r.opens, 0);
	assert_int_equal(feed_str(&r, HDR_OPEN, 1, &err), 0);
	assert_int_equal(r.opens, 0);
	assert_int_equal(feed_str(&r, ">", 0, &err), 0);
	assert_int_equal(r.opens, 1);
	assert_string_equal(r.header, "{http://etherx.jabber.org/streams}"
	    "stream from=example.com id=s1 version=1.0");
	assert_int_equal(r.n, 0);
	rec_free(&r);
}

static void
test_close(void **state)
{
	static const char doc[] = HDR "<message/>\n</stream:stream>";
	static const size_t chunks[] = { 0, 1, 5 };
	struct rec r;
	const char *err;
	size_t i;

	for (i = 0; i < NELEM(chunks); i++) {
		rec_init(&r, 64 * KiB);
		assert_int_equal(feed_str(&r, doc, chunks[i], &err), 0);
		assert_int_equal(r.opens, 1);
		assert_int_equal(r.n, 1);
		assert_int_equal(r.closes, 1);
		rec_free(&r);
	}
}

static void
test_not_a_stream(void **state)
{
	static const char *const docs[] = {
		"<foo>",
		"<stream:stream xmlns:stream='urn:wrong'>",
		"<streams xmlns='http://etherx.jabber.org/streams'>",
		"<stream xmlns='jabber:client'>",
		"<foo/>",
	};
	struct rec r;
	const char *err;
	size_t i;

	for (i = 0; i < NELEM(docs); i++) {
		rec_init(&r, 64 * KiB);
		assert_int_equal(feed_str(&r, docs[i], 0, &err), -1);
		assert_non_null(strstr(err, "not an XMPP stream"));
		assert_int_equal(r.opens, 0);
		assert_int_equal(r.n, 0);
		rec_free(&r);
	}
	/* The prefix is the server's choice. */
	rec_init(&r, 64 * KiB);
	assert_int_equal(feed_str(&r, "<stream xmlns='http://etherx.jabber.org/"
	    "streams'><message xmlns='jabber:client'/>", 0, &err), 0);
	assert_int_equal(r.opens, 1);
	assert_int_equal(r.n, 1);
	rec_free(&r);
	/* An unbound prefix is not well-formed. */
	rec_init(&r, 64 * KiB);
	assert_int_equal(feed_str(&r, "<stream:stream>", 0, &err), -1);
	assert_non_null(strstr(err, "not-well-formed"));
	rec_free(&r);
}

/* A root that is not a stream is not a stream that the server closed. */
static void
test_not_a_stream_no_close(void **state)
{
	struct rec r;
	const char *err;

	rec_init(&r, 64 * KiB);
	assert_int_equal(feed_str(&r, "<foo/>", 0, &err), -1);
	assert_non_null(strstr(err, "not an XMPP stream"));
	assert_int_equal(r.opens, 0);
	if (r.closes != 0)
		fail_msg("close callback for a stream never opened");
	rec_free(&r);
}

static void
test_not_well_formed(void **state)
{
	static const struct {
		const char	*in;
		size_t		 len;
	} cases[] = {
#define S(x)	{ x, sizeof(x) - 1 }
		S("<message></presence>"),
		S("<message><body>&foo;</body></message>"),
		S("<message><body>\xff</body></message>"),
		S("<message><body>\xc0\xaf</body></message>"),
		S("<message><body>\xed\xa0\x80</body></message>"),
		S("<message to='\xe9'/>"),
		S("<message>\0</message>"),
		S("<message a='1' a='2'/>"),
		S("<message a='<'/>"),
		S("<p:message/>"),
		S("<message/></stream:stream><message/>"),
		S("<?xml version='1.0'?>"),
		S("<!DOCTYPE x>"),
		S("<message><body>]]></body></message>"),
#undef S
	};
	static const size_t chunks[] = { 0, 1 };
	struct rec r;
	const char *err, *err2;
	size_t i, j;

	for (i = 0; i < NELEM(cases); i++) {
		for (j = 0; j < NELEM(chunks); j++) {
			rec_init(&r, 64 * KiB);
			assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
			if (feed(&r, cases[i].in, cases[i].len, chunks[j],
			    &err) != -1)
				fail_msg("case %zu accepted", i);
			/* A fault stays until a reset. */
			assert_int_equal(stream_feed(r.s, "<presence/>", 11,
			    &err2), -1);
			assert_string_equal(err, err2);
			rec_free(&r);
		}
	}
}

/* RFC 6120 section 11.1: no comments, PIs, DTDs, entity declarations. */
static void
test_restricted(void **state)
{
	static const char *const docs[] = {
		HDR "<!-- hi -->",
		HDR "<message/><!---->",
		HDR "<message><body>x<!-- hi --></body></message>",
		HDR "<message><?foo bar?></message>",
		HDR "<?foo?>",
		"<?xml version='1.0'?><?foo?>" HDR_OPEN ">",
		"<!-- x -->" HDR_OPEN ">",
		"<?xml version='1.0'?><!DOCTYPE stream:stream>" HDR_OPEN ">",
		"<!DOCTYPE stream:stream SYSTEM 'http://example.com/x.dtd'>"
		HDR_OPEN ">",
		"<!DOCTYPE stream:stream [<!ENTITY x 'y'>]>" HDR_OPEN "><message>"
		"&x;</message>",
		"<?xml version='1.0'?>"
		"<!DOCTYPE stream:stream ["
		"<!ENTITY lol 'lol'>"
		"<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
		"<!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;"
		"&lol1;&lol1;'>"
		"<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;"
		"&lol2;&lol2;'>"
		"<!ENTITY lol4 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;"
		"&lol3;&lol3;'>"
		"<!ENTITY lol5 '&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;"
		"&lol4;&lol4;'>"
		"<!ENTITY lol6 '&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;"
		"&lol5;&lol5;'>"
		"<!ENTITY lol7 '&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;"
		"&lol6;&lol6;'>"
		"<!ENTITY lol8 '&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;"
		"&lol7;&lol7;'>"
		"<!ENTITY lol9 '&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;"
		"&lol8;&lol8;'>"
		"]>" HDR_OPEN "><message><body>&lol9;</body></message>",
	};
	static const size_t chunks[] = { 0, 1, 9 };
	struct rec r;
	const char *err, *err2;
	size_t i, j;

	for (i = 0; i < NELEM(docs); i++) {
		for (j = 0; j < NELEM(chunks); j++) {
			rec_init(&r, 64 * KiB);
			if (feed_str(&r, docs[i], chunks[j], &err) != -1)
				fail_msg("case %zu accepted", i);
			if (strstr(err, "restricted") == NULL)
				fail_msg("case %zu: %s", i, err);
			/* Nothing after the fault was reported. */
			assert_int_equal(r.n, i == 1 ? 1 : 0);
			assert_int_equal(stream_feed(r.s, "<presence/>", 11,
			    &err2), -1);
			assert_string_equal(err, err2);
			rec_free(&r);
		}
	}
}

/* A message whose serialized size in the stream is exactly `size'. */
static void
message_of(struct buf *b, size_t size)
{
	static const char head[] = "<message><body>";
	static const char tail[] = "</body></message>";
	size_t pad = size - (sizeof(head) - 1) - (sizeof(tail) - 1);

	buf_puts(b, head);
	while (pad-- > 0)
		buf_putc(b, 'x');
	buf_puts(b, tail);
}

static void
test_size_boundary(void **state)
{
	struct rec r;
	struct buf b;
	const char *err;

	buf_init(&b);
	message_of(&b, 512);
	rec_init(&r, 512);
	assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
	assert_int_equal(feed(&r, b.data, b.len, 0, &err), 0);
	assert_int_equal(r.n, 1);
	rec_free(&r);

	b.len = 0;
	message_of(&b, 513);
	rec_init(&r, 512);
	assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
	assert_int_equal(feed(&r, b.data, b.len, 0, &err), -1);
	assert_non_null(strstr(err, "too large"));
	assert_int_equal(r.n, 0);
	rec_free(&r);

	/* The same stanza fits once the limit is raised. */
	rec_init(&r, 64);
	stream_set_max(r.s, 513);
	assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
	assert_int_equal(feed(&r, b.data, b.len, 0, &err), 0);
	assert_int_equal(r.n, 1);
	rec_free(&r);
	buf_free(&b);
}

/* Stanzas are limited one by one, not by what arrives together. */
static void
test_size_per_element(void **state)
{
	struct rec r;
	struct buf b;
	const char *err;
	int i;

	buf_init(&b);
	buf_puts(&b, HDR);
	for (i = 0; i < 40; i++)
		message_of(&b, 512);
	rec_init(&r, 512);
	assert_int_equal(feed(&r, b.data, b.len, 0, &err), 0);
	assert_int_equal(r.n, 40);
	rec_free(&r);
	buf_free(&b);
}

/*
 * An element too large for the limit, fed slowly after `head': 10 MB in
 * 4 KiB pieces with a 64 KiB limit.  The stream must fail well before
 * everything is fed, so that expat never holds much of it.
 */
static void
slow_feed(size_t max, const char *head, char fill)
{
	enum { TOTAL = 10 * KiB * KiB, PIECE = 4 * KiB };
	static char piece[PIECE];
	struct rec r;
	const char *err;
	size_t fed;
	int rc = 0;

	memset(piece, fill, sizeof(piece));
	rec_init(&r, max);
	assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
	assert_int_equal(feed_str(&r, head, 0, &err), 0);
	for (fed = 0; fed < TOTAL; fed += PIECE)
		if ((rc = stream_feed(r.s, piece, PIECE, &err)) == -1)
			break;
	assert_int_equal(rc, -1);
	assert_non_null(strstr(err, "too large"));
	if (fed > 2 * max + 2 * PIECE)
		fail_msg("failed only after %zu bytes", fed);
	assert_int_equal(r.n, 0);
	rec_free(&r);
}

static void
test_too_large_slow(void **state)
{
	slow_feed(64 * KiB, "<message to='", 'a');
	slow_feed(64 * KiB, "<message><body>", 'a');
	slow_feed(64 * KiB, "<iq type='result' id='x'><query>", 'a');
	slow_feed(64 * KiB, "<message><body", ' ');
	slow_feed(64 * KiB, "<message><body><![CDATA[", 'a');
	slow_feed(64 * KiB, "<stream:features xmlns:a='", 'a');
}

/* Many small children: the tree and the line stay bounded too. */
static void
test_too_large_children(void **state)
{
	static const char item[] = "<item jid='a@b' name='x'/>";
	struct rec r;
	const char *err;
	size_t fed = 0;
	int rc = 0;

	rec_init(&r, 16 * KiB);
	assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
	assert_int_equal(feed_str(&r, "<iq type='result'><query xmlns="
	    "'jabber:iq:roster'>", 0, &err), 0);
	while (fed < 10 * KiB * KiB) {
		if ((rc = feed_str(&r, item, 0, &err)) == -1)
			break;
		fed += sizeof(item) - 1;
	}
	assert_int_equal(rc, -1);
	assert_non_null(strstr(err, "too large"));
	assert_true(fed < 16 * KiB + 64 * KiB + KiB);
	rec_free(&r);
}

/* `ascii' as UTF-16, big or little endian, with a byte order mark or not. */
static void
utf16(struct buf *b, const char *ascii, int big, int bom)
{
	b->len = 0;
	if (bom)
		buf_append(b, big ? "\xfe\xff" : "\xff\xfe", 2);
	for (; *ascii != '\0'; ascii++) {
		if (big)
			buf_putc(b, '\0');
		buf_putc(b, *ascii);
		if (!big)
			buf_putc(b, '\0');
	}
}

/*
 * RFC 6120 section 11.6: UTF-8 only.  Expat, although created for UTF-8,
 * takes a byte order mark or a NUL in the first two bytes for UTF-16: a
 * stream in UTF-16 is refused before it opens, however it is cut.
 */
static void
test_utf16(void **state)
{
	static const size_t chunks[] = { 0, 1, 2, 3 };
	struct rec r;
	struct buf b;
	const char *err;
	int big, bom;
	size_t j;

	buf_init(&b);
	for (big = 0; big < 2; big++)
		for (bom = 0; bom < 2; bom++)
			for (j = 0; j < NELEM(chunks); j++) {
				utf16(&b, HDR "<message/>", big, bom);
				rec_init(&r, 64 * KiB);
				if (feed(&r, b.data, b.len, chunks[j], &err) !=
				    -1)
					fail_msg("UTF-16 %s, BOM %d, chunk %zu: "
					    "accepted", big ? "BE" : "LE", bom,
					    chunks[j]);
				assert_non_null(strstr(err, "UTF-8"));
				assert_int_equal(r.opens, 0);
				assert_int_equal(r.n, 0);
				rec_free(&r);
			}
	/* A UTF-8 byte order mark is fine. */
	rec_init(&r, 64 * KiB);
	assert_int_equal(feed_str(&r, "\xef\xbb\xbf" HDR "<message/>", 1,
	    &err), 0);
	assert_int_equal(r.opens, 1);
	assert_int_equal(r.n, 1);
	/* So is the same after a reset (a new stream, a new document). */
	stream_reset(r.s);
	utf16(&b, HDR, 0, 1);
	assert_int_equal(feed(&r, b.data, b.len, 0, &err), -1);
	assert_non_null(strstr(err, "UTF-8"));
	rec_free(&r);
	buf_free(&b);
}

/*
 * Nesting is capped (XMLP_MAX_DEPTH, the stanza at level 1): the deepest
 * allowed stanza is relayed, one level more ends the stream, for stanzas
 * only relayed and for an iq (which becomes a tree) alike.
 */
static void
nested(struct buf *b, const char *top, int levels, int close)
{
	int i;

	b->len = 0;
	buf_printf(b, "<%s>", top);
	for (i = 1; i < levels; i++)
		buf_puts(b, "<a>");
	if (!close)
		return;
	for (i = 1; i < levels; i++)
		buf_puts(b, "</a>");
	buf_printf(b, "</%s>", top);
}

static void
test_depth(void **state)
{
	static const char *const tops[] = { "message", "iq" };
	struct rec r;
	struct buf b;
	const char *err;
	size_t i;

	buf_init(&b);
	for (i = 0; i < NELEM(tops); i++) {
		rec_init(&r, 64 * KiB);
		assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
		nested(&b, tops[i], 256, 1);
		assert_int_equal(feed(&r, b.data, b.len, 0, &err), 0);
		assert_int_equal(r.n, 1);
		nested(&b, tops[i], 257, 0);
		assert_int_equal(feed(&r, b.data, b.len, 0, &err), -1);
		assert_non_null(strstr(err, "nested too deeply"));
		assert_int_equal(r.n, 1);
		rec_free(&r);
	}
	buf_free(&b);
}

/*
 * The depth the issue found (262,144 levels with a large enough
 * max_stanza_size) overflowed the stack of a recursive free: the stream
 * refuses it early now, and an xnode tree that deep frees without
 * recursion anyway.
 */
static void
test_depth_huge(void **state)
{
	enum { LEVELS = 262144 };
	static const char *attrs[] = { NULL };
	struct xnode *root, *n;
	struct rec r;
	struct buf b;
	const char *err;
	int i;

	buf_init(&b);
	rec_init(&r, 4 * KiB * KiB);
	assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
	nested(&b, "iq", LEVELS, 1);
	assert_int_equal(feed(&r, b.data, b.len, 0, &err), -1);
	assert_non_null(strstr(err, "nested too deeply"));
	rec_free(&r);
	buf_free(&b);

	root = n = xnode_new(NULL, "jabber:client\x01iq", attrs);
	for (i = 0; i < LEVELS * 4; i++)
		n = xnode_new(n, "a", attrs);
	xnode_free(root);
}

/*
 * Namespace amplification: 200 prefixes declared once (on the stream
 * header, or on the stanza), used by 1000 elements nested as deep as the
 * cap allows (a chain of 200, four siblings under each link).  Each
 * binding is declared at most once in the line, which stays within twice
 * the stanza plus the header's declarations, and parses to the same tree.
 */
static void
amplify(int on_header)
{
	enum { NPREFIX = 200, CHAIN = 200, SIBLINGS = 4 };
	struct buf decls, doc, stanza;
	struct canon orig, one;
	struct rec r;
	const char *err, *p;
	size_t count;
	int i, j;

	buf_init(&decls);
	buf_init(&doc);
	buf_init(&stanza);
	for (i = 0; i < NPREFIX; i++)
		buf_printf(&decls, " xmlns:n%d='urn:example:namespace:%d'", i,
		    i);
	buf_printf(&stanza, "<message%s>", on_header ? "" : buf_cstr(&decls));
	for (i = 0; i < CHAIN; i++) {
		for (j = 0; j < SIBLINGS; j++)
			buf_printf(&stanza, "<n%d:s n%d:a='%d'/>",
			    (i + j) % NPREFIX, (i * 7 + j) % NPREFIX, j);
		buf_printf(&stanza, "<n%d:c>", i % NPREFIX);
	}
	for (i = CHAIN - 1; i >= 0; i--)
		buf_printf(&stanza, "</n%d:c>", i % NPREFIX);
	buf_puts(&stanza, "</message>");
	buf_printf(&doc, HDR_OPEN "%s>%s", on_header ? buf_cstr(&decls) : "",
	    buf_cstr(&stanza));

	rec_init(&r, 256 * KiB);
	if (feed(&r, doc.data, doc.len, 0, &err) == -1)
		fail_msg("refused: %s", err);
	assert_int_equal(r.n, 1);
	check_line(r.line[0], r.len[0], 1);
	if (r.len[0] > 2 * stanza.len + decls.len)
		fail_msg("a %zu-byte stanza became a %zu-byte line", stanza.len,
		    r.len[0]);
	/* Each prefix declared once. */
	for (i = 0; i < NPREFIX; i++) {
		char d[32];

		snprintf(d, sizeof(d), "xmlns:n%d=\"", i);
		for (count = 0, p = r.line[0]; (p = strstr(p, d)) != NULL; p++)
			count++;
		assert_int_equal(count, 1);
	}
	canon_parse(&orig, doc.data, doc.len, 2, 0);
	canon_parse(&one, r.line[0], r.len[0], 1, 1);
	assert_false(orig.error);
	assert_false(one.error);
	canon_expect_equal(&orig.elems[0], &one.elems[0], "amplification");
	canon_free(&orig);
	canon_free(&one);
	rec_free(&r);
	buf_free(&decls);
	buf_free(&doc);
	buf_free(&stanza);
}

static void
test_ns_amplification(void **state)
{
	amplify(1);
	amplify(0);
}

/*
 * Bindings in scope in a line are bounded (every name is looked up among
 * them): past XMLW_MAX_BINDINGS the stream ends.
 */
static void
test_too_many_ns(void **state)
{
	struct rec r;
	struct buf b;
	const char *err;
	int i;

	buf_init(&b);
	buf_puts(&b, "<message");
	for (i = 0; i <= XMLW_MAX_BINDINGS; i++)
		buf_printf(&b, " xmlns:p%d='urn:%d'", i, i);
	buf_puts(&b, "/>");
	rec_init(&r, 64 * KiB);
	assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
	assert_int_equal(feed(&r, b.data, b.len, 0, &err), -1);
	assert_non_null(strstr(err, "too many namespace declarations"));
	assert_int_equal(r.n, 0);
	rec_free(&r);
	buf_free(&b);
}

/*
 * Whitespace keepalives between stanzas are not part of any stanza, and
 * must not count toward the limit however many arrive.
 */
static void
test_keepalives(void **state)
{
	struct rec r;
	const char *err;
	int i;

	rec_init(&r, 1 * KiB);
	assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
	assert_int_equal(feed_str(&r, "<message/>", 0, &err), 0);
	for (i = 0; i < 100 * KiB; i++)
		if (feed_str(&r, " ", 0, &err) == -1)
			fail_msg("keepalive %d: %s", i, err);
	assert_int_equal(feed_str(&r, "<presence/>", 0, &err), 0);
	assert_int_equal(r.n, 2);
	rec_free(&r);
}

/* A stream restart from inside the element callback, after <proceed/>. */
#define PROCEED_HEAD	HDR "<stream:features><starttls xmlns=" \
			"'urn:ietf:params:xml:ns:xmpp-tls'/>" \
			"</stream:features>" \
			"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
#define PROCEED_TAIL	"<message><body>injected before TLS</body></message>" \
			"<junk"
#define RESTART		"<?xml version='1.0'?>" HDR_OPEN ">" \
			"<message><body>after</body></message>"

static void
check_restarted(struct rec *r)
{
	assert_int_equal(r->opens, 2);
	assert_int_equal(r->n, 3);
	assert_string_equal(r->name[0], "features");
	assert_string_equal(r->name[1], "proceed");
	assert_string_equal(r->line[2], "<message xmlns=\"jabber:client\">"
	    "<body>after</body></message>\n");
	assert_int_equal(r->closes, 0);
}

static void
test_reset_in_callback(void **state)
{
	static const size_t chunks[] = { 1, 3, 10 };
	struct rec r;
	const char *err;
	size_t i;

	/* What followed <proceed/> in the same chunk is dropped. */
	rec_init(&r, 64 * KiB);
	r.reset_on = "proceed";
	assert_int_equal(feed_str(&r, PROCEED_HEAD PROCEED_TAIL, 0, &err), 0);
	assert_int_equal(r.opens, 1);
	assert_int_equal(r.n, 2);
	/* A new document: the XML declaration is legal again. */
	assert_int_equal(feed_str(&r, RESTART, 0, &err), 0);
	check_restarted(&r);
	rec_free(&r);

	/* <proceed/> completed by the last byte of a chunk. */
	for (i = 0; i < NELEM(chunks); i++) {
		rec_init(&r, 64 * KiB);
		r.reset_on = "proceed";
		assert_int_equal(feed_str(&r, PROCEED_HEAD, chunks[i], &err),
		    0);
		assert_int_equal(r.n, 2);
		assert_int_equal(feed_str(&r, RESTART, chunks[i], &err), 0);
		check_restarted(&r);
		rec_free(&r);
	}
}

/* A reset clears a fault: a new connection. */
static void
test_reset_after_fault(void **state)
{
	static const char *const bad[] = {
		HDR "<!-- x -->",
		HDR "<message></presence>",
		HDR "<message><body>\xff</body></message>",
		"<foo>",
		HDR "<message><body>longer than sixteen bytes</body></message>",
	};
	struct rec r;
	const char *err;
	size_t i;

	for (i = 0; i < NELEM(bad); i++) {
		rec_init(&r, 16);
		assert_int_equal(feed_str(&r, bad[i], 0, &err), -1);
		stream_reset(r.s);
		stream_set_max(r.s, 64 * KiB);
		if (feed_str(&r, HDR "<presence/>", 0, &err) == -1)
			fail_msg("case %zu: after the reset: %s", i, err);
		if (r.n != 1)
			fail_msg("case %zu: new stream lost after reset", i);
		assert_string_equal(r.line[0],
		    "<presence xmlns=\"jabber:client\"/>\n");
		rec_free(&r);
	}
}

/*
 * A reset outside any callback, the document still open (the session does
 * this on a disconnect, and before connecting): the next feed is a new
 * document, and none of it is lost.
 */
static void
test_reset_between_feeds(void **state)
{
	static const char *const before[] = {
		HDR,
		HDR "<presence/>",
		HDR "<message><body>partial",
		HDR "<message to='a",
	};
	struct rec r;
	const char *err;
	size_t i;

	for (i = 0; i < NELEM(before); i++) {
		rec_init(&r, 64 * KiB);
		assert_int_equal(feed_str(&r, before[i], 0, &err), 0);
		assert_int_equal(r.opens, 1);
		stream_reset(r.s);
		assert_int_equal(feed_str(&r, HDR "<message/>", 0, &err), 0);
		if (r.opens != 2)
			fail_msg("case %zu: new stream header lost", i);
		assert_string_equal(r.line[r.n - 1],
		    "<message xmlns=\"jabber:client\"/>\n");
		rec_free(&r);
	}
	/* Resetting twice, or a fresh stream, is harmless. */
	rec_init(&r, 64 * KiB);
	stream_reset(r.s);
	assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
	stream_reset(r.s);
	stream_reset(r.s);
	assert_int_equal(feed_str(&r, HDR "<message/>", 0, &err), 0);
	assert_int_equal(r.opens, 2);
	assert_int_equal(r.n, 1);
	rec_free(&r);
}

/*
 * An element is reported as soon as its last byte is fed, however it was
 * cut: here the tail of a long start tag comes alone and is short.
 */
static void
test_split_tail(void **state)
{
	static const char *const tails[] = {
		">",
		"'/>",
		"\"><body>hi</body></message>",
	};
	struct rec r;
	struct buf b;
	const char *err;
	size_t i;

	for (i = 0; i < NELEM(tails); i++) {
		rec_init(&r, 64 * KiB);
		assert_int_equal(feed_str(&r, HDR, 0, &err), 0);
		buf_init(&b);
		buf_puts(&b, "<message from='juliet@example.com/balcony' "
		    "to='romeo@example.net' type='chat' id='ktx72v49'");
		if (i == 1)
			buf_puts(&b, " xml:lang='en");
		else if (i == 2)
			buf_puts(&b, " xml:lang=\"en");
		assert_int_equal(feed(&r, b.data, b.len, 0, &err), 0);
		assert_int_equal(r.n, 0);
		assert_int_equal(feed_str(&r, tails[i], 0, &err), 0);
		if (i == 0)
			assert_int_equal(feed_str(&r, "</message>", 0, &err),
			    0);
		if (r.n != 1)
			fail_msg("case %zu: the stanza is held back", i);
		buf_free(&b);
		rec_free(&r);
	}
	/* The stream header too. */
	rec_init(&r, 64 * KiB);
	assert_int_equal(feed_str(&r, HDR_OPEN, 0, &err), 0);
	assert_int_equal(feed_str(&r, ">", 0, &err), 0);
	if (r.opens != 1)
		fail_msg("the stream header is held back");
	rec_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_exact_lines),
		cmocka_unit_test(test_elem_fields),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_close),
		cmocka_unit_test(test_not_a_stream),
		cmocka_unit_test(test_not_a_stream_no_close),
		cmocka_unit_test(test_not_well_formed),
		cmocka_unit_test(test_restricted),
		cmocka_unit_test(test_size_boundary),
		cmocka_unit_test(test_size_per_element),
		cmocka_unit_test(test_too_large_slow),
		cmocka_unit_test(test_too_large_children),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_utf16),
		cmocka_unit_test(test_ns_amplification),
		cmocka_unit_test(test_too_many_ns),
		cmocka_unit_test(test_depth_huge),
		cmocka_unit_test(test_keepalives),
		cmocka_unit_test(test_reset_in_callback),
		cmocka_unit_test(test_reset_after_fault),
		cmocka_unit_test(test_reset_between_feeds),
		cmocka_unit_test(test_split_tail),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
