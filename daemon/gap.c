/*
 * The daemon's side of SPEC sections 8 and 9, around three modules without
 * I/O (mam, rooms, state): this file gives them the time, the timers, the
 * session's stanzas, and the clients.
 *
 * While a catch-up runs, the stanzas of the new session wait here (at most
 * queue_max of them: past that the catch-up stops short and relays what it
 * has), so that the archived messages come first, in archive order.  Every
 * message of the account carrying an archive id (XEP-0359, by our bare JID)
 * is relayed once, whichever way it comes; the last id relayed is the next
 * catch-up's starting point, kept in the state file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "gap.h"
#include "log.h"
#include "mam.h"
#include "rooms.h"
#include "squeue.h"
#include "state.h"
#include "xmlw.h"
#include "xnode.h"

/* A page of the archive must come within this, else the catch-up stops. */
#define PAGE_TIMEOUT_MS		30000
/* The state file is written at most this often (and at shutdown). */
#define SAVE_DELAY_MS		1000
/* Archive ids remembered against a second relay: beyond catch_up_max. */
#define SEEN_MIN		4096
#define ID_MAX			256

struct gap {
	uv_loop_t		*loop;
	const struct gap_cb	*cb;
	void			*arg;
	const struct conf	*conf;
	char			*bare;		/* user@domain */
	char			*state_dir;	/* as opened, NULL: none */
	struct state		*state;
	struct mam		*mam;		/* the account's archive */
	struct mam		*room_mam;	/* a room's, one at a time */
	struct mam		*cur;		/* the query running, or NULL */
	char			*cur_room;	/* its room, NULL: the account */
	size_t			 mam_max;
	int			 account_due;	/* the account's catch-up to do */
	char			**pending;	/* rooms joined, to catch up */
	size_t			 npending;
	char			**plain;	/* rooms without an archive */
	size_t			 nplain;
	struct mam_seen		*seen;
	struct rooms		*rooms;
	int			 configured;
	int			 up;
	int			 catching_up;
	int			 open_timers;	/* not closed yet */
	uint64_t		 catch_start;
	struct squeue		 held;		/* live, behind the catch-up */
	uv_timer_t		 page_timer;
	uv_timer_t		 next_timer;	/* the next catch-up, at once */
	uv_timer_t		 save_timer;
	uv_timer_t		 rooms_timer;
};

static void	on_mam_send(void *, const char *, size_t);
static void	on_mam_relay(void *, const char *, size_t, const char *);
static void	on_mam_done(void *, const struct mam_result *);
static void	on_next_timer(uv_timer_t *);
static void	on_rooms_send(void *, const char *, size_t);
static void	on_rooms_status(void *, const char *, size_t);
static int	on_rooms_has_archive(void *, const char *);
static void	on_rooms_joined(void *, const char *);

static const struct mam_cb mam_cb = {
	on_mam_send, on_mam_relay, on_mam_done,
};
static const struct rooms_cb rooms_cb = {
	on_rooms_send, on_rooms_status, on_rooms_has_archive, on_rooms_joined,
};

/* Timers: their only failure is a closing handle, which is a bug here. */
static void
arm(uv_timer_t *t, uv_timer_cb cb, uint64_t ms)
{
	int rc = uv_timer_start(t, cb, ms, 0);

	if (rc != 0)
		log_error("timer: %s", uv_strerror(rc));
}

/*
 * The state file.
 */

static void
on_save_timer(uv_timer_t *t)
{
	struct gap *g = t->data;

	state_save(g->state);
}

static void
remember(struct gap *g, const char *archive, const char *id)
{
	if (state_set(g->state, archive, id) != 0) {
		log_debug("catch-up: archive id not kept: too long or not "
		    "printable");
		return;
	}
	if (state_dirty(g->state) && !uv_is_active((uv_handle_t *)
	    &g->save_timer))
		arm(&g->save_timer, on_save_timer, SAVE_DELAY_MS);
}

/*
 * What a line is.  Lines are stream.c's: the top element first, its
 * attributes double-quoted.
 */

static int
is_kind(const char *line, size_t len, const char *kind)
{
	size_t n = strlen(kind);

	return len > n + 1 && line[0] == '<' &&
	    memcmp(line + 1, kind, n) == 0 &&
	    (line[n + 1] == ' ' || line[n + 1] == '>' || line[n + 1] == '/');
}

/* The `from' of the top element, raw; 0, or -1 if absent or too long. */
static int
line_from(const char *line, size_t len, char *out, size_t size)
{
	const char *end = memchr(line, '>', len), *p, *q;

	if (end == NULL)
		return -1;
	for (p = line; (p = memmem(p, (size_t)(end - p), " from=\"", 7)) !=
	    NULL; p += 7) {
		p += 7;
		if ((q = memchr(p, '"', (size_t)(end - p))) == NULL ||
		    (size_t)(q - p) >= size)
			return -1;
		memcpy(out, p, (size_t)(q - p));
		out[q - p] = '\0';
		return 0;
	}
	return -1;
}

/* The archive id `by' gave a message (XEP-0359), or "" if none. */
static void
archive_id(const char *by_want, const char *line, size_t len,
    char out[ID_MAX + 1])
{
	struct xnode *m, *c;
	const char *by, *id;

	out[0] = '\0';
	if (memmem(line, len, NS_SID, sizeof(NS_SID) - 1) == NULL ||
	    (m = xnode_parse(line, len)) == NULL)
		return;
	for (c = m->child; c != NULL; c = c->next) {
		if (!xnode_is(c, "stanza-id", NS_SID) ||
		    (by = xnode_attr(c, "by")) == NULL ||
		    strcasecmp(by, by_want) != 0 ||
		    (id = xnode_attr(c, "id")) == NULL || *id == '\0' ||
		    strlen(id) > ID_MAX)
			continue;
		strcpy(out, id);
		break;
	}
	xnode_free(m);
}

/*
 * Relaying.
 */

/*
 * The head of a line gap relays on its own (archived, held back): read
 * again from the line, as the stream read it the first time.
 */
static void
relay_line(struct gap *g, const char *line, size_t len)
{
	struct xnode *x;
	struct head h;

	if ((x = xnode_parse(line, len)) == NULL) {
		log_warn("a line not relayed: not one element");
		return;
	}
	h.line = line;
	h.len = len;
	h.kind = strcmp(x->ns, XMLW_NS_CLIENT) != 0 ?
	    HEAD_OTHER : strcmp(x->name, "message") == 0 ? HEAD_MESSAGE :
	    strcmp(x->name, "presence") == 0 ? HEAD_PRESENCE :
	    strcmp(x->name, "iq") == 0 ? HEAD_IQ : HEAD_OTHER;
	h.type = xnode_attr(x, "type");
	h.id = xnode_attr(x, "id");
	h.from = xnode_attr(x, "from");
	g->cb->relay(g->arg, &h);
	xnode_free(x);
}

/*
 * A live line, as the session gave it (`h') or held back (`h' NULL).  A
 * message of the account's carries the account's archive id; a room's the
 * room's (its bare JID).
 */
static void
relay_live(struct gap *g, const char *line, size_t len, const struct head *h)
{
	char id[ID_MAX + 1], from[1024];
	const char *archive = g->bare;

	if (is_kind(line, len, "message")) {
		if (g->conf->nrooms > 0 &&
		    line_from(line, len, from, sizeof(from)) == 0 &&
		    rooms_has(g->rooms, from)) {
			from[strcspn(from, "/")] = '\0';
			archive = from;
		}
		archive_id(archive, line, len, id);
		if (id[0] != '\0' && mam_seen_add(g->seen, id)) {
			log_debug("archive id %s already relayed: dropped", id);
			return;
		}
		if (id[0] != '\0')
			remember(g, archive, id);
	}
	if (h != NULL)
		g->cb->relay(g->arg, h);
	else
		relay_line(g, line, len);
}

/* What waits in `held' besides lines: receipts, "condition\0text". */
#define HELD_ACKED	2
#define HELD_REFUSED	4

static void
release_held(struct gap *g)
{
	const char *p;
	size_t len;
	uint64_t tag;
	int flags;

	while ((p = squeue_at(&g->held, 0, &len, &flags)) != NULL) {
		tag = squeue_tag(&g->held, 0);
		if (flags & HELD_ACKED)
			g->cb->acked(g->arg, tag);
		else if (flags & HELD_REFUSED)
			g->cb->refused(g->arg, tag, p, p + strlen(p) + 1);
		else
			relay_live(g, p, len, NULL);
		squeue_drop(&g->held, 1);
	}
}

/*
 * The catch-up.
 */

static void
on_page_timer(uv_timer_t *t)
{
	struct gap *g = t->data;

	if (g->cur != NULL)
		mam_stop(g->cur, "no answer from the archive");
}

static const char *
cur_archive(const struct gap *g)
{
	return g->cur_room != NULL ? g->cur_room : g->bare;
}

static void
on_mam_send(void *arg, const char *data, size_t len)
{
	struct gap *g = arg;

	arm(&g->page_timer, on_page_timer, PAGE_TIMEOUT_MS);
	g->cb->send(g->arg, data, len);
}

static void
on_mam_relay(void *arg, const char *line, size_t len, const char *id)
{
	struct gap *g = arg;

	if (mam_seen_add(g->seen, id)) {
		log_debug("archive id %s already relayed: not again", id);
		return;
	}
	remember(g, cur_archive(g), id);
	relay_line(g, line, len);
}

static int
listed(char **list, size_t n, const char *jid)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcasecmp(list[i], jid) == 0)
			return 1;
	return 0;
}

static void
list_add(char ***list, size_t *n, const char *jid)
{
	*list = xrealloc(*list, (*n + 1) * sizeof(**list));
	(*list)[(*n)++] = xstrdup(jid);
}

static void
list_clear(char ***list, size_t *n)
{
	size_t i;

	for (i = 0; i < *n; i++)
		free((*list)[i]);
	free(*list);
	*list = NULL;
	*n = 0;
}

/* A room whose archive cannot be asked: its joins ask for the history. */
static int
no_archive(const char *error)
{
	return error != NULL && (strcmp(error, "feature-not-implemented") == 0 ||
	    strcmp(error, "service-unavailable") == 0 ||
	    strcmp(error, "not-allowed") == 0 ||
	    strcmp(error, "forbidden") == 0);
}

static void
on_mam_done(void *arg, const struct mam_result *r)
{
	struct gap *g = arg;
	double secs = (double)(uv_now(g->loop) - g->catch_start) / 1000;
	const char *archive = cur_archive(g);

	uv_timer_stop(&g->page_timer);
	if (state_get(g->state, archive) == NULL && r->last != NULL)
		remember(g, archive, r->last);
	if (r->skipped > 0)
		log_warn("catch-up: %s: %u more messages were missed than "
		    "catch_up_max (%zu): skipped, the most recent relayed",
		    archive, r->skipped, g->mam_max);
	if (r->error != NULL)
		log_warn("catch-up: %s: stopped short: %s", archive, r->error);
	if (g->cur_room != NULL && no_archive(r->error) &&
	    !listed(g->plain, g->nplain, g->cur_room))
		list_add(&g->plain, &g->nplain, g->cur_room);
	log_info("catch-up: %s: %u archived messages relayed in %.2f s%s",
	    archive, r->relayed, secs,
	    r->skipped > 0 ? " (a gap: see above)" : "");
	/* The next one out of this callback: the query may be freed. */
	g->cur = NULL;
	arm(&g->next_timer, on_next_timer, 0);
}

static void
start(struct gap *g, struct mam *m, const char *room, const char *after)
{
	free(g->cur_room);
	g->cur_room = room != NULL ? xstrdup(room) : NULL;
	g->cur = m;
	g->catching_up = 1;
	g->catch_start = uv_now(g->loop);
	if (after != NULL)
		log_info("catch-up: asking the archive of %s for what came "
		    "after %s", cur_archive(g), after);
	else
		log_info("catch-up: no archive id yet: asking the archive of "
		    "%s where it stands", cur_archive(g));
	mam_start(m, after);
}

/*
 * The account's archive first, then each room's joined meanwhile, one at
 * a time; then the live stanzas held.
 */
static void
next_catch_up(struct gap *g)
{
	char *room;

	if (!g->up)
		return;
	if (squeue_count(&g->held) >= g->conf->queue_max &&
	    (g->account_due || g->npending > 0)) {
		log_warn("catch-up: queue_max live stanzas are waiting: the "
		    "other archives are not asked");
		g->account_due = 0;
		list_clear(&g->pending, &g->npending);
	}
	if (g->mam_max != g->conf->catch_up_max) {
		mam_free(g->mam);
		mam_free(g->room_mam);
		g->mam = g->room_mam = NULL;
		g->mam_max = g->conf->catch_up_max;
	}
	if (g->account_due) {
		g->account_due = 0;
		if (g->mam == NULL)
			g->mam = mam_new(NULL, g->bare, g->mam_max, &mam_cb, g);
		start(g, g->mam, NULL, state_get(g->state, g->bare));
		return;
	}
	if (g->npending > 0) {
		room = g->pending[0];
		memmove(g->pending, g->pending + 1,
		    --g->npending * sizeof(*g->pending));
		mam_free(g->room_mam);
		g->room_mam = mam_new(room, NULL, g->mam_max, &mam_cb, g);
		start(g, g->room_mam, room, state_get(g->state, room));
		free(room);
		return;
	}
	g->catching_up = 0;
	free(g->cur_room);
	g->cur_room = NULL;
	release_held(g);
}

static void
on_next_timer(uv_timer_t *t)
{
	struct gap *g = t->data;

	if (g->cur == NULL)
		next_catch_up(g);
}

/*
 * Rooms.
 */

static void on_rooms_timer(uv_timer_t *);

static void
rooms_rearm(struct gap *g)
{
	uint64_t next = rooms_next(g->rooms), now = uv_now(g->loop);

	if (next == UINT64_MAX) {
		uv_timer_stop(&g->rooms_timer);
		return;
	}
	arm(&g->rooms_timer, on_rooms_timer, next > now ? next - now : 0);
}

static void
on_rooms_timer(uv_timer_t *t)
{
	struct gap *g = t->data;

	rooms_tick(g->rooms, uv_now(g->loop));
	rooms_rearm(g);
}

static void
on_rooms_send(void *arg, const char *data, size_t len)
{
	struct gap *g = arg;

	g->cb->send(g->arg, data, len);
}

static void
on_rooms_status(void *arg, const char *line, size_t len)
{
	struct gap *g = arg;

	g->cb->status(g->arg, line, len);
}

/* A room with a known archive id, whose archive answered (or was not asked). */
static int
on_rooms_has_archive(void *arg, const char *room)
{
	struct gap *g = arg;

	return g->conf->catch_up && state_get(g->state, room) != NULL &&
	    !listed(g->plain, g->nplain, room);
}

static void
on_rooms_joined(void *arg, const char *room)
{
	struct gap *g = arg;

	if (!on_rooms_has_archive(g, room) ||
	    listed(g->pending, g->npending, room))
		return;
	list_add(&g->pending, &g->npending, room);
	g->catching_up = 1;
	if (g->cur == NULL)
		arm(&g->next_timer, on_next_timer, 0);
}

static void
configure_rooms(struct gap *g)
{
	const struct conf *c = g->conf;
	struct rooms_timing t = {
		.ping_interval = (uint64_t)c->rooms_ping_interval * 1000,
		.ping_timeout = (uint64_t)c->ping_timeout * 1000,
		.backoff = (uint64_t)c->reconnect_delay * 1000,
		.backoff_max = (uint64_t)c->reconnect_max_delay * 1000,
	};

	rooms_configure(g->rooms, c->rooms, c->nrooms, &t);
	rooms_rearm(g);
}

/*
 * Interface.
 */

struct gap *
gap_new(uv_loop_t *loop, const struct gap_cb *cb, void *arg)
{
	struct gap *g = xcalloc(1, sizeof(*g));
	uv_timer_t *timers[] = {
		&g->page_timer, &g->next_timer, &g->save_timer,
		&g->rooms_timer,
	};
	size_t i;

	g->loop = loop;
	g->cb = cb;
	g->arg = arg;
	g->state = state_new();
	g->rooms = rooms_new(&rooms_cb, g);
	g->seen = mam_seen_new(SEEN_MIN);
	squeue_init(&g->held);
	for (i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
		if (uv_timer_init(loop, timers[i]) != 0) {
			log_error("cannot create the catch-up's timers");
			abort();
		}
		timers[i]->data = g;
	}
	return g;
}

static void
on_closed(uv_handle_t *h)
{
	struct gap *g = h->data;

	if (--g->open_timers == 0)
		free(g);
}

void
gap_free(struct gap *g)
{
	if (g == NULL)
		return;
	gap_save(g);
	state_free(g->state);
	mam_free(g->mam);
	mam_free(g->room_mam);
	free(g->cur_room);
	list_clear(&g->pending, &g->npending);
	list_clear(&g->plain, &g->nplain);
	mam_seen_free(g->seen);
	rooms_free(g->rooms);
	squeue_free(&g->held);
	free(g->bare);
	free(g->state_dir);
	g->open_timers = 4;
	uv_close((uv_handle_t *)&g->page_timer, on_closed);
	uv_close((uv_handle_t *)&g->next_timer, on_closed);
	uv_close((uv_handle_t *)&g->save_timer, on_closed);
	uv_close((uv_handle_t *)&g->rooms_timer, on_closed);
}

static int
same_dir(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/*
 * A new state directory: what the old one should hold is written first,
 * and the position we are at survives the move.
 */
static void
open_state(struct gap *g, const char *dir)
{
	const char *id = state_get(g->state, g->bare);
	char *keep = id != NULL ? xstrdup(id) : NULL;

	state_save(g->state);
	free(g->state_dir);
	g->state_dir = dir != NULL ? xstrdup(dir) : NULL;
	if (state_open(g->state, g->state_dir) == 0 && dir != NULL)
		log_info("state: kept in %s", dir);
	if (keep != NULL && state_get(g->state, g->bare) == NULL)
		remember(g, g->bare, keep);
	free(keep);
}

void
gap_configure(struct gap *g, const struct conf *c)
{
	struct buf b;

	g->conf = c;
	buf_init(&b);
	buf_printf(&b, "%s@%s", c->user, c->domain);
	free(g->bare);
	g->bare = xstrdup(buf_cstr(&b));
	buf_free(&b);
	if (!g->configured || !same_dir(g->state_dir, c->state_directory))
		open_state(g, c->state_directory);
	g->configured = 1;
	configure_rooms(g);
}

/*
 * A catch-up cut short by the session going down is done again on the
 * next session, resumed or not: the server may have dropped what it had
 * not delivered, counting on it (Prosody does, once a session has used
 * the archive).  The stanzas held meanwhile stay held.  A new session
 * joins its rooms again, and each room's catch-up follows its join.
 */
void
gap_up(struct gap *g, int resumed)
{
	g->up = 1;
	if (!resumed) {
		list_clear(&g->pending, &g->npending);
		if (g->conf->catch_up)
			g->account_due = 1;
	}
	if (g->account_due || g->npending > 0 || g->catching_up ||
	    squeue_count(&g->held) > 0)
		next_catch_up(g);
	rooms_online(g->rooms, resumed, uv_now(g->loop));
	rooms_rearm(g);
}

void
gap_down(struct gap *g)
{
	if (!g->up)
		return;
	g->up = 0;
	uv_timer_stop(&g->next_timer);
	if (g->cur != NULL) {
		mam_abort(g->cur);
		uv_timer_stop(&g->page_timer);
		if (g->cur_room == NULL)
			g->account_due = 1;
		else if (!listed(g->pending, g->npending, g->cur_room))
			list_add(&g->pending, &g->npending, g->cur_room);
		g->cur = NULL;
		log_warn("catch-up: the session went down before it ended: "
		    "again on the next one");
	}
	rooms_offline(g->rooms);
	rooms_rearm(g);
	state_save(g->state);
}

/*
 * The answer to a query or a self-ping of a session that went down, sent
 * again on a resume: the daemon's own, never relayed (SPEC 4.1).
 */
static int
answer_to_old_request(const struct xnode *iq)
{
	const char *type = xnode_attr(iq, "type"), *id = xnode_attr(iq, "id");

	return type != NULL && id != NULL && (strcmp(type, "result") == 0 ||
	    strcmp(type, "error") == 0) &&
	    (strncmp(id, MAM_ID_PREFIX, strlen(MAM_ID_PREFIX)) == 0 ||
	    strncmp(id, ROOMS_ID_PREFIX, strlen(ROOMS_ID_PREFIX)) == 0);
}

void
gap_line(struct gap *g, const struct head *h)
{
	const char *line = h->line;
	size_t len = h->len;
	char from[1024];
	struct xnode *iq;
	int mine = 0;

	if (is_kind(line, len, "iq")) {
		if (memmem(line, len, "id=\"clawsd-", 11) != NULL &&
		    (iq = xnode_parse(line, len)) != NULL) {
			mine = (g->cur != NULL && mam_iq(g->cur, iq)) ||
			    rooms_iq(g->rooms, iq, uv_now(g->loop)) ||
			    answer_to_old_request(iq);
			xnode_free(iq);
		}
		if (mine) {
			rooms_rearm(g);
			return;
		}
	} else if (is_kind(line, len, "message") &&
	    memmem(line, len, NS_MAM, sizeof(NS_MAM) - 1) != NULL) {
		if (g->cur != NULL && mam_message(g->cur, line, len)) {
			arm(&g->page_timer, on_page_timer, PAGE_TIMEOUT_MS);
			return;
		}
		/* A result of a query cut short, sent again on a resume. */
		if (mam_ours(line, len))
			return;
	}
	if (g->conf->nrooms > 0 && !is_kind(line, len, "iq") &&
	    line_from(line, len, from, sizeof(from)) == 0 &&
	    rooms_has(g->rooms, from)) {
		mine = rooms_stanza(g->rooms, from, line, len, uv_now(g->loop),
		    time(NULL));
		rooms_rearm(g);
		if (mine)
			return;
	}
	/*
	 * Bound but not yet up (RFC 3921 session): what comes now is of the
	 * new session, after the catch-up.
	 */
	if (!g->catching_up && g->up) {
		relay_live(g, line, len, h);
		return;
	}
	squeue_push(&g->held, line, len, 0);
	if (squeue_count(&g->held) >= g->conf->queue_max && g->cur != NULL)
		mam_stop(g->cur, "queue_max live stanzas are waiting");
}

/* Lines are held back: a receipt waits its turn behind them. */
static int
holding(const struct gap *g)
{
	return g->catching_up || squeue_count(&g->held) > 0;
}

void
gap_acked(struct gap *g, uint64_t tag)
{
	if (!holding(g))
		g->cb->acked(g->arg, tag);
	else
		squeue_push_tag(&g->held, "", 1, HELD_ACKED, tag);
}

void
gap_refused(struct gap *g, uint64_t tag, const char *condition,
    const char *text)
{
	struct buf b;

	if (!holding(g)) {
		g->cb->refused(g->arg, tag, condition, text);
		return;
	}
	buf_init(&b);
	buf_append(&b, condition, strlen(condition) + 1);
	buf_append(&b, text, strlen(text) + 1);
	squeue_push_tag(&g->held, b.data, b.len, HELD_REFUSED, tag);
	buf_free(&b);
}

int
gap_catching_up(const struct gap *g)
{
	return g->catching_up;
}

void
gap_rooms_status(const struct gap *g, struct buf *b)
{
	rooms_status(g->rooms, b);
}

void
gap_save(struct gap *g)
{
	uv_timer_stop(&g->save_timer);
	state_save(g->state);
}
