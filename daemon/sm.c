#include <stdlib.h>

#include "log.h"
#include "sm.h"

void
sm_init(struct sm *sm)
{
	sm->id = NULL;
	sm->active = sm->requested = 0;
	sm->h_in = sm->acked = 0;
	squeue_init(&sm->unacked);
}

void
sm_free(struct sm *sm)
{
	free(sm->id);
	squeue_free(&sm->unacked);
	sm_init(sm);
}

void
sm_start(struct sm *sm)
{
	free(sm->id);
	sm->id = NULL;
	sm->active = 1;
	sm->requested = 0;
	sm->h_in = sm->acked = 0;
	squeue_drop(&sm->unacked, squeue_count(&sm->unacked));
}

void
sm_enabled(struct sm *sm, const char *id)
{
	free(sm->id);
	sm->id = id != NULL ? xstrdup(id) : NULL;
}

void
sm_sent(struct sm *sm, const char *data, size_t len, int flags)
{
	if (sm->active)
		squeue_push(&sm->unacked, data, len, flags);
}

void
sm_received(struct sm *sm)
{
	if (sm->active)
		sm->h_in++;
}

int
sm_ack(struct sm *sm, uint32_t h)
{
	/* Unsigned arithmetic: the counters wrap at 2^32 (XEP-0198 4). */
	uint32_t n = h - sm->acked;
	size_t pending = squeue_count(&sm->unacked);

	if (n > pending) {
		squeue_drop(&sm->unacked, pending);
		sm->acked += (uint32_t)pending;
		return -1;
	}
	squeue_drop(&sm->unacked, n);
	sm->acked = h;
	return 0;
}

void
sm_lost(struct sm *sm)
{
	sm->active = 0;
	sm->requested = 0;
}

void
sm_resumed(struct sm *sm)
{
	sm->active = 1;
	sm->requested = 0;
}

void
sm_forget(struct sm *sm, struct squeue *requeue)
{
	size_t n = squeue_count(&sm->unacked);

	if (n > 0)
		log_info("stream management: sending %zu unacknowledged "
		    "stanzas again", n);
	squeue_prepend(requeue, &sm->unacked, SM_CLIENT);
	free(sm->id);
	sm->id = NULL;
	sm->active = sm->requested = 0;
	sm->h_in = sm->acked = 0;
}

int
sm_resumable(const struct sm *sm)
{
	return sm->id != NULL;
}
