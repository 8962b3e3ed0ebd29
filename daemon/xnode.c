#include <stdlib.h>
#include <string.h>

#include "xmlp.h"
#include "xmlw.h"
#include "xnode.h"

/* Split "uri SEP local [SEP prefix]" into newly allocated ns and local. */
static void
split_name(const char *name, char **ns, char **local)
{
	const char *sep = strchr(name, XMLW_NSSEP), *end;

	if (sep == NULL) {
		*ns = xstrdup("");
		*local = xstrdup(name);
		return;
	}
	*ns = xstrndup(name, (size_t)(sep - name));
	end = strchr(sep + 1, XMLW_NSSEP);
	*local = end ? xstrndup(sep + 1, (size_t)(end - sep - 1)) :
	    xstrdup(sep + 1);
}

struct xnode *
xnode_new(struct xnode *parent, const char *name, const char **attrs)
{
	struct xnode *n = xcalloc(1, sizeof(*n));
	size_t i, j, count = 0;

	split_name(name, &n->ns, &n->name);
	buf_init(&n->text);
	for (i = 0; attrs[i] != NULL; i += 2)
		if (strchr(attrs[i], XMLW_NSSEP) == NULL)
			count++;
	n->attrs = xcalloc(2 * count + 1, sizeof(char *));
	for (i = 0, j = 0; attrs[i] != NULL; i += 2) {
		if (strchr(attrs[i], XMLW_NSSEP) != NULL)
			continue;
		n->attrs[j++] = xstrdup(attrs[i]);
		n->attrs[j++] = xstrdup(attrs[i + 1]);
	}
	n->parent = parent;
	if (parent == NULL)
		return n;
	if (parent->last)
		parent->last->next = n;
	else
		parent->child = n;
	parent->last = n;
	return n;
}

static void
free_one(struct xnode *n)
{
	char **a;

	for (a = n->attrs; *a != NULL; a++)
		free(*a);
	free(n->attrs);
	free(n->name);
	free(n->ns);
	buf_free(&n->text);
	free(n);
}

/*
 * Without recursion: the depth is the peer's to choose.  Each child is
 * unlinked on the way down, so a node is freed once it has none left.
 */
void
xnode_free(struct xnode *n)
{
	struct xnode *top = n, *up;

	while (n != NULL) {
		if (n->child != NULL) {
			up = n;
			n = n->child;
			up->child = n->next;
			continue;
		}
		up = n == top ? NULL : n->parent;
		free_one(n);
		n = up;
	}
}

int
xnode_is(const struct xnode *n, const char *name, const char *ns)
{
	return n != NULL && strcmp(n->name, name) == 0 &&
	    strcmp(n->ns, ns) == 0;
}

struct xnode *
xnode_child(const struct xnode *n, const char *name, const char *ns)
{
	struct xnode *c;

	for (c = n->child; c != NULL; c = c->next)
		if ((name == NULL || strcmp(c->name, name) == 0) &&
		    strcmp(c->ns, ns) == 0)
			return c;
	return NULL;
}

const char *
xnode_attr(const struct xnode *n, const char *name)
{
	char **a;

	for (a = n->attrs; *a != NULL; a += 2)
		if (strcmp(a[0], name) == 0)
			return a[1];
	return NULL;
}

const char *
xnode_text(struct xnode *n)
{
	return n->text.len ? buf_cstr(&n->text) : "";
}

struct parse {
	struct xmlp	 x;		/* first: see xmlp.h */
	struct xnode	*root, *cur;
};

static void XMLCALL
parse_start(void *arg, const char *name, const char **attrs)
{
	struct parse *p = arg;

	p->cur = xnode_new(p->cur, name, attrs);
	if (p->root == NULL)
		p->root = p->cur;
}

static void XMLCALL
parse_end(void *arg, const char *name)
{
	struct parse *p = arg;

	p->cur = p->cur->parent;
}

static void XMLCALL
parse_chars(void *arg, const char *text, int len)
{
	struct parse *p = arg;

	if (p->cur != NULL)
		buf_append(&p->cur->text, text, (size_t)len);
}

struct xnode *
xnode_parse(const char *data, size_t len)
{
	struct parse p;
	int ok;

	memset(&p, 0, sizeof(p));
	if (xmlp_init(&p.x, &p) != 0)
		return NULL;
	XML_SetElementHandler(p.x.parser, parse_start, parse_end);
	XML_SetCharacterDataHandler(p.x.parser, parse_chars);
	ok = XML_Parse(p.x.parser, data, (int)len, XML_TRUE) ==
	    XML_STATUS_OK && p.x.refused == NULL;
	xmlp_free(&p.x);
	if (!ok) {
		xnode_free(p.root);
		return NULL;
	}
	return p.root;
}
