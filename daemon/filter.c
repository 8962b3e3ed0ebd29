#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "filter.h"

/* One attribute: a list of words, or absent (matches everything). */
struct list {
	int	 given;
	char	**v;
	size_t	 n;
};

struct filter {
	struct list	 stanzas, types, from, with;
};

static void
list_free(struct list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

void
filter_free(struct filter *f)
{
	if (f == NULL)
		return;
	list_free(&f->stanzas);
	list_free(&f->types);
	list_free(&f->from);
	list_free(&f->with);
	free(f);
}

static int
list_parse(struct list *l, const char *value, const char **err)
{
	const char *p = value;
	size_t len;

	l->given = 1;
	for (;;) {
		p += strspn(p, " \t\r\n");
		if (*p == '\0')
			return 0;
		len = strcspn(p, " \t\r\n");
		if (l->n == FILTER_MAX_VALUES) {
			*err = "too many values in one attribute";
			return -1;
		}
		if (len > FILTER_MAX_VALUE) {
			*err = "a value is too long";
			return -1;
		}
		l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
		l->v[l->n++] = xstrndup(p, len);
		p += len;
	}
}

static int
list_has(const struct list *l, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strlen(l->v[i]) == len && memcmp(l->v[i], s, len) == 0)
			return 1;
	return 0;
}

static int
check_stanzas(const struct list *l, const char **err)
{
	static const char *const kinds[] = { "message", "presence", "iq" };
	size_t i, k;

	for (i = 0; i < l->n; i++) {
		for (k = 0; k < 3 && strcmp(l->v[i], kinds[k]) != 0; k++)
			;
		if (k == 3) {
			*err = "stanzas: expected message, presence or iq";
			return -1;
		}
	}
	return 0;
}

/* A JID, a bare JID or a domain: not empty in any of its parts. */
static int
check_jids(const struct list *l, const char **err)
{
	const char *at, *slash, *j;
	size_t i;

	for (i = 0; i < l->n; i++) {
		j = l->v[i];
		slash = strchr(j, '/');
		at = strchr(j, '@');
		if (at != NULL && slash != NULL && at > slash)
			at = NULL;	/* an @ in the resource */
		if (j[0] == '@' || j[0] == '/' || (at && (at[1] == '/' ||
		    at[1] == '\0')) || (slash && slash[1] == '\0')) {
			*err = "from: not a JID";
			return -1;
		}
	}
	return 0;
}

struct filter *
filter_parse(const char **attrs, const char **err)
{
	struct filter *f = xcalloc(1, sizeof(*f));
	struct list *l;
	size_t i;

	for (i = 0; attrs[i] != NULL; i += 2) {
		if (strcmp(attrs[i], "stanzas") == 0)
			l = &f->stanzas;
		else if (strcmp(attrs[i], "types") == 0)
			l = &f->types;
		else if (strcmp(attrs[i], "from") == 0)
			l = &f->from;
		else if (strcmp(attrs[i], "with") == 0)
			l = &f->with;
		else {
			*err = "unknown attribute (stanzas, types, from, with)";
			goto bad;
		}
		if (l->given) {
			*err = "attribute given twice";
			goto bad;
		}
		if (list_parse(l, attrs[i + 1], err) != 0)
			goto bad;
	}
	if (check_stanzas(&f->stanzas, err) != 0 ||
	    check_jids(&f->from, err) != 0)
		goto bad;
	return f;
bad:
	filter_free(f);
	return NULL;
}

static const char *
kind_name(enum head_kind k)
{
	switch (k) {
	case HEAD_MESSAGE:	return "message";
	case HEAD_PRESENCE:	return "presence";
	case HEAD_IQ:		return "iq";
	default:		return NULL;
	}
}

static int
match_type(const struct list *l, const struct head *h)
{
	if (h->type != NULL)
		return list_has(l, h->type, strlen(h->type));
	if (h->kind == HEAD_MESSAGE)
		return list_has(l, "normal", 6);
	if (h->kind == HEAD_PRESENCE)
		return list_has(l, "available", 9);
	return 0;
}

/*
 * A full JID matches itself, a bare JID each of its resources, a domain
 * itself and every JID at it.  Domains are compared without case.
 */
static int
jid_matches(const char *want, const char *jid)
{
	const char *slash = strchr(jid, '/'), *at = strchr(jid, '@');
	size_t bare = slash ? (size_t)(slash - jid) : strlen(jid);
	const char *domain;
	size_t dlen;

	if (at != NULL && slash != NULL && at > slash)
		at = NULL;
	if (strchr(want, '/') != NULL)
		return strcmp(want, jid) == 0;
	if (strchr(want, '@') != NULL)
		return strlen(want) == bare && memcmp(want, jid, bare) == 0;
	domain = at ? at + 1 : jid;
	dlen = (size_t)(jid + bare - domain);
	return strlen(want) == dlen && strncasecmp(want, domain, dlen) == 0;
}

static int
match_from(const struct list *l, const struct head *h, const char *account)
{
	const char *from = h->from != NULL ? h->from : account;
	size_t i;

	for (i = 0; i < l->n; i++)
		if (jid_matches(l->v[i], from))
			return 1;
	return 0;
}

static int
match_with(const struct list *l, const struct head *h)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (head_child_ns(h, l->v[i]))
			return 1;
	return 0;
}

int
filter_match(const struct filter *f, const struct head *h,
    const char *account)
{
	const char *kind = kind_name(h->kind);

	if (f->stanzas.given &&
	    (kind == NULL || !list_has(&f->stanzas, kind, strlen(kind))))
		return 0;
	if (f->types.given && !match_type(&f->types, h))
		return 0;
	if (f->from.given && !match_from(&f->from, h, account))
		return 0;
	return !f->with.given || match_with(&f->with, h);
}
