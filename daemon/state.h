/*
 * State kept across restarts in `state_directory' (SPEC section 9): the
 * archive id of the last message relayed from each archive (the account's,
 * each room's), so that a restarted daemon catches up from where it was.
 *
 * One small file, `archive-ids', one "ARCHIVE-JID ID" per line.  It is
 * written whole to a temporary file, synced and renamed over the old one, so
 * a crash leaves either the old or the new content.  What it holds is
 * bounded and checked when read: a bad line is logged and ignored.
 */
#ifndef CLAWSD_STATE_H
#define CLAWSD_STATE_H

#include <stddef.h>

#define STATE_FILE		"archive-ids"
#define STATE_MAX_ENTRIES	1024	/* archives: the account and rooms */
#define STATE_MAX_JID		3071	/* RFC 7622: three parts of 1023 */
#define STATE_MAX_ID		256	/* a XEP-0359 id is short in practice */
#define STATE_MAX_FILE		(STATE_MAX_ENTRIES * \
				    (STATE_MAX_JID + STATE_MAX_ID + 2))

struct state;

struct state	*state_new(void);
void		 state_free(struct state *);
/*
 * Keep the state in `dir' (NULL: in memory only), created 0700 when
 * missing, and read what it holds.  Returns 0, or -1 with the reason
 * logged (the state is then kept in memory only).
 */
int		 state_open(struct state *, const char *dir);
/* The last id relayed from `archive' (a bare JID), NULL if none. */
const char	*state_get(const struct state *, const char *archive);
/*
 * Remember `id' for `archive'.  Returns 0, or -1 when the id or the JID is
 * not one the file can hold (too long, a control character, a space in the
 * JID) or the table is full; nothing is changed then.
 */
int		 state_set(struct state *, const char *archive, const char *id);
/* Nonzero when something changed since the last state_save. */
int		 state_dirty(const struct state *);
/*
 * Write the file if something changed.  Returns 0, or -1 with the reason
 * logged (it stays dirty and the next call tries again).
 */
int		 state_save(struct state *);

#endif
