#include <stdlib.h>
#include <string.h>

#include "xmlw.h"

#define XML_NS	"http://www.w3.org/XML/1998/namespace"

/* A namespace binding in scope: offsets into xmlw.names. */
struct xmlw_decl {
	size_t	prefix;		/* "" for the default namespace */
	size_t	uri;
	int	depth;
};

/* Which bytes need escaping: 1 in text, 2 in attribute values. */
static const unsigned char esc_class[256] = {
	['\t'] = 3, ['\n'] = 3, ['\r'] = 3,
	['&'] = 3, ['<'] = 3, ['>'] = 1, ['"'] = 2,
};

static void
escape(struct buf *b, const char *s, size_t n, unsigned char mask)
{
	const char *run = s, *end = s + n;
	const char *rep;

	buf_reserve(b, n);
	for (; s < end; s++) {
		if (!(esc_class[(unsigned char)*s] & mask))
			continue;
		buf_append(b, run, (size_t)(s - run));
		switch (*s) {
		case '\t': rep = "&#9;"; break;
		case '\n': rep = "&#10;"; break;
		case '\r': rep = "&#13;"; break;
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		default: rep = "&quot;"; break;
		}
		buf_puts(b, rep);
		run = s + 1;
	}
	buf_append(b, run, (size_t)(end - run));
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

/* One pass over "uri SEP local SEP prefix", "uri SEP local" or "local". */
static void
qname_split(struct qname *q, const char *name)
{
	const char *p, *part = name, *seps[2];
	int n = 0;

	for (p = name; *p != '\0'; p++)
		if (*p == XMLW_NSSEP && n < 2)
			seps[n++] = p;
	q->uri = q->prefix = "";
	q->ulen = q->plen = 0;
	if (n > 0) {
		q->uri = name;
		q->ulen = (size_t)(seps[0] - name);
		part = seps[0] + 1;
	}
	q->local = part;
	q->llen = (size_t)((n > 1 ? seps[1] : p) - part);
	if (n > 1) {
		q->prefix = seps[1] + 1;
		q->plen = (size_t)(p - q->prefix);
	}
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
	buf_append(&w->names, prefix, plen);
	buf_putc(&w->names, '\0');
	d->uri = w->names.len;
	buf_append(&w->names, uri, ulen);
	buf_putc(&w->names, '\0');
}

static const char *
lookup(const struct xmlw *w, const char *prefix, size_t plen)
{
	const struct xmlw_decl *d;
	size_t i;

	for (i = w->ndecls; i > 0; i--) {
		d = &w->decls[i - 1];
		if (strncmp(w->names.data + d->prefix, prefix, plen) == 0 &&
		    w->names.data[d->prefix + plen] == '\0')
			return w->names.data + d->uri;
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
	const char *cur;

	if (q->plen == 3 && memcmp(q->prefix, "xml", 3) == 0)
		return;
	cur = lookup(w, q->prefix, q->plen);
	if (cur == NULL && q->ulen == 0)
		return;
	if (cur != NULL && strlen(cur) == q->ulen &&
	    memcmp(cur, q->uri, q->ulen) == 0)
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
	w->depth++;
	qname_split(&q, name);
	buf_putc(w->out, '<');
	write_qname(w->out, &q);
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
xmlw_end(struct xmlw *w, const char *name)
{
	struct qname q;

	if (w->open) {
		buf_append(w->out, "/>", 2);
		w->open = 0;
	} else {
		qname_split(&q, name);
		buf_append(w->out, "</", 2);
		write_qname(w->out, &q);
		buf_putc(w->out, '>');
	}
	while (w->ndecls > 0 && w->decls[w->ndecls - 1].depth == w->depth)
		w->ndecls--;
	w->depth--;
}
