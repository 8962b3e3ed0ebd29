#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fan.h"

/*
 * Lines of a loop turn share blocks of this size: below glibc's mmap
 * threshold (main.c), so blocks come from the heap and are reused rather
 * than faulted in afresh.  A longer line gets a block of its own size.
 */
#define FAN_BLOCK	(64 * 1024)

struct fan_block {
	size_t	refs;
	size_t	len;
	size_t	cap;
	char	data[];
};

struct fan_seg {
	struct fan_block	*block;
	size_t			 off;
	size_t			 len;
};

static void
block_unref(struct fan_block *b)
{
	if (b != NULL && --b->refs == 0)
		free(b);
}

void
fan_init(struct fan *f)
{
	f->cur = NULL;
}

void
fan_free(struct fan *f)
{
	block_unref(f->cur);
	f->cur = NULL;
}

void
fan_put(struct fan *f, const char *data, size_t len, struct fan_ref *r)
{
	struct fan_block *b = f->cur;
	size_t cap;

	r->len = 0;
	if (len == 0)
		return;
	if (b == NULL || b->cap - b->len < len) {
		block_unref(b);
		cap = len > FAN_BLOCK ? len : FAN_BLOCK;
		b = xmalloc(sizeof(*b) + cap);
		b->refs = 1;		/* the fan's own */
		b->len = 0;
		b->cap = cap;
		f->cur = b;
	}
	memcpy(b->data + b->len, data, len);
	r->block = b;
	r->off = b->len;
	r->len = len;
	b->len += len;
}

void
fan_queue_init(struct fan_queue *q)
{
	memset(q, 0, sizeof(*q));
}

void
fan_queue_clear(struct fan_queue *q)
{
	size_t i;

	for (i = 0; i < q->n; i++)
		block_unref(q->segs[q->head + i].block);
	free(q->segs);
	fan_queue_init(q);
}

void
fan_queue_push(struct fan_queue *q, const struct fan_ref *r)
{
	struct fan_seg *s;

	if (r->len == 0)
		return;
	q->bytes += r->len;
	if (q->n > 0) {
		s = &q->segs[q->head + q->n - 1];
		if (s->block == r->block && s->off + s->len == r->off) {
			s->len += r->len;
			return;
		}
	}
	if (q->head + q->n == q->cap) {
		if (q->head > 0) {
			memmove(q->segs, q->segs + q->head,
			    q->n * sizeof(*q->segs));
			q->head = 0;
		}
		if (q->n == q->cap) {
			q->cap = q->cap ? q->cap * 2 : 8;
			q->segs = xrealloc(q->segs, q->cap * sizeof(*q->segs));
		}
	}
	s = &q->segs[q->head + q->n++];
	s->block = r->block;
	s->off = r->off;
	s->len = r->len;
	r->block->refs++;
}

int
fan_queue_bufs(const struct fan_queue *q, uv_buf_t *bufs, int max)
{
	const struct fan_seg *s;
	int i;

	for (i = 0; i < max && (size_t)i < q->n; i++) {
		s = &q->segs[q->head + (size_t)i];
		bufs[i] = uv_buf_init(s->block->data + s->off,
		    (unsigned)s->len);
	}
	return i;
}

void
fan_queue_consume(struct fan_queue *q, size_t n)
{
	struct fan_seg *s;

	q->bytes -= n;
	while (n > 0) {
		s = &q->segs[q->head];
		if (n < s->len) {
			s->off += n;
			s->len -= n;
			return;
		}
		n -= s->len;
		block_unref(s->block);
		q->head++;
		q->n--;
	}
	if (q->n == 0)
		q->head = 0;
}
