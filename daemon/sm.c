#include <stdlib.h>

#include "buf.h"
#include "log.h"
#include "sm.h"

enum sm_state {
	SM_OFF,		/* not used on this session */
	SM_ENABLING,	/* <enable/> sent: ours are counted, not yet theirs */
	SM_ON,		/* both directions counted on this connection */
	SM_DOWN,	/* the connection is gone; counters kept */
};

struct sm {
	enum sm_state	 state;
	char		*id;		/* resumable session, NULL if none */
	int		 requested;	/* an <r/> awaits its <a/> */
	uint32_t	 h_in;		/* stanzas handled from the server */
	uint32_t	 acked;		/* the server's last h */
	struct squeue	 unacked;	/* sent after `acked', in order */
	void		(*released)(void *, uint64_t);
	void		*release_arg;
};

struct sm *
sm_new(void)
{
	struct sm *sm = xcalloc(1, sizeof(*sm));

	squeue_init(&sm->unacked);
	return sm;
}

void
sm_free(struct sm *sm)
{
	if (sm == NULL)
		return;
	free(sm->id);
	squeue_free(&sm->unacked);
	free(sm);
}

/* Back to OFF: no counters, no resumption, nothing kept. */
static void
reset(struct sm *sm)
{
	free(sm->id);
	sm->id = NULL;
	sm->state = SM_OFF;
	sm->requested = 0;
	sm->h_in = sm->acked = 0;
	squeue_drop(&sm->unacked, squeue_count(&sm->unacked));
}

void
sm_enable(struct sm *sm)
{
	reset(sm);
	sm->state = SM_ENABLING;
}

int
sm_enabled(struct sm *sm, const char *id)
{
	if (sm->state != SM_ENABLING)
		return -1;
	sm->state = SM_ON;
	sm->id = id != NULL ? xstrdup(id) : NULL;
	return 0;
}

int
sm_enable_failed(struct sm *sm)
{
	if (sm->state != SM_ENABLING)
		return -1;
	reset(sm);
	return 0;
}

int
sm_counting(const struct sm *sm)
{
	return sm->state == SM_ENABLING || sm->state == SM_ON;
}

int
sm_on(const struct sm *sm)
{
	return sm->state == SM_ON;
}

void
sm_sent(struct sm *sm, const char *data, size_t len, int flags, uint64_t tag)
{
	if (sm_counting(sm))
		squeue_push_tag(&sm->unacked, data, len, flags, tag);
}

void
sm_received(struct sm *sm)
{
	/* Unsigned: h wraps at 2^32 (XEP-0198 section 4). */
	if (sm->state == SM_ON)
		sm->h_in++;
}

uint32_t
sm_handled(const struct sm *sm)
{
	return sm->h_in;
}

size_t
sm_unacked(const struct sm *sm)
{
	return squeue_count(&sm->unacked);
}

const char *
sm_unacked_at(const struct sm *sm, size_t i, size_t *len)
{
	return squeue_at(&sm->unacked, i, len, NULL);
}

int
sm_want_ack(struct sm *sm)
{
	if (!sm_counting(sm) || sm->requested ||
	    squeue_count(&sm->unacked) == 0)
		return 0;
	sm->requested = 1;
	return 1;
}

/*
 * The stanzas the server acknowledged leave the queue here, and only
 * here: the one place to tell their senders, should they ask.
 */
static void
release(struct sm *sm, uint32_t n)
{
	uint64_t tag;
	uint32_t i;

	for (i = 0; sm->released != NULL && i < n; i++)
		if ((tag = squeue_tag(&sm->unacked, i)) != 0)
			sm->released(sm->release_arg, tag);
	squeue_drop(&sm->unacked, n);
	sm->acked += n;
}

void
sm_on_release(struct sm *sm, void (*cb)(void *, uint64_t), void *arg)
{
	sm->released = cb;
	sm->release_arg = arg;
}

uint64_t
sm_unacked_tag(const struct sm *sm, size_t i)
{
	return squeue_tag(&sm->unacked, i);
}

/* h against what was sent; the counters wrap at 2^32. */
static int
check_h(const struct sm *sm, uint32_t h, const char **why)
{
	uint32_t n = h - sm->acked;

	if (n <= squeue_count(&sm->unacked))
		return 0;
	/* Half the counter space either way tells which end it is past. */
	*why = sm->acked - h < UINT32_C(1) << 31 ?
	    "h went backwards (fewer than acknowledged before)" :
	    "h is higher than the number of stanzas sent";
	return -1;
}

int
sm_acked(struct sm *sm, uint32_t h, const char **why)
{
	if (sm->state == SM_OFF) {
		*why = "stream management is not enabled";
		return -1;
	}
	if (check_h(sm, h, why) != 0)
		return -1;
	release(sm, h - sm->acked);
	sm->requested = 0;
	return 0;
}

/*
 * Lost while ENABLING: never confirmed, so nothing to resume (there is no
 * id), but what was sent meanwhile stays for sm_forget() to send again.
 */
void
sm_lost(struct sm *sm)
{
	if (sm->state == SM_ENABLING || sm->state == SM_ON)
		sm->state = SM_DOWN;
	sm->requested = 0;
}

const char *
sm_resume_id(const struct sm *sm)
{
	return sm->state == SM_DOWN ? sm->id : NULL;
}

int
sm_resumed(struct sm *sm, uint32_t h, const char **why)
{
	if (sm->state != SM_DOWN || sm->id == NULL) {
		*why = "no session to resume";
		return -1;
	}
	if (check_h(sm, h, why) != 0)
		return -1;
	release(sm, h - sm->acked);
	sm->state = SM_ON;
	sm->requested = 0;
	return 0;
}

void
sm_closed(struct sm *sm)
{
	release(sm, (uint32_t)squeue_count(&sm->unacked));
	reset(sm);
}

void
sm_forget(struct sm *sm, struct squeue *requeue)
{
	size_t n = squeue_count(&sm->unacked);

	if (n > 0)
		log_info("stream management: sending %zu unacknowledged "
		    "stanzas again", n);
	squeue_prepend(requeue, &sm->unacked, SM_CLIENT);
	reset(sm);
}
