#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "log.h"
#include "mam.h"
#include "rooms.h"
#include "xmlw.h"
#include "xnode.h"

#define NS_PING		"urn:xmpp:ping"
#define NS_STANZAS	"urn:ietf:params:xml:ns:xmpp-stanzas"
/* Room stanza ids remembered, to drop what the history sends again. */
#define SEEN_MAX	256

enum room_state {
	R_OUT,		/* not joined, nothing pending (offline) */
	R_JOINING,	/* join presence sent */
	R_JOINED,
	R_WAIT,		/* rejoin at `due' */
	R_BANNED,	/* not rejoined */
};

struct room {
	char		*jid;
	char		*nick;		/* configured */
	char		*password;	/* NULL: none */
	char		*cur;		/* nickname in use or asked for */
	int		 tries;		/* nickname conflicts in a row */
	enum room_state	 state;
	uint64_t	 due;		/* R_WAIT: when to rejoin */
	uint64_t	 backoff;	/* next wait, 0: the first */
	uint64_t	 heard;		/* last stanza from the room */
	time_t		 heard_wall;	/* same, time of day; 0: never */
	char		 ping_id[32];	/* pending self-ping, "" if none */
	uint64_t	 ping_sent;
	struct mam_seen	*seen;
	int		 mark;		/* for rooms_configure */
};

struct rooms {
	const struct rooms_cb	*cb;
	void			*arg;
	struct room		**r;
	size_t			 n;
	struct rooms_timing	 t;
	int			 online;
	unsigned		 seq;
};

static const struct rooms_timing default_timing = {
	300000, 30000, 3000, 300000,
};

struct rooms *
rooms_new(const struct rooms_cb *cb, void *arg)
{
	struct rooms *rs = xcalloc(1, sizeof(*rs));

	rs->cb = cb;
	rs->arg = arg;
	rs->t = default_timing;
	return rs;
}

static void
room_free(struct room *r)
{
	free(r->jid);
	free(r->nick);
	free(r->password);
	free(r->cur);
	mam_seen_free(r->seen);
	free(r);
}

void
rooms_free(struct rooms *rs)
{
	size_t i;

	if (rs == NULL)
		return;
	for (i = 0; i < rs->n; i++)
		room_free(rs->r[i]);
	free(rs->r);
	free(rs);
}

/*
 * JIDs.
 */

/* Length of the bare part of `jid'. */
static size_t
bare_len(const char *jid)
{
	return strcspn(jid, "/");
}

/* The room `from' is about (its bare part), or NULL. */
static struct room *
find(const struct rooms *rs, const char *from)
{
	size_t i, n;

	if (from == NULL)
		return NULL;
	n = bare_len(from);
	for (i = 0; i < rs->n; i++)
		if (strlen(rs->r[i]->jid) == n &&
		    strncasecmp(rs->r[i]->jid, from, n) == 0)
			return rs->r[i];
	return NULL;
}

int
rooms_has(const struct rooms *rs, const char *from)
{
	return find(rs, from) != NULL;
}

static const char *
resource(const char *jid)
{
	const char *slash = strchr(jid, '/');

	return slash != NULL ? slash + 1 : NULL;
}

/*
 * What goes out.
 */

static void
send_buf(struct rooms *rs, struct buf *b)
{
	rs->cb->send(rs->arg, b->data, b->len);
	buf_free(b);
}

static void
status_line(struct rooms *rs, const struct room *r, const char *name,
    const char *reason)
{
	struct buf b;

	buf_init(&b);
	buf_printf(&b, "<%s xmlns=\"urn:x-clawsd\"", name);
	xmlw_attr_pair(&b, "room", r->jid);
	if (reason == NULL)
		xmlw_attr_pair(&b, "nick", r->cur);
	else
		xmlw_attr_pair(&b, "reason", reason);
	buf_puts(&b, "/>\n");
	rs->cb->status(rs->arg, b.data, b.len);
	buf_free(&b);
}

static void
full_jid(struct buf *b, const struct room *r)
{
	buf_puts(b, r->jid);
	buf_putc(b, '/');
	buf_puts(b, r->cur);
}

/*
 * The join: no history when the room's archive will be asked (XEP-0313,
 * after the last archive id relayed); else the history since the last
 * stanza heard from the room before the session was lost, so that nothing
 * is missed; none when it was never heard (nothing relayed from it since
 * start-up).
 */
static void
join(struct rooms *rs, struct room *r)
{
	struct buf b, to;
	char stamp[32];
	struct tm tm;

	buf_init(&to);
	full_jid(&to, r);
	buf_init(&b);
	buf_puts(&b, "<presence");
	xmlw_attr_pair(&b, "to", buf_cstr(&to));
	buf_printf(&b, " id=\"clawsd-join-%u\"><x xmlns=\"" NS_MUC "\">",
	    ++rs->seq);
	if (r->password != NULL) {
		buf_puts(&b, "<password>");
		xmlw_text(&b, r->password, strlen(r->password));
		buf_puts(&b, "</password>");
	}
	if (rs->cb->has_archive != NULL && rs->cb->has_archive(rs->arg, r->jid))
		buf_puts(&b, "<history maxstanzas=\"0\"/>");
	else if (r->heard_wall != 0 && gmtime_r(&r->heard_wall, &tm) != NULL &&
	    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm) > 0)
		buf_printf(&b, "<history since=\"%s\"/>", stamp);
	else
		buf_puts(&b, "<history maxstanzas=\"0\"/>");
	buf_puts(&b, "</x></presence>");
	log_info("rooms: joining %s as %s", r->jid, r->cur);
	r->state = R_JOINING;
	r->ping_id[0] = '\0';
	buf_free(&to);
	send_buf(rs, &b);
}

static void
leave(struct rooms *rs, struct room *r)
{
	struct buf b, to;

	buf_init(&to);
	full_jid(&to, r);
	buf_init(&b);
	buf_puts(&b, "<presence type=\"unavailable\"");
	xmlw_attr_pair(&b, "to", buf_cstr(&to));
	buf_puts(&b, "/>");
	buf_free(&to);
	send_buf(rs, &b);
}

static void
reset_nick(struct room *r)
{
	free(r->cur);
	r->cur = xstrdup(r->nick);
	r->tries = 0;
}

/* Rejoin after the backoff, which doubles each time up to its cap. */
static void
wait_rejoin(struct rooms *rs, struct room *r, uint64_t now)
{
	if (r->backoff == 0)
		r->backoff = rs->t.backoff;
	r->state = R_WAIT;
	r->due = now + r->backoff;
	log_info("rooms: %s: joining again in %llu s", r->jid,
	    (unsigned long long)((r->backoff + 999) / 1000));
	r->backoff = r->backoff * 2 > rs->t.backoff_max ? rs->t.backoff_max :
	    r->backoff * 2;
	reset_nick(r);
}

/*
 * Configuration.
 */

static struct room *
room_new(const struct conf_room *c)
{
	struct room *r = xcalloc(1, sizeof(*r));

	r->jid = xstrdup(c->jid);
	r->nick = xstrdup(c->nick);
	r->password = c->password != NULL ? xstrdup(c->password) : NULL;
	r->cur = xstrdup(c->nick);
	r->seen = mam_seen_new(SEEN_MAX);
	return r;
}

static int
same_settings(const struct room *r, const struct conf_room *c)
{
	if (strcmp(r->nick, c->nick) != 0)
		return 0;
	if (r->password == NULL || c->password == NULL)
		return r->password == c->password;
	return strcmp(r->password, c->password) == 0;
}

static void
drop(struct rooms *rs, size_t i, const char *reason)
{
	struct room *r = rs->r[i];

	if (rs->online && (r->state == R_JOINED || r->state == R_JOINING))
		leave(rs, r);
	if (r->state == R_JOINED)
		status_line(rs, r, "left", reason);
	log_info("rooms: %s: %s", r->jid, reason);
	room_free(r);
	memmove(&rs->r[i], &rs->r[i + 1], (rs->n - i - 1) * sizeof(*rs->r));
	rs->n--;
}

void
rooms_configure(struct rooms *rs, const struct conf_room *c, size_t n,
    const struct rooms_timing *t)
{
	struct room *r;
	size_t i, j;

	rs->t = *t;
	for (i = 0; i < rs->n; i++)
		rs->r[i]->mark = 0;
	for (j = 0; j < n; j++) {
		if ((r = find(rs, c[j].jid)) != NULL && same_settings(r, &c[j])) {
			r->mark = 1;
			continue;
		}
		if (r != NULL) {
			/* Changed: leave, then join with the new settings. */
			for (i = 0; rs->r[i] != r; i++)
				continue;
			drop(rs, i, "its settings changed");
		}
		r = room_new(&c[j]);
		r->mark = 1;
		rs->r = xrealloc(rs->r, (rs->n + 1) * sizeof(*rs->r));
		rs->r[rs->n++] = r;
		if (rs->online)
			join(rs, r);
	}
	for (i = rs->n; i-- > 0; )
		if (!rs->r[i]->mark)
			drop(rs, i, "removed from the configuration");
}

/*
 * The session.
 */

void
rooms_online(struct rooms *rs, int resumed, uint64_t now)
{
	struct room *r;
	size_t i;

	rs->online = 1;
	for (i = 0; i < rs->n; i++) {
		r = rs->r[i];
		r->heard = now;
		if (resumed && r->state != R_OUT)
			continue;
		if (r->state == R_BANNED)
			continue;
		reset_nick(r);
		join(rs, r);
	}
}

void
rooms_offline(struct rooms *rs)
{
	size_t i;

	rs->online = 0;
	for (i = 0; i < rs->n; i++) {
		rs->r[i]->ping_id[0] = '\0';
		/* A resumed session keeps its rooms: the state stays. */
		if (rs->r[i]->state == R_JOINING)
			rs->r[i]->state = R_OUT;
	}
}

/*
 * What comes in.
 */

static int
has_status(const struct xnode *x, const char *code)
{
	const struct xnode *c;
	const char *v;

	for (c = x->child; c != NULL; c = c->next)
		if (xnode_is(c, "status", NS_MUC_USER) &&
		    (v = xnode_attr(c, "code")) != NULL && strcmp(v, code) == 0)
			return 1;
	return 0;
}

/* The defined condition of a stanza error, "" if none. */
static const char *
error_condition(const struct xnode *st)
{
	const struct xnode *e = xnode_child(st, "error", "jabber:client"), *c;

	if (e == NULL)
		return "";
	for (c = e->child; c != NULL; c = c->next)
		if (strcmp(c->ns, NS_STANZAS) == 0 && strcmp(c->name, "text"))
			return c->name;
	return "";
}

static void
on_join_error(struct rooms *rs, struct room *r, const struct xnode *p,
    uint64_t now)
{
	const char *cond = error_condition(p);
	struct buf nick;

	if (strcmp(cond, "conflict") == 0 && r->tries < ROOMS_NICK_TRIES) {
		r->tries++;
		buf_init(&nick);
		buf_printf(&nick, "%s_", r->cur);
		log_warn("rooms: %s: nickname %s taken, trying %s", r->jid,
		    r->cur, buf_cstr(&nick));
		free(r->cur);
		r->cur = xstrdup(buf_cstr(&nick));
		buf_free(&nick);
		join(rs, r);
		return;
	}
	log_warn("rooms: %s: cannot join: %s", r->jid,
	    *cond != '\0' ? cond : "error");
	wait_rejoin(rs, r, now);
}

/* Our own presence gone: why, and whether to come back. */
static void
on_self_unavailable(struct rooms *rs, struct room *r, const struct xnode *x,
    uint64_t now)
{
	const struct xnode *item;
	const char *reason = "left", *nick;

	if (has_status(x, "303") && (item = xnode_child(x, "item",
	    NS_MUC_USER)) != NULL && (nick = xnode_attr(item, "nick")) != NULL) {
		free(r->cur);
		r->cur = xstrdup(nick);
		return;		/* a nickname change: still there */
	}
	if (has_status(x, "301"))
		reason = "banned";
	else if (has_status(x, "307"))
		reason = "kicked";
	else if (has_status(x, "321"))
		reason = "affiliation changed";
	else if (has_status(x, "322"))
		reason = "room became members-only";
	else if (has_status(x, "332"))
		reason = "service shut down";
	else if (xnode_child(x, "destroy", NS_MUC_USER) != NULL)
		reason = "room destroyed";
	status_line(rs, r, "left", reason);
	if (strcmp(reason, "banned") == 0) {
		log_warn("rooms: %s: banned, not joining again", r->jid);
		r->state = R_BANNED;
		return;
	}
	log_warn("rooms: %s: %s", r->jid, reason);
	wait_rejoin(rs, r, now);
}

static void
on_presence(struct rooms *rs, struct room *r, const struct xnode *p,
    const char *from, uint64_t now)
{
	const char *type = xnode_attr(p, "type"), *nick = resource(from);
	const struct xnode *x = xnode_child(p, "x", NS_MUC_USER);
	int self;

	if (type != NULL && strcmp(type, "error") == 0) {
		if (r->state == R_JOINING)
			on_join_error(rs, r, p, now);
		return;
	}
	self = x != NULL && has_status(x, "110");
	if (!self || nick == NULL)
		return;
	if (type != NULL && strcmp(type, "unavailable") == 0) {
		if (r->state == R_JOINED || r->state == R_JOINING)
			on_self_unavailable(rs, r, x, now);
		return;
	}
	if (type != NULL || r->state == R_JOINED)
		return;
	/* The service may have changed the nickname (code 210). */
	free(r->cur);
	r->cur = xstrdup(nick);
	r->state = R_JOINED;
	r->backoff = 0;
	r->tries = 0;
	log_info("rooms: joined %s as %s", r->jid, r->cur);
	status_line(rs, r, "joined", NULL);
	if (rs->cb->joined != NULL)
		rs->cb->joined(rs->arg, r->jid);
}

/* 1 if the room's stanza id of this message was already relayed. */
static int
duplicate(struct room *r, const struct xnode *m)
{
	const struct xnode *c;
	const char *by, *id;

	for (c = m->child; c != NULL; c = c->next) {
		if (!xnode_is(c, "stanza-id", NS_SID) ||
		    (by = xnode_attr(c, "by")) == NULL ||
		    strcasecmp(by, r->jid) != 0 ||
		    (id = xnode_attr(c, "id")) == NULL)
			continue;
		return mam_seen_add(r->seen, id);
	}
	return 0;
}

int
rooms_stanza(struct rooms *rs, const char *from, const char *line,
    size_t len, uint64_t now, time_t wall)
{
	struct room *r = find(rs, from);
	struct xnode *st;
	int dup = 0;

	if (r == NULL || !rs->online || (st = xnode_parse(line, len)) == NULL)
		return 0;
	r->heard = now;
	if (strcmp(st->name, "presence") == 0) {
		on_presence(rs, r, st, from, now);
	} else if (strcmp(st->name, "message") == 0) {
		dup = duplicate(r, st);
		if (!dup)
			r->heard_wall = wall;
	}
	xnode_free(st);
	return dup;
}

/*
 * Self-pings (XEP-0410).
 */

static void
self_ping(struct rooms *rs, struct room *r, uint64_t now)
{
	struct buf b, to;

	snprintf(r->ping_id, sizeof(r->ping_id), ROOMS_ID_PREFIX "%u",
	    ++rs->seq);
	r->ping_sent = now;
	buf_init(&to);
	full_jid(&to, r);
	buf_init(&b);
	buf_puts(&b, "<iq type=\"get\"");
	xmlw_attr_pair(&b, "to", buf_cstr(&to));
	xmlw_attr_pair(&b, "id", r->ping_id);
	buf_puts(&b, "><ping xmlns=\"" NS_PING "\"/></iq>");
	buf_free(&to);
	log_debug("rooms: %s: silent, self-ping", r->jid);
	send_buf(rs, &b);
}

/*
 * XEP-0410 section 3: a result, service-unavailable or
 * feature-not-implemented mean the occupant is there (the ping reached a
 * client); remote-server-not-found or -timeout that nobody can tell yet;
 * any other error that we are no longer an occupant.
 */
static void
on_ping_answer(struct rooms *rs, struct room *r, const struct xnode *iq,
    uint64_t now)
{
	const char *type = xnode_attr(iq, "type"), *cond;

	r->ping_id[0] = '\0';
	r->heard = now;
	if (strcmp(type, "result") == 0)
		return;
	cond = error_condition(iq);
	if (strcmp(cond, "service-unavailable") == 0 ||
	    strcmp(cond, "feature-not-implemented") == 0 ||
	    strcmp(cond, "remote-server-not-found") == 0 ||
	    strcmp(cond, "remote-server-timeout") == 0)
		return;
	log_warn("rooms: %s: self-ping: %s: no longer an occupant", r->jid,
	    *cond != '\0' ? cond : "error");
	status_line(rs, r, "left", "no longer an occupant");
	r->backoff = 0;
	reset_nick(r);
	join(rs, r);
}

int
rooms_iq(struct rooms *rs, const struct xnode *iq, uint64_t now)
{
	const char *id = xnode_attr(iq, "id"), *type = xnode_attr(iq, "type");
	const char *from = xnode_attr(iq, "from");
	struct room *r = find(rs, from);
	struct buf b;
	int match;

	if (r == NULL || id == NULL || type == NULL || r->ping_id[0] == '\0' ||
	    strcmp(id, r->ping_id) != 0)
		return 0;
	if (strcmp(type, "result") != 0 && strcmp(type, "error") != 0)
		return 0;
	buf_init(&b);
	full_jid(&b, r);
	match = strcasecmp(from, buf_cstr(&b)) == 0;
	buf_free(&b);
	if (!match)
		return 0;
	if (r->state == R_JOINED)
		on_ping_answer(rs, r, iq, now);
	else
		r->ping_id[0] = '\0';
	return 1;
}

void
rooms_tick(struct rooms *rs, uint64_t now)
{
	struct room *r;
	size_t i;

	if (!rs->online)
		return;
	for (i = 0; i < rs->n; i++) {
		r = rs->r[i];
		if (r->state == R_WAIT && now >= r->due) {
			join(rs, r);
			continue;
		}
		if (r->state != R_JOINED || rs->t.ping_interval == 0)
			continue;
		if (r->ping_id[0] != '\0') {
			/* No answer: nobody can tell; ask again later. */
			if (now >= r->ping_sent + rs->t.ping_timeout) {
				r->ping_id[0] = '\0';
				r->heard = now;
			}
			continue;
		}
		if (now >= r->heard + rs->t.ping_interval)
			self_ping(rs, r, now);
	}
}

uint64_t
rooms_next(const struct rooms *rs)
{
	const struct room *r;
	uint64_t next = UINT64_MAX, at;
	size_t i;

	if (!rs->online)
		return UINT64_MAX;
	for (i = 0; i < rs->n; i++) {
		r = rs->r[i];
		if (r->state == R_WAIT)
			at = r->due;
		else if (r->state != R_JOINED || rs->t.ping_interval == 0)
			continue;
		else if (r->ping_id[0] != '\0')
			at = r->ping_sent + rs->t.ping_timeout;
		else
			at = r->heard + rs->t.ping_interval;
		if (at < next)
			next = at;
	}
	return next;
}

void
rooms_status(const struct rooms *rs, struct buf *b)
{
	const struct room *r;
	size_t i;

	for (i = 0; i < rs->n; i++) {
		r = rs->r[i];
		buf_puts(b, "<room");
		xmlw_attr_pair(b, "jid", r->jid);
		xmlw_attr_pair(b, "nick", r->cur);
		buf_printf(b, " joined=\"%s\"/>",
		    rs->online && r->state == R_JOINED ? "yes" : "no");
	}
}
