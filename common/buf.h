/*
 * Growable byte buffer.  Allocation failure aborts: every buffer the daemon
 * keeps is bounded by configuration, so running out of memory is not a
 * condition it can recover from.
 */
#ifndef CLAWSD_BUF_H
#define CLAWSD_BUF_H

#include <stddef.h>
#include <string.h>

struct buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
};

void	 buf_init(struct buf *);
void	 buf_free(struct buf *);
void	 buf_reserve(struct buf *, size_t);
void	 buf_puts(struct buf *, const char *);
void	 buf_printf(struct buf *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
void	 buf_consume(struct buf *, size_t);
void	 buf_swap(struct buf *, struct buf *);
/* Drop the contents; give memory back when it grew past `keep' bytes. */
void	 buf_reset(struct buf *, size_t keep);
/* NUL-terminated view of the contents (the NUL is not counted in len). */
const char *buf_cstr(struct buf *);

/* On the hot path: the common case, room enough, needs no call. */
static inline void
buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (b->cap - b->len <= n)
		buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static inline void
buf_putc(struct buf *b, char c)
{
	if (b->cap - b->len <= 1)
		buf_reserve(b, 1);
	b->data[b->len++] = c;
}

void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xrealloc(void *, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);

#endif
