/*
 * DNS SRV for the XMPP client services of a domain (RFC 6120 section 3.2,
 * RFC 2782, XEP-0368): `_xmpps-client._tcp.DOMAIN' (TLS from the first
 * byte) and `_xmpp-client._tcp.DOMAIN' (STARTTLS), looked up in parallel
 * with res_nquery() in libuv's thread pool, merged into one ordered list.
 *
 * Order: by priority, lowest first, across both services (XEP-0368 treats
 * them as one set); within one priority, the direct TLS targets first (it
 * saves a round trip and cannot be stripped), each group in the RFC 2782
 * weighted random order (weight 0 entries first in the running sum, so
 * they are chosen first only rarely, as the RFC says).
 *
 * A service whose answer is the single target "." is decidedly not
 * offered: it contributes no target.  A "." among other records is
 * ignored, as are records with port 0.
 *
 * The resolver is the system's (/etc/resolv.conf, read at each lookup), so
 * there is no test hook in the daemon: the integration tests run clawsd in
 * a private mount namespace whose /etc/resolv.conf names their own DNS
 * server (tests/integration/test_srv.py).
 */
#ifndef CLAWSD_SRV_H
#define CLAWSD_SRV_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct srv_target {
	char	*host;		/* without the trailing dot */
	int	 port;
	int	 direct;	/* 1: _xmpps-client (direct TLS), 0: STARTTLS */
	int	 priority;	/* as published; informative once ordered */
	int	 weight;
};

enum srv_status {
	/* n >= 1 targets: try them in order (then, by SPEC section 2, the
	 * domain's own A/AAAA on 5222) */
	SRV_FOUND,
	/* neither service has a record (NXDOMAIN or no SRV data), or only
	 * _xmpps-client said ".": fall back to the domain on 5222 */
	SRV_NONE,
	/* _xmpp-client answered "." and _xmpps-client offers nothing either:
	 * the domain says it has no client service (RFC 6120 3.2.1: abort,
	 * no fallback); `err' says so, for the log */
	SRV_NOT_OFFERED,
	/* no usable answer (timeout, SERVFAIL, malformed reply, no resolver
	 * configuration): `err' says why; RFC 6120 3.2.2: fall back */
	SRV_FAILED,
};

/*
 * Called once on the loop thread, unless the query was cancelled.  `list'
 * (n entries, NULL when n == 0) belongs to the callee: srv_free_list().
 * `err' is NULL or one line for the log; it is also set with SRV_FOUND
 * when one of the two lookups failed and the other gave targets.  It is
 * valid during the call only.  The query is freed when the callback
 * returns: forget the pointer srv_resolve() gave.
 */
typedef void	 srv_cb(void *arg, enum srv_status, struct srv_target *list,
		    size_t n, const char *err);

struct srv_query;

/*
 * Start both lookups for `domain'.  Returns the query, or NULL if it could
 * not be queued (logged; the callback will not run).
 */
struct srv_query *srv_resolve(uv_loop_t *, const char *domain, srv_cb *,
		    void *arg);
/*
 * The callback will not run.  The lookups already running finish in their
 * threads and are then freed.  Only before the callback: not from it, not
 * after it.
 */
void		 srv_cancel(struct srv_query *);
void		 srv_free_list(struct srv_target *, size_t);

/* "direct TLS" or "STARTTLS" */
const char	*srv_kind(const struct srv_target *);

/*
 * The pure parts, for the unit tests.
 *
 * srv_parse(): the SRV records of one reply (a whole DNS message) appended
 * to *list / *n (realloc'd), each with `direct'.  Returns 1 if the reply is
 * the single target "." (nothing appended), 0 otherwise, -1 if the message
 * does not parse.
 *
 * srv_order(): sort list[0..n) as described above.  rnd(arg, bound)
 * returns an integer uniformly in [0, bound]; NULL: the system's random
 * source.
 */
int		 srv_parse(const unsigned char *msg, size_t len, int direct,
		    struct srv_target **list, size_t *n);
void		 srv_order(struct srv_target *, size_t n,
		    uint32_t (*rnd)(void *, uint32_t), void *arg);

#endif
