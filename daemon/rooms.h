/*
 * Group chats kept joined (SPEC section 8, XEP-0045): joins after a new
 * session, nickname conflicts, kicks, bans and destruction, XEP-0410
 * self-pings after a room's silence, rejoins with backoff, the joined and
 * left status lines, and the rooms of the status answer.
 *
 * No I/O and no timers of its own: it is given the stanzas from the rooms
 * and the time, and hands back the stanzas to send and the status lines
 * through callbacks; rooms_next says when it wants rooms_tick called.
 */
#ifndef CLAWSD_ROOMS_H
#define CLAWSD_ROOMS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "conf.h"

#define NS_MUC		"http://jabber.org/protocol/muc"
#define NS_MUC_USER	"http://jabber.org/protocol/muc#user"
#define ROOMS_NICK_TRIES	3	/* NICK_, NICK__, NICK___ */
/* The ids of the daemon's self-pings begin with this. */
#define ROOMS_ID_PREFIX		"clawsd-rping-"

struct xnode;

struct rooms_cb {
	/* A stanza to send to the server. */
	void	(*send)(void *arg, const char *data, size_t len);
	/* A joined or left status line (ending in \\n) for every client. */
	void	(*status)(void *arg, const char *line, size_t len);
	/*
	 * Optional: will the room's own archive be asked for what was missed
	 * once it is joined?  Then the join asks for no history.
	 */
	int	(*has_archive)(void *arg, const char *room);
	/* Optional: our own presence came back from the room. */
	void	(*joined)(void *arg, const char *room);
};

struct rooms_timing {
	uint64_t	 ping_interval;		/* ms of silence, 0: never */
	uint64_t	 ping_timeout;		/* ms for a self-ping's answer */
	uint64_t	 backoff;		/* first wait before a rejoin */
	uint64_t	 backoff_max;
};

struct rooms;

struct rooms	*rooms_new(const struct rooms_cb *, void *arg);
void		 rooms_free(struct rooms *);
/*
 * The rooms to keep joined, and the timing.  Rooms added are joined (when
 * online), rooms removed are left, rooms whose nickname or password changed
 * are joined again.
 */
void		 rooms_configure(struct rooms *, const struct conf_room *,
		    size_t n, const struct rooms_timing *);
/*
 * The session is up.  A new session joins every room (a resumed one keeps
 * them).
 */
void		 rooms_online(struct rooms *, int resumed, uint64_t now);
/* The session is down: nothing is sent until rooms_online. */
void		 rooms_offline(struct rooms *);
/*
 * A message or presence from the server, its `from' attribute (NULL if
 * none) and its line; `wall', the time of day, is where the history of
 * the next join starts when this is the last message.  Returns 1 when it must not be relayed (a duplicate of a
 * message already relayed), else 0.
 */
int		 rooms_stanza(struct rooms *, const char *from, const char *line, size_t len,
		    uint64_t now, time_t wall);
/* An iq from the server: 1 when it answers a self-ping (not relayed). */
int		 rooms_iq(struct rooms *, const struct xnode *, uint64_t now);
/* Do what is due: self-pings, their timeouts, rejoins. */
void		 rooms_tick(struct rooms *, uint64_t now);
/* When rooms_tick is next wanted (absolute, ms), UINT64_MAX: never. */
uint64_t	 rooms_next(const struct rooms *);
/* One <room jid= nick= joined=/> per room, for the status answer. */
void		 rooms_status(const struct rooms *, struct buf *);
/* Nonzero when a stanza from `from' (a JID) may concern a room. */
int		 rooms_has(const struct rooms *, const char *from);

#endif
