/*
 * rooms.c: what it sends and says for joins, nickname conflicts, kicks,
 * bans, self-pings, resumed and new sessions and reloads, with the time
 * given by the test.
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
#include "rooms.h"
#include "xnode.h"

#define MAXREC	32
#define OPS	"ops@muc.example.org"
#define DEV	"dev@muc.example.org"

struct rec {
	char	*sent[MAXREC];
	size_t	 nsent;
	char	*status[MAXREC];
	size_t	 nstatus;
};

static void
on_send(void *arg, const char *data, size_t len)
{
	struct rec *rec = arg;

	assert_true(rec->nsent < MAXREC);
	rec->sent[rec->nsent++] = xstrndup(data, len);
}

static void
on_status(void *arg, const char *line, size_t len)
{
	struct rec *rec = arg;

	assert_true(rec->nstatus < MAXREC);
	rec->status[rec->nstatus++] = xstrndup(line, len);
}

static const struct rooms_cb cb = { on_send, on_status, NULL, NULL };
static const struct rooms_timing timing = { 60000, 10000, 3000, 12000 };

static void
rec_clear(struct rec *rec)
{
	size_t i;

	for (i = 0; i < rec->nsent; i++)
		free(rec->sent[i]);
	for (i = 0; i < rec->nstatus; i++)
		free(rec->status[i]);
	rec->nsent = rec->nstatus = 0;
}

static struct conf_room two[] = {
	{ OPS, "bot", NULL, 1 },
	{ DEV, "bot", "s3cret&", 2 },
};

static int
stanza(struct rooms *rs, const char *from, const char *xml, uint64_t now)
{
	return rooms_stanza(rs, from, xml, strlen(xml), now, 1767225600);
}

static void
self_presence(struct rooms *rs, const char *room, const char *nick,
    const char *type, const char *codes, uint64_t now)
{
	char from[128], xml[1024];

	snprintf(from, sizeof(from), "%s/%s", room, nick);
	snprintf(xml, sizeof(xml), "<presence xmlns=\"jabber:client\" "
	    "from=\"%s\"%s%s%s><x xmlns=\"" NS_MUC_USER "\"><item "
	    "affiliation=\"none\" role=\"participant\"/>%s</x></presence>",
	    from, type ? " type=\"" : "", type ? type : "", type ? "\"" : "",
	    codes);
	assert_int_equal(stanza(rs, from, xml, now), 0);
}

static int
iq_answer(struct rooms *rs, const char *sent, const char *cond, uint64_t now)
{
	char id[64], to[128], xml[1024];
	const char *p;
	struct xnode *iq;
	int rc;

	p = strstr(sent, " id=\"") + 5;
	snprintf(id, sizeof(id), "%.*s", (int)strcspn(p, "\""), p);
	p = strstr(sent, " to=\"") + 5;
	snprintf(to, sizeof(to), "%.*s", (int)strcspn(p, "\""), p);
	if (cond == NULL)
		snprintf(xml, sizeof(xml), "<iq xmlns=\"jabber:client\" "
		    "type=\"result\" id=\"%s\" from=\"%s\"/>", id, to);
	else
		snprintf(xml, sizeof(xml), "<iq xmlns=\"jabber:client\" "
		    "type=\"error\" id=\"%s\" from=\"%s\"><error type=\"cancel\">"
		    "<%s xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/></error>"
		    "</iq>", id, to, cond);
	iq = xnode_parse(xml, strlen(xml));
	assert_non_null(iq);
	rc = rooms_iq(rs, iq, now);
	xnode_free(iq);
	return rc;
}

static void
test_join_after_new_session_only(void **state)
{
	struct rec rec = { 0 };
	struct rooms *rs = rooms_new(&cb, &rec);
	struct buf b;

	rooms_configure(rs, two, 2, &timing);
	assert_int_equal(rec.nsent, 0);		/* offline */
	rooms_online(rs, 0, 1000);
	assert_int_equal(rec.nsent, 2);
	assert_non_null(strstr(rec.sent[0], "<presence to=\"" OPS "/bot\""));
	assert_non_null(strstr(rec.sent[0], "<x xmlns=\"" NS_MUC "\">"
	    "<history maxstanzas=\"0\"/></x></presence>"));
	assert_non_null(strstr(rec.sent[1], "<password>s3cret&amp;</password>"));
	self_presence(rs, OPS, "bot", NULL, "<status code=\"110\"/>", 1100);
	assert_int_equal(rec.nstatus, 1);
	assert_string_equal(rec.status[0], "<joined xmlns=\"urn:x-clawsd\" "
	    "room=\"" OPS "\" nick=\"bot\"/>\n");
	/* Another occupant's presence is no join of ours. */
	self_presence(rs, DEV, "alice", NULL, "", 1100);
	assert_int_equal(rec.nstatus, 1);
	buf_init(&b);
	rooms_status(rs, &b);
	assert_string_equal(buf_cstr(&b), "<room jid=\"" OPS "\" nick=\"bot\" "
	    "joined=\"yes\"/><room jid=\"" DEV "\" nick=\"bot\" "
	    "joined=\"no\"/>");
	buf_free(&b);

	/* A room message: relayed, and the next join asks since then. */
	assert_int_equal(stanza(rs, OPS "/alice", "<message xmlns=\"jabber:"
	    "client\" type=\"groupchat\" from=\"" OPS "/alice\"><body>hi</body>"
	    "<stanza-id xmlns=\"urn:xmpp:sid:0\" by=\"" OPS "\" id=\"s1\"/>"
	    "</message>", 1200), 0);
	rec_clear(&rec);
	rooms_offline(rs);
	buf_init(&b);
	rooms_status(rs, &b);
	assert_non_null(strstr(buf_cstr(&b), "joined=\"no\"/><room"));
	buf_free(&b);
	rooms_online(rs, 1, 2000);		/* resumed: no second join */
	assert_int_equal(rec.nsent, 1);		/* only DEV, still joining */
	assert_non_null(strstr(rec.sent[0], DEV));
	rooms_offline(rs);
	rooms_online(rs, 0, 3000);		/* a new session */
	assert_int_equal(rec.nsent, 3);
	assert_non_null(strstr(rec.sent[1], "<history since=\""
	    "2026-01-01T00:00:00Z\"/>"));
	/* The history sends the last message again: not relayed twice. */
	assert_int_equal(stanza(rs, OPS "/alice", "<message xmlns=\"jabber:"
	    "client\" type=\"groupchat\" from=\"" OPS "/alice\"><body>hi</body>"
	    "<stanza-id xmlns=\"urn:xmpp:sid:0\" by=\"" OPS "\" id=\"s1\"/>"
	    "</message>", 3100), 1);
	rooms_free(rs);
	rec_clear(&rec);
}

static void
test_nickname_conflict(void **state)
{
	struct rec rec = { 0 };
	struct rooms *rs = rooms_new(&cb, &rec);
	const char *err = "<presence xmlns=\"jabber:client\" type=\"error\" "
	    "from=\"" OPS "/x\"><error type=\"cancel\"><conflict xmlns=\""
	    "urn:ietf:params:xml:ns:xmpp-stanzas\"/></error></presence>";
	int i;

	rooms_configure(rs, two, 1, &timing);
	rooms_online(rs, 0, 0);
	for (i = 1; i <= ROOMS_NICK_TRIES; i++) {
		assert_int_equal(stanza(rs, OPS "/bot", err, 10), 0);
		assert_int_equal(rec.nsent, (size_t)i + 1);
	}
	assert_non_null(strstr(rec.sent[1], "to=\"" OPS "/bot_\""));
	assert_non_null(strstr(rec.sent[3], "to=\"" OPS "/bot___\""));
	/* Out of tries: backoff, then the configured nickname again. */
	assert_int_equal(stanza(rs, OPS "/bot", err, 10), 0);
	assert_int_equal(rec.nsent, 4);
	assert_int_equal(rooms_next(rs), 10 + 3000);
	rooms_tick(rs, 3009);
	assert_int_equal(rec.nsent, 4);
	rooms_tick(rs, 3010);
	assert_int_equal(rec.nsent, 5);
	assert_non_null(strstr(rec.sent[4], "to=\"" OPS "/bot\""));
	self_presence(rs, OPS, "bot", NULL, "<status code=\"110\"/>", 3020);
	assert_int_equal(rec.nstatus, 1);
	rooms_free(rs);
	rec_clear(&rec);
}

static void
test_kick_ban(void **state)
{
	struct rec rec = { 0 };
	struct rooms *rs = rooms_new(&cb, &rec);

	rooms_configure(rs, two, 2, &timing);
	rooms_online(rs, 0, 0);
	self_presence(rs, OPS, "bot", NULL, "<status code=\"110\"/>", 10);
	self_presence(rs, DEV, "bot", NULL, "<status code=\"110\"/>", 10);
	rec_clear(&rec);
	self_presence(rs, OPS, "bot", "unavailable",
	    "<status code=\"307\"/><status code=\"110\"/>", 100);
	assert_int_equal(rec.nstatus, 1);
	assert_string_equal(rec.status[0], "<left xmlns=\"urn:x-clawsd\" "
	    "room=\"" OPS "\" reason=\"kicked\"/>\n");
	self_presence(rs, DEV, "bot", "unavailable",
	    "<status code=\"301\"/><status code=\"110\"/>", 100);
	assert_string_equal(rec.status[1], "<left xmlns=\"urn:x-clawsd\" "
	    "room=\"" DEV "\" reason=\"banned\"/>\n");
	assert_int_equal(rooms_next(rs), 3100);
	rooms_tick(rs, 3100);
	assert_int_equal(rec.nsent, 1);		/* the kicked one only */
	assert_non_null(strstr(rec.sent[0], OPS "/bot"));
	/* Kicked again at once: the wait doubles, up to its cap. */
	self_presence(rs, OPS, "bot", NULL, "<status code=\"110\"/>", 3200);
	self_presence(rs, OPS, "bot", "unavailable",
	    "<status code=\"307\"/><status code=\"110\"/>", 3300);
	assert_int_equal(rooms_next(rs), 3300 + 3000);	/* joined: reset */
	rooms_tick(rs, 6300);
	self_presence(rs, OPS, "bot", "unavailable",
	    "<status code=\"110\"/><destroy/>", 6400);
	assert_int_equal(rooms_next(rs), 6400 + 6000);
	/* A new session does not join the room that banned us either. */
	rec_clear(&rec);
	rooms_offline(rs);
	rooms_online(rs, 0, 10000);
	assert_int_equal(rec.nsent, 1);
	assert_non_null(strstr(rec.sent[0], OPS));
	rooms_free(rs);
	rec_clear(&rec);
}

static void
test_self_ping(void **state)
{
	struct rec rec = { 0 };
	struct rooms *rs = rooms_new(&cb, &rec);

	rooms_configure(rs, two, 1, &timing);
	rooms_online(rs, 0, 0);
	self_presence(rs, OPS, "bot", NULL, "<status code=\"110\"/>", 0);
	rec_clear(&rec);
	assert_int_equal(rooms_next(rs), 60000);
	/* A stanza from the room pushes the ping back. */
	stanza(rs, OPS "/alice", "<presence xmlns=\"jabber:client\" "
	    "from=\"" OPS "/alice\"/>", 30000);
	rooms_tick(rs, 60000);
	assert_int_equal(rec.nsent, 0);
	rooms_tick(rs, 90000);
	assert_int_equal(rec.nsent, 1);
	assert_non_null(strstr(rec.sent[0], "<iq type=\"get\" to=\"" OPS
	    "/bot\" id=\""));
	assert_non_null(strstr(rec.sent[0], "<ping xmlns=\"urn:xmpp:ping\"/>"));
	/* Still an occupant: the answer is ours, not relayed. */
	assert_int_equal(iq_answer(rs, rec.sent[0], NULL, 90100), 1);
	assert_int_equal(iq_answer(rs, rec.sent[0], NULL, 90100), 0);
	assert_int_equal(rooms_next(rs), 150100);
	rooms_tick(rs, 150100);
	assert_int_equal(iq_answer(rs, rec.sent[1], "service-unavailable",
	    150200), 1);
	assert_int_equal(rec.nstatus, 0);
	/* No answer: nobody can tell; asked again after the interval. */
	rooms_tick(rs, 210200);
	assert_int_equal(rec.nsent, 3);
	assert_int_equal(rooms_next(rs), 220200);
	rooms_tick(rs, 220200);
	assert_int_equal(rooms_next(rs), 280200);
	/* No longer an occupant: left, and joined again at once. */
	rooms_tick(rs, 280200);
	assert_int_equal(iq_answer(rs, rec.sent[3], "not-acceptable", 280300),
	    1);
	assert_int_equal(rec.nstatus, 1);
	assert_string_equal(rec.status[0], "<left xmlns=\"urn:x-clawsd\" "
	    "room=\"" OPS "\" reason=\"no longer an occupant\"/>\n");
	assert_int_equal(rec.nsent, 5);
	assert_non_null(strstr(rec.sent[4], "<presence to=\"" OPS "/bot\""));
	rooms_free(rs);
	rec_clear(&rec);
}

static int archive_answer;
static char joined_room[128];

static int
on_has_archive(void *arg, const char *room)
{
	return archive_answer;
}

static void
on_joined(void *arg, const char *room)
{
	snprintf(joined_room, sizeof(joined_room), "%s", room);
}

/* A room whose archive will be asked: no history, and told once joined. */
static void
test_archive_instead_of_history(void **state)
{
	static const struct rooms_cb acb = {
		on_send, on_status, on_has_archive, on_joined,
	};
	struct rec rec = { 0 };
	struct rooms *rs = rooms_new(&acb, &rec);

	archive_answer = 1;
	joined_room[0] = '\0';
	rooms_configure(rs, two, 1, &timing);
	rooms_online(rs, 0, 0);
	assert_non_null(strstr(rec.sent[0], "<history maxstanzas=\"0\"/>"));
	assert_string_equal(joined_room, "");
	self_presence(rs, OPS, "bot", NULL, "<status code=\"110\"/>", 10);
	assert_string_equal(joined_room, OPS);
	/* Heard, but the archive is asked again rather than the history. */
	stanza(rs, OPS "/alice", "<message xmlns=\"jabber:client\" type="
	    "\"groupchat\" from=\"" OPS "/alice\"><body>x</body></message>", 20);
	rooms_offline(rs);
	rooms_online(rs, 0, 30);
	assert_non_null(strstr(rec.sent[1], "<history maxstanzas=\"0\"/>"));
	archive_answer = 0;
	rooms_offline(rs);
	rooms_online(rs, 0, 40);
	assert_non_null(strstr(rec.sent[2], "<history since=\""));
	rooms_free(rs);
	rec_clear(&rec);
}

static void
test_reload(void **state)
{
	struct rec rec = { 0 };
	struct rooms *rs = rooms_new(&cb, &rec);
	struct conf_room renamed[] = { { DEV, "bot2", "s3cret&", 1 } };

	rooms_configure(rs, two, 2, &timing);
	rooms_online(rs, 0, 0);
	self_presence(rs, OPS, "bot", NULL, "<status code=\"110\"/>", 0);
	self_presence(rs, DEV, "bot", NULL, "<status code=\"110\"/>", 0);
	rec_clear(&rec);
	rooms_configure(rs, two, 2, &timing);
	assert_int_equal(rec.nsent, 0);		/* unchanged */
	rooms_configure(rs, renamed, 1, &timing);
	/* DEV left and joined as bot2, OPS left. */
	assert_int_equal(rec.nsent, 3);
	assert_non_null(strstr(rec.sent[0], "type=\"unavailable\" to=\"" DEV
	    "/bot\""));
	assert_non_null(strstr(rec.sent[1], "to=\"" DEV "/bot2\""));
	assert_non_null(strstr(rec.sent[2], "type=\"unavailable\" to=\"" OPS
	    "/bot\""));
	assert_int_equal(rec.nstatus, 2);
	assert_non_null(strstr(rec.status[1], "reason=\"removed from the "
	    "configuration\""));
	assert_false(rooms_has(rs, OPS "/bot"));
	assert_true(rooms_has(rs, "DEV@muc.example.org/x"));
	rooms_free(rs);
	rec_clear(&rec);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_join_after_new_session_only),
		cmocka_unit_test(test_nickname_conflict),
		cmocka_unit_test(test_kick_ban),
		cmocka_unit_test(test_self_ping),
		cmocka_unit_test(test_archive_instead_of_history),
		cmocka_unit_test(test_reload),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
