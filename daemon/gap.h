/*
 * No gap across a new session (SPEC sections 8 and 9): between the session
 * and the clients, it catches up from the account's archive after a new
 * session (holding the live stanzas meanwhile), relays no archive id twice,
 * keeps the last one in the state file, and keeps the rooms joined.
 */
#ifndef CLAWSD_GAP_H
#define CLAWSD_GAP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "conf.h"
#include "head.h"

struct gap_cb {
	/* A stanza for the clients, on one line ending in \n. */
	void	(*relay)(void *arg, const struct head *);
	/* A status line (joined, left) for every client. */
	void	(*status)(void *arg, const char *line, size_t len);
	/* A stanza of the daemon's own for the server, while it is up. */
	void	(*send)(void *arg, const char *data, size_t len);
	/* A receipt (session_cb's acked, refused), in order with the lines. */
	void	(*acked)(void *arg, uint64_t tag);
	void	(*refused)(void *arg, uint64_t tag, const char *condition,
		    const char *text);
};

struct gap;

struct gap	*gap_new(uv_loop_t *, const struct gap_cb *, void *arg);
/* Writes the state file and closes the timers (the loop then ends them). */
void		 gap_free(struct gap *);
/*
 * Use this configuration (it must outlive its use): the state directory,
 * catch_up, catch_up_max, the rooms (joined and left as they changed).
 */
void		 gap_configure(struct gap *, const struct conf *);
/* The session is up: a new one, or `resumed'. */
void		 gap_up(struct gap *, int resumed);
/* The session is down. */
void		 gap_down(struct gap *);
/* A stanza from the server on its way to the clients. */
void		 gap_line(struct gap *, const struct head *);
/*
 * A receipt for a client's stanza: it waits behind the live stanzas held
 * back, so that a bounce held there is not overtaken by the acknowledgement
 * that came after it.
 */
void		 gap_acked(struct gap *, uint64_t tag);
void		 gap_refused(struct gap *, uint64_t tag, const char *condition,
		    const char *text);
/* Nonzero while a catch-up holds the live stanzas back. */
int		 gap_catching_up(const struct gap *);
/* The rooms for the status answer: one <room/> each. */
void		 gap_rooms_status(const struct gap *, struct buf *);
/* Write the state file now (shutdown). */
void		 gap_save(struct gap *);

#endif
