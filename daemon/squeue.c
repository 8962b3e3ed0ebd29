#include <stdlib.h>
#include <string.h>

#include "squeue.h"

void
squeue_init(struct squeue *q)
{
	memset(q, 0, sizeof(*q));
	buf_init(&q->bytes);
}

void
squeue_free(struct squeue *q)
{
	buf_free(&q->bytes);
	free(q->ents);
	squeue_init(q);
}

static struct squeue_ent *
ent(const struct squeue *q, size_t i)
{
	return &q->ents[(q->first + i) % q->cap];
}

static void
grow_ring(struct squeue *q)
{
	struct squeue_ent *n;
	size_t i, cap = q->cap ? q->cap * 2 : 64;

	n = xmalloc(cap * sizeof(*n));
	for (i = 0; i < q->count; i++)
		n[i] = *ent(q, i);
	free(q->ents);
	q->ents = n;
	q->cap = cap;
	q->first = 0;
}

/* Reclaim the dead front of the byte buffer once it is most of it. */
static void
compact(struct squeue *q)
{
	size_t i;

	if (q->head == 0 || q->head < q->bytes.len / 2)
		return;
	buf_consume(&q->bytes, q->head);
	for (i = 0; i < q->count; i++)
		ent(q, i)->off -= q->head;
	q->head = 0;
}

void
squeue_push(struct squeue *q, const char *data, size_t len, int flags)
{
	squeue_push_tag(q, data, len, flags, 0);
}

uint64_t
squeue_tag(const struct squeue *q, size_t i)
{
	return ent(q, i)->tag;
}

void
squeue_push_tag(struct squeue *q, const char *data, size_t len, int flags,
    uint64_t tag)
{
	struct squeue_ent *e;

	if (q->count == q->cap)
		grow_ring(q);
	compact(q);
	e = ent(q, q->count++);
	e->off = q->bytes.len;
	e->len = len;
	e->flags = flags;
	e->tag = tag;
	buf_append(&q->bytes, data, len);
}

const char *
squeue_at(const struct squeue *q, size_t i, size_t *len, int *flags)
{
	const struct squeue_ent *e;

	if (i >= q->count)
		return NULL;
	e = ent(q, i);
	*len = e->len;
	if (flags != NULL)
		*flags = e->flags;
	return q->bytes.data + e->off;
}

void
squeue_drop(struct squeue *q, size_t n)
{
	if (n >= q->count) {
		q->count = q->first = q->head = 0;
		buf_reset(&q->bytes, 1 << 20);
		return;
	}
	q->first = (q->first + n) % q->cap;
	q->count -= n;
	q->head = ent(q, 0)->off;
}

void
squeue_prepend(struct squeue *to, struct squeue *from, int mask)
{
	struct squeue merged;
	const char *p;
	size_t i, len;
	int flags;

	squeue_init(&merged);
	for (i = 0; (p = squeue_at(from, i, &len, &flags)) != NULL; i++)
		if ((flags & mask) == mask)
			squeue_push_tag(&merged, p, len, flags,
			    squeue_tag(from, i));
	for (i = 0; (p = squeue_at(to, i, &len, &flags)) != NULL; i++)
		squeue_push_tag(&merged, p, len, flags, squeue_tag(to, i));
	squeue_free(from);
	squeue_free(to);
	*to = merged;
}
