/*
 * SCRAM's key derivation (sasl_hi(): PBKDF2) on libuv's thread pool.  A
 * server may ask for a million iterations, a second or two of SHA-512: on
 * the loop, that would stall every client and timer.  It runs once per
 * login at most (the key is cached across reconnects), and the pool's
 * only other work is DNS: nothing else of the data path goes there.
 */
#ifndef CLAWSD_KDF_H
#define CLAWSD_KDF_H

#include <uv.h>

#include "sasl.h"

/* Called on the loop with the job done; it is the callee's to free. */
typedef void	(*kdf_done)(void *arg, struct sasl_hi *);

struct kdf;

/*
 * Run `hi' on the pool.  Returns the running job, or NULL (with the libuv
 * error in `*err', and `hi' freed) when it could not be queued.
 */
struct kdf	*kdf_start(uv_loop_t *, struct sasl_hi *hi, kdf_done,
		    void *arg, int *err);
/*
 * Give up a job (NULL: nothing): `done' is never called, and the job is
 * freed once the pool's thread is through with it.
 */
void		 kdf_cancel(struct kdf *);

#endif
