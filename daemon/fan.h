/*
 * Output shared by many clients.  A line is copied once, into a reference
 * counted block; each client queues views of the blocks, which go to the
 * kernel as one writev.  A view grows in place while a client's next line
 * follows its last one in the same block, so a subscriber that keeps up
 * holds one view per block.
 */
#ifndef CLAWSD_FAN_H
#define CLAWSD_FAN_H

#include <stddef.h>

#include <uv.h>

struct fan_block;

/* A line written to the shared block, ready to be queued for clients. */
struct fan_ref {
	struct fan_block	*block;
	size_t			 off;
	size_t			 len;
};

struct fan {
	struct fan_block	*cur;		/* lines are appended here */
};

struct fan_seg;

/* One client's output: views in order, and their total. */
struct fan_queue {
	struct fan_seg		*segs;
	size_t			 head;		/* first view not yet written */
	size_t			 n;		/* views in use after head */
	size_t			 cap;
	size_t			 bytes;		/* not yet written */
};

void	 fan_init(struct fan *);
void	 fan_free(struct fan *);
/* Copy a line into the current block (a new one when it is full). */
void	 fan_put(struct fan *, const char *, size_t, struct fan_ref *);

void	 fan_queue_init(struct fan_queue *);
/* Drop every view. */
void	 fan_queue_clear(struct fan_queue *);
void	 fan_queue_push(struct fan_queue *, const struct fan_ref *);
/* The first views as buffers for a write, at most `max'; their count. */
int	 fan_queue_bufs(const struct fan_queue *, uv_buf_t *, int max);
/* `n' bytes were written: drop them from the front. */
void	 fan_queue_consume(struct fan_queue *, size_t n);

#endif
