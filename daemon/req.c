#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "req.h"

struct req_ent {
	unsigned long	 seq;		/* 0: free */
	char		*id;
	char		*to;
	unsigned long	 n;
	uint64_t	 deadline;
};

struct req_recent {
	uint64_t	 hash;		/* of the id */
	uint64_t	 deadline;
};

/* FNV-1a: two ids that collide would only mix up whose bounce it is. */
static uint64_t
id_hash(const char *id)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *id != '\0'; id++)
		h = (h ^ (unsigned char)*id) * 0x100000001b3ull;
	return h;
}

void
req_init(struct req *r)
{
	memset(r, 0, sizeof(*r));
}

static void
ent_clear(struct req_ent *e)
{
	free(e->id);
	free(e->to);
	memset(e, 0, sizeof(*e));
}

static void
recent_drop(struct req *r)
{
	r->rfirst = (r->rfirst + 1) % REQ_RECENT;
	r->rcount--;
}

void
req_free(struct req *r)
{
	size_t i;

	if (r->ents != NULL)
		for (i = 0; i < REQ_MAX; i++)
			ent_clear(&r->ents[i]);
	while (r->rcount > 0)
		recent_drop(r);
	free(r->ents);
	free(r->recent);
	req_init(r);
}

unsigned long
req_add(struct req *r, const char *id, const char *to, unsigned long n,
    uint64_t deadline)
{
	struct req_ent *e;
	size_t i;

	if (r->count == REQ_MAX)
		return 0;
	if (r->ents == NULL)
		r->ents = xcalloc(REQ_MAX, sizeof(*r->ents));
	for (i = 0; r->ents[i].seq != 0; i++)
		;
	e = &r->ents[i];
	if (++r->next_seq == 0)
		r->next_seq = 1;
	e->seq = r->next_seq;
	e->id = xstrdup(id);
	e->to = to != NULL ? xstrdup(to) : NULL;
	e->n = n;
	e->deadline = deadline;
	r->count++;
	return e->seq;
}

/* The bare part of a JID: its length. */
static size_t
bare_len(const char *jid)
{
	return strcspn(jid, "/");
}

/*
 * Is `jid' the entity `want' names: itself or, when `want' is bare, any of
 * its resources?  The bare part without case (stringprep folds ASCII), the
 * resource exactly.
 */
static int
jid_is(const char *want, const char *jid)
{
	size_t wb = bare_len(want), jb = bare_len(jid);

	if (wb != jb || strncasecmp(want, jid, wb) != 0)
		return 0;
	return want[wb] == '\0' || strcmp(want + wb, jid + jb) == 0;
}

/*
 * From the entity the request went to.  A request without `to' is
 * answered by the account (its bare JID or one of its resources), its
 * server, or with no `from' (RFC 6120 8.1.2.1).
 */
static int
from_addressee(const struct req_ent *e, const char *from,
    const char *account)
{
	const char *at = strchr(account, '@');

	if (e->to != NULL)
		return from != NULL && jid_is(e->to, from);
	return from == NULL || jid_is(account, from) ||
	    (at != NULL && strcasecmp(from, at + 1) == 0);
}

static void
ent_take(struct req *r, struct req_ent *e, struct req_done *done)
{
	done->id = e->id;
	done->n = e->n;
	e->id = NULL;
	ent_clear(e);
	r->count--;
}

int
req_answer(struct req *r, unsigned long seq, const char *from,
    const char *account, struct req_done *done)
{
	size_t i;

	if (r->ents == NULL || seq == 0)
		return 0;
	for (i = 0; i < REQ_MAX; i++) {
		if (r->ents[i].seq != seq)
			continue;
		if (!from_addressee(&r->ents[i], from, account))
			return 0;
		ent_take(r, &r->ents[i], done);
		return 1;
	}
	return 0;
}

int
req_expired(struct req *r, uint64_t now, struct req_done *done)
{
	size_t i;

	while (r->rcount > 0 && r->recent[r->rfirst].deadline <= now)
		recent_drop(r);
	if (r->count == 0)
		return 0;
	for (i = 0; i < REQ_MAX; i++) {
		if (r->ents[i].seq != 0 && r->ents[i].deadline <= now) {
			ent_take(r, &r->ents[i], done);
			return 1;
		}
	}
	return 0;
}

void
req_extend(struct req *r, uint64_t deadline)
{
	size_t i;

	for (i = 0; r->ents != NULL && i < REQ_MAX; i++)
		if (r->ents[i].seq != 0 && r->ents[i].deadline < deadline)
			r->ents[i].deadline = deadline;
}

void
req_cancel(struct req *r, unsigned long seq)
{
	size_t i;

	for (i = 0; r->ents != NULL && i < REQ_MAX; i++) {
		if (seq != 0 && r->ents[i].seq == seq) {
			ent_clear(&r->ents[i]);
			r->count--;
			return;
		}
	}
}

int
req_idle(const struct req *r)
{
	return r->count == 0 && r->rcount == 0;
}

size_t
req_pending(const struct req *r)
{
	return r->count;
}

void
req_sent(struct req *r, const char *id, uint64_t deadline)
{
	struct req_recent *e;

	if (r->recent == NULL)
		r->recent = xcalloc(REQ_RECENT, sizeof(*r->recent));
	if (r->rcount == REQ_RECENT)
		recent_drop(r);
	e = &r->recent[(r->rfirst + r->rcount++) % REQ_RECENT];
	e->hash = id_hash(id);
	e->deadline = deadline;
}

int
req_bounce(struct req *r, const char *id, uint64_t now)
{
	uint64_t h = id_hash(id);
	struct req_recent *e;
	size_t i;

	for (i = 0; i < r->rcount; i++) {
		e = &r->recent[(r->rfirst + i) % REQ_RECENT];
		if (e->deadline > now && e->hash == h)
			return 1;
	}
	return 0;
}
