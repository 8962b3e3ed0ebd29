#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "log.h"
#include "mam.h"
#include "stream.h"
#include "xmlp.h"
#include "xmlw.h"
#include "xnode.h"

#define ID_MAX		256	/* longer archive ids are refused */
#define STAMP_MAX	64
#define JID_MAX		3071	/* RFC 7622: three parts of 1023 */

enum phase {
	IDLE,
	QUERYING,	/* a page asked for, its results coming */
};

/* An archived message waiting for the end of the catch-up. */
struct held {
	char	*line;
	size_t	 len;
	char	*id;
};

struct mam {
	const struct mam_cb	*cb;
	void			*arg;
	char			*archive;	/* NULL: the account */
	char			*skip_from;	/* bare JID, or NULL */
	size_t			 max;
	enum phase		 phase;
	int			 learn;		/* only the newest id wanted */
	unsigned		 seq;
	char			 qid[32];	/* iq id and queryid of the page */
	struct held		*ring;		/* the newest `max' results */
	size_t			 head, n;
	unsigned		 skipped;
	unsigned		 page;		/* results in this page */
	char			*last;		/* newest id seen */
};

/*
 * One result message taken apart: a first pass finds the ids and the
 * stamp, a second writes the forwarded message alone, delay added.
 */
struct parse {
	struct xmlp	 x;		/* first: see xmlp.h */
	int		 pass;
	int		 depth;
	int		 in_result, in_fwd, in_msg;
	int		 results;	/* <result> children seen */
	int		 bad;
	char		 queryid[ID_MAX + 1];
	char		 id[ID_MAX + 1];
	char		 from[JID_MAX + 1];
	char		 inner_from[JID_MAX + 1];	/* the archived message's */
	char		 stamp[STAMP_MAX + 1];
	int		 has_msg, has_delay;
	struct xmlw	 w;
	struct buf	*out;
};

static int
tag_is(const char *name, const char *ns, const char *local)
{
	size_t n = strlen(ns), l = strlen(local);

	return strncmp(name, ns, n) == 0 && name[n] == XMLW_NSSEP &&
	    strncmp(name + n + 1, local, l) == 0 &&
	    (name[n + 1 + l] == '\0' || name[n + 1 + l] == XMLW_NSSEP);
}

static const char *
attr(const char **attrs, const char *name)
{
	for (; attrs[0] != NULL; attrs += 2)
		if (strcmp(attrs[0], name) == 0)
			return attrs[1];
	return NULL;
}

/* Copy a bounded attribute; a missing or oversized one marks the result bad. */
static void
copy_attr(struct parse *p, char *dst, size_t size, const char **attrs,
    const char *name)
{
	const char *v = attr(attrs, name);

	if (v == NULL || strlen(v) >= size || *v == '\0') {
		p->bad = 1;
		return;
	}
	strcpy(dst, v);
}

static void XMLCALL
on_start(void *arg, const char *name, const char **attrs)
{
	struct parse *p = arg;
	const char *v;

	p->depth++;
	if (p->in_msg) {
		if (p->pass == 2)
			xmlw_start(&p->w, name, attrs);
		else if (p->depth == 5 && tag_is(name, NS_DELAY, "delay"))
			p->has_delay = 1;
		return;
	}
	if (p->depth == 1) {
		v = xmlp_stanza_name(name);
		if (v == NULL || strcmp(v, "message") != 0)
			p->bad = 1;
		if ((v = attr(attrs, "from")) != NULL && strlen(v) <
		    sizeof(p->from))
			strcpy(p->from, v);
	} else if (p->depth == 2 && tag_is(name, NS_MAM, "result") &&
	    p->results++ == 0) {
		p->in_result = 1;
		if (p->pass == 1) {
			copy_attr(p, p->queryid, sizeof(p->queryid), attrs,
			    "queryid");
			copy_attr(p, p->id, sizeof(p->id), attrs, "id");
		}
	} else if (p->depth == 3 && p->in_result &&
	    tag_is(name, NS_FORWARD, "forwarded")) {
		p->in_fwd = 1;
	} else if (p->depth == 4 && p->in_fwd &&
	    tag_is(name, NS_DELAY, "delay") && p->pass == 1 &&
	    p->stamp[0] == '\0') {
		copy_attr(p, p->stamp, sizeof(p->stamp), attrs, "stamp");
	} else if (p->depth == 4 && p->in_fwd && !p->has_msg &&
	    xmlp_stanza_name(name) != NULL &&
	    strcmp(xmlp_stanza_name(name), "message") == 0) {
		p->has_msg = p->in_msg = 1;
		if ((v = attr(attrs, "from")) != NULL && strlen(v) <
		    sizeof(p->inner_from))
			strcpy(p->inner_from, v);
		if (p->pass == 2) {
			xmlw_begin(&p->w, p->out, NULL);
			xmlw_start(&p->w, name, attrs);
		}
	}
}

static void XMLCALL
on_end(void *arg, const char *name)
{
	struct parse *p = arg;
	const char *delay[] = { "stamp", p->stamp, NULL };

	if (p->in_msg && p->pass == 2) {
		if (p->depth == 4 && !p->has_delay && p->stamp[0] != '\0') {
			xmlw_start(&p->w, NS_DELAY "\x01" "delay", delay);
			xmlw_end(&p->w);
		}
		xmlw_end(&p->w);
	}
	if (p->depth == 4)
		p->in_msg = 0;
	else if (p->depth == 3)
		p->in_fwd = 0;
	else if (p->depth == 2)
		p->in_result = 0;
	p->depth--;
}

static void XMLCALL
on_chars(void *arg, const char *text, int len)
{
	struct parse *p = arg;

	if (p->in_msg && p->pass == 2)
		xmlw_chars(&p->w, text, (size_t)len);
}

static int
run(struct parse *p, int pass, const char *line, size_t len)
{
	int ok;

	p->pass = pass;
	p->depth = p->in_result = p->in_fwd = p->in_msg = 0;
	p->has_msg = p->results = 0;
	if (pass == 1) {
		if (xmlp_init(&p->x, p) != 0)
			return -1;
	} else {
		xmlp_reset(&p->x, p);
	}
	XML_SetElementHandler(p->x.parser, on_start, on_end);
	XML_SetCharacterDataHandler(p->x.parser, on_chars);
	ok = XML_Parse(p->x.parser, line, (int)len, XML_TRUE) ==
	    XML_STATUS_OK && p->x.refused == NULL;
	return ok ? 0 : -1;
}

/*
 * Take a result message apart: its queryid, archive id, the sender, and
 * the forwarded message as a line with a delay.  -1 if it is not one.
 */
static int
parse_result(struct parse *p, const char *line, size_t len, struct buf *out)
{
	int rc = -1;

	memset(p, 0, sizeof(*p));
	p->out = out;
	xmlw_init(&p->w);
	if (run(p, 1, line, len) == 0 && !p->bad && p->id[0] != '\0') {
		rc = 0;
		if (p->has_msg && (p->has_delay || p->stamp[0] != '\0')) {
			rc = run(p, 2, line, len);
			buf_putc(out, '\n');
		}
	}
	xmlp_free(&p->x);
	xmlw_free(&p->w);
	return rc;
}

/*
 * The query.
 */

struct mam *
mam_new(const char *archive, const char *skip_from, size_t max,
    const struct mam_cb *cb, void *arg)
{
	struct mam *m = xcalloc(1, sizeof(*m));

	m->skip_from = skip_from != NULL ? xstrdup(skip_from) : NULL;
	m->cb = cb;
	m->arg = arg;
	m->archive = archive != NULL ? xstrdup(archive) : NULL;
	m->max = max > 0 ? max : 1;
	m->ring = xcalloc(m->max, sizeof(*m->ring));
	return m;
}

static void
held_clear(struct mam *m)
{
	size_t i;

	for (i = 0; i < m->n; i++) {
		struct held *h = &m->ring[(m->head + i) % m->max];

		free(h->line);
		free(h->id);
		h->line = h->id = NULL;
	}
	m->head = m->n = 0;
}

void
mam_free(struct mam *m)
{
	if (m == NULL)
		return;
	held_clear(m);
	free(m->ring);
	free(m->archive);
	free(m->skip_from);
	free(m->last);
	free(m);
}

int
mam_busy(const struct mam *m)
{
	return m->phase != IDLE;
}

/* One page: after `after' (forward), or the newest `max' (backward). */
static void
send_query(struct mam *m, const char *after, size_t max)
{
	struct buf b;

	snprintf(m->qid, sizeof(m->qid), MAM_ID_PREFIX "%u", ++m->seq);
	buf_init(&b);
	buf_puts(&b, "<iq type=\"set\"");
	xmlw_attr_pair(&b, "id", m->qid);
	if (m->archive != NULL)
		xmlw_attr_pair(&b, "to", m->archive);
	buf_puts(&b, "><query xmlns=\"" NS_MAM "\"");
	xmlw_attr_pair(&b, "queryid", m->qid);
	buf_printf(&b, "><set xmlns=\"" NS_RSM "\"><max>%zu</max>", max);
	if (after != NULL) {
		buf_puts(&b, "<after>");
		xmlw_text(&b, after, strlen(after));
		buf_puts(&b, "</after>");
	} else {
		buf_puts(&b, "<before/>");
	}
	buf_puts(&b, "</set></query></iq>");
	m->page = 0;
	m->phase = QUERYING;
	m->cb->send(m->arg, b.data, b.len);
	buf_free(&b);
}

void
mam_start(struct mam *m, const char *after)
{
	held_clear(m);
	free(m->last);
	m->last = NULL;
	m->skipped = 0;
	m->learn = after == NULL;
	if (m->learn)
		send_query(m, NULL, 1);
	else
		send_query(m, after, m->max < MAM_PAGE ? m->max : MAM_PAGE);
}

void
mam_abort(struct mam *m)
{
	held_clear(m);
	m->phase = IDLE;
}

static void
finish(struct mam *m, int complete, const char *error)
{
	struct mam_result r;
	struct held *h;
	unsigned relayed = 0;

	m->phase = IDLE;
	while (m->n > 0) {
		h = &m->ring[m->head];
		m->cb->relay(m->arg, h->line, h->len, h->id);
		free(h->line);
		free(h->id);
		h->line = h->id = NULL;
		m->head = (m->head + 1) % m->max;
		m->n--;
		relayed++;
	}
	m->head = 0;
	r.relayed = relayed;
	r.skipped = m->skipped;
	r.complete = complete;
	r.last = m->last;
	r.error = error;
	m->cb->done(m->arg, &r);
}

void
mam_stop(struct mam *m, const char *why)
{
	if (m->phase != IDLE)
		finish(m, 0, why);
}

/* From the archive: its bare JID, or for the account none or our own. */
static int
from_archive(const struct mam *m, const char *from)
{
	if (m->archive == NULL)
		return 1;	/* the server only routes our own archive */
	return from != NULL && strcasecmp(from, m->archive) == 0;
}

static void
keep(struct mam *m, struct buf *line, const char *id)
{
	struct held *h;

	if (m->n == m->max) {
		h = &m->ring[m->head];
		free(h->line);
		free(h->id);
		m->head = (m->head + 1) % m->max;
		m->n--;
		m->skipped++;
	}
	h = &m->ring[(m->head + m->n) % m->max];
	h->len = line->len;
	h->line = xstrndup(line->data, line->len);
	h->id = xstrdup(id);
	m->n++;
}

/* Is the bare part of `jid' this bare JID? */
static int
bare_is(const char *jid, const char *bare)
{
	size_t n = strcspn(jid, "/");

	return strlen(bare) == n && strncasecmp(jid, bare, n) == 0;
}

int
mam_message(struct mam *m, const char *line, size_t len)
{
	struct parse p;
	struct buf out;

	if (m->phase != QUERYING)
		return 0;
	buf_init(&out);
	if (parse_result(&p, line, len, &out) == -1 ||
	    strcmp(p.queryid, m->qid) != 0 ||
	    !from_archive(m, p.from[0] != '\0' ? p.from : NULL)) {
		buf_free(&out);
		return 0;
	}
	m->page++;
	free(m->last);
	m->last = xstrdup(p.id);
	if (m->skip_from != NULL && bare_is(p.inner_from, m->skip_from))
		log_debug("catch-up: archived result %s was sent by us: "
		    "skipped", p.id);
	else if (!m->learn && out.len > 0)
		keep(m, &out, p.id);
	else if (!m->learn)
		log_warn("catch-up: archived result %s holds no message with "
		    "a date: skipped", p.id);
	buf_free(&out);
	return 1;
}

int
mam_ours(const char *line, size_t len)
{
	struct parse p;
	struct buf out;
	int rc;

	buf_init(&out);
	rc = parse_result(&p, line, len, &out) == 0 &&
	    strncmp(p.queryid, MAM_ID_PREFIX, strlen(MAM_ID_PREFIX)) == 0;
	buf_free(&out);
	return rc;
}

/* The <set> of a <fin>: its <last>, or NULL. */
static const char *
rsm_last(const struct xnode *fin)
{
	struct xnode *set = xnode_child(fin, "set", NS_RSM), *last;

	if (set == NULL || (last = xnode_child(set, "last", NS_RSM)) == NULL)
		return NULL;
	return *xnode_text(last) != '\0' ? xnode_text(last) : NULL;
}

static void
on_fin(struct mam *m, const struct xnode *fin)
{
	const char *complete = xnode_attr(fin, "complete");
	const char *last = rsm_last(fin);

	if (m->learn || (complete != NULL && (strcmp(complete, "true") == 0 ||
	    strcmp(complete, "1") == 0)) || last == NULL || m->page == 0) {
		finish(m, 1, NULL);
		return;
	}
	if (strlen(last) > ID_MAX) {
		finish(m, 0, "the archive's <last> id is too long");
		return;
	}
	send_query(m, last, m->max < MAM_PAGE ? m->max : MAM_PAGE);
}

/* The remembered id is no longer in the archive: take the newest `max'. */
static void
on_error(struct mam *m, const struct xnode *iq)
{
	const struct xnode *err = xnode_child(iq, "error", NS_CLIENT), *c;
	const char *cond = "unknown";

	for (c = err != NULL ? err->child : NULL; c != NULL; c = c->next)
		if (strcmp(c->ns, "urn:ietf:params:xml:ns:xmpp-stanzas") == 0 &&
		    strcmp(c->name, "text") != 0) {
			cond = c->name;
			break;
		}
	if (strcmp(cond, "item-not-found") == 0 && !m->learn &&
	    m->n == 0 && m->page == 0) {
		log_warn("catch-up: the last id relayed is no longer in the "
		    "archive: fetching the newest %zu", m->max);
		send_query(m, NULL, m->max < MAM_PAGE ? m->max : MAM_PAGE);
		/* The newest page: counted, like any, against `max'. */
		return;
	}
	finish(m, 0, cond);
}

int
mam_iq(struct mam *m, const struct xnode *iq)
{
	const char *id = xnode_attr(iq, "id"), *type = xnode_attr(iq, "type");
	const struct xnode *fin;

	if (m->phase != QUERYING || id == NULL || type == NULL ||
	    strcmp(id, m->qid) != 0 || !from_archive(m, xnode_attr(iq, "from")))
		return 0;
	if (strcmp(type, "error") == 0) {
		on_error(m, iq);
		return 1;
	}
	if (strcmp(type, "result") != 0)
		return 0;
	if ((fin = xnode_child(iq, "fin", NS_MAM)) == NULL) {
		finish(m, 0, "the archive's answer has no <fin>");
		return 1;
	}
	on_fin(m, fin);
	return 1;
}

/*
 * Ids seen lately: a ring of the newest `capacity' ids, with a chained
 * hash index over it.
 */

#define NONE	SIZE_MAX

struct mam_seen {
	char		**id;		/* the ring */
	size_t		*next;		/* chain within a bucket */
	size_t		*bucket;
	size_t		 cap, nbuckets, head, n;
};

static size_t
hash(const char *s, size_t nbuckets)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % nbuckets;
}

struct mam_seen *
mam_seen_new(size_t capacity)
{
	struct mam_seen *s = xcalloc(1, sizeof(*s));
	size_t i;

	s->cap = capacity > 0 ? capacity : 1;
	s->nbuckets = 2 * s->cap;
	s->id = xcalloc(s->cap, sizeof(*s->id));
	s->next = xcalloc(s->cap, sizeof(*s->next));
	s->bucket = xcalloc(s->nbuckets, sizeof(*s->bucket));
	for (i = 0; i < s->nbuckets; i++)
		s->bucket[i] = NONE;
	return s;
}

void
mam_seen_free(struct mam_seen *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->cap; i++)
		free(s->id[i]);
	free(s->id);
	free(s->next);
	free(s->bucket);
	free(s);
}

int
mam_seen_has(const struct mam_seen *s, const char *id)
{
	size_t i;

	for (i = s->bucket[hash(id, s->nbuckets)]; i != NONE; i = s->next[i])
		if (strcmp(s->id[i], id) == 0)
			return 1;
	return 0;
}

/* Unlink the oldest id from its chain and free its slot. */
static void
evict(struct mam_seen *s)
{
	size_t slot = s->head, *pp;

	pp = &s->bucket[hash(s->id[slot], s->nbuckets)];
	while (*pp != slot)
		pp = &s->next[*pp];
	*pp = s->next[slot];
	free(s->id[slot]);
	s->id[slot] = NULL;
	s->head = (s->head + 1) % s->cap;
	s->n--;
}

int
mam_seen_add(struct mam_seen *s, const char *id)
{
	size_t slot, b;

	if (mam_seen_has(s, id))
		return 1;
	if (s->n == s->cap)
		evict(s);
	slot = (s->head + s->n) % s->cap;
	b = hash(id, s->nbuckets);
	s->id[slot] = xstrdup(id);
	s->next[slot] = s->bucket[b];
	s->bucket[b] = slot;
	s->n++;
	return 0;
}
