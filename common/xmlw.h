/*
 * XML writing: escaping, and a namespace-normalizing serializer fed with
 * expat's callbacks.
 *
 * The serializer writes one element tree on one line: every namespace it
 * uses is declared in that line, attribute values are double-quoted, and CR,
 * LF and TAB are written as character references, so the output holds no
 * raw line break and parses alone to the same tree.  The declarations the
 * source wrote inside the tree stay in scope; a namespace bound outside it
 * (on the stream header) is declared once, on the top element.  So a line
 * holds at most XMLW_MAX_ADDED bytes of declarations the source did not
 * write, and is otherwise at most six times the source (escaping: a
 * quote becomes &quot;).
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
#define XMLW_NS_CLIENT	"jabber:client"

/*
 * Namespace bindings in scope in a line, at most: every name written is
 * looked up among them.  No XMPP payload comes near.
 */
#define XMLW_MAX_BINDINGS	256
/* Bytes of declarations a line may carry that its source did not write. */
#define XMLW_MAX_ADDED		65536

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
	struct xmlw_decl	*hoisted;	/* bindings added to the top element */
	size_t			 nhoisted;
	size_t			 hoistcap;
	struct buf		 hoist;		/* their declarations, to insert */
	size_t			 top_end;	/* where, in out */
	struct xmlw_decl	*pend;		/* from xmlw_declare, for the next */
	size_t			 npend;		/* element (strings in pnames) */
	size_t			 pendcap;
	struct buf		 pnames;
	size_t			 added;		/* bytes the source did not write */
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
/*
 * A namespace declaration the source wrote on the next element to start, as
 * expat's StartNamespaceDeclHandler gives it (prefix NULL: the default
 * namespace; uri NULL: xmlns="").  For a top element, before or after
 * xmlw_begin(), since expat reports it before the element.  Returns 0, or -1
 * past XMLW_MAX_BINDINGS.
 */
int	 xmlw_declare(struct xmlw *, const char *prefix, const char *uri);
/*
 * Returns 0, or -1 past XMLW_MAX_BINDINGS or XMLW_MAX_ADDED: the tree cannot
 * be written within bounds, and the writer must be begun again.
 */
int	 xmlw_start(struct xmlw *, const char *name, const char **attrs);
void	 xmlw_chars(struct xmlw *, const char *, size_t);
void	 xmlw_end(struct xmlw *);

#endif
