/*
 * Small files in the state directory, read whole and replaced atomically:
 * written to a temporary file, synced and renamed over the old one, so a
 * crash leaves either the old or the new content.  Mode 0600: what they
 * hold may be secret (a FAST token).
 */
#ifndef CLAWSD_SFILE_H
#define CLAWSD_SFILE_H

#include <stddef.h>

#include "buf.h"

/* Create `dir' (0700) if it is missing.  Returns 0, or -1 (logged). */
int	sfile_dir(const char *dir, const char *what);
/*
 * Read `dir'/`name', a regular file of at most `max' bytes, into `out'
 * (replacing its content, NUL-terminated).  Returns 1 when read, 0 when
 * there is no such file, -1 (logged, `what' naming the file's role) when
 * it cannot be read or is too large.
 */
int	sfile_read(const char *dir, const char *name, size_t max,
	    struct buf *out, const char *what);
/* Replace `dir'/`name' with `len' bytes.  Returns 0, or -1 (logged). */
int	sfile_write(const char *dir, const char *name, const char *data,
	    size_t len, const char *what);

#endif
