/*
 * A look at a line the daemon relays (SPEC 4.1: one element serialized by
 * stream.c, double-quoted attributes, every namespace declared): the name
 * and the attributes of its start tag, and the namespaces of its children.
 * A scan of the bytes, no parser and no copy: it runs once per line.
 */
#ifndef CLAWSD_HEAD_H
#define CLAWSD_HEAD_H

#include <stddef.h>

/* An attribute value as written in the line (escaped); p NULL if absent. */
struct head_val {
	const char	*p;
	size_t		 len;
};

enum head_kind {
	HEAD_OTHER,
	HEAD_MESSAGE,
	HEAD_PRESENCE,
	HEAD_IQ,
};

struct head {
	const char	*line;
	size_t		 len;
	enum head_kind	 kind;
	struct head_val	 type, id, from, to;
	size_t		 end;		/* just past the start tag's '>' */
	int		 empty;		/* <x/>: no children */
};

/* Returns 0, or -1 when the line does not begin with a start tag. */
int	 head_parse(struct head *, const char *line, size_t len);
/* Does the attribute equal this (unescaped) string? */
int	 head_is(const struct head_val *, const char *);
/*
 * The value unescaped into `out' (NUL-terminated); its length, or -1 when
 * absent or longer than `size' - 1.
 */
int	 head_value(const struct head_val *, char *out, size_t size);
/*
 * The value of attribute `name' (without a prefix) in the start tag that
 * `data' begins with, as written, quotes excluded: 0, or -1 if absent.
 */
int	 head_attr(const char *data, size_t len, const char *name,
	    struct head_val *);
/* Does a child element of the top one have namespace `ns'? */
int	 head_child_ns(const struct head *, const char *ns);

#endif
