/*
 * The Unix socket: the listener, its clients, one line per element to every
 * subscriber, and each client's input framed into stanzas.
 */
#ifndef CLAWSD_HUB_H
#define CLAWSD_HUB_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "conf.h"
#include "head.h"

/* What the answer to the status command says of the session (SPEC 4.5). */
struct hub_state {
	const char	*state;
	const char	*jid;		/* NULL while not bound */
	int		 sm;
	size_t		 queued;
	size_t		 unacked;
	unsigned long	 since;		/* seconds in this state */
	int		 catching_up;	/* the archive catch-up (SPEC 9) */
};

struct hub_cb {
	/*
	 * A stanza for the server, from a client or the hub's own: NULL if
	 * accepted, else the condition of the error line (SPEC section 4)
	 * and a human text in `*text'.  A `tag' other than 0 asks for a
	 * receipt: hub_acked or hub_refused with that tag later.
	 */
	const char *(*stanza)(void *arg, const char *data, size_t len,
		    uint64_t tag, const char **text);
	/* The session's state, for the status command. */
	void	(*state)(void *arg, struct hub_state *);
	/* The status answer's children: one <room/> a room (SPEC 8). */
	void	(*rooms)(void *arg, struct buf *);
};

struct hub;

/* NULL when libuv cannot set up its handle. */
struct hub	*hub_new(uv_loop_t *, const struct hub_cb *, void *arg);
void		 hub_free(struct hub *);
/* Apply limits from the configuration (clients keep their connections). */
void		 hub_configure(struct hub *, const struct conf *);
/*
 * Listen on the configured path, or on an inherited socket `fd' when >= 0.
 * Returns 0, or -1 with the reason logged.  Called again (a reload), the
 * new socket replaces the old one once it is set up; on failure the old
 * one is kept.
 */
int		 hub_listen(struct hub *, const struct conf *, int fd);
/* Stop accepting clients; remove the socket file we created, if it is
 * still ours. */
void		 hub_unlisten(struct hub *);
/* Send a line (ending in \n) to every client. */
void		 hub_broadcast(struct hub *, const char *line, size_t len);
/*
 * A stanza from the server (its line and head): an answer or a bounce
 * to the client that asked, anything else to every client whose filter
 * takes it; a request nobody takes is answered service-unavailable.
 */
void		 hub_relay(struct hub *, const struct head *);
/* The server has the stanza of this tag (see hub_cb.stanza)... */
void		 hub_acked(struct hub *, uint64_t tag);
/* ... or it was dropped. */
void		 hub_refused(struct hub *, uint64_t tag, const char *condition,
		    const char *text);
/*
 * Set the status line every new client gets first; with `announce', send it
 * to the connected clients too.
 */
void		 hub_status(struct hub *, const char *line, size_t len,
		    int announce);
/*
 * The session is up (bound) or not: a request's reply_timeout counts from
 * when it can be sent.
 */
void		 hub_session(struct hub *, int up);
/*
 * Stop (or resume) reading the clients: the server's link is congested,
 * and a client that cannot write blocks rather than losing stanzas.
 */
void		 hub_pause(struct hub *, int paused);
/* Read and frame whatever clients have written and not yet been read. */
void		 hub_drain(struct hub *);
/* Close every client now. */
void		 hub_close_clients(struct hub *);

#endif
