#include <stdlib.h>
#include <string.h>

#include "head.h"

/* One start tag: its name and the span of its attributes. */
struct tag {
	const char	*name;
	size_t		 nlen;
	const char	*attrs;
	const char	*attrs_end;
	const char	*end;		/* past '>' */
	int		 empty;
};

static int
space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static const char *
skip_space(const char *p, const char *end)
{
	while (p < end && space(*p))
		p++;
	return p;
}

/*
 * The next attribute from *pp: its name and value spans; 0, or -1 at the
 * end of the tag (*pp then points at '>' or "/>") or on a malformed one.
 */
static int
next_attr(const char **pp, const char *end, struct head_val *name,
    struct head_val *value)
{
	const char *p = skip_space(*pp, end), *q;
	char quote;

	*pp = p;
	if (p >= end || *p == '>' || *p == '/')
		return -1;
	for (q = p; q < end && !space(*q) && *q != '=' && *q != '>' &&
	    *q != '/'; q++)
		;
	name->p = p;
	name->len = (size_t)(q - p);
	q = skip_space(q, end);
	if (q >= end || *q != '=')
		return -1;
	q = skip_space(q + 1, end);
	if (q >= end || (*q != '"' && *q != '\''))
		return -1;
	quote = *q++;
	value->p = q;
	if ((q = memchr(q, quote, (size_t)(end - q))) == NULL)
		return -1;
	value->len = (size_t)(q - value->p);
	*pp = q + 1;
	return 0;
}

/* The start tag at p ('<'); 0, or -1 when it is not one. */
static int
scan_tag(const char *p, const char *end, struct tag *t)
{
	struct head_val n, v;
	const char *q;

	if (p >= end || *p != '<')
		return -1;
	for (q = ++p; q < end && !space(*q) && *q != '>' && *q != '/'; q++)
		;
	if (q == p)
		return -1;
	t->name = p;
	t->nlen = (size_t)(q - p);
	t->attrs = q;
	while (next_attr(&q, end, &n, &v) == 0)
		;
	t->attrs_end = q;
	if (q < end && *q == '>')
		t->empty = 0;
	else if (end - q >= 2 && q[0] == '/' && q[1] == '>') {
		t->empty = 1;
		q++;
	} else
		return -1;
	t->end = q + 1;
	return 0;
}

/* The value of attribute `name' in a tag, or p NULL. */
static struct head_val
tag_attr(const struct tag *t, const char *name, size_t nlen)
{
	struct head_val n, v;
	const char *q = t->attrs;

	while (next_attr(&q, t->attrs_end, &n, &v) == 0)
		if (n.len == nlen && memcmp(n.p, name, nlen) == 0)
			return v;
	v.p = NULL;
	v.len = 0;
	return v;
}

/* One character of escaped text at *pp; -1 on a malformed reference. */
static long
unescape_one(const char **pp, const char *end)
{
	static const struct { const char *ref; char c; } refs[] = {
		{ "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
		{ "&quot;", '"' }, { "&apos;", '\'' },
	};
	const char *p = *pp, *semi;
	char *stop;
	size_t i, n;
	long c;

	if (*p != '&') {
		*pp = p + 1;
		return (unsigned char)*p;
	}
	semi = memchr(p, ';', (size_t)(end - p));
	if (semi == NULL)
		return -1;
	n = (size_t)(semi + 1 - p);
	*pp = semi + 1;
	for (i = 0; i < sizeof(refs) / sizeof(refs[0]); i++)
		if (n == strlen(refs[i].ref) && memcmp(p, refs[i].ref, n) == 0)
			return (unsigned char)refs[i].c;
	/* &#N; and &#xN;: the serializer writes only CR, LF and TAB so. */
	if (n < 4 || p[1] != '#')
		return -1;
	c = p[2] == 'x' ? strtol(p + 3, &stop, 16) : strtol(p + 2, &stop, 10);
	return stop == semi && c > 0 && c < 128 ? c : -1;
}

/* Does the value, unescaped, equal `s'? */
static int
head_is(const struct head_val *v, const char *s)
{
	const char *p = v->p, *end = v->p + v->len;
	long c;

	if (p == NULL)
		return 0;
	/* Most values hold no reference: compared as they are. */
	if (memchr(p, '&', v->len) == NULL)
		return v->len == strlen(s) && memcmp(p, s, v->len) == 0;
	while (p < end) {
		if ((c = unescape_one(&p, end)) < 0 || *s == '\0' ||
		    (unsigned char)*s != c)
			return 0;
		s++;
	}
	return *s == '\0';
}

/* The namespace of a child's tag: its prefix bound here or on the top. */
static int
child_ns_is(const struct tag *child, const struct tag *top, const char *ns)
{
	const char *colon = memchr(child->name, ':', child->nlen);
	char attr[256];
	struct head_val v;
	size_t alen;

	if (colon == NULL) {
		v = tag_attr(child, "xmlns", 5);
		if (v.p == NULL)
			v = tag_attr(top, "xmlns", 5);
		return head_is(&v, ns);
	}
	alen = (size_t)(colon - child->name) + 6;
	if (alen >= sizeof(attr))
		return 0;
	memcpy(attr, "xmlns:", 6);
	memcpy(attr + 6, child->name, alen - 6);
	v = tag_attr(child, attr, alen);
	if (v.p == NULL)
		v = tag_attr(top, attr, alen);
	return head_is(&v, ns);
}

int
head_child_ns(const struct head *h, const char *ns)
{
	const char *p, *end = h->line + h->len;
	struct tag top, t;
	int depth = 1;

	if (scan_tag(h->line, end, &top) != 0 || top.empty)
		return 0;
	p = top.end;
	while ((p = memchr(p, '<', (size_t)(end - p))) != NULL) {
		if (end - p >= 2 && p[1] == '/') {
			if (--depth == 0)
				return 0;
			p++;
			continue;
		}
		if (scan_tag(p, end, &t) != 0)
			return 0;
		if (depth == 1 && child_ns_is(&t, &top, ns))
			return 1;
		if (!t.empty)
			depth++;
		p = t.end;
	}
	return 0;
}

int
head_attr(const char *data, size_t len, const char *name,
    struct head_val *v)
{
	struct tag t;

	if (scan_tag(data, data + len, &t) != 0)
		return -1;
	*v = tag_attr(&t, name, strlen(name));
	return v->p != NULL ? 0 : -1;
}
