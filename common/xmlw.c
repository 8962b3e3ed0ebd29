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
}

void
xmlw_free(struct xmlw *w)
{
	buf_free(&w->names);
	free(w->decls);
	free(w->tags);
	xmlw_init(w);
}

static void
push_decl(struct xmlw *w, const char *prefix, size_t plen, const char *uri,
    size_t ulen)
{
	struct xmlw_decl *d;

	if (w->ndecls == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 8;
		w->decls = xrealloc(w->decls, w->cap * sizeof(*w->decls));
	}
	d = &w->decls[w->ndecls++];
	d->depth = w->depth;
	d->prefix = w->names.len;
	d->plen = plen;
	buf_append(&w->names, prefix, plen);
	d->uri = w->names.len;
	d->ulen = ulen;
	buf_append(&w->names, uri, ulen);
}

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
	return NULL;
}

void
xmlw_begin(struct xmlw *w, struct buf *out, const char *default_ns)
{
	w->out = out;
	w->ndecls = 0;
	w->depth = 0;
	w->open = 0;
	buf_reset(&w->names, 4096);
	if (default_ns != NULL)
		push_decl(w, "", 0, default_ns, strlen(default_ns));
}

/* Declare prefix -> uri on the element being written unless it is in scope. */
static void
ensure_ns(struct xmlw *w, const struct qname *q)
{
	const struct xmlw_decl *cur;

	if (q->plen == 3 && memcmp(q->prefix, "xml", 3) == 0)
		return;
	cur = lookup(w, q->prefix, q->plen);
	if (cur == NULL && q->ulen == 0)
		return;
	if (cur != NULL && cur->ulen == q->ulen &&
	    memcmp(w->names.data + cur->uri, q->uri, q->ulen) == 0)
		return;
	push_decl(w, q->prefix, q->plen, q->uri, q->ulen);
	buf_append(w->out, " xmlns", 6);
	if (q->plen > 0) {
		buf_putc(w->out, ':');
		buf_append(w->out, q->prefix, q->plen);
	}
	buf_append(w->out, "=\"", 2);
	xmlw_attr(w->out, q->uri, q->ulen);
	buf_putc(w->out, '"');
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

void
xmlw_start(struct xmlw *w, const char *name, const char **attrs)
{
	struct qname q;
	size_t i;

	close_start_tag(w);
	qname_split(&q, name);
	buf_putc(w->out, '<');
	push_tag(w, &q);
	ensure_ns(w, &q);
	for (i = 0; attrs[i] != NULL; i += 2) {
		qname_split(&q, attrs[i]);
		/* Unprefixed attributes are in no namespace, whatever the
		 * default: only prefixed ones need declarations. */
		if (q.plen > 0)
			ensure_ns(w, &q);
		buf_putc(w->out, ' ');
		write_qname(w->out, &q);
		buf_append(w->out, "=\"", 2);
		xmlw_attr(w->out, attrs[i + 1], strlen(attrs[i + 1]));
		buf_putc(w->out, '"');
	}
	w->open = 1;
}

void
xmlw_chars(struct xmlw *w, const char *s, size_t n)
{
	close_start_tag(w);
	xmlw_text(w->out, s, n);
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
}
