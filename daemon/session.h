/*
 * The XMPP session: one explicit state machine from Disconnected to Binded,
 * the only place where the connection changes state.  It drives the link
 * and the stream, authenticates, binds, relays stanzas up and takes stanzas
 * from clients, queueing them while the session is down.
 */
#ifndef CLAWSD_SESSION_H
#define CLAWSD_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "conf.h"
#include "head.h"

struct session_cb {
	/* A stanza from the server: its line (ending in \n) and head. */
	void	(*line)(void *arg, const struct head *);
	/*
	 * A status line (connected or disconnected).  `announce' is set when
	 * the session went up or down; otherwise it only refreshes the line
	 * new clients get.
	 */
	void	(*status)(void *arg, const char *line, size_t len,
		    int announce);
	/*
	 * The state changed (optional): its name, as in the seed, and a
	 * detail or NULL, e.g. "Binded", "as bot@example.com/clawsd" or
	 * "Retrying", "in 6.0 s: TLS: certificate: expired".
	 */
	void	(*state)(void *arg, const char *name, const char *detail);
	/*
	 * The session is up but cannot take stanzas as fast as they come
	 * (the link or the unacknowledged queue is full): stop reading the
	 * clients until called again with 0.
	 */
	void	(*congested)(void *arg, int on);
	/* session_stop has finished. */
	void	(*stopped)(void *arg);
	/*
	 * Receipts (SPEC 4.5): the server has the stanza submitted with
	 * `tag' (a XEP-0198 ack, or the answer to a ping sent after it)...
	 */
	void	(*acked)(void *arg, uint64_t tag);
	/* ... or it was dropped: the condition of its error line, a text. */
	void	(*refused)(void *arg, uint64_t tag, const char *condition,
		    const char *text);
	/*
	 * The session is up (optional), a new one or `resumed': called once
	 * the connected line is out, before the queued stanzas go.
	 */
	void	(*bound)(void *arg, int resumed);
};

/* For the status command (SPEC 4.5). */
struct session_info {
	const char	*state;		/* the seed's name */
	const char	*jid;		/* NULL while not bound */
	int		 sm;		/* stream management is on */
	size_t		 queued;	/* waiting for the session */
	size_t		 unacked;	/* sent, not yet acknowledged */
	uint64_t	 since;		/* loop time of the last change, ms */
};

struct session;

struct session	*session_new(uv_loop_t *, const struct session_cb *,
		    void *arg);
void		 session_free(struct session *);
/*
 * Use this configuration (it must outlive its use).  Returns 0, or -1 when
 * the TLS settings cannot be loaded.
 */
int		 session_configure(struct session *, const struct conf *);
/* Leave Disconnected: connect, and keep reconnecting until stopped. */
void		 session_start(struct session *);
/* Drop the connection and connect again (a changed configuration). */
void		 session_restart(struct session *);
#define SESSION_QUEUE_FULL	(-1)
#define SESSION_TOO_LARGE	(-2)	/* over the server's limit, XEP-0478 */

/*
 * A stanza of the daemon's own (a query, a join): sent if the session is
 * up, else dropped; never queued for the next session.
 */
void		 session_send(struct session *, const char *, size_t);
/*
 * A stanza from a client: 0 when accepted, else one of the above.  A
 * `tag' other than 0 asks for its receipt: `acked' or `refused' later.
 */
int		 session_submit(struct session *, const char *, size_t,
		    uint64_t tag);
/*
 * Send what is queued, close the stream, and call `stopped' once the server
 * has closed its side or a few seconds have passed.
 */
void		 session_stop(struct session *);
/* Name of the current state, as in the seed's state machine. */
const char	*session_state(const struct session *);
void		 session_info(const struct session *, struct session_info *);

#endif
