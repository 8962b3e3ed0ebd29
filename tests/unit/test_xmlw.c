/*
 * XML writing: the two escapers, and the namespace-normalizing serializer
 * driven by expat exactly as the stream parser and the framer drive it.
 * Outputs are checked byte for byte here; test_stream.c checks that they
 * parse back to the same trees.
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
#include "xmlw.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))
#define NS_CLIENT	"jabber:client"

struct esc_case {
	const char	*in;
	const char	*out;
};

static void
check_escape(void (*fn)(struct buf *, const char *, size_t),
    const struct esc_case *c, size_t n)
{
	struct buf b;
	size_t i;

	for (i = 0; i < n; i++) {
		buf_init(&b);
		fn(&b, c[i].in, strlen(c[i].in));
		assert_string_equal(buf_cstr(&b), c[i].out);
		buf_free(&b);
	}
}

static void
test_text_escape(void **state)
{
	static const struct esc_case cases[] = {
		{ "", "" },
		{ "plain text", "plain text" },
		{ "a&b", "a&amp;b" },
		{ "<x>", "&lt;x&gt;" },
		{ "]]>", "]]&gt;" },
		{ "\"quoted\" 'apos'", "\"quoted\" 'apos'" },
		{ "a\tb\nc\rd", "a&#9;b&#10;c&#13;d" },
		{ "\r\n", "&#13;&#10;" },
		{ "&amp;", "&amp;amp;" },
		{ "&&&", "&amp;&amp;&amp;" },
		{ "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80",
		  "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80" },
		{ "<", "&lt;" },
		{ ">", "&gt;" },
	};

	check_escape(xmlw_text, cases, NELEM(cases));
}

static void
test_attr_escape(void **state)
{
	static const struct esc_case cases[] = {
		{ "", "" },
		{ "a@b/c", "a@b/c" },
		{ "a&b", "a&amp;b" },
		{ "<x>", "&lt;x>" },
		{ "]]>", "]]>" },
		{ "\"", "&quot;" },
		{ "'", "'" },
		{ "it's \"q\"", "it's &quot;q&quot;" },
		{ "a\tb\nc\rd", "a&#9;b&#10;c&#13;d" },
		{ "caf\xc3\xa9", "caf\xc3\xa9" },
	};

	check_escape(xmlw_attr, cases, NELEM(cases));
}

/* The escapers scan sixteen bytes at a time: every position of a block. */
static void
test_escape_every_position(void **state)
{
	static const char special[] = "\t\n\r&<>\"'\xc3";
	char in[48], want[48 * 6 + 1];
	const char *rep;
	struct buf b;
	size_t i, pos, n;
	int attr;

	for (attr = 0; attr < 2; attr++)
		for (i = 0; i < sizeof(special) - 1; i++)
			for (pos = 0; pos < sizeof(in); pos++) {
				memset(in, 'a', sizeof(in));
				in[pos] = special[i];
				switch (special[i]) {
				case '\t': rep = "&#9;"; break;
				case '\n': rep = "&#10;"; break;
				case '\r': rep = "&#13;"; break;
				case '&': rep = "&amp;"; break;
				case '<': rep = "&lt;"; break;
				case '>': rep = attr ? ">" : "&gt;"; break;
				case '"': rep = attr ? "&quot;" : "\""; break;
				case '\'': rep = "'"; break;
				default: rep = "\xc3"; break;
				}
				n = (size_t)snprintf(want, sizeof(want),
				    "%.*s%s%.*s", (int)pos, in, rep,
				    (int)(sizeof(in) - pos - 1), in + pos + 1);
				buf_init(&b);
				(attr ? xmlw_attr : xmlw_text)(&b, in, sizeof(in));
				assert_int_equal(b.len, n);
				assert_memory_equal(b.data, want, n);
				buf_free(&b);
			}
}

/* The escapers append, and honour the length rather than a NUL. */
static void
test_escape_appends(void **state)
{
	struct buf b;

	buf_init(&b);
	buf_puts(&b, "x=");
	xmlw_text(&b, "a<b&c", 3);
	xmlw_attr(&b, "\"q\"zzz", 3);
	assert_int_equal(b.len, strlen("x=a&lt;b&quot;q&quot;"));
	assert_string_equal(buf_cstr(&b), "x=a&lt;b&quot;q&quot;");
	buf_free(&b);
}

static void
test_attr_pair(void **state)
{
	struct buf b;

	buf_init(&b);
	buf_puts(&b, "<x");
	xmlw_attr_pair(&b, "to", "a@b");
	xmlw_attr_pair(&b, "reason", "\"<&>\"\n");
	xmlw_attr_pair(&b, "empty", "");
	assert_string_equal(buf_cstr(&b),
	    "<x to=\"a@b\" reason=\"&quot;&lt;&amp;>&quot;&#10;\" empty=\"\"");
	buf_free(&b);
}

/* Expat drives the serializer as the daemon does: names are triplets. */
static void XMLCALL
on_start(void *arg, const char *name, const char **attrs)
{
	assert_int_equal(xmlw_start(arg, name, attrs), 0);
}

static void XMLCALL
on_ns(void *arg, const char *prefix, const char *uri)
{
	assert_int_equal(xmlw_declare(arg, prefix, uri), 0);
}

static void XMLCALL
on_end(void *arg, const char *name)
{
	(void)name;
	xmlw_end(arg);
}

static void XMLCALL
on_chars(void *arg, const char *s, int len)
{
	xmlw_chars(arg, s, (size_t)len);
}

static void
serialize(struct xmlw *w, const char *doc, const char *default_ns,
    struct buf *out)
{
	XML_Parser p;

	p = XML_ParserCreateNS("UTF-8", XMLW_NSSEP);
	assert_non_null(p);
	XML_SetReturnNSTriplet(p, 1);
	XML_SetUserData(p, w);
	XML_SetElementHandler(p, on_start, on_end);
	XML_SetCharacterDataHandler(p, on_chars);
	XML_SetStartNamespaceDeclHandler(p, on_ns);
	xmlw_begin(w, out, default_ns);
	if (XML_Parse(p, doc, (int)strlen(doc), XML_TRUE) != XML_STATUS_OK)
		fail_msg("test input does not parse: %s: %s", doc,
		    XML_ErrorString(XML_GetErrorCode(p)));
	XML_ParserFree(p);
	assert_int_equal(w->depth, 0);
	assert_int_equal(w->open, 0);
}

struct ser_case {
	const char	*default_ns;
	const char	*in;
	const char	*out;
};

static const struct ser_case ser_cases[] = {
	/* The server's stanzas: the top element declares jabber:client. */
	{ NULL,
	  "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>",
	  "<message xmlns=\"jabber:client\" to=\"a@b\"><body>hi</body></message>" },
	/* The clients' stanzas: the server's stream already declares it. */
	{ NS_CLIENT,
	  "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>",
	  "<message to=\"a@b\"><body>hi</body></message>" },
	{ NULL, "<a/>", "<a/>" },
	{ NULL, "<a></a>", "<a/>" },
	{ NULL, "<a xmlns=''/>", "<a/>" },
	{ NS_CLIENT, "<a xmlns=''><b/></a>", "<a xmlns=\"\"><b/></a>" },
	{ NS_CLIENT, "<a xmlns='jabber:client'><b xmlns=''><c/></b></a>",
	  "<a><b xmlns=\"\"><c/></b></a>" },
	/* Default namespace switching and switching back. */
	{ NULL, "<a xmlns='urn:a'><b xmlns='urn:b'><c xmlns='urn:a'/></b>"
	  "<d/></a>",
	  "<a xmlns=\"urn:a\"><b xmlns=\"urn:b\"><c xmlns=\"urn:a\"/></b>"
	  "<d/></a>" },
	/* A declaration is not leaked to a sibling. */
	{ NULL, "<a><b xmlns='urn:b'/><c xmlns='urn:b'/><d/></a>",
	  "<a><b xmlns=\"urn:b\"/><c xmlns=\"urn:b\"/><d/></a>" },
	/*
	 * The source's declarations stay in scope, used or not (a qualified
	 * name in text keeps its meaning); redundant ones go.
	 */
	{ NULL, "<a xmlns:u='urn:unused'><b/></a>",
	  "<a xmlns:u=\"urn:unused\"><b/></a>" },
	{ NULL, "<a><f xmlns:s='urn:soap'>s:Client</f></a>",
	  "<a><f xmlns:s=\"urn:soap\">s:Client</f></a>" },
	{ NULL, "<a xmlns='urn:a'><b xmlns='urn:a'><c xmlns='urn:a'/></b></a>",
	  "<a xmlns=\"urn:a\"><b><c/></b></a>" },
	{ NULL, "<p:a xmlns:p='urn:p'><p:b xmlns:p='urn:p'/></p:a>",
	  "<p:a xmlns:p=\"urn:p\"><p:b/></p:a>" },
	/* Prefixes are kept, declared where the source declared them. */
	{ NULL, "<p:a xmlns:p='urn:p'><p:b/><c/></p:a>",
	  "<p:a xmlns:p=\"urn:p\"><p:b/><c/></p:a>" },
	{ NULL, "<a xmlns:p='urn:p'><b><p:c/></b><p:d/></a>",
	  "<a xmlns:p=\"urn:p\"><b><p:c/></b><p:d/></a>" },
	{ NULL, "<p:a xmlns:p='urn:1'><p:b xmlns:p='urn:2'><p:c/></p:b>"
	  "<p:d/></p:a>",
	  "<p:a xmlns:p=\"urn:1\"><p:b xmlns:p=\"urn:2\"><p:c/></p:b>"
	  "<p:d/></p:a>" },
	/* Attributes: prefixed ones get a declaration, others never. */
	{ NULL, "<a xmlns:p='urn:p' p:x='1' y='2'/>",
	  "<a xmlns:p=\"urn:p\" p:x=\"1\" y=\"2\"/>" },
	{ NULL, "<p:a xmlns:p='urn:p' p:x='1'/>",
	  "<p:a xmlns:p=\"urn:p\" p:x=\"1\"/>" },
	{ NULL, "<a xmlns='urn:a' xmlns:q='urn:q' x='1' q:y='2'><b q:z='3'/></a>",
	  "<a xmlns=\"urn:a\" xmlns:q=\"urn:q\" x=\"1\" q:y=\"2\"><b q:z=\"3\"/></a>" },
	/* Same prefix, another namespace below. */
	{ NULL, "<a xmlns:p='urn:1' p:x='1'><b xmlns:p='urn:2' p:x='2'/></a>",
	  "<a xmlns:p=\"urn:1\" p:x=\"1\"><b xmlns:p=\"urn:2\" p:x=\"2\"/></a>" },
	/* The xml prefix is never declared. */
	{ NULL, "<a xml:lang='en'><b xml:lang='fr'>x</b></a>",
	  "<a xml:lang=\"en\"><b xml:lang=\"fr\">x</b></a>" },
	{ NULL, "<a xmlns:xml='http://www.w3.org/XML/1998/namespace' "
	  "xml:space='preserve'/>",
	  "<a xml:space=\"preserve\"/>" },
	/* Escaping in text and attribute values. */
	{ NULL, "<a b='&quot;\"&apos;&lt;&gt;&amp;&#9;&#10;&#13;'>"
	  "&lt;&gt;&amp;\"'&#9;&#10;&#13;]]&gt;</a>",
	  "<a b=\"&quot;&quot;'&lt;>&amp;&#9;&#10;&#13;\">"
	  "&lt;&gt;&amp;\"'&#9;&#10;&#13;]]&gt;</a>" },
	/* Raw whitespace in an attribute is normalized by the reader. */
	{ NULL, "<a b='x\ty\nz\r\nw'/>", "<a b=\"x y z w\"/>" },
	/* Raw line breaks in text: CRLF reads as LF. */
	{ NULL, "<a>1\n2\r\n3\r4\t5</a>", "<a>1&#10;2&#10;3&#10;4&#9;5</a>" },
	{ NULL, "<a><![CDATA[<b>&]]]]><![CDATA[>]]></a>",
	  "<a>&lt;b&gt;&amp;]]&gt;</a>" },
	{ NULL, "<a xmlns='urn:a&amp;b&quot;&#10;'/>",
	  "<a xmlns=\"urn:a&amp;b&quot;&#10;\"/>" },
	/* Mixed content. */
	{ NULL, "<a>x<b/>y<c>z</c>w</a>", "<a>x<b/>y<c>z</c>w</a>" },
	/* Unicode in names, values and text. */
	{ NULL, "<\xc3\xa9l\xc3\xa9ment a\xc3\xaf='\xe6\x97\xa5'>"
	  "\xf0\x9f\x98\x80&#x1F600;&#233;</\xc3\xa9l\xc3\xa9ment>",
	  "<\xc3\xa9l\xc3\xa9ment a\xc3\xaf=\"\xe6\x97\xa5\">"
	  "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xc3\xa9</\xc3\xa9l\xc3\xa9ment>" },
};

static void
test_serialize(void **state)
{
	struct xmlw w;
	struct buf out;
	size_t i;

	xmlw_init(&w);
	buf_init(&out);
	for (i = 0; i < NELEM(ser_cases); i++) {
		out.len = 0;
		serialize(&w, ser_cases[i].in, ser_cases[i].default_ns, &out);
		if (strcmp(buf_cstr(&out), ser_cases[i].out) != 0)
			fail_msg("case %zu: %s\n got  %s\n want %s", i,
			    ser_cases[i].in, buf_cstr(&out), ser_cases[i].out);
	}
	buf_free(&out);
	xmlw_free(&w);
}

/* One writer, many trees: no binding survives into the next tree. */
static void
test_reuse(void **state)
{
	struct xmlw w;
	struct buf out;

	xmlw_init(&w);
	buf_init(&out);
	serialize(&w, "<p:a xmlns:p='urn:1' xmlns='urn:d'><b/></p:a>", NULL,
	    &out);
	assert_string_equal(buf_cstr(&out),
	    "<p:a xmlns:p=\"urn:1\" xmlns=\"urn:d\"><b/></p:a>");
	out.len = 0;
	serialize(&w, "<p:a xmlns:p='urn:2'><b/></p:a>", NULL, &out);
	assert_string_equal(buf_cstr(&out),
	    "<p:a xmlns:p=\"urn:2\"><b/></p:a>");
	out.len = 0;
	serialize(&w, "<a xmlns='jabber:client'/>", NS_CLIENT, &out);
	assert_string_equal(buf_cstr(&out), "<a/>");
	xmlw_free(&w);
	/* Freed writers can be set up again. */
	xmlw_init(&w);
	out.len = 0;
	serialize(&w, "<a xmlns='urn:x'/>", NULL, &out);
	assert_string_equal(buf_cstr(&out), "<a xmlns=\"urn:x\"/>");
	xmlw_free(&w);
	buf_free(&out);
}

/* Hand-made names, as XML_SetReturnNSTriplet gives them. */
static void
test_triplets(void **state)
{
	static const char *none[] = { NULL };
	static const char *attrs[] = {
		"urn:q\x01" "x\x01q", "1",
		"plain", "2",
		"http://www.w3.org/XML/1998/namespace\x01lang\x01xml", "en",
		NULL,
	};
	struct xmlw w;
	struct buf out;

	xmlw_init(&w);
	buf_init(&out);
	xmlw_begin(&w, &out, NULL);
	xmlw_start(&w, "urn:p\x01" "a\x01p", attrs);
	xmlw_start(&w, "urn:d\x01" "b", none);
	xmlw_chars(&w, "t", 1);
	xmlw_end(&w);
	xmlw_start(&w, "c", none);
	xmlw_end(&w);
	xmlw_end(&w);
	/* Bindings from outside the tree go once on its top element. */
	assert_string_equal(buf_cstr(&out),
	    "<p:a xmlns:p=\"urn:p\" xmlns:q=\"urn:q\" q:x=\"1\" plain=\"2\" "
	    "xml:lang=\"en\" xmlns=\"urn:d\"><b>t</b><c xmlns=\"\"/></p:a>");
	xmlw_free(&w);
	buf_free(&out);
}

/*
 * Deep nesting, each level in a namespace of its own: the bindings array
 * and the names buffer grow (and move) while bindings are being looked up.
 */
static void
test_deep(void **state)
{
	enum { DEPTH = 120 };
	struct buf in, out;
	struct xmlw w;
	int i;

	buf_init(&in);
	buf_init(&out);
	for (i = 0; i < DEPTH; i++)
		buf_printf(&in, "<p%d:e xmlns:p%d='urn:level:%d'"
		    " xmlns='urn:default:%d' p%d:a='%d'><x/>",
		    i, i, i, i % 3, i, i);
	for (i = DEPTH - 1; i >= 0; i--)
		buf_printf(&in, "</p%d:e>", i);
	xmlw_init(&w);
	serialize(&w, buf_cstr(&in), NULL, &out);
	/* Every level keeps the declarations it was written with. */
	for (i = 0; i < DEPTH; i++) {
		char tag[128];

		snprintf(tag, sizeof(tag), "<p%d:e xmlns:p%d=\"urn:level:%d\" "
		    "xmlns=\"urn:default:%d\" p%d:a=\"%d\"><x/>", i, i, i,
		    i % 3, i, i);
		assert_non_null(strstr(buf_cstr(&out), tag));
	}
	assert_non_null(strstr(buf_cstr(&out), "</p0:e>"));
	assert_int_equal(w.depth, 0);
	xmlw_free(&w);
	buf_free(&in);
	buf_free(&out);
}

/* Hand-made names: `n' prefixed elements nested, each its own prefix. */
static int
nest_prefixes(struct xmlw *w, struct buf *out, int n, int declare)
{
	static const char *none[] = { NULL };
	char name[64], prefix[16], uri[32];
	int i, rc = 0;

	xmlw_begin(w, out, NULL);
	for (i = 0; i < n && rc == 0; i++) {
		snprintf(prefix, sizeof(prefix), "p%d", i);
		snprintf(uri, sizeof(uri), "urn:%d", i);
		snprintf(name, sizeof(name), "%s\x01" "e\x01%s", uri, prefix);
		if (declare)
			rc = xmlw_declare(w, prefix, uri);
		if (rc == 0)
			rc = xmlw_start(w, name, none);
	}
	return rc;
}

/*
 * Every name is looked up among the bindings in scope: they are bounded,
 * whether the source declared them or they come from outside the tree.
 */
static void
test_max_bindings(void **state)
{
	struct xmlw w;
	struct buf out;
	int declare;

	xmlw_init(&w);
	buf_init(&out);
	for (declare = 0; declare < 2; declare++) {
		out.len = 0;
		assert_int_equal(nest_prefixes(&w, &out, XMLW_MAX_BINDINGS,
		    declare), 0);
		out.len = 0;
		assert_int_equal(nest_prefixes(&w, &out,
		    XMLW_MAX_BINDINGS + 1, declare), -1);
	}
	xmlw_free(&w);
	buf_free(&out);
}

/*
 * Declarations the source did not write (bindings from outside the tree)
 * are bounded in bytes too: here each element needs a long namespace bound
 * afresh under the same prefix.
 */
static void
test_max_added(void **state)
{
	static const char *none[] = { NULL };
	struct buf name, out;
	struct xmlw w;
	int i, rc = 0;

	buf_init(&name);
	buf_init(&out);
	xmlw_init(&w);
	xmlw_begin(&w, &out, NULL);
	assert_int_equal(xmlw_start(&w, "top", none), 0);
	for (i = 0; i < 1000 && rc == 0; i++) {
		name.len = 0;
		buf_printf(&name, "urn:%d:%0999d\x01" "e\x01p", i % 2, 0);
		if ((rc = xmlw_start(&w, buf_cstr(&name), none)) == 0)
			xmlw_end(&w);
	}
	assert_int_equal(rc, -1);
	assert_true(out.len < XMLW_MAX_ADDED + 4096);
	xmlw_free(&w);
	buf_free(&name);
	buf_free(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_escape),
		cmocka_unit_test(test_attr_escape),
		cmocka_unit_test(test_escape_every_position),
		cmocka_unit_test(test_escape_appends),
		cmocka_unit_test(test_attr_pair),
		cmocka_unit_test(test_serialize),
		cmocka_unit_test(test_reuse),
		cmocka_unit_test(test_triplets),
		cmocka_unit_test(test_deep),
		cmocka_unit_test(test_max_bindings),
		cmocka_unit_test(test_max_added),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
