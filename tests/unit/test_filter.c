/*
 * The filter command (SPEC 4.5) and the line scanner it uses: every
 * attribute, their combinations, the defaults for a missing type or from,
 * bad commands, and lines as stream.c writes them (escaped values, both
 * kinds of namespace declarations on children).  A line's head is what the
 * stream's parser read of its start tag.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "filter.h"
#include "head.h"

#define ACCOUNT	"bot@example.org"

static const char MSG[] = "<message xmlns=\"jabber:client\" "
    "from=\"peer@example.org/phone\" to=\"bot@example.org/clawsd\" "
    "type=\"chat\" id=\"m&amp;1\"><body>hi &lt;b&gt;</body>"
    "<active xmlns=\"http://jabber.org/protocol/chatstates\"/></message>\n";
static const char NORMAL[] = "<message xmlns=\"jabber:client\" "
    "from=\"news.example.net\"><body>x</body></message>\n";
static const char PRES[] = "<presence xmlns=\"jabber:client\" "
    "from=\"peer@example.org/phone\"><c xmlns=\"http://jabber.org/protocol/"
    "caps\" ver=\"a&gt;b\"/></presence>\n";
static const char IQ[] = "<iq xmlns=\"jabber:client\" type=\"get\" "
    "id=\"q1\" xmlns:v=\"jabber:iq:version\"><v:query/></iq>\n";
static const char ROSTER[] = "<iq xmlns=\"jabber:client\" type=\"set\" "
    "id=\"push\"><query xmlns=\"jabber:iq:roster\"><item jid=\"x@y\" "
    "xmlns=\"urn:other\"/></query></iq>\n";
static const char OTHER[] = "<x xmlns=\"urn:elsewhere\" type=\"chat\"/>\n";

struct line {
	const char	*xml;
	enum head_kind	 kind;
	const char	*type, *id, *from;
};

static const struct line L_MSG = { MSG, HEAD_MESSAGE, "chat", "m&1",
    "peer@example.org/phone" };
static const struct line L_NORMAL = { NORMAL, HEAD_MESSAGE, NULL, NULL,
    "news.example.net" };
static const struct line L_PRES = { PRES, HEAD_PRESENCE, NULL, NULL,
    "peer@example.org/phone" };
static const struct line L_IQ = { IQ, HEAD_IQ, "get", "q1", NULL };
static const struct line L_ROSTER = { ROSTER, HEAD_IQ, "set", "push", NULL };
static const struct line L_OTHER = { OTHER, HEAD_OTHER, "chat", NULL, NULL };

static struct head
head_of(const struct line *l)
{
	struct head h;

	h.line = l->xml;
	h.len = strlen(l->xml);
	h.kind = l->kind;
	h.type = l->type;
	h.id = l->id;
	h.from = l->from;
	return h;
}

static int
matches(const char **attrs, const struct line *l)
{
	struct filter *f;
	struct head h = head_of(l);
	const char *err = NULL;
	int r;

	f = filter_parse(attrs, &err);
	assert_non_null(f);
	r = filter_match(f, &h, ACCOUNT);
	filter_free(f);
	return r;
}

#define M(line, ...)	matches((const char *[]){ __VA_ARGS__, NULL }, &L_##line)

static void
test_child_namespaces(void **state)
{
	struct head h;

	h = head_of(&L_MSG);
	assert_true(head_child_ns(&h, "http://jabber.org/protocol/chatstates"));
	assert_true(head_child_ns(&h, "jabber:client"));	/* <body> */
	assert_false(head_child_ns(&h, "urn:nowhere"));
	h = head_of(&L_IQ);
	assert_true(head_child_ns(&h, "jabber:iq:version"));	/* prefixed */
	assert_false(head_child_ns(&h, "jabber:client"));
	/* A grandchild's namespace is not a child's. */
	h = head_of(&L_ROSTER);
	assert_true(head_child_ns(&h, "jabber:iq:roster"));
	assert_false(head_child_ns(&h, "urn:other"));
	h = head_of(&L_OTHER);
	assert_false(head_child_ns(&h, "urn:elsewhere"));
	/* A namespace written with a reference is compared unescaped. */
	h.line = "<x xmlns=\"jabber:client\"><y xmlns=\"urn:a&amp;b\"/></x>";
	h.len = strlen(h.line);
	assert_true(head_child_ns(&h, "urn:a&b"));
	assert_false(head_child_ns(&h, "urn:a&amp;b"));
	/* Not a start tag: nothing. */
	h.line = "<a b='1'";
	h.len = strlen(h.line);
	assert_false(head_child_ns(&h, "urn:a"));
	h.line = "<a b=\"x>\"";
	h.len = strlen(h.line);
	assert_false(head_child_ns(&h, "urn:a"));
}

static void
test_head_attr(void **state)
{
	static const char raw[] = "<iq  type = 'get'\n id='a\"b' to=\"x\">";
	struct head_val v;

	assert_int_equal(head_attr(raw, strlen(raw), "id", &v), 0);
	assert_int_equal(v.len, 3);
	assert_memory_equal(v.p, "a\"b", 3);
	assert_int_equal(head_attr(raw, strlen(raw), "type", &v), 0);
	assert_memory_equal(v.p, "get", 3);
	assert_int_equal(head_attr(raw, strlen(raw), "from", &v), -1);
}

static void
test_stanzas(void **state)
{
	assert_true(M(MSG, "stanzas", "message"));
	assert_false(M(MSG, "stanzas", "presence iq"));
	assert_true(M(PRES, "stanzas", " presence\tiq "));
	assert_true(M(IQ, "stanzas", "iq"));
	/* Empty: none at all. */
	assert_false(M(MSG, "stanzas", ""));
	assert_false(M(IQ, "stanzas", ""));
	/* Not a stanza: only a filter without `stanzas' lets it through. */
	assert_false(M(OTHER, "stanzas", "message presence iq"));
	assert_true(M(OTHER, "from", ACCOUNT));
}

static void
test_types(void **state)
{
	assert_true(M(MSG, "types", "chat"));
	assert_false(M(MSG, "types", "normal groupchat"));
	/* A message without type is normal, a presence available. */
	assert_true(M(NORMAL, "types", "normal"));
	assert_false(M(NORMAL, "types", "chat"));
	assert_true(M(PRES, "types", "available"));
	assert_false(M(PRES, "types", "unavailable"));
	assert_true(M(IQ, "types", "get set"));
	assert_false(M(IQ, "types", ""));
}

static void
test_from(void **state)
{
	/* Full JID, bare JID, domain. */
	assert_true(M(MSG, "from", "peer@example.org/phone"));
	assert_false(M(MSG, "from", "peer@example.org/desk"));
	assert_true(M(MSG, "from", "peer@example.org"));
	assert_false(M(MSG, "from", "other@example.org"));
	assert_true(M(MSG, "from", "example.org"));
	assert_true(M(MSG, "from", "EXAMPLE.org"));
	assert_false(M(MSG, "from", "org"));
	assert_true(M(NORMAL, "from", "news.example.net"));
	assert_false(M(NORMAL, "from", "peer@news.example.net"));
	/* No from: the account's bare JID. */
	assert_true(M(IQ, "from", ACCOUNT));
	assert_true(M(IQ, "from", "example.org"));
	assert_false(M(IQ, "from", ACCOUNT "/clawsd"));
	assert_true(M(MSG, "from", "a@b peer@example.org c@d"));
}

static void
test_with(void **state)
{
	assert_true(M(MSG, "with", "http://jabber.org/protocol/chatstates"));
	assert_false(M(MSG, "with", "urn:xmpp:receipts"));
	assert_true(M(MSG, "with", "urn:xmpp:receipts jabber:client"));
	assert_true(M(PRES, "with", "http://jabber.org/protocol/caps"));
	assert_true(M(IQ, "with", "jabber:iq:version"));
	assert_false(M(ROSTER, "with", "urn:other"));
}

static void
test_combinations(void **state)
{
	/* Every attribute given must match. */
	assert_true(M(MSG, "stanzas", "message", "types", "chat", "from",
	    "peer@example.org", "with",
	    "http://jabber.org/protocol/chatstates"));
	assert_false(M(MSG, "stanzas", "message", "types", "chat", "from",
	    "peer@example.org", "with", "urn:xmpp:receipts"));
	assert_false(M(MSG, "stanzas", "message", "types", "headline"));
	assert_false(M(PRES, "stanzas", "message", "from", "example.org"));
	assert_true(M(PRES, "stanzas", "message presence", "from",
	    "example.org"));
}

static void
test_everything(void **state)
{
	const char *none[] = { NULL };

	assert_true(matches(none, &L_MSG));
	assert_true(matches(none, &L_OTHER));
}

static void
bad(const char **attrs)
{
	const char *err = NULL;

	assert_null(filter_parse(attrs, &err));
	assert_non_null(err);
}

#define BAD(...)	bad((const char *[]){ __VA_ARGS__, NULL })

static void
test_bad_commands(void **state)
{
	static char many[FILTER_MAX_VALUES * 3 + 8], big[FILTER_MAX_VALUE + 2];
	size_t i;

	BAD("stanzas", "message chat");
	BAD("kinds", "message");
	BAD("types", "chat", "types", "normal");
	BAD("from", "@example.org");
	BAD("from", "peer@");
	BAD("from", "peer@example.org/");
	for (i = 0; i <= FILTER_MAX_VALUES; i++)
		strcat(many, "a ");
	BAD("types", many);
	memset(big, 'x', sizeof(big) - 1);
	BAD("with", big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_child_namespaces),
		cmocka_unit_test(test_head_attr),
		cmocka_unit_test(test_stanzas),
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_from),
		cmocka_unit_test(test_with),
		cmocka_unit_test(test_combinations),
		cmocka_unit_test(test_everything),
		cmocka_unit_test(test_bad_commands),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
