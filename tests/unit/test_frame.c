/*
 * The framer of a socket client's input (SPEC section 4, client to daemon):
 * elements in any chunking become stanzas for the server's stream, other
 * elements are rejected one by one, and bad XML ends the input.
 *
 * Every case runs whole and in several chunkings, byte by byte included,
 * and must give the same transcript: one line per stanza as serialized, one
 * "!condition" line per rejected element, then "#condition" for a fault.
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
#include "frame.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))
#define KiB		1024
#define MAX		(64 * KiB)
#define S(x)		x, sizeof(x) - 1

#define NWF		FRAME_NOT_WELL_FORMED
#define RESTRICTED	FRAME_RESTRICTED_XML
#define TOO_LARGE	FRAME_TOO_LARGE

static const size_t chunkings[] = { 0, 1, 2, 3, 5, 13, 64 };

struct rec {
	struct frame	*f;
	struct buf	 log;
	size_t		 stanzas;
	size_t		 rejects;
};

static void
on_stanza(void *arg, const char *data, size_t len,
    const struct frame_stanza *st)
{
	struct rec *r = arg;

	assert_non_null(data);
	assert_true(len > 0);
	/* The client's own bytes, which expat found well-formed. */
	assert_null(memchr(data, '\0', len));
	assert_true(data[0] == '<' && data[len - 1] == '>');
	assert_true(st->head > 0 && st->head <= len);
	assert_true(data[st->head - 1] == '>');
	buf_append(&r->log, data, len);
	buf_putc(&r->log, '\n');
	r->stanzas++;
}

static void
on_reject(void *arg, const char *condition, const char *text)
{
	struct rec *r = arg;

	assert_non_null(text);
	assert_true(text[0] != '\0');
	buf_printf(&r->log, "!%s\n", condition);
	r->rejects++;
}

static const struct frame_cb cbs = { on_stanza, on_reject, NULL };

static void
rec_init(struct rec *r, size_t max)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->log);
	r->f = frame_new(max, &cbs, r);
	assert_non_null(r->f);
}

static void
rec_free(struct rec *r)
{
	frame_free(r->f);
	buf_free(&r->log);
}

/*
 * Feed in pieces of `chunk' bytes (0: all at once), stopping at a fault,
 * which goes to the log.  A fault is final: more input gets -1 again, with
 * the same condition, and no callback.  Returns the bytes fed.
 */
static size_t
feed(struct rec *r, const char *data, size_t len, size_t chunk)
{
	const char *cond, *text, *cond2, *text2;
	size_t off, n, before;

	if (chunk == 0)
		chunk = len;
	for (off = 0; off < len; off += n) {
		n = len - off < chunk ? len - off : chunk;
		if (frame_feed(r->f, data + off, n) == 0)
			continue;
		frame_error(r->f, &cond, &text);
		assert_non_null(cond);
		assert_non_null(text);
		assert_true(text[0] != '\0');
		buf_printf(&r->log, "#%s\n", cond);
		before = r->log.len;
		assert_int_equal(frame_feed(r->f, "<presence/>", 11), -1);
		assert_int_equal(frame_feed(r->f, "", 0), -1);
		assert_int_equal(r->log.len, before);
		frame_error(r->f, &cond2, &text2);
		assert_string_equal(cond, cond2);
		return off + n;
	}
	return len;
}

struct fcase {
	const char	*in;
	size_t		 len;
	const char	*want;		/* transcript */
};

static void
run_cases(const struct fcase *c, size_t n, size_t max)
{
	struct rec r;
	size_t i, j;

	for (i = 0; i < n; i++) {
		for (j = 0; j < NELEM(chunkings); j++) {
			rec_init(&r, max);
			feed(&r, c[i].in, c[i].len, chunkings[j]);
			if (strcmp(buf_cstr(&r.log), c[i].want) != 0)
				fail_msg("case %zu, chunk %zu: %.*s\n"
				    "got:\n%s\nwant:\n%s", i, chunkings[j],
				    (int)c[i].len, c[i].in, buf_cstr(&r.log),
				    c[i].want);
			rec_free(&r);
		}
	}
}

/*
 * Stanzas go to the server as the very bytes the client wrote: the wrapper
 * binds what the stream to the server binds, so they mean the same there.
 */
static void
test_stanzas(void **state)
{
	static const char *const same[] = {
		"<message to=\"a@b\"><body>hi</body></message>",
		"<message to='a@b' type='chat'><body>hi</body></message>",
		"<presence/>",
		"<presence></presence>",
		"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
		"<message xmlns='jabber:client' to='a@b'><body xmlns="
		    "'jabber:client'>x</body></message>",
		"<message><x xmlns='urn:x'><y/></x><z/></message>",
		"<message xmlns:p='urn:p'><p:x p:a='1'/><p:y/></message>",
		"<message><x xmlns='urn:x'><y xmlns='jabber:client'/></x>"
		    "</message>",
		"<message><x xmlns=''/></message>",
		"<message xml:lang='en'><body xml:lang='fr'>x</body></message>",
		"<c:message xmlns:c='jabber:client' to='a'/>",
		/* The stream prefix is bound on the server's stream too. */
		"<message><stream:x/></message>",
		"<message><body>a&amp;b&lt;c&gt;d&#10;e&#13;f\"g'h</body>"
		    "</message>",
		"<message><body>l1\nl2\r\nl3\tx</body></message>",
		"<message to='a\"b' id=\"it's\" x='&#9;&#10;&#13;&lt;>'/>",
		"<message><body><![CDATA[<x>&]]]]><![CDATA[>]]></body>"
		    "</message>",
		"<message><body>caf\xc3\xa9 \xf0\x9f\x98\x80 &#x1F600;</body>"
		    "</message>",
		"<message>\n  <body>x</body>\n</message>",
	};
	struct fcase c[NELEM(same)];
	char want[NELEM(same)][256];
	size_t i;

	for (i = 0; i < NELEM(same); i++) {
		snprintf(want[i], sizeof(want[i]), "%s\n", same[i]);
		c[i].in = same[i];
		c[i].len = strlen(same[i]);
		c[i].want = want[i];
	}
	run_cases(c, NELEM(c), MAX);
}

/* Several elements, in order; whitespace and line breaks between. */
static void
test_sequence(void **state)
{
	static const struct fcase cases[] = {
		{ S("<message id='1'/><presence/><iq id='2' type='get'/>"),
		  "<message id='1'/>\n<presence/>\n<iq id='2' type='get'/>\n" },
		{ S("\n  <message id='1'/>\r\n\t<presence/>\n\n <iq id='2'/> \n"),
		  "<message id='1'/>\n<presence/>\n<iq id='2'/>\n" },
		{ S("<message id='1'/>\n<message id='2'/>\n<message id='3'/>\n"),
		  "<message id='1'/>\n<message id='2'/>\n<message id='3'/>\n" },
		{ S("<?xml version=\"1.0\"?><message/>"), "<message/>\n" },
		{ S("<?xml version='1.0' encoding='UTF-8'?>\n<presence/>\n"),
		  "<presence/>\n" },
		{ S("<?xml version='1.0'?><?xml-stylesheet href='x'?>"),
		  "#" RESTRICTED "\n" },
		{ S("<?xml\tversion='1.0'\nstandalone='yes' ?>\r\n<presence/>"),
		  "<presence/>\n" },
		{ S("<?xml version=\"1.0\"?>"), "" },
		{ S(""), "" },
		{ S("   \n\n\t  "), "" },
	};

	run_cases(cases, NELEM(cases), MAX);
}

/* Well-formed elements that are not stanzas: rejected, input goes on. */
static void
test_not_a_stanza(void **state)
{
#define NAS	"!" FRAME_NOT_A_STANZA "\n"
	static const struct fcase cases[] = {
		{ S("<foo/>"), NAS },
		{ S("<foo><message/></foo><message/>"), NAS "<message/>\n" },
		{ S("<message/><foo>x<bar/></foo>\n<presence/>"),
		  "<message/>\n" NAS "<presence/>\n" },
		{ S("<message xmlns='jabber:server'/>"), NAS },
		{ S("<message xmlns='jabber:server'><body>x</body></message>"
		  "<message xmlns='jabber:client'/>"),
		  NAS "<message xmlns='jabber:client'/>\n" },
		{ S("<presence xmlns='urn:other'/>"), NAS },
		{ S("<p:iq xmlns:p='urn:other'/>"), NAS },
		{ S("<Message/><messages/><IQ/>"), NAS NAS NAS },
		{ S("<body>hi</body>"), NAS },
		/* Stream level and stream management. */
		{ S("<stream:features/>"), NAS },
		{ S("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:"
		  "xmpp-tls'/></stream:features>"), NAS },
		{ S("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:"
		  "xmpp-streams'/></stream:error>"), NAS },
		{ S("<stream:stream xmlns='jabber:client' to='x'></stream:stream>"),
		  NAS },
		{ S("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"), NAS },
		{ S("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
		  "mechanism='PLAIN'>AGEAYg==</auth>"), NAS },
		{ S("<enable xmlns='urn:xmpp:sm:3'/><r xmlns='urn:xmpp:sm:3'/>"
		  "<a xmlns='urn:xmpp:sm:3' h='1'/>"), NAS NAS NAS },
		{ S("<x xmlns='urn:x'><message xmlns='jabber:client'/></x>"), NAS },
	};

	run_cases(cases, NELEM(cases), MAX);
#undef NAS
}

/* Not well-formed: fatal; stanzas before the fault were delivered. */
static void
test_not_well_formed(void **state)
{
	static const struct fcase cases[] = {
		{ S("<message></presence>"), "#" NWF "\n" },
		{ S("<message id='1'/><presence/><foo></bar>"),
		  "<message id='1'/>\n<presence/>\n#" NWF "\n" },
		{ S("<message><body></message>"), "#" NWF "\n" },
		{ S("</stream:stream>"), "#" NWF "\n" },
		{ S("<presence/></stream:stream>"), "<presence/>\n#" NWF "\n" },
		{ S("</clawsd-input>"), "#" NWF "\n" },
		{ S("</message>"), "#" NWF "\n" },
		/* Text outside an element. */
		{ S("hello"), "#" NWF "\n" },
		{ S("<message/>x<presence/>"), "<message/>\n#" NWF "\n" },
		{ S("<message/>&amp;"), "<message/>\n#" NWF "\n" },
		{ S("<message/><![CDATA[x]]>"), "<message/>\n#" NWF "\n" },
		/* NUL bytes. */
		{ S("\0"), "#" NWF "\n" },
		{ S("<message/>\0<presence/>"), "<message/>\n#" NWF "\n" },
		{ S("<message><body>a\0b</body></message>"), "#" NWF "\n" },
		{ S("<message to='\0'/>"), "#" NWF "\n" },
		/* Invalid UTF-8. */
		{ S("<message><body>\xff</body></message>"), "#" NWF "\n" },
		{ S("<message><body>\xc0\xaf</body></message>"), "#" NWF "\n" },
		{ S("<message><body>\xed\xa0\x80</body></message>"), "#" NWF "\n" },
		{ S("<message><body>\xf4\x90\x80\x80</body></message>"),
		  "#" NWF "\n" },
		{ S("<message to='\xe9'/>"), "#" NWF "\n" },
		{ S("<m\xe9ssage/>"), "#" NWF "\n" },
		{ S("<presence/>\x80"), "<presence/>\n#" NWF "\n" },
		/* UTF-16, with or without a byte order mark (RFC 6120
		 * section 11.6: UTF-8 only). */
		{ S("\xff\xfe<\0m\0/\0>\0"), "#" NWF "\n" },
		{ S("\xfe\xff\0<\0m\0/\0>"), "#" NWF "\n" },
		{ S("<\0m\0/\0>\0"), "#" NWF "\n" },
		{ S("\0<\0m\0/\0>"), "#" NWF "\n" },
		{ S("\xef\xbb\xbf\xff\xfe<\0m\0/\0>\0"), "#" NWF "\n" },
		{ S("\xff\xfe<\0?\0x\0m\0l\0 \0v\0e\0r\0s\0i\0o\0n\0=\0"
		  "'\0001\0.\0000\0'\0?\0>\0"), "#" NWF "\n" },
		/* The input is UTF-8 whatever the declaration says. */
		{ S("<?xml version='1.0' encoding='ISO-8859-1'?><message><body>"
		  "\xe9</body></message>"), "#" NWF "\n" },
		/* Other syntax errors. */
		{ S("<message a='1' a='2'/>"), "#" NWF "\n" },
		{ S("<message a=1/>"), "#" NWF "\n" },
		{ S("<message a='<'/>"), "#" NWF "\n" },
		{ S("<message>&foo;</message>"), "#" NWF "\n" },
		{ S("<message>&#0;</message>"), "#" NWF "\n" },
		{ S("<message><body>]]></body></message>"), "#" NWF "\n" },
		{ S("<p:message/>"), "#" NWF "\n" },
		{ S("<message xmlns:xml='urn:bad'/>"), "#" NWF "\n" },
		/* A declaration anywhere but at the very start. */
		{ S(" <?xml version='1.0'?><message/>"), "#" NWF "\n" },
		{ S("<message/><?xml version='1.0'?>"), "<message/>\n#" NWF "\n" },
		{ S("<?xml version='1.0'?><?xml version='1.0'?>"), "#" NWF "\n" },
		{ S("<?xml version='1.0'?><message/>"
		  "<?xml version='1.0'?><message/>"), "<message/>\n#" NWF "\n" },
		{ S("<?xml encoding='UTF-8'?><message/>"), "#" NWF "\n" },
	};

	run_cases(cases, NELEM(cases), MAX);
}

/* RFC 6120 section 11.1: comments, PIs, DTDs, entity declarations. */
static void
test_restricted(void **state)
{
	static const struct fcase cases[] = {
		{ S("<!-- hi -->"), "#" RESTRICTED "\n" },
		{ S("<message/><!-- hi --><presence/>"),
		  "<message/>\n#" RESTRICTED "\n" },
		{ S("<message><!-- hi --></message>"), "#" RESTRICTED "\n" },
		{ S("<?foo bar?>"), "#" RESTRICTED "\n" },
		{ S("<message><?foo?></message>"), "#" RESTRICTED "\n" },
		{ S("<?xml version='1.0'?><!-- x --><message/>"),
		  "#" RESTRICTED "\n" },
		{ S("<!DOCTYPE message>"), "#" RESTRICTED "\n" },
		{ S("<!DOCTYPE message [<!ENTITY x 'y'>]><message>&x;</message>"),
		  "#" RESTRICTED "\n" },
		{ S("<?xml version='1.0'?><!DOCTYPE message SYSTEM 'x.dtd'>"
		  "<message/>"), "#" RESTRICTED "\n" },
		{ S("<presence/><!DOCTYPE x>"), "<presence/>\n#" RESTRICTED "\n" },
		{ S("<!ENTITY x 'y'>"), "#" RESTRICTED "\n" },
	};

	run_cases(cases, NELEM(cases), MAX);
}

/* A message of exactly `size' bytes as the client writes it. */
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
	static const size_t chunks[] = { 0, 1, 7, 100 };
	struct rec r;
	struct buf in;
	size_t i;

	buf_init(&in);
	for (i = 0; i < NELEM(chunks); i++) {
		in.len = 0;
		buf_puts(&in, "  \n");
		message_of(&in, 256);
		buf_puts(&in, "\n");
		message_of(&in, 256);
		rec_init(&r, 256);
		feed(&r, in.data, in.len, chunks[i]);
		assert_int_equal(r.stanzas, 2);
		assert_null(strchr(buf_cstr(&r.log), '#'));
		rec_free(&r);

		in.len = 0;
		message_of(&in, 256);
		message_of(&in, 257);
		rec_init(&r, 256);
		feed(&r, in.data, in.len, chunks[i]);
		assert_int_equal(r.stanzas, 1);
		assert_non_null(strstr(buf_cstr(&r.log), "#" TOO_LARGE "\n"));
		rec_free(&r);

		/* Elements that are not stanzas are limited too. */
		in.len = 0;
		buf_puts(&in, "<foo>");
		while (in.len < 300)
			buf_putc(&in, 'x');
		buf_puts(&in, "</foo>");
		rec_init(&r, 256);
		feed(&r, in.data, in.len, chunks[i]);
		assert_string_equal(buf_cstr(&r.log), "#" TOO_LARGE "\n");
		rec_free(&r);
	}
	buf_free(&in);
}

/* The limit is per element, not per write; whitespace does not count. */
static void
test_size_per_element(void **state)
{
	struct rec r;
	struct buf in;
	int i;

	buf_init(&in);
	for (i = 0; i < 100; i++) {
		message_of(&in, 200);
		buf_puts(&in, "\n");
	}
	rec_init(&r, 256);
	feed(&r, in.data, in.len, 0);
	assert_int_equal(r.stanzas, 100);
	rec_free(&r);

	rec_init(&r, 1 * KiB);
	assert_int_equal(frame_feed(r.f, S("<presence/>")), 0);
	for (i = 0; i < 100 * KiB; i += 4 * KiB) {
		char sp[4 * KiB];

		memset(sp, i % 8 ? ' ' : '\n', sizeof(sp));
		assert_int_equal(frame_feed(r.f, sp, sizeof(sp)), 0);
	}
	assert_int_equal(frame_feed(r.f, S("<presence/>")), 0);
	assert_int_equal(r.stanzas, 2);
	rec_free(&r);
	buf_free(&in);
}

/*
 * An element over the limit fed slowly: 10 MB in 4 KiB pieces, 64 KiB
 * allowed.  The framer fails as soon as the element is over the limit, so
 * expat never holds much more than that.
 */
static void
slow_feed(const char *head, char fill, size_t before)
{
	enum { TOTAL = 10 * KiB * KiB, PIECE = 4 * KiB };
	static char piece[PIECE];
	const char *cond, *text;
	struct rec r;
	size_t fed;
	int rc = 0;

	memset(piece, fill, sizeof(piece));
	rec_init(&r, MAX);
	assert_int_equal(frame_feed(r.f, head, strlen(head)), 0);
	for (fed = 0; fed < TOTAL; fed += PIECE)
		if ((rc = frame_feed(r.f, piece, PIECE)) == -1)
			break;
	assert_int_equal(rc, -1);
	frame_error(r.f, &cond, &text);
	assert_string_equal(cond, TOO_LARGE);
	if (fed > MAX + PIECE)
		fail_msg("%s: failed only after %zu bytes", head, fed);
	assert_int_equal(r.stanzas, before);
	assert_int_equal(r.rejects, 0);
	rec_free(&r);
}

static void
test_too_large_slow(void **state)
{
	slow_feed("<message to='", 'a', 0);
	slow_feed("<message><body>", 'a', 0);
	slow_feed("<message><body", ' ', 0);
	slow_feed("<foo>", 'a', 0);
	slow_feed("<message><body><![CDATA[", 'a', 0);
	slow_feed("<message/>\n<presence xmlns:a='", 'a', 1);
	slow_feed("<?xml version='1.0'?><message><x xmlns='urn:", 'a', 0);
}

/* Many small children: the serialized output stays bounded too. */
static void
test_too_large_children(void **state)
{
	static const char item[] = "<item jid='a@b' name='x'/>";
	const char *cond, *text;
	struct rec r;
	size_t fed = 0;
	int rc = 0;

	rec_init(&r, 16 * KiB);
	assert_int_equal(frame_feed(r.f, S("<iq type='set'><query xmlns="
	    "'jabber:iq:roster'>")), 0);
	while (fed < 10 * KiB * KiB) {
		if ((rc = frame_feed(r.f, item, sizeof(item) - 1)) == -1)
			break;
		fed += sizeof(item) - 1;
	}
	assert_int_equal(rc, -1);
	frame_error(r.f, &cond, &text);
	assert_string_equal(cond, TOO_LARGE);
	assert_true(fed < 16 * KiB);
	rec_free(&r);
}

/*
 * Nesting is capped (XMLP_MAX_DEPTH, the stanza at level 1): the deepest
 * allowed element goes through, one level more is too-large, and the
 * client is cut as soon as the start tag that goes too deep is read.
 */
static void
nested(struct buf *b, int levels, int close)
{
	int i;

	b->len = 0;
	buf_puts(b, "<message>");
	for (i = 1; i < levels; i++)
		buf_puts(b, "<a>");
	if (!close)
		return;
	for (i = 1; i < levels; i++)
		buf_puts(b, "</a>");
	buf_puts(b, "</message>");
}

static void
test_depth(void **state)
{
	const char *cond, *text;
	struct rec r;
	struct buf b;

	buf_init(&b);
	nested(&b, 256, 1);
	rec_init(&r, 64 * KiB);
	assert_int_equal(frame_feed(r.f, b.data, b.len), 0);
	assert_int_equal(r.stanzas, 1);
	rec_free(&r);

	nested(&b, 257, 0);
	rec_init(&r, 64 * KiB);
	assert_int_equal(frame_feed(r.f, b.data, b.len), -1);
	frame_error(r.f, &cond, &text);
	assert_string_equal(cond, TOO_LARGE);
	assert_non_null(strstr(text, "nested"));
	assert_int_equal(r.stanzas, 0);
	rec_free(&r);

	/* The same, self-closing at the level too many. */
	nested(&b, 256, 0);
	buf_puts(&b, "<a/>");
	rec_init(&r, 64 * KiB);
	assert_int_equal(frame_feed(r.f, b.data, b.len), -1);
	frame_error(r.f, &cond, &text);
	assert_string_equal(cond, TOO_LARGE);
	rec_free(&r);
	buf_free(&b);
}

/*
 * A stanza goes out as soon as its last byte is in, however it was cut:
 * a client that writes the end of a long start tag on its own.
 */
static void
test_split_tail(void **state)
{
	static const char head[] = "<message from='juliet@example.com/balcony' "
	    "to='romeo@example.net' type='chat' id='ktx72v49'";
	struct rec r;

	rec_init(&r, MAX);
	assert_int_equal(frame_feed(r.f, S(head)), 0);
	assert_int_equal(frame_feed(r.f, S("><body>hi</body></message>")), 0);
	if (r.stanzas != 1)
		fail_msg("the stanza is held back");
	assert_int_equal(frame_feed(r.f, S("<presence xml:lang='en'")), 0);
	assert_int_equal(frame_feed(r.f, S("/>")), 0);
	if (r.stanzas != 2)
		fail_msg("the presence is held back");
	rec_free(&r);
}

/*
 * Each line parses, in the server's stream, to the same tree as the client
 * wrote: the elements inside a wrapper, compared in canonical form.
 */
static void
canon_wrapped(struct canon *c, const char *body, size_t len)
{
	struct buf doc;

	buf_init(&doc);
	buf_puts(&doc, "<w xmlns='jabber:client' xmlns:stream="
	    "'http://etherx.jabber.org/streams'>");
	buf_append(&doc, body, len);
	buf_puts(&doc, "</w>");
	canon_parse(c, doc.data, doc.len, 2, 1);
	if (c->error)
		fail_msg("does not parse: %.*s", (int)len, body);
	buf_free(&doc);
}

static void
test_roundtrip(void **state)
{
	static const char *const cases[] = {
		"<message to='a@b' type='chat' id='1'><body>hi</body></message>",
		"<message><body>a\nb\r\nc\rd\te &amp;&lt;&gt;\"' ]]&gt;"
		"<![CDATA[<&>]]></body></message>",
		"<message a='1&#9;2&#10;3&#13;4' b='x\ty\nz' c='\"' d=\"'\"/>",
		"<message xmlns:p='urn:p' xmlns:q='urn:q' p:a='1'><p:x q:b='2'>"
		"<p:y xmlns:p='urn:p2' p:c='3'/><q:z/></p:x><p:w/></message>",
		"<iq type='set' id='a'><x xmlns='urn:x' xmlns:y='urn:y' y:attr="
		"'v' attr='w'><z y:attr='u'/><jc xmlns='jabber:client'/></x>"
		"<none xmlns=''><in/></none></iq>",
		"<message xml:lang='en'><body xml:lang='fr'>x</body><body/>"
		"</message>",
		"<presence><show>away</show><status>\xe6\x97\xa5\xe6\x9c\xac "
		"\xf0\x9f\x98\x80</status><c xmlns='http://jabber.org/protocol/"
		"caps' hash='sha-1' node='n' ver='v='/></presence>",
		"<message><stream:error/><html xmlns='http://jabber.org/protocol/"
		"xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p>a<b>b"
		"</b>c</p></body></html></message>",
		"<c:message xmlns:c='jabber:client'><body>x</body><c:body/>"
		"</c:message>",
	};
	struct canon in, out;
	struct rec r;
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		rec_init(&r, MAX);
		feed(&r, cases[i], strlen(cases[i]), 0);
		assert_int_equal(r.stanzas, 1);
		/* As the framer reads the client... */
		canon_wrapped(&in, cases[i], strlen(cases[i]));
		/* ...and as the server reads it in clawsd's stream. */
		canon_wrapped(&out, r.log.data, r.log.len);
		assert_int_equal(in.n, 1);
		assert_int_equal(out.n, 1);
		if (!canon_equal(&in.elems[0], &out.elems[0])) {
			canon_dump("got", out.elems[0].form.data,
			    out.elems[0].form.len);
			canon_dump("want", in.elems[0].form.data,
			    in.elems[0].form.len);
			fail_msg("%s\n -> %s differs", cases[i],
			    buf_cstr(&r.log));
		}
		canon_free(&in);
		canon_free(&out);
		rec_free(&r);
	}
}

/* Feeding nothing changes nothing, before and after a declaration. */
static void
test_empty_feeds(void **state)
{
	struct rec r;

	rec_init(&r, MAX);
	assert_int_equal(frame_feed(r.f, "", 0), 0);
	assert_int_equal(frame_feed(r.f, S("<?xm")), 0);
	assert_int_equal(frame_feed(r.f, "", 0), 0);
	assert_int_equal(frame_feed(r.f, S("l version='1.0'?>")), 0);
	assert_int_equal(frame_feed(r.f, "", 0), 0);
	assert_int_equal(frame_feed(r.f, S("<presence/>")), 0);
	assert_int_equal(frame_feed(r.f, "", 0), 0);
	assert_string_equal(buf_cstr(&r.log), "<presence/>\n");
	rec_free(&r);
}

/* What the hub reads of a stanza, and commands in urn:x-clawsd. */
struct seen {
	struct buf	 log;
};

static void
seen_stanza(void *arg, const char *data, size_t len,
    const struct frame_stanza *st)
{
	struct seen *s = arg;

	buf_printf(&s->log, "%s type=%s id=%s to=%s head=%.*s\n", st->name,
	    st->type ? st->type : "-", st->id ? st->id : "-",
	    st->to ? st->to : "-", (int)st->head, data);
}

static void
seen_reject(void *arg, const char *condition, const char *text)
{
	struct seen *s = arg;

	buf_printf(&s->log, "!%s\n", condition);
}

static void
seen_command(void *arg, const char *name, const char **attrs)
{
	struct seen *s = arg;
	size_t i;

	buf_printf(&s->log, "cmd %s", name);
	for (i = 0; attrs[i] != NULL; i += 2)
		buf_printf(&s->log, " %s=%s", attrs[i], attrs[i + 1]);
	buf_putc(&s->log, '\n');
}

static const struct frame_cb seen_cbs = { seen_stanza, seen_reject,
    seen_command };

static void
test_stanza_heads_and_commands(void **state)
{
	static const char in[] =
	    "<iq type='get' id='a&amp;b' to=\"x@y\" from='me' xml:lang='en'>"
	    "<q xmlns='urn:q'/></iq>"
	    "<message id=\"m1\"><body>x</body></message>"
	    "<status xmlns='urn:x-clawsd'/>"
	    "<c:filter xmlns:c='urn:x-clawsd' stanzas='message' types=''>"
	    "<ignored/></c:filter>"
	    "<other xmlns='urn:elsewhere' type='x'/>";
	static const char want[] =
	    "iq type=get id=a&b to=x@y head=<iq type='get' id='a&amp;b' "
	    "to=\"x@y\" from='me' xml:lang='en'>\n"
	    "message type=- id=m1 to=- head=<message id=\"m1\">\n"
	    "cmd status\n"
	    "cmd filter stanzas=message types=\n"
	    "!not-a-stanza\n";
	size_t i;

	for (i = 0; i < sizeof(chunkings) / sizeof(chunkings[0]); i++) {
		struct seen s;
		struct frame *f;
		size_t off, n, step = chunkings[i] ? chunkings[i] : sizeof(in);

		buf_init(&s.log);
		f = frame_new(4096, &seen_cbs, &s);
		for (off = 0; off < sizeof(in) - 1; off += n) {
			n = sizeof(in) - 1 - off < step ? sizeof(in) - 1 - off :
			    step;
			assert_int_equal(frame_feed(f, in + off, n), 0);
		}
		assert_int_equal(frame_finish(f), 0);
		assert_string_equal(buf_cstr(&s.log), want);
		frame_free(f);
		buf_free(&s.log);
	}
}

static void
test_finish(void **state)
{
	static const struct {
		const char	*in;
		int		 rc;
	} cases[] = {
		{ "", 0 }, { " \n", 0 }, { "<?xml version='1.0'?>", 0 },
		{ "<message/>\n  ", 0 }, { "<mess", -1 }, { "<message>", -1 },
		{ "<message><body>x</body>", -1 }, { "<message/><pres", -1 },
		{ "<?xml versi", -1 },
	};
	const char *cond, *text;
	struct rec r;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rec_init(&r, 4096);
		assert_int_equal(frame_feed(r.f, cases[i].in,
		    strlen(cases[i].in)), 0);
		assert_int_equal(frame_finish(r.f), cases[i].rc);
		if (cases[i].rc != 0) {
			frame_error(r.f, &cond, &text);
			assert_string_equal(cond, FRAME_NOT_WELL_FORMED);
		}
		rec_free(&r);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stanzas),
		cmocka_unit_test(test_sequence),
		cmocka_unit_test(test_not_a_stanza),
		cmocka_unit_test(test_not_well_formed),
		cmocka_unit_test(test_restricted),
		cmocka_unit_test(test_size_boundary),
		cmocka_unit_test(test_size_per_element),
		cmocka_unit_test(test_too_large_slow),
		cmocka_unit_test(test_too_large_children),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_split_tail),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_empty_feeds),
		cmocka_unit_test(test_stanza_heads_and_commands),
		cmocka_unit_test(test_finish),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
