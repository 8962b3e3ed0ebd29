/*
 * What the server's stream and the clients' input share about expat: a
 * parser with namespace triplets, restricted XML (RFC 6120 section 11.1:
 * DTDs, entity declarations, processing instructions, comments) refused,
 * and every element handed on as soon as its last byte is in.
 *
 * The owner's struct must begin with its struct xmlp: expat's user data
 * points at the owner, and the refusing handlers read it as an xmlp.
 */
#ifndef CLAWSD_XMLP_H
#define CLAWSD_XMLP_H

#include <expat.h>

/*
 * Deepest nesting of a stanza (itself at level 1), in both directions.  No
 * XMPP extension comes near it; libxml2 refuses documents deeper than 256
 * by default, so a deeper line could not be read by many subscribers; and
 * it bounds what any code that walks a tree may be asked to walk.
 */
#define XMLP_MAX_DEPTH	256

struct xmlp {
	XML_Parser	 parser;
	const char	*refused;	/* e.g. "a comment", or NULL */
};

/* Returns 0, or -1 when expat cannot allocate a parser. */
int			 xmlp_init(struct xmlp *, void *owner);
/* A new document, same settings; the owner sets its handlers again. */
void			 xmlp_reset(struct xmlp *, void *owner);
void			 xmlp_free(struct xmlp *);
/*
 * "message", "presence" or "iq" when expat's `name' is one of those in
 * jabber:client, else NULL.
 */
const char		*xmlp_stanza_name(const char *name);
/* Byte offsets of the start and the end of the current event. */
unsigned long long	 xmlp_event_start(const struct xmlp *);
unsigned long long	 xmlp_event_end(const struct xmlp *);

#endif
