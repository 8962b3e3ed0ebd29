/*
 * One line from the daemon (SPEC 4.1), read with expat: the top element's
 * name and namespace, its attributes, its text, the text of a
 * jabber:client <body/> child, and the rooms of a status answer.
 */
#ifndef CLAWSDCTL_LINE_H
#define CLAWSDCTL_LINE_H

#include <stddef.h>

#include "buf.h"

#define LINE_NS_CLIENT	"jabber:client"
#define LINE_NS_CTL	"urn:x-clawsd"

struct line {
	char		 name[32];	/* local name of the top element */
	int		 ctl;		/* in urn:x-clawsd */
	int		 stanza;	/* message, presence or iq of
					 * jabber:client */
	struct buf	 attrs;		/* name NUL value NUL ... */
	struct buf	 text;		/* the top element's own text */
	struct buf	 body;		/* the <body/> child's text */
	int		 has_body;
	struct buf	 rooms;		/* jid NUL nick NUL joined NUL ... of
					 * the <room/> children (SPEC 8) */
	char		 error[64];	/* a stanza error's condition */
};

void		 line_init(struct line *);
void		 line_free(struct line *);
/* Parse `len' bytes (no newline): 0, or -1 when not one XML element. */
int		 line_parse(struct line *, const char *, size_t);
/* An attribute of the top element without a namespace, or NULL. */
const char	*line_attr(const struct line *, const char *name);
/* The room after `prev' (NULL: the first), or NULL; its nick and joined
 * follow it as the next two strings. */
const char	*line_room(const struct line *, const char *prev);
/* Is `data' one well-formed XML element (for iq payloads)? */
int		 line_is_element(const char *data, size_t len);

#endif
