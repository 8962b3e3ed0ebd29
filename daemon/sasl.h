/*
 * SASL client mechanisms: SCRAM-SHA-512, SCRAM-SHA-256, SCRAM-SHA-1 (RFC 5802,
 * RFC 7677) and PLAIN (RFC 4616).  Pure functions, no I/O: the caller moves
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
};

/* Longest SHA-512 output; SCRAM keys and proofs fit in it. */
#define SASL_MAX_HASH	64

struct sasl {
	enum sasl_mech	 mech;
	char		*authcid;		/* escaped user name */
	char		*password;
	char		*client_first_bare;	/* "n=user,r=cnonce" */
	char		*auth_message;		/* for the server signature */
	unsigned char	 server_key[SASL_MAX_HASH];
	int		 step;
};

/* Official name of a mechanism, e.g. "SCRAM-SHA-256". */
const char	*sasl_mech_name(enum sasl_mech);
/* Mechanism for an official name; SASL_NONE when unknown. */
enum sasl_mech	 sasl_mech_parse(const char *name);

/*
 * First mechanism of the space-separated `prefs' that the server offers
 * (`offered', `noffered' names).  PLAIN is only chosen when `encrypted'.
 * SASL_NONE when there is none.
 */
enum sasl_mech	 sasl_select(const char *prefs, const char *const *offered,
		    size_t noffered, int encrypted);

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
 * Answer a server challenge (raw): for SCRAM the server-first-message; write
 * the client-final-message to `out'.  Returns 0, or -1 with a reason in
 * `*err' (a static string that never holds secrets) when the challenge is
 * malformed, the server nonce does not extend ours, or the iteration count is
 * out of range.  Appends to `out'; the password is wiped once used.
 */
int		 sasl_step(struct sasl *, const char *challenge, size_t len,
		    struct buf *out, const char **err);

/*
 * Check the additional data of <success/> (the server-final-message "v=..."
 * for SCRAM; PLAIN accepts empty data).  Returns 0 when the server proved it
 * knows the password, -1 with a reason in `*err' otherwise.
 */
int		 sasl_finish(struct sasl *, const char *data, size_t len,
		    const char **err);

/* Forget everything, wiping the secrets from memory. */
void		 sasl_clear(struct sasl *);

#endif
