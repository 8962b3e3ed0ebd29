/*
 * A FIFO of stanzas in one byte buffer: no allocation per stanza once the
 * buffers have grown to the working size.
 */
#ifndef CLAWSD_SQUEUE_H
#define CLAWSD_SQUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct squeue_ent {
	size_t	 off;		/* in squeue.bytes */
	size_t	 len;
	int	 flags;		/* the caller's */
	uint64_t tag;		/* the caller's, 0: none */
};

struct squeue {
	struct buf		 bytes;
	size_t			 head;		/* bytes before it are dead */
	struct squeue_ent	*ents;		/* a ring */
	size_t			 cap;
	size_t			 first;
	size_t			 count;
};

void	 squeue_init(struct squeue *);
void	 squeue_free(struct squeue *);
void	 squeue_push(struct squeue *, const char *, size_t, int flags);
void	 squeue_push_tag(struct squeue *, const char *, size_t, int flags,
	    uint64_t tag);
/* The tag of the i-th stanza from the front (i < count). */
uint64_t squeue_tag(const struct squeue *, size_t i);
/* The i-th stanza from the front; its bytes stay valid until a push. */
const char *squeue_at(const struct squeue *, size_t i, size_t *len,
	    int *flags);
/* Drop the first n stanzas. */
void	 squeue_drop(struct squeue *, size_t n);
/* Move everything of `from' whose flags match `mask' in front of `to'. */
void	 squeue_prepend(struct squeue *to, struct squeue *from, int mask);

static inline size_t
squeue_count(const struct squeue *q)
{
	return q->count;
}

#endif
