/*
 * Archive catch-up (SPEC section 9): a XEP-0313 (MAM v2) query for what an
 * archive holds after the last id relayed, followed page by page with
 * XEP-0059 (<set><after/><max/>), each archived message turned back into
 * its original line with a XEP-0203 delay.
 *
 * No I/O: the module is given the stanzas that answer it and hands back,
 * through callbacks, the stanzas to send and the lines to relay.  At most
 * `max' messages are relayed: when more were missed, the most recent ones,
 * and the number skipped is reported.  They are relayed once the archive
 * has said it is complete (<fin complete="true"/>), in archive order.
 */
#ifndef CLAWSD_MAM_H
#define CLAWSD_MAM_H

#include <stddef.h>

#define NS_MAM		"urn:xmpp:mam:2"
#define NS_SID		"urn:xmpp:sid:0"
#define NS_RSM		"http://jabber.org/protocol/rsm"
#define NS_FORWARD	"urn:xmpp:forward:0"
#define NS_DELAY	"urn:xmpp:delay"

/* The ids (and queryids) of the daemon's queries begin with this. */
#define MAM_ID_PREFIX	"clawsd-mam-"
/* Results asked for per page; the server may send fewer. */
#define MAM_PAGE	100

struct xnode;

struct mam_result {
	unsigned	 relayed;
	unsigned	 skipped;	/* missed, but more than `max' */
	int		 complete;	/* the archive was read to its end */
	const char	*last;		/* newest archive id seen, or NULL */
	const char	*error;		/* why it stopped short, or NULL */
};

struct mam_cb {
	/* A query to send to the server. */
	void	(*send)(void *arg, const char *data, size_t len);
	/* An archived message: its line (ending in \n) and archive id. */
	void	(*relay)(void *arg, const char *line, size_t len,
		    const char *id);
	/* The catch-up is over: after `relay' was called for each message. */
	void	(*done)(void *arg, const struct mam_result *);
};

struct mam;

/*
 * A catch-up from `archive' (a bare JID; NULL: the account's own, queried
 * without `to'), relaying at most `max' messages.  Those sent from
 * `skip_from' (a bare JID: the account, whose archive holds what it sent
 * as well as what it received) are not relayed, nor counted.
 */
struct mam	*mam_new(const char *archive, const char *skip_from,
		    size_t max, const struct mam_cb *, void *arg);
void		 mam_free(struct mam *);
/*
 * Ask for what follows archive id `after'.  With `after' NULL nothing is
 * relayed: the query only learns the newest id (result.last), where the
 * next catch-up starts.
 */
void		 mam_start(struct mam *, const char *after);
/* Nonzero from mam_start until `done' has been called. */
int		 mam_busy(const struct mam *);
/*
 * A message from the server carrying a MAM <result>, with its line: 1 when
 * it answers this query (it is then not to be relayed as is), else 0.
 */
int		 mam_message(struct mam *, const char *line, size_t len);
/* 1 if the line is a result of one of our queries, whichever. */
int		 mam_ours(const char *line, size_t len);
/* An iq from the server, as a tree: 1 when it answers this query. */
int		 mam_iq(struct mam *, const struct xnode *);
/* Give up (the session went down): `done' is not called. */
void		 mam_abort(struct mam *);
/*
 * Stop short (no answer, too much waiting behind it): what was fetched
 * is relayed and `done' is called with `why' as the error.
 */
void		 mam_stop(struct mam *, const char *why);

/*
 * The archive ids relayed lately, so that none is relayed twice whichever
 * way it comes (the archive, the live stream).  Bounded: the oldest are
 * forgotten first.
 */
struct mam_seen;

struct mam_seen	*mam_seen_new(size_t capacity);
void		 mam_seen_free(struct mam_seen *);
/* 1 if `id' was already added (nothing changes), else add it, 0. */
int		 mam_seen_add(struct mam_seen *, const char *id);
int		 mam_seen_has(const struct mam_seen *, const char *id);

#endif
