/*
 * Stream management (XEP-0198) bookkeeping: the counters of handled
 * stanzas in both directions, the stanzas sent and not yet acknowledged,
 * and what a resumption needs.  No I/O here.
 */
#ifndef CLAWSD_SM_H
#define CLAWSD_SM_H

#include <stdint.h>

#include "squeue.h"

/* Flag of unacked entries that came from socket clients. */
#define SM_CLIENT	1

struct sm {
	char		*id;		/* resumable session, NULL if none */
	int		 active;	/* counting on this connection */
	int		 requested;	/* an <r/> awaits its <a/> */
	uint32_t	 h_in;		/* stanzas handled from the server */
	uint32_t	 acked;		/* the server's last h */
	struct squeue	 unacked;
};

void	 sm_init(struct sm *);
void	 sm_free(struct sm *);
/* <enable/> sent on a new session: counting starts at zero. */
void	 sm_start(struct sm *);
/* <enabled/> received; `id' is the resumption id, or NULL. */
void	 sm_enabled(struct sm *, const char *id);
/* A stanza was sent: keep it until the server acknowledges it. */
void	 sm_sent(struct sm *, const char *, size_t, int flags);
/* A stanza from the server was handled. */
void	 sm_received(struct sm *);
/*
 * The server acknowledged `h' stanzas: drop those.  Returns -1 when h
 * counts more than was sent (the server is confused), else 0.
 */
int	 sm_ack(struct sm *, uint32_t h);
/* The connection is gone; keep what a resumption needs. */
void	 sm_lost(struct sm *);
/* <resumed/>: counting goes on where it was. */
void	 sm_resumed(struct sm *);
/*
 * No resumption: the unacknowledged stanzas from clients go in front of
 * `requeue' to be sent again on the new session; the rest is forgotten.
 */
void	 sm_forget(struct sm *, struct squeue *requeue);
int	 sm_resumable(const struct sm *);

#endif
