#include <stdlib.h>

#include "buf.h"
#include "kdf.h"

struct kdf {
	uv_work_t	 req;
	struct sasl_hi	*hi;
	kdf_done	 done;		/* NULL once cancelled */
	void		*arg;
};

static void
work(uv_work_t *req)
{
	struct kdf *k = req->data;

	sasl_hi(k->hi);
}

static void
after(uv_work_t *req, int status)
{
	struct kdf *k = req->data;

	/* A status other than 0 is uv_cancel's, which only kdf_cancel asks. */
	if (k->done != NULL && status == 0)
		k->done(k->arg, k->hi);
	else
		sasl_hi_free(k->hi);
	free(k);
}

struct kdf *
kdf_start(uv_loop_t *loop, struct sasl_hi *hi, kdf_done done, void *arg,
    int *err)
{
	struct kdf *k = xcalloc(1, sizeof(*k));

	k->req.data = k;
	k->hi = hi;
	k->done = done;
	k->arg = arg;
	*err = uv_queue_work(loop, &k->req, work, after);
	if (*err != 0) {
		sasl_hi_free(hi);
		free(k);
		return NULL;
	}
	return k;
}

void
kdf_cancel(struct kdf *k)
{
	if (k == NULL)
		return;
	k->done = NULL;
	/*
	 * Not started yet: it never will be.  Running (UV_EBUSY): `after'
	 * frees it when it ends.  Either way the result is not wanted.
	 */
	(void)uv_cancel((uv_req_t *)&k->req);
}
