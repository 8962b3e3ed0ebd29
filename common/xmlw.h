/*
 * XML writing: escaping, and a namespace-normalizing serializer fed with
 * expat's callbacks.
 *
 * The serializer writes one element tree on one line: every namespace it
 * uses is declared in that line, attribute values are double-quoted, and CR,
 * LF and TAB are written as character references, so the output holds no
 * raw line break and parses alone to the same tree.
 *
 * Names come from a parser created with XML_ParserCreateNS(NULL, XMLW_NSSEP)
 * and XML_SetReturnNSTriplet(p, 1): "uri SEP local SEP prefix", "uri SEP
 * local" or "local".
 */
#ifndef CLAWSD_XMLW_H
#define CLAWSD_XMLW_H

#include <stddef.h>

#include "buf.h"

#define XMLW_NSSEP	'\x01'

/* Append character data, escaped for element content. */
void	 xmlw_text(struct buf *, const char *, size_t);
/* Append an attribute value, escaped for a double-quoted attribute. */
void	 xmlw_attr(struct buf *, const char *, size_t);
/* Append ` name="value"' with the value escaped. */
void	 xmlw_attr_pair(struct buf *, const char *name, const char *value);

struct xmlw_decl;
struct xmlw_tag;

struct xmlw {
	struct buf		*out;
	struct buf		 names;		/* prefix and uri strings */
	struct xmlw_decl	*decls;		/* bindings in scope, innermost last */
	size_t			 ndecls;
	size_t			 cap;
	struct xmlw_tag		*tags;		/* open elements' names in out */
	size_t			 tagcap;
	int			 depth;
	int			 open;		/* start tag still lacks its '>' */
};

void	 xmlw_init(struct xmlw *);
void	 xmlw_free(struct xmlw *);
/*
 * Start a tree written to `out'.  `default_ns' is the default namespace the
 * line will be read in (NULL: none, so the top element declares its own).
 */
void	 xmlw_begin(struct xmlw *, struct buf *out, const char *default_ns);
void	 xmlw_start(struct xmlw *, const char *name, const char **attrs);
void	 xmlw_chars(struct xmlw *, const char *, size_t);
void	 xmlw_end(struct xmlw *);

#endif
