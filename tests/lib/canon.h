/*
 * A canonical form of XML elements, for the unit tests and the fuzz targets
 * that check a line against the element it came from; made with a plain
 * expat parser of our own (namespaces on, no triplets): resolved names,
 * attributes sorted, adjacent text merged, namespace declarations and
 * prefixes gone.  Two elements are equal as trees when their canonical
 * forms are equal bytes.
 *
 * The form: "<" name NUL, then for each attribute in name order "@" name
 * NUL value NUL, then the content ("T" text NUL for a run of text, a child
 * element), then ">".  XML text holds no NUL, so this is unambiguous.
 */
#ifndef CLAWSD_TESTS_CANON_H
#define CLAWSD_TESTS_CANON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define CANON_MAX	64

struct canon_elem {
	struct buf	 form;
	char		*name;		/* "uri\x01local" or "local" */
};

struct canon {
	struct canon_elem	 elems[CANON_MAX];
	size_t			 n;	/* complete elements recorded */
	size_t			 lost;	/* complete ones beyond CANON_MAX */
	int			 error;	/* expat said the input is bad */
	int			 roots;	/* elements at depth 1 */
};

/*
 * Parse `data' as a document and record every complete element at depth
 * `depth' (1: the document element; 2: the children of a stream or
 * wrapper).  Without `final', the document may still be open (a stream).
 */
void	canon_parse(struct canon *, const char *data, size_t len, int depth,
	    int final);
void	canon_free(struct canon *);

/* Whether two elements are equal as trees. */
int	canon_equal(const struct canon_elem *, const struct canon_elem *);
/* Abort with a message and both forms when they differ. */
void	canon_expect_equal(const struct canon_elem *want,
	    const struct canon_elem *got, const char *what);

/* Print a buffer with its NULs and controls visible, to stderr. */
void	canon_dump(const char *label, const char *data, size_t len);

/*
 * Where to cut `len' bytes into writes, drawn from a hash of the input's
 * own bytes (so a reproducer replays the same cuts): cuts[0] is 0, then up
 * to three offsets in order, and cuts[n] is `len'.  Returns n.
 */
size_t	canon_cuts(const uint8_t *data, size_t size, size_t len,
	    size_t cuts[5]);

#endif
