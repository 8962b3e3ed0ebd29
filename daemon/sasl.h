/*
 * SASL client mechanisms: SCRAM-SHA-512, SCRAM-SHA-256, SCRAM-SHA-1 (RFC 5802,
 * RFC 7677), their channel-bound -PLUS variants and PLAIN (RFC 4616).  Pure functions, no I/O: the caller moves
 * the messages (base64-decoded) between these functions and the server.
 * A refused or out-of-order message ends the exchange: start a new one.
 */
#ifndef CLAWSD_SASL_H
#define CLAWSD_SASL_H

#include <stddef.h>

#include "buf.h"

enum sasl_mech {
	SASL_NONE = -1,
	SASL_SCRAM_SHA_512,
	SASL_SCRAM_SHA_256,
	SASL_SCRAM_SHA_1,
	SASL_PLAIN,
	SASL_SCRAM_SHA_512_PLUS,
	SASL_SCRAM_SHA_256_PLUS,
	SASL_SCRAM_SHA_1_PLUS,
};

/* Longest channel-binding data clawsd makes: a SHA-512 hash, or 32 bytes. */
#define SASL_CB_MAX	64

/*
 * Channel binding (RFC 5056) for sasl_start_cb().  A -PLUS mechanism binds
 * to `type' ("tls-exporter", ...) with its `len' bytes of `data'.  For the
 * others `type' is NULL and `capable' says whether clawsd could have bound
 * (it then tells the server so, RFC 5802 "y": a server that does support
 * channel binding knows that its -PLUS mechanisms were stripped on the way).
 */
struct sasl_cb {
	const char		*type;
	const unsigned char	*data;
	size_t			 len;
	int			 capable;
};

/* Longest SHA-512 output; SCRAM keys and proofs fit in it. */
#define SASL_MAX_HASH	64

/*
 * SCRAM SaltedPassword of the last successful login, so that the next one
 * with the same mechanism, user, salt and iteration count skips PBKDF2.
 * Owned by the caller, who keeps it across connections: all zeros is an
 * empty cache, sasl_cache_clear() wipes it.  It never holds the password,
 * but SaltedPassword is as good as the password for this account: it is
 * a secret.  Nothing tells the cache that the password changed, so clear it
 * when the configured password changes and when the server refuses a login.
 */
struct sasl_cache {
	int		 valid;
	enum sasl_mech	 mech;
	char		*authcid;		/* escaped user name */
	unsigned char	*salt;
	size_t		 saltlen;
	unsigned long	 iter;
	unsigned char	 salted[SASL_MAX_HASH];
};

struct sasl {
	enum sasl_mech	 mech;
	char		*authcid;		/* escaped user name */
	char		*password;
	char		*client_first_bare;	/* "n=user,r=cnonce" */
	char		*auth_message;		/* for the server signature */
	char		*without_proof;		/* client-final, less "p=" */
	char		*cbind;			/* "c=" value, base64 */
	unsigned char	 server_key[SASL_MAX_HASH];
	int		 step;
	struct sasl_cache *cache;		/* the caller's, or NULL */
	struct sasl_cache pending;		/* for `cache' once verified */
	int		 cache_hit;
	int		 ssdp_set;		/* the digests below are valid */
	unsigned char	 ssdp_h[SASL_MAX_HASH];	/* XEP-0474 0.4+, "h=" */
	unsigned char	 ssdp_d[SASL_MAX_HASH];	/* XEP-0474 0.3, "d=" */
};

/* `len' bytes from a CSPRNG (nonces, ids).  Returns 0, or -1. */
int		 sasl_random(unsigned char *out, size_t len);

/* Official name of a mechanism, e.g. "SCRAM-SHA-256". */
const char	*sasl_mech_name(enum sasl_mech);
/* Mechanism for an official name; SASL_NONE when unknown. */
enum sasl_mech	 sasl_mech_parse(const char *name);
/* 1 for the SCRAM family (-PLUS or not), 0 for PLAIN and SASL_NONE. */
int		 sasl_is_scram(enum sasl_mech);
/* 1 for the channel-bound SCRAM-*-PLUS. */
int		 sasl_is_plus(enum sasl_mech);
/* 1 when any of the `noffered' names is a -PLUS mechanism. */
int		 sasl_offers_plus(const char *const *offered, size_t noffered);
/* 1 when `name' is one of the `noffered' (mechanism names, SASL or HT). */
int		 sasl_offered(const char *name, const char *const *offered,
		    size_t noffered);

/*
 * First mechanism of the space-separated `prefs' (names without "-PLUS")
 * that the server offers (`offered', `noffered' names).  When `plus' (the
 * caller can bind to the channel) a -PLUS variant of any of them is taken
 * first, in the same order.  PLAIN is only chosen when `encrypted'.
 * SASL_NONE when there is none.
 */
enum sasl_mech	 sasl_select(const char *prefs, const char *const *offered,
		    size_t noffered, int encrypted, int plus);

/*
 * The channel-binding type to use: the first of the space-separated `ours'
 * (best first, those the caller can make data for) among the `ncb' types
 * the server advertised (XEP-0440).  NULL when there is none in common.
 */
const char	*sasl_cb_select(const char *ours, const char *const *cbtypes,
		    size_t ncb);

/*
 * Begin an exchange: append the initial client message (raw, not base64) to
 * `out'.  `cnonce' is the client nonce (printable, no ','); pass NULL to draw
 * one from a CSPRNG.  Returns 0, or -1 on a bad argument or RNG failure.
 * The struct is overwritten, so sasl_clear() any earlier exchange first; it
 * is safe to sasl_clear() whatever this returns.
 */
int		 sasl_start(struct sasl *, enum sasl_mech, const char *user,
		    const char *password, const char *cnonce, struct buf *out);
/*
 * sasl_start() with channel binding: `cb' (NULL: clawsd cannot bind, as for
 * sasl_start()) gives the GS2 header's flag and the data of the "c="
 * attribute.  -1 also when a -PLUS mechanism comes without a type and data
 * or a type with another mechanism.  Nothing of `cb' is kept of the call.
 */
int		 sasl_start_cb(struct sasl *, enum sasl_mech, const char *user,
		    const char *password, const char *cnonce,
		    const struct sasl_cb *cb, struct buf *out);

/*
 * Use `cache' (which must outlive the exchange) for this exchange: the
 * SCRAM step takes SaltedPassword from it when mechanism, user, salt and
 * iteration count match, and sasl_finish() stores a freshly computed one in
 * it once the server has proved it knows the same password.  Call after
 * sasl_start(); harmless for PLAIN and with NULL (no cache).
 */
void		 sasl_set_cache(struct sasl *, struct sasl_cache *cache);

/*
 * 1 when the last SCRAM step took SaltedPassword from the cache, 0 when it
 * ran PBKDF2 or did not run.
 */
int		 sasl_cache_hit(const struct sasl *);

/* Empty the cache, wiping SaltedPassword.  Safe on an all-zero cache. */
void		 sasl_cache_clear(struct sasl_cache *);

/*
 * XEP-0474 (SASL SCRAM downgrade protection): the `nmechs' SASL mechanism
 * names the server offered in its stream features, all of them, as sent,
 * and the `ncb' channel-binding types of its XEP-0440 <sasl-channel-binding/>
 * (ncb 0: not advertised).  Nothing is kept of the arrays after the call.
 * Call after sasl_start(): a SCRAM server-first-message that carries the
 * downgrade protection hash ("h=", or "d=" of XEP-0474 0.3) is refused
 * unless the hash matches these lists, and refused when this was never
 * called.  Returns 0 (always for PLAIN), -1 when no SCRAM exchange is
 * waiting for its challenge.
 */
int		 sasl_set_offered(struct sasl *, const char *const *mechs,
		    size_t nmechs, const char *const *cbtypes, size_t ncb);

/*
 * Answer a server challenge (raw): for SCRAM the server-first-message; write
 * the client-final-message to `out'.  Returns 0, or -1 with a reason in
 * `*err' (a static string that never holds secrets) when the challenge is
 * malformed, the server nonce does not extend ours, the iteration count is
 * out of range, or the XEP-0474 hash does not match the offered lists
 * ("downgrade attack detected").  Appends to `out'; the password is wiped
 * once used.
 */
int		 sasl_step(struct sasl *, const char *challenge, size_t len,
		    struct buf *out, const char **err);

/*
 * sasl_step() in two halves, for a caller that runs PBKDF2 (SCRAM's Hi(),
 * up to a million iterations) off its event loop.  sasl_step_begin()
 * returns 0 with the answer in `out' when no PBKDF2 was needed (the cache
 * had the key), -1 as sasl_step() does, or 1 with a job in `*hi': run
 * sasl_hi() on it, on any thread, then give it to sasl_step_end(), which
 * frees it and answers as sasl_step() would.  The job holds copies of what
 * it needs: nothing else is touched meanwhile.  A job whose exchange was
 * given up is freed with sasl_hi_free().
 */
struct sasl_hi;

int		 sasl_step_begin(struct sasl *, const char *challenge,
		    size_t len, struct buf *out, struct sasl_hi **hi,
		    const char **err);
void		 sasl_hi(struct sasl_hi *);
int		 sasl_step_end(struct sasl *, struct sasl_hi *,
		    struct buf *out, const char **err);
void		 sasl_hi_free(struct sasl_hi *);

/*
 * Check the additional data of <success/> (the server-final-message "v=..."
 * for SCRAM; PLAIN accepts empty data).  Returns 0 when the server proved it
 * knows the password, -1 with a reason in `*err' otherwise.  On success a
 * freshly computed SaltedPassword goes to the cache of sasl_set_cache().
 */
int		 sasl_finish(struct sasl *, const char *data, size_t len,
		    const char **err);

/*
 * Forget everything, wiping the secrets from memory.  The cache of
 * sasl_set_cache() is the caller's: it is left alone.
 */
void		 sasl_clear(struct sasl *);

#endif
