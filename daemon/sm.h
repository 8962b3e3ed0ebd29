/*
 * Stream management (XEP-0198): the counters of handled stanzas in both
 * directions, the stanzas sent and not yet acknowledged, and what a
 * resumption needs.  Every count the server sends goes through a call that
 * checks it against what was really sent: a confused or hostile server
 * gets an error back, never a dropped stanza.  No I/O here.
 *
 *	OFF --sm_enable--> ENABLING --sm_enabled--> ON --sm_lost--> DOWN
 *	DOWN --sm_resumed--> ON		DOWN, ON --sm_forget--> OFF
 */
#ifndef CLAWSD_SM_H
#define CLAWSD_SM_H

#include <stddef.h>
#include <stdint.h>

#include "squeue.h"

/* Flag of unacked entries that came from socket clients. */
#define SM_CLIENT	1

struct sm;

struct sm	*sm_new(void);
void		 sm_free(struct sm *);

/*
 * <enable/> sent on a new session: stanzas sent from now on are counted
 * and kept until acknowledged.
 */
void		 sm_enable(struct sm *);
/*
 * <enabled/>: counting of the server's stanzas starts; `id' is the
 * resumption id, or NULL.  -1 when no <enable/> awaits an answer.
 */
int		 sm_enabled(struct sm *, const char *id);
/*
 * <failed/> to <enable/>: no stream management on this connection; what
 * was sent meanwhile is not kept.  -1 when no <enable/> awaits an answer.
 */
int		 sm_enable_failed(struct sm *);
/* Our stanzas are counted on this connection (<enable/> sent, or resumed). */
int		 sm_counting(const struct sm *);
/* The server counts for us: it may send <r/> and <a/> (enabled, resumed). */
int		 sm_on(const struct sm *);

/* A stanza was sent: kept (with the caller's tag) until acknowledged. */
void		 sm_sent(struct sm *, const char *, size_t, int flags,
		    uint64_t tag);
/*
 * Told of each stanza the server acknowledged (an <a/>, <resumed/>, or a
 * stream both sides closed), with the tag sm_sent had for it (not 0).
 */
void		 sm_on_release(struct sm *, void (*)(void *, uint64_t),
		    void *arg);
/* The tag of the i-th unacknowledged stanza, oldest first. */
uint64_t	 sm_unacked_tag(const struct sm *, size_t i);
/* A stanza from the server was handled. */
void		 sm_received(struct sm *);
/* Our h: the stanzas handled from the server (for <a/> and <resume/>). */
uint32_t	 sm_handled(const struct sm *);
/* Stanzas sent and not yet acknowledged. */
size_t		 sm_unacked(const struct sm *);
/* The i-th of them, oldest first (for a resend); NULL past the last. */
const char	*sm_unacked_at(const struct sm *, size_t i, size_t *len);
/*
 * Should an <r/> go now?  One at a time: 1 (and it counts as sent) when
 * counting, something is unacknowledged and no request is in flight.
 */
int		 sm_want_ack(struct sm *);
/*
 * <a h/>: the server has our first h stanzas (h wraps at 2^32).  Returns
 * 0, or -1 with a reason in *why when h is impossible (more than was sent,
 * or fewer than it acknowledged before): nothing is dropped then.
 */
int		 sm_acked(struct sm *, uint32_t h, const char **why);

/* The connection is gone: keep what a resumption needs. */
void		 sm_lost(struct sm *);
/* A session the server may resume: its id, or NULL. */
const char	*sm_resume_id(const struct sm *);
/*
 * <resumed h/>: counting goes on where it was; what the server does not
 * have is in sm_unacked_at, to send again.  -1 (and *why) for an
 * impossible h, or when there was nothing to resume.
 */
int		 sm_resumed(struct sm *, uint32_t h, const char **why);
/*
 * The server has everything sent so far without counting it: our stream
 * was closed by both sides (RFC 6120 4.4).  Nothing is kept to resend.
 */
void		 sm_closed(struct sm *);
/*
 * No resumption: the unacknowledged stanzas from clients go in front of
 * `requeue' to be sent again on the new session; the rest is forgotten.
 */
void		 sm_forget(struct sm *, struct squeue *requeue);

#endif
