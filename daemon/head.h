/*
 * What the hub and the filters need to know of a line the daemon relays
 * (SPEC 4.1): its kind and the type, id and from of its top element, read
 * by the stream's parser as the line was written, and, scanned from the
 * line only when asked, the namespaces of its children and the place of an
 * attribute (lines are stream.c's own: double-quoted attributes, every
 * namespace declared).
 */
#ifndef CLAWSD_HEAD_H
#define CLAWSD_HEAD_H

#include <stddef.h>

enum head_kind {
	HEAD_OTHER,
	HEAD_MESSAGE,
	HEAD_PRESENCE,
	HEAD_IQ,
};

struct head {
	const char	*line;		/* ending in \n */
	size_t		 len;
	enum head_kind	 kind;
	const char	*type;		/* attribute values, NULL if absent */
	const char	*id;
	const char	*from;
};

/* An attribute value as written (escaped, quotes excluded). */
struct head_val {
	const char	*p;
	size_t		 len;
};

/*
 * The value of attribute `name' (without a prefix) in the start tag that
 * `data' begins with: 0, or -1 if absent.
 */
int	 head_attr(const char *data, size_t len, const char *name,
	    struct head_val *);
/* Does a child element of the line's top element have namespace `ns'? */
int	 head_child_ns(const struct head *, const char *ns);

#endif
