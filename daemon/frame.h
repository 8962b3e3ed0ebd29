/*
 * The framer of one socket client's input: expat reads the bytes as a
 * sequence of elements, in any chunking, and each complete stanza comes out
 * serialized for the server's stream.  No I/O here.
 */
#ifndef CLAWSD_FRAME_H
#define CLAWSD_FRAME_H

#include <stddef.h>

/* Error conditions of SPEC section 4. */
#define FRAME_NOT_WELL_FORMED	"not-well-formed"
#define FRAME_RESTRICTED_XML	"restricted-xml"
#define FRAME_NOT_A_STANZA	"not-a-stanza"
#define FRAME_TOO_LARGE		"too-large"

/* Namespace of the commands to the daemon (SPEC 4.5). */
#define FRAME_NS_CTL		"urn:x-clawsd"

/* What the hub needs to know of a stanza: from its start tag. */
struct frame_stanza {
	const char	*name;		/* "message", "presence" or "iq" */
	const char	*type;		/* attribute values, NULL if absent */
	const char	*id;
	const char	*to;
	size_t		 head;		/* bytes of the start tag */
};

struct frame_cb {
	/* A complete stanza, ready for the server's stream (no newline). */
	void	(*stanza)(void *arg, const char *data, size_t len,
		    const struct frame_stanza *);
	/* A well-formed element that is not a stanza; input goes on. */
	void	(*reject)(void *arg, const char *condition, const char *text);
	/*
	 * An element in FRAME_NS_CTL: its local name and attributes without
	 * a namespace (name, value, ..., NULL).  Optional: without it, such
	 * an element is not a stanza either.
	 */
	void	(*command)(void *arg, const char *name, const char **attrs);
};

struct frame;

struct frame	*frame_new(size_t max_size, const struct frame_cb *, void *arg);
void		 frame_free(struct frame *);
/*
 * Feed bytes.  Returns 0, or -1 once the input is not acceptable (with the
 * condition and a human text from frame_error); the client must then be
 * closed.  Stanzas completed before the fault have been delivered.
 */
int		 frame_feed(struct frame *, const char *, size_t);
void		 frame_error(const struct frame *, const char **condition,
		    const char **text);
/*
 * The input has ended: returns 0, or -1 when it ended inside an element
 * (the condition from frame_error); that fragment is dropped.
 */
int		 frame_finish(struct frame *);

#endif
