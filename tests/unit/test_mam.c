/*
 * mam.c: the queries a catch-up sends, the pages it follows, the lines it
 * relays (each the forwarded message alone, with a delay, in archive
 * order), its bound, and the set of ids already relayed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "mam.h"
#include "xnode.h"

#define MAXREC	16

struct rec {
	char		*sent[MAXREC];
	size_t		 nsent;
	char		*line[MAXREC];
	char		*id[MAXREC];
	size_t		 nline;
	int		 done;
	struct mam_result r;
	char		*last;
	char		*error;
};

static void
on_send(void *arg, const char *data, size_t len)
{
	struct rec *rec = arg;

	assert_true(rec->nsent < MAXREC);
	rec->sent[rec->nsent++] = xstrndup(data, len);
}

static void
on_relay(void *arg, const char *line, size_t len, const char *id)
{
	struct rec *rec = arg;

	assert_true(rec->nline < MAXREC);
	assert_true(len > 0 && line[len - 1] == '\n');
	assert_null(memchr(line, '\n', len - 1));
	rec->line[rec->nline] = xstrndup(line, len);
	rec->id[rec->nline++] = strdup(id);
}

static void
on_done(void *arg, const struct mam_result *r)
{
	struct rec *rec = arg;

	rec->done++;
	rec->r = *r;
	rec->last = r->last != NULL ? strdup(r->last) : NULL;
	rec->error = r->error != NULL ? strdup(r->error) : NULL;
}

static const struct mam_cb cb = { on_send, on_relay, on_done };

static void
rec_free(struct rec *rec)
{
	size_t i;

	for (i = 0; i < rec->nsent; i++)
		free(rec->sent[i]);
	for (i = 0; i < rec->nline; i++) {
		free(rec->line[i]);
		free(rec->id[i]);
	}
	free(rec->last);
	free(rec->error);
}

/* The queryid of the last query sent (also its iq id). */
static const char *
qid(const struct rec *rec, char out[64])
{
	const char *p = strstr(rec->sent[rec->nsent - 1], "queryid=\"");

	assert_non_null(p);
	p += strlen("queryid=\"");
	snprintf(out, 64, "%.*s", (int)strcspn(p, "\""), p);
	return out;
}

static int
result(struct mam *m, const char *queryid, const char *id,
    const char *from, const char *inner)
{
	struct buf b;
	int rc;

	buf_init(&b);
	buf_puts(&b, "<message xmlns=\"jabber:client\" to=\"bot@example.org/c\"");
	if (from != NULL)
		buf_printf(&b, " from=\"%s\"", from);
	buf_printf(&b, "><result xmlns=\"urn:xmpp:mam:2\" queryid=\"%s\" "
	    "id=\"%s\"><forwarded xmlns=\"urn:xmpp:forward:0\">%s"
	    "</forwarded></result></message>\n", queryid, id, inner);
	rc = mam_message(m, b.data, b.len);
	buf_free(&b);
	return rc;
}

#define DELAY(s)	"<delay xmlns=\"urn:xmpp:delay\" stamp=\"" s "\"/>"
#define MSG(body)	"<message xmlns=\"jabber:client\" from=\"peer@example.org/x\" " \
			"to=\"bot@example.org\" type=\"chat\"><body>" body \
			"</body></message>"

static int
fin(struct mam *m, const char *id, const char *from, const char *attrs,
    const char *last)
{
	struct buf b;
	struct xnode *iq;
	int rc;

	buf_init(&b);
	buf_printf(&b, "<iq xmlns=\"jabber:client\" type=\"result\" id=\"%s\"",
	    id);
	if (from != NULL)
		buf_printf(&b, " from=\"%s\"", from);
	buf_printf(&b, "><fin xmlns=\"urn:xmpp:mam:2\" %s><set xmlns=\""
	    NS_RSM "\">", attrs);
	if (last != NULL)
		buf_printf(&b, "<first>f</first><last>%s</last>", last);
	buf_puts(&b, "</set></fin></iq>");
	iq = xnode_parse(b.data, b.len);
	assert_non_null(iq);
	rc = mam_iq(m, iq);
	xnode_free(iq);
	buf_free(&b);
	return rc;
}

static void
test_learn_newest(void **state)
{
	struct rec rec = { 0 };
	struct mam *m = mam_new(NULL, NULL, 1000, &cb, &rec);
	char q[64];

	mam_start(m, NULL);
	assert_true(mam_busy(m));
	assert_int_equal(rec.nsent, 1);
	assert_non_null(strstr(rec.sent[0], "<iq type=\"set\" id=\""));
	assert_null(strstr(rec.sent[0], " to="));
	assert_non_null(strstr(rec.sent[0], "<query xmlns=\"urn:xmpp:mam:2\""));
	assert_non_null(strstr(rec.sent[0], "<set xmlns=\"" NS_RSM "\">"
	    "<max>1</max><before/></set>"));
	qid(&rec, q);
	assert_int_equal(result(m, q, "newest", NULL, DELAY("2026-01-01T00:00:00Z")
	    MSG("old")), 1);
	assert_int_equal(fin(m, q, NULL, "", "newest"), 1);
	assert_int_equal(rec.done, 1);
	assert_false(mam_busy(m));
	assert_int_equal(rec.nline, 0);		/* learnt, not relayed */
	assert_string_equal(rec.last, "newest");
	assert_int_equal(rec.r.complete, 1);
	mam_free(m);
	rec_free(&rec);
}

static void
test_pages_in_order_with_delay(void **state)
{
	struct rec rec = { 0 };
	struct mam *m = mam_new(NULL, NULL, 1000, &cb, &rec);
	struct xnode *n;
	char q[64], q2[64];

	mam_start(m, "a0");
	assert_non_null(strstr(rec.sent[0], "<max>100</max><after>a0</after>"));
	qid(&rec, q);
	/* Not ours: another query id, or not a message with a result. */
	assert_int_equal(result(m, "other", "x", NULL, DELAY("2026-01-01T00:00:00Z")
	    MSG("x")), 0);
	assert_int_equal(mam_message(m, "<message xmlns=\"jabber:client\"/>",
	    33), 0);
	assert_int_equal(result(m, q, "a1", NULL,
	    DELAY("2026-01-01T00:00:01Z") MSG("one&amp;&#10;")), 1);
	assert_int_equal(result(m, q, "a2", "bot@example.org",
	    DELAY("2026-01-01T00:00:02Z")
	    "<message xmlns=\"jabber:client\" to=\"bot@example.org\"><body>two"
	    "</body><delay xmlns=\"urn:xmpp:delay\" stamp=\"1999-01-01T00:00:00Z\"/>"
	    "</message>"), 1);
	assert_int_equal(rec.nline, 0);		/* held until complete */
	assert_int_equal(fin(m, "not-it", NULL, "", "a2"), 0);
	assert_int_equal(fin(m, q, NULL, "complete=\"false\"", "a2"), 1);
	assert_int_equal(rec.nsent, 2);
	assert_non_null(strstr(rec.sent[1], "<after>a2</after>"));
	qid(&rec, q2);
	assert_string_not_equal(q, q2);
	/* A late result of the first page is not this page's. */
	assert_int_equal(result(m, q, "a9", NULL, DELAY("2026-01-01T00:00:09Z")
	    MSG("late")), 0);
	assert_int_equal(result(m, q2, "a3", NULL,
	    MSG("three") DELAY("2026-01-01T00:00:03Z")), 1);
	assert_int_equal(fin(m, q2, NULL, "complete=\"true\"", "a3"), 1);
	assert_int_equal(rec.done, 1);
	assert_int_equal(rec.r.relayed, 3);
	assert_int_equal(rec.r.skipped, 0);
	assert_string_equal(rec.last, "a3");
	assert_int_equal(rec.nline, 3);
	assert_string_equal(rec.id[0], "a1");
	assert_string_equal(rec.id[1], "a2");
	assert_string_equal(rec.id[2], "a3");
	assert_string_equal(rec.line[0], "<message xmlns=\"jabber:client\" "
	    "from=\"peer@example.org/x\" to=\"bot@example.org\" type=\"chat\">"
	    "<body>one&amp;&#10;</body><delay xmlns=\"urn:xmpp:delay\" "
	    "stamp=\"2026-01-01T00:00:01Z\"/></message>\n");
	/* Its own delay is kept, no second one added. */
	assert_non_null(strstr(rec.line[1], "1999-01-01T00:00:00Z"));
	assert_null(strstr(rec.line[1], "2026-01-01T00:00:02Z"));
	/* A delay after the message in <forwarded> still counts. */
	assert_non_null(strstr(rec.line[2], "stamp=\"2026-01-01T00:00:03Z\""));
	n = xnode_parse(rec.line[2], strlen(rec.line[2]));
	assert_non_null(n);
	assert_true(xnode_is(n, "message", "jabber:client"));
	assert_non_null(xnode_child(n, "delay", NS_DELAY));
	xnode_free(n);
	mam_free(m);
	rec_free(&rec);
}

static void
test_bounded_most_recent(void **state)
{
	struct rec rec = { 0 };
	struct mam *m = mam_new(NULL, NULL, 2, &cb, &rec);
	char q[64];

	mam_start(m, "a0");
	assert_non_null(strstr(rec.sent[0], "<max>2</max>"));
	qid(&rec, q);
	result(m, q, "a1", NULL, DELAY("2026-01-01T00:00:01Z") MSG("1"));
	result(m, q, "a2", NULL, DELAY("2026-01-01T00:00:02Z") MSG("2"));
	fin(m, q, NULL, "", "a2");
	qid(&rec, q);
	result(m, q, "a3", NULL, DELAY("2026-01-01T00:00:03Z") MSG("3"));
	fin(m, q, NULL, "complete=\"true\"", "a3");
	assert_int_equal(rec.done, 1);
	assert_int_equal(rec.r.relayed, 2);
	assert_int_equal(rec.r.skipped, 1);
	assert_string_equal(rec.id[0], "a2");
	assert_string_equal(rec.id[1], "a3");
	mam_free(m);
	rec_free(&rec);
}

/* The account's archive holds what it sent too: not relayed, not counted. */
static void
test_sent_by_us_skipped(void **state)
{
	struct rec rec = { 0 };
	struct mam *m = mam_new(NULL, "bot@example.org", 1, &cb, &rec);
	char q[64];

	mam_start(m, "a0");
	qid(&rec, q);
	assert_int_equal(result(m, q, "a1", NULL, DELAY("2026-01-01T00:00:01Z")
	    "<message xmlns=\"jabber:client\" from=\"BOT@example.org/c\" "
	    "to=\"peer@example.org\"><body>mine</body></message>"), 1);
	assert_int_equal(result(m, q, "a2", NULL, DELAY("2026-01-01T00:00:02Z")
	    MSG("theirs")), 1);
	fin(m, q, NULL, "complete=\"true\"", "a2");
	assert_int_equal(rec.r.relayed, 1);
	assert_int_equal(rec.r.skipped, 0);
	assert_string_equal(rec.id[0], "a2");
	assert_string_equal(rec.last, "a2");
	mam_free(m);
	rec_free(&rec);
}

static void
test_room_archive_and_errors(void **state)
{
	struct rec rec = { 0 };
	struct mam *m = mam_new("ops@muc.example.org", NULL, 10, &cb, &rec);
	struct xnode *iq;
	char q[64], text[512];

	mam_start(m, "r1");
	assert_non_null(strstr(rec.sent[0], " to=\"ops@muc.example.org\""));
	qid(&rec, q);
	/* Results must come from the room. */
	assert_int_equal(result(m, q, "r2", "evil@example.org", DELAY("x")
	    MSG("x")), 0);
	assert_int_equal(result(m, q, "r2", NULL, DELAY("x") MSG("x")), 0);
	assert_int_equal(fin(m, q, "evil@example.org", "", NULL), 0);
	/* The id is gone from the archive: the newest are fetched. */
	snprintf(text, sizeof(text), "<iq xmlns=\"jabber:client\" type=\"error\" "
	    "id=\"%s\" from=\"ops@muc.example.org\"><error type=\"cancel\">"
	    "<item-not-found xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/>"
	    "</error></iq>", q);
	iq = xnode_parse(text, strlen(text));
	assert_int_equal(mam_iq(m, iq), 1);
	xnode_free(iq);
	assert_int_equal(rec.nsent, 2);
	assert_non_null(strstr(rec.sent[1], "<max>10</max><before/>"));
	qid(&rec, q);
	assert_int_equal(result(m, q, "r5", "OPS@muc.example.org",
	    DELAY("2026-01-01T00:00:05Z") MSG("5")), 1);
	/* Any other error ends it, with what was fetched relayed. */
	snprintf(text, sizeof(text), "<iq xmlns=\"jabber:client\" type=\"error\" "
	    "id=\"%s\" from=\"ops@muc.example.org\"><error type=\"wait\">"
	    "<resource-constraint xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/>"
	    "</error></iq>", q);
	iq = xnode_parse(text, strlen(text));
	assert_int_equal(mam_iq(m, iq), 1);
	xnode_free(iq);
	assert_int_equal(rec.done, 1);
	assert_int_equal(rec.r.relayed, 1);
	assert_int_equal(rec.r.complete, 0);
	assert_string_equal(rec.error, "resource-constraint");
	/* Idle: nothing is taken any more. */
	assert_int_equal(result(m, q, "r6", NULL, DELAY("x") MSG("x")), 0);
	mam_free(m);
	rec_free(&rec);
}

static void
test_abort_and_bad_results(void **state)
{
	struct rec rec = { 0 };
	struct mam *m = mam_new(NULL, NULL, 10, &cb, &rec);
	char q[64], big[400];

	mam_start(m, "a0");
	qid(&rec, q);
	/* No id, an id too long, not well-formed: not a result. */
	assert_int_equal(result(m, q, "", NULL, DELAY("x") MSG("x")), 0);
	memset(big, 'i', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(result(m, q, big, NULL, DELAY("x") MSG("x")), 0);
	assert_int_equal(mam_message(m, "<message><result", 16), 0);
	/* A result without a message is consumed but not relayed. */
	assert_int_equal(result(m, q, "a1", NULL, DELAY("x")), 1);
	result(m, q, "a2", NULL, DELAY("2026-01-01T00:00:02Z") MSG("2"));
	mam_abort(m);
	assert_false(mam_busy(m));
	assert_int_equal(fin(m, q, NULL, "complete=\"true\"", "a2"), 0);
	assert_int_equal(rec.done, 0);
	assert_int_equal(rec.nline, 0);
	mam_free(m);
	rec_free(&rec);
}

static void
test_seen(void **state)
{
	struct mam_seen *s = mam_seen_new(3);
	char id[16];
	int i;

	assert_int_equal(mam_seen_add(s, "a"), 0);
	assert_int_equal(mam_seen_add(s, "a"), 1);
	assert_int_equal(mam_seen_add(s, "b"), 0);
	assert_int_equal(mam_seen_add(s, "c"), 0);
	assert_int_equal(mam_seen_add(s, "d"), 0);	/* forgets "a" */
	assert_false(mam_seen_has(s, "a"));
	assert_true(mam_seen_has(s, "b"));
	assert_true(mam_seen_has(s, "d"));
	mam_seen_free(s);

	s = mam_seen_new(100);
	for (i = 0; i < 1000; i++) {
		snprintf(id, sizeof(id), "id%d", i);
		assert_int_equal(mam_seen_add(s, id), 0);
	}
	for (i = 0; i < 1000; i++) {
		snprintf(id, sizeof(id), "id%d", i);
		assert_int_equal(mam_seen_has(s, id), i >= 900);
	}
	mam_seen_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_learn_newest),
		cmocka_unit_test(test_pages_in_order_with_delay),
		cmocka_unit_test(test_bounded_most_recent),
		cmocka_unit_test(test_sent_by_us_skipped),
		cmocka_unit_test(test_room_archive_and_errors),
		cmocka_unit_test(test_abort_and_bad_results),
		cmocka_unit_test(test_seen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
