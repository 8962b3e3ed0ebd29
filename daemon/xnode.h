/*
 * A small element tree for the few server elements the session has to look
 * into (features, SASL, bind results, pings, errors).  Stanzas that are only
 * relayed never become trees.
 */
#ifndef CLAWSD_XNODE_H
#define CLAWSD_XNODE_H

#include "buf.h"

struct xnode {
	char		*name;		/* local name */
	char		*ns;		/* namespace URI, "" for none */
	char		**attrs;	/* local name, value, ..., NULL */
	struct buf	 text;
	struct xnode	*parent;
	struct xnode	*child;		/* first child */
	struct xnode	*last;		/* last child */
	struct xnode	*next;		/* next sibling */
};

/* A new node from expat's name triplet and attributes, added to `parent'. */
struct xnode	*xnode_new(struct xnode *parent, const char *name,
		    const char **attrs);
void		 xnode_free(struct xnode *);
int		 xnode_is(const struct xnode *, const char *name, const char *ns);
/* First child with this name and namespace (any name when name is NULL). */
struct xnode	*xnode_child(const struct xnode *, const char *name,
		    const char *ns);
/* Value of an attribute without namespace, NULL if absent. */
const char	*xnode_attr(const struct xnode *, const char *name);
/* Text content, "" if none. */
const char	*xnode_text(struct xnode *);
/*
 * The tree of one serialized element (a relayed line), NULL if it is not
 * one well-formed element.
 */
struct xnode	*xnode_parse(const char *, size_t);

#endif
