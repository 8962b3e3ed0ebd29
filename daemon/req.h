/*
 * One client's requests (SPEC 4.3): the iq get/set it sent and waits an
 * answer for, each under a sequence number of its own that the hub puts
 * on the wire instead of the client's id, and the ids of its recent
 * messages and presences, which a bounce may carry back.  Bounded: at most
 * REQ_MAX requests and REQ_RECENT ids (kept as 64-bit hashes: no copy per
 * stanza); every entry has a deadline.  No I/O.
 */
#ifndef CLAWSD_REQ_H
#define CLAWSD_REQ_H

#include <stddef.h>
#include <stdint.h>

#define REQ_MAX		256
#define REQ_RECENT	256

struct req_ent;
struct req_recent;

struct req {
	struct req_ent		*ents;		/* REQ_MAX, once used */
	size_t			 count;
	unsigned long		 next_seq;
	struct req_recent	*recent;	/* a ring of REQ_RECENT */
	size_t			 rfirst, rcount;
};

/* What a request was, when its answer comes or its time is up. */
struct req_done {
	char		*id;		/* the client's id (free it) */
	unsigned long	 n;		/* ordinal of the stanza */
};

void		 req_init(struct req *);
void		 req_free(struct req *);
/*
 * A request with the client's `id', sent `to' (NULL: the account itself),
 * the client's n-th stanza.  Returns its sequence number (never 0), or 0
 * when REQ_MAX are in flight.
 */
unsigned long	 req_add(struct req *, const char *id, const char *to,
		    unsigned long n, uint64_t deadline);
/*
 * The answer to request `seq' came from `from' (NULL when absent): 1 and
 * `*done' filled when it is that request's, from the entity it was sent
 * to (for a request without `to': none, the account's bare JID
 * `account' or its domain), else 0.
 */
int		 req_answer(struct req *, unsigned long seq, const char *from,
		    const char *account, struct req_done *done);
/* The requests past their deadline, one per call: 1 with `*done', or 0. */
int		 req_expired(struct req *, uint64_t now, struct req_done *);
/* No deadline before `deadline': the clock waits while nothing is sent. */
void		 req_extend(struct req *, uint64_t deadline);
/* Forget request `seq' (it could not be sent). */
void		 req_cancel(struct req *, unsigned long seq);
size_t		 req_pending(const struct req *);
/* Nothing to wait for: no request, no recent id. */
int		 req_idle(const struct req *);
/* Remember the id of a message or presence until `deadline'. */
void		 req_sent(struct req *, const char *id, uint64_t deadline);
/* Was `id' that of a recent message or presence? */
int		 req_bounce(struct req *, const char *id, uint64_t now);

#endif
