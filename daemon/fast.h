/*
 * What a SASL2 login (XEP-0388) remembers across connections and restarts:
 * the client id its user agent carries, and the FAST token (XEP-0484) that
 * logs in again in one round trip with the HT-SHA-256 mechanisms
 * (draft-schmaus-kitten-sasl-ht).  Kept in memory and, when there is a state
 * directory, in its file `sasl2' (0600: the token is a secret, never logged):
 *
 *	id CLIENT-ID
 *	token MECHANISM TOKEN
 */
#ifndef CLAWSD_FAST_H
#define CLAWSD_FAST_H

#include <stddef.h>

#include "buf.h"

#define FAST_FILE	"sasl2"
#define FAST_MAX_TOKEN	1024

struct fast;

struct fast	*fast_new(void);
void		 fast_free(struct fast *);
/*
 * Use the state directory `dir' (NULL: memory only): read the client id and
 * the token, or make a new client id (a random UUID) and save it.  Returns
 * 0, or -1 (logged; what is in memory is used).  Again with the same
 * directory (a reload), it keeps what it has.
 */
int		 fast_open(struct fast *, const char *dir);
const char	*fast_client_id(const struct fast *);
/* The mechanism of the token, e.g. "HT-SHA-256-NONE"; NULL: no token. */
const char	*fast_mech(const struct fast *);
/*
 * A new token from the server (at login, or a rotation).  Returns 0, or -1
 * when the mechanism or the token is not one clawsd can use or keep.
 */
int		 fast_set(struct fast *, const char *mech, const char *token);
/*
 * The channel-binding type an HT mechanism proves ("tls-exporter", ...), ""
 * for -NONE; NULL for a mechanism clawsd does not know.
 */
const char	*fast_cb_type(const char *mech);
/*
 * The best HT mechanism of the `n' offered that this connection can prove:
 * `ours' lists the channel-binding types it can make (space-separated, as
 * link_cb_types); `bound': a channel-bound one only.  NULL: none.
 */
const char	*fast_choose(const char *const *offered, size_t n,
		    const char *ours, int bound);
/*
 * Is there a token, and is its mechanism the one fast_choose() picks?  A
 * token of a weaker one is not used: the password logs in once more and
 * asks for the better token (a -NONE token after channel binding became
 * possible, say).
 */
int		 fast_usable(const struct fast *, const char *const *offered,
		    size_t n, const char *ours, int bound);
/* Forget the token (refused by the server). */
void		 fast_drop(struct fast *);
/*
 * The initial response of an HT exchange with the token: the user name, a
 * NUL, and HMAC(token, "Initiator" || cb), cb being the channel binding
 * data (none for -NONE).  Returns 0, or -1 when there is no token.
 */
int		 fast_initial(const struct fast *, const char *user,
		    const unsigned char *cb, size_t cblen, struct buf *out);
/*
 * Check the server's additional data: HMAC(token, "Responder" || cb).
 * Returns 0 when it proves the server knew the token, else -1.
 */
int		 fast_verify(const struct fast *, const unsigned char *cb,
		    size_t cblen, const char *data, size_t len);

#endif
