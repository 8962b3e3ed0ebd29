/*
 * The Unix socket: the listener, its clients, one line per element to every
 * subscriber, and each client's input framed into stanzas.
 */
#ifndef CLAWSD_HUB_H
#define CLAWSD_HUB_H

#include <stddef.h>

#include <uv.h>

#include "conf.h"

struct hub_cb {
	/*
	 * A stanza from a client: NULL if accepted, else the condition of
	 * the error line (SPEC section 4) and a human text in `*text'.
	 */
	const char *(*stanza)(void *arg, const char *data, size_t len,
		    const char **text);
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
 * Set the status line every new client gets first; with `announce', send it
 * to the connected clients too.
 */
void		 hub_status(struct hub *, const char *line, size_t len,
		    int announce);
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
