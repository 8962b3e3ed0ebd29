/*
 * Growable byte buffer.  Allocation failure aborts: every buffer the daemon
 * keeps is bounded by configuration, so running out of memory is not a
 * condition it can recover from.
 */
#ifndef CLAWSD_BUF_H
#define CLAWSD_BUF_H

#include <stddef.h>

struct buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
};

void	 buf_init(struct buf *);
void	 buf_free(struct buf *);
void	 buf_reserve(struct buf *, size_t);
void	 buf_append(struct buf *, const void *, size_t);
void	 buf_puts(struct buf *, const char *);
void	 buf_putc(struct buf *, char);
void	 buf_printf(struct buf *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
void	 buf_consume(struct buf *, size_t);
void	 buf_swap(struct buf *, struct buf *);
/* Drop the contents; give memory back when it grew past `keep' bytes. */
void	 buf_reset(struct buf *, size_t keep);
/* NUL-terminated view of the contents (the NUL is not counted in len). */
const char *buf_cstr(struct buf *);

void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xrealloc(void *, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);

#endif
