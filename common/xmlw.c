#include <stdlib.h>
#include <string.h>

#include "xmlw.h"

#define XML_NS	"http://www.w3.org/XML/1998/namespace"

/* A namespace binding in scope: offsets into xmlw.names. */
struct xmlw_decl {
	size_t	prefix;		/* "" for the default namespace */
	size_t	plen;
	size_t	uri;
	size_t	ulen;
	int	depth;
};

/* Where an open element's name was written: its end tag copies it. */
struct xmlw_tag {
	size_t	off;
	size_t	len;
};

/* Which bytes need escaping: 1 in text, 2 in attribute values. */
static const unsigned char esc_class[256] = {
	['\t'] = 3, ['\n'] = 3, ['\r'] = 3,
	['&'] = 3, ['<'] = 3, ['>'] = 1, ['"'] = 2,
};

#ifdef __SSE2__
#include <emmintrin.h>

/*
 * Most bytes need no escaping: test sixteen at a time against the six
 * that may, and leave the rest to the table.
 */
static const char *
skip_plain(const char *s, const char *end, unsigned char mask)
{
	const __m128i tab = _mm_set1_epi8('\t'), lf = _mm_set1_epi8('\n');
	const __m128i cr = _mm_set1_epi8('\r'), amp = _mm_set1_epi8('&');
	const __m128i lt = _mm_set1_epi8('<');
	const __m128i last = _mm_set1_epi8(mask == 1 ? '>' : '"');
	__m128i v, hit;
	int bits;

	for (; end - s >= 16; s += 16) {
		v = _mm_loadu_si128((const __m128i *)s);
		hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, tab),
		    _mm_cmpeq_epi8(v, lf)), _mm_or_si128(_mm_cmpeq_epi8(v, cr),
		    _mm_cmpeq_epi8(v, amp)));
		hit = _mm_or_si128(hit, _mm_or_si128(_mm_cmpeq_epi8(v, lt),
		    _mm_cmpeq_epi8(v, last)));
		bits = _mm_movemask_epi8(hit);
		if (bits != 0)
			return s + __builtin_ctz((unsigned)bits);
	}
	while (s < end && !(esc_class[(unsigned char)*s] & mask))
		s++;
	return s;
}
#else
static const char *
skip_plain(const char *s, const char *end, unsigned char mask)
{
	while (s < end && !(esc_class[(unsigned char)*s] & mask))
		s++;
	return s;
}
#endif

static void
escape(struct buf *b, const char *s, size_t n, unsigned char mask)
{
	const char *end = s + n, *run;
	const char *rep;

	if (b->cap - b->len <= n)
		buf_reserve(b, n);
	for (;;) {
		run = s;
		s = skip_plain(s, end, mask);
		buf_append(b, run, (size_t)(s - run));
		if (s == end)
			return;
		switch (*s++) {
		case '\t': rep = "&#9;"; break;
		case '\n': rep = "&#10;"; break;
		case '\r': rep = "&#13;"; break;
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		default: rep = "&quot;"; break;
		}
		buf_puts(b, rep);
	}
}

void
xmlw_text(struct buf *b, const char *s, size_t n)
{
	escape(b, s, n, 1);
}

void
xmlw_attr(struct buf *b, const char *s, size_t n)
{
	escape(b, s, n, 2);
}

void
xmlw_attr_pair(struct buf *b, const char *name, const char *value)
{
	buf_putc(b, ' ');
	buf_puts(b, name);
	buf_append(b, "=\"", 2);
	xmlw_attr(b, value, strlen(value));
	buf_putc(b, '"');
}

/* A name split into its parts; lengths because they are not terminated. */
struct qname {
	const char	*uri, *local, *prefix;
	size_t		 ulen, llen, plen;
};

/* "uri SEP local SEP prefix", "uri SEP local" or "local". */
static void
qname_split(struct qname *q, const char *name)
{
	size_t len = strlen(name);
	const char *end = name + len, *sep;

	q->uri = q->prefix = "";
	q->ulen = q->plen = 0;
	q->local = name;
	q->llen = len;
	sep = memchr(name, XMLW_NSSEP, len);
	if (sep == NULL)
		return;
	q->uri = name;
	q->ulen = (size_t)(sep - name);
	q->local = sep + 1;
	sep = memchr(q->local, XMLW_NSSEP, (size_t)(end - q->local));
	if (sep == NULL) {
		q->llen = (size_t)(end - q->local);
		return;
	}
	q->llen = (size_t)(sep - q->local);
	q->prefix = sep + 1;
	q->plen = (size_t)(end - q->prefix);
}

void
xmlw_init(struct xmlw *w)
{
	memset(w, 0, sizeof(*w));
	buf_init(&w->names);
	buf_init(&w->pnames);
	buf_init(&w->hoist);
}

void
xmlw_free(struct xmlw *w)
{
	buf_free(&w->names);
	buf_free(&w->pnames);
	buf_free(&w->hoist);
	free(w->decls);
	free(w->hoisted);
	free(w->pend);
	free(w->tags);
	xmlw_init(w);
}

static struct xmlw_decl *
grow(struct xmlw_decl **arr, size_t n, size_t *cap)
{
	if (n == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		*arr = xrealloc(*arr, *cap * sizeof(**arr));
	}
	return &(*arr)[n];
}

static void
set_decl(struct xmlw_decl *d, struct buf *names, int depth,
    const char *prefix, size_t plen, const char *uri, size_t ulen)
{
	/* Allocated even for empty strings: offsets into it are used. */
	buf_reserve(names, plen + ulen + 1);
	d->depth = depth;
	d->prefix = names->len;
	d->plen = plen;
	buf_append(names, prefix, plen);
	d->uri = names->len;
	d->ulen = ulen;
	buf_append(names, uri, ulen);
}

/* A binding in scope from here to the end of the current element. */
static int
push_decl(struct xmlw *w, const char *prefix, size_t plen, const char *uri,
    size_t ulen)
{
	if (w->ndecls + w->nhoisted >= XMLW_MAX_BINDINGS)
		return -1;
	set_decl(grow(&w->decls, w->ndecls, &w->cap), &w->names, w->depth,
	    prefix, plen, uri, ulen);
	w->ndecls++;
	return 0;
}

/* Innermost binding of the prefix: the open elements', then the top's. */
static const struct xmlw_decl *
lookup(const struct xmlw *w, const char *prefix, size_t plen)
{
	const struct xmlw_decl *d;
	size_t i;

	for (i = w->ndecls; i > 0; i--) {
		d = &w->decls[i - 1];
		if (d->plen == plen &&
		    memcmp(w->names.data + d->prefix, prefix, plen) == 0)
			return d;
	}
	for (i = 0; i < w->nhoisted; i++) {
		d = &w->hoisted[i];
		if (d->plen == plen &&
		    memcmp(w->names.data + d->prefix, prefix, plen) == 0)
			return d;
	}
	return NULL;
}

static int
binds(const struct xmlw *w, const struct xmlw_decl *d, const char *uri,
    size_t ulen)
{
	return d->ulen == ulen && memcmp(w->names.data + d->uri, uri, ulen) == 0;
}

void
xmlw_begin(struct xmlw *w, struct buf *out, const char *default_ns)
{
	w->out = out;
	w->ndecls = 0;
	w->nhoisted = 0;
	w->depth = 0;
	w->open = 0;
	w->added = 0;
	w->hoist.len = 0;
	buf_reset(&w->names, 4096);
	if (default_ns != NULL)
		push_decl(w, "", 0, default_ns, strlen(default_ns));
}

int
xmlw_declare(struct xmlw *w, const char *prefix, const char *uri)
{
	if (prefix == NULL)
		prefix = "";
	if (uri == NULL)
		uri = "";
	if (w->npend >= XMLW_MAX_BINDINGS)
		return -1;
	set_decl(grow(&w->pend, w->npend, &w->pendcap), &w->pnames, 0,
	    prefix, strlen(prefix), uri, strlen(uri));
	w->npend++;
	return 0;
}

static void
write_decl(struct buf *b, const char *prefix, size_t plen, const char *uri,
    size_t ulen)
{
	buf_append(b, " xmlns", 6);
	if (plen > 0) {
		buf_putc(b, ':');
		buf_append(b, prefix, plen);
	}
	buf_append(b, "=\"", 2);
	xmlw_attr(b, uri, ulen);
	buf_putc(b, '"');
}

/*
 * The declarations the source wrote on this element, so that they stay in
 * scope (a qualified name in text or in an attribute value keeps its
 * meaning); one that binds what is bound already is left out.
 */
static int
write_pending(struct xmlw *w)
{
	const struct xmlw_decl *d, *cur;
	const char *prefix, *uri;
	size_t i;
	int rc = 0;

	for (i = 0; i < w->npend && rc == 0; i++) {
		d = &w->pend[i];
		prefix = w->pnames.data + d->prefix;
		uri = w->pnames.data + d->uri;
		/* xmlns:xml may only bind what it is bound to anyway. */
		if (d->plen == 3 && memcmp(prefix, "xml", 3) == 0)
			continue;
		cur = lookup(w, prefix, d->plen);
		if (cur != NULL && binds(w, cur, uri, d->ulen))
			continue;
		rc = push_decl(w, prefix, d->plen, uri, d->ulen);
		/* xmlns="" with no default namespace in scope: nothing to
		 * write, but no default may be added above it either. */
		if (rc == 0 && (cur != NULL || d->ulen > 0))
			write_decl(w->out, prefix, d->plen, uri, d->ulen);
	}
	w->npend = 0;
	w->pnames.len = 0;
	return rc;
}

/*
 * Make prefix -> uri hold on the element being written.  A binding the
 * source made outside the line (on the stream header) goes once on the
 * top element, in scope for the whole line, whenever nothing in the line
 * binds the prefix: declared on each element that uses it, a thousand
 * siblings would repeat it a thousand times.  Otherwise it goes on the
 * element itself.  What the source did not write counts toward
 * XMLW_MAX_ADDED.
 */
static int
ensure_ns(struct xmlw *w, const struct qname *q)
{
	const struct xmlw_decl *cur;
	struct buf *b = w->out;
	size_t before;

	if (q->plen == 3 && memcmp(q->prefix, "xml", 3) == 0)
		return 0;
	cur = lookup(w, q->prefix, q->plen);
	if (cur != NULL && binds(w, cur, q->uri, q->ulen))
		return 0;
	if (cur == NULL && q->ulen == 0) {
		/* The top element in no namespace: nothing may give the
		 * line a default namespace above it. */
		return w->depth == 1 ? push_decl(w, "", 0, "", 0) : 0;
	}
	if (cur == NULL && w->depth > 1) {
		if (w->ndecls + w->nhoisted >= XMLW_MAX_BINDINGS)
			return -1;
		set_decl(grow(&w->hoisted, w->nhoisted, &w->hoistcap),
		    &w->names, 1, q->prefix, q->plen, q->uri, q->ulen);
		w->nhoisted++;
		b = &w->hoist;
	} else if (push_decl(w, q->prefix, q->plen, q->uri, q->ulen) != 0)
		return -1;
	before = b->len;
	write_decl(b, q->prefix, q->plen, q->uri, q->ulen);
	w->added += b->len - before;
	return w->added > XMLW_MAX_ADDED ? -1 : 0;
}

static int
is_client_ns(const char *uri, size_t ulen)
{
	return ulen == sizeof(XMLW_NS_CLIENT) - 1 &&
	    memcmp(uri, XMLW_NS_CLIENT, ulen) == 0;
}

/*
 * SPEC 4.1: the top element declares xmlns="jabber:client", so a top
 * element in jabber:client is written unprefixed (unless the source
 * declares another default namespace on it); below, a jabber:client
 * element is written unprefixed when that is the default in scope.
 */
static void
unprefix(const struct xmlw *w, struct qname *q)
{
	const struct xmlw_decl *d = NULL;
	const char *uri = NULL;
	size_t i, ulen = 0;

	if (q->plen == 0 || !is_client_ns(q->uri, q->ulen))
		return;
	for (i = 0; i < w->npend; i++)
		if (w->pend[i].plen == 0) {
			uri = w->pnames.data + w->pend[i].uri;
			ulen = w->pend[i].ulen;
		}
	if (uri == NULL && w->depth > 0 &&
	    (d = lookup(w, "", 0)) != NULL) {
		uri = w->names.data + d->uri;
		ulen = d->ulen;
	}
	if (uri == NULL ? w->depth == 0 : is_client_ns(uri, ulen)) {
		q->prefix = "";
		q->plen = 0;
	}
}

static void
write_qname(struct buf *b, const struct qname *q)
{
	if (q->plen > 0) {
		buf_append(b, q->prefix, q->plen);
		buf_putc(b, ':');
	}
	buf_append(b, q->local, q->llen);
}

/* Write the element's name, and keep where for its end tag. */
static void
push_tag(struct xmlw *w, const struct qname *q)
{
	struct xmlw_tag *t;

	if ((size_t)w->depth == w->tagcap) {
		w->tagcap = w->tagcap ? w->tagcap * 2 : 16;
		w->tags = xrealloc(w->tags, w->tagcap * sizeof(*w->tags));
	}
	t = &w->tags[w->depth++];
	t->off = w->out->len;
	write_qname(w->out, q);
	t->len = w->out->len - t->off;
}

static void
close_start_tag(struct xmlw *w)
{
	if (w->open) {
		buf_putc(w->out, '>');
		w->open = 0;
	}
}

int
xmlw_start(struct xmlw *w, const char *name, const char **attrs)
{
	struct qname q;
	size_t i;

	close_start_tag(w);
	qname_split(&q, name);
	unprefix(w, &q);
	buf_putc(w->out, '<');
	push_tag(w, &q);
	w->open = 1;
	if (write_pending(w) != 0 || ensure_ns(w, &q) != 0)
		return -1;
	for (i = 0; attrs[i] != NULL; i += 2) {
		qname_split(&q, attrs[i]);
		/* Unprefixed attributes are in no namespace, whatever the
		 * default: only prefixed ones need declarations. */
		if (q.plen > 0 && ensure_ns(w, &q) != 0)
			return -1;
		buf_putc(w->out, ' ');
		write_qname(w->out, &q);
		buf_append(w->out, "=\"", 2);
		xmlw_attr(w->out, attrs[i + 1], strlen(attrs[i + 1]));
		buf_putc(w->out, '"');
	}
	if (w->depth == 1)
		w->top_end = w->out->len;
	return 0;
}

void
xmlw_chars(struct xmlw *w, const char *s, size_t n)
{
	close_start_tag(w);
	xmlw_text(w->out, s, n);
}

/* The declarations gathered for the top element go into its start tag. */
static void
splice_hoisted(struct xmlw *w)
{
	struct buf *b = w->out;
	size_t n = w->hoist.len;

	buf_reserve(b, n);
	memmove(b->data + w->top_end + n, b->data + w->top_end,
	    b->len - w->top_end);
	memcpy(b->data + w->top_end, w->hoist.data, n);
	b->len += n;
	w->hoist.len = 0;
}

void
xmlw_end(struct xmlw *w)
{
	const struct xmlw_tag *t = &w->tags[w->depth - 1];
	struct buf *b = w->out;

	if (w->open) {
		buf_append(b, "/>", 2);
		w->open = 0;
	} else {
		buf_reserve(b, t->len + 3);
		b->data[b->len++] = '<';
		b->data[b->len++] = '/';
		memcpy(b->data + b->len, b->data + t->off, t->len);
		b->len += t->len;
		b->data[b->len++] = '>';
	}
	while (w->ndecls > 0 && w->decls[w->ndecls - 1].depth == w->depth)
		w->ndecls--;
	w->depth--;
	if (w->depth == 0 && w->hoist.len > 0)
		splice_hoisted(w);
}
