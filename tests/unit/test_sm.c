/*
 * Stream management bookkeeping (daemon/sm.c): every h the server sends is
 * checked against what was sent, wrapping at 2^32, and an impossible one
 * drops nothing.  The counters near 2^32 cannot be reached through the
 * interface in a unit test's time (four billion stanzas), so this file
 * includes sm.c and sets them directly in one place, start_at().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sm.c"

/* An enabled session whose counters both stand at `base'. */
static struct sm *
start_at(uint32_t base)
{
	struct sm *sm = sm_new();

	sm_enable(sm);
	assert_int_equal(sm_enabled(sm, "sid"), 0);
	sm->acked = base;
	sm->h_in = base;
	return sm;
}

static void
send_n(struct sm *sm, int n)
{
	char text[32];
	int i;

	for (i = 0; i < n; i++) {
		snprintf(text, sizeof(text), "<message id='%d'/>", i);
		sm_sent(sm, text, strlen(text), SM_CLIENT, 0);
	}
}

static void
assert_front(const struct sm *sm, const char *want)
{
	size_t len;
	const char *p = sm_unacked_at(sm, 0, &len);

	assert_non_null(p);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(p, want, len);
}

static void
test_enable_flow(void **state)
{
	struct sm *sm = sm_new();
	const char *why;

	(void)state;
	/* Nothing asked: nothing to confirm, count or acknowledge. */
	assert_int_equal(sm_enabled(sm, "x"), -1);
	assert_int_equal(sm_enable_failed(sm), -1);
	assert_int_equal(sm_acked(sm, 0, &why), -1);
	send_n(sm, 1);
	assert_int_equal(sm_unacked(sm), 0);

	sm_enable(sm);
	assert_true(sm_counting(sm));
	assert_false(sm_on(sm));
	send_n(sm, 2);
	sm_received(sm);	/* before <enabled/>: not counted */
	assert_int_equal(sm_handled(sm), 0);
	assert_int_equal(sm_enabled(sm, "sid"), 0);
	assert_true(sm_on(sm));
	assert_int_equal(sm_enabled(sm, "again"), -1);
	sm_received(sm);
	assert_int_equal(sm_handled(sm), 1);
	assert_int_equal(sm_unacked(sm), 2);
	assert_int_equal(sm_acked(sm, 1, &why), 0);
	assert_front(sm, "<message id='1'/>");
	sm_free(sm);
}

static void
test_enable_refused(void **state)
{
	struct sm *sm = sm_new();
	struct squeue q;

	(void)state;
	squeue_init(&q);
	sm_enable(sm);
	send_n(sm, 3);
	assert_int_equal(sm_enable_failed(sm), 0);
	assert_false(sm_counting(sm));
	assert_int_equal(sm_unacked(sm), 0);
	sm_lost(sm);
	assert_null(sm_resume_id(sm));
	sm_forget(sm, &q);
	assert_int_equal(squeue_count(&q), 0);
	squeue_free(&q);
	sm_free(sm);
}

static void
test_ack_wraps(void **state)
{
	struct sm *sm = start_at(UINT32_MAX - 2);
	const char *why;

	(void)state;
	send_n(sm, 10);
	/* Across 2^32: h = base + 5 wraps to 2. */
	assert_int_equal(sm_acked(sm, 2, &why), 0);
	assert_int_equal(sm_unacked(sm), 5);
	assert_front(sm, "<message id='5'/>");
	assert_int_equal(sm_acked(sm, 7, &why), 0);
	assert_int_equal(sm_unacked(sm), 0);
	/* Our own h wraps the same way. */
	sm_received(sm);
	sm_received(sm);
	sm_received(sm);
	assert_int_equal(sm_handled(sm), 0);
	sm_free(sm);
}

static void
test_ack_too_high(void **state)
{
	struct sm *sm = start_at(100);
	const char *why = NULL;

	(void)state;
	send_n(sm, 3);
	assert_int_equal(sm_acked(sm, 104, &why), -1);
	assert_non_null(why);
	assert_non_null(strstr(why, "higher"));
	/* Nothing dropped, and the good h still works. */
	assert_int_equal(sm_unacked(sm), 3);
	assert_int_equal(sm_acked(sm, 103, &why), 0);
	assert_int_equal(sm_unacked(sm), 0);
	/* Past the wrap too. */
	sm_free(sm);
	sm = start_at(UINT32_MAX);
	send_n(sm, 2);
	assert_int_equal(sm_acked(sm, 2, &why), -1);
	assert_int_equal(sm_acked(sm, 1, &why), 0);
	sm_free(sm);
}

static void
test_ack_backwards(void **state)
{
	struct sm *sm = start_at(1000);
	const char *why = NULL;

	(void)state;
	send_n(sm, 5);
	assert_int_equal(sm_acked(sm, 1002, &why), 0);
	assert_int_equal(sm_acked(sm, 1001, &why), -1);
	assert_non_null(strstr(why, "backwards"));
	assert_int_equal(sm_unacked(sm), 3);
	assert_front(sm, "<message id='2'/>");
	/* The same h again is legal: nothing new acknowledged. */
	assert_int_equal(sm_acked(sm, 1002, &why), 0);
	assert_int_equal(sm_unacked(sm), 3);
	/* Backwards across the wrap: from 1 to 2^32 - 1. */
	sm_free(sm);
	sm = start_at(UINT32_MAX - 1);
	send_n(sm, 4);
	assert_int_equal(sm_acked(sm, 1, &why), 0);
	assert_int_equal(sm_acked(sm, UINT32_MAX, &why), -1);
	assert_non_null(strstr(why, "backwards"));
	assert_int_equal(sm_unacked(sm), 1);
	sm_free(sm);
}

static void
test_ack_request_one_at_a_time(void **state)
{
	struct sm *sm = start_at(0);
	const char *why;

	(void)state;
	assert_false(sm_want_ack(sm));		/* nothing to acknowledge */
	send_n(sm, 2);
	assert_true(sm_want_ack(sm));
	assert_false(sm_want_ack(sm));		/* one in flight */
	assert_int_equal(sm_acked(sm, 1, &why), 0);
	assert_true(sm_want_ack(sm));
	sm_free(sm);
}

static void
test_resume(void **state)
{
	struct sm *sm = start_at(10);
	const char *why;
	size_t len;

	(void)state;
	send_n(sm, 4);
	sm_received(sm);
	sm_lost(sm);
	assert_false(sm_counting(sm));
	assert_string_equal(sm_resume_id(sm), "sid");
	assert_int_equal(sm_handled(sm), 11);
	/* h above what was sent: refused, nothing lost. */
	assert_int_equal(sm_resumed(sm, 15, &why), -1);
	assert_int_equal(sm_unacked(sm), 4);
	assert_int_equal(sm_resumed(sm, 9, &why), -1);
	assert_int_equal(sm_unacked(sm), 4);
	assert_int_equal(sm_resumed(sm, 12, &why), 0);
	assert_true(sm_on(sm));
	assert_int_equal(sm_unacked(sm), 2);
	assert_non_null(sm_unacked_at(sm, 1, &len));
	assert_null(sm_unacked_at(sm, 2, &len));
	assert_front(sm, "<message id='2'/>");
	/* Resumed already: a second <resumed/> is not possible. */
	assert_int_equal(sm_resumed(sm, 12, &why), -1);
	sm_free(sm);
}

static void
test_resume_nothing_to_resend(void **state)
{
	struct sm *sm = start_at(UINT32_MAX);
	const char *why;

	(void)state;
	send_n(sm, 3);
	assert_int_equal(sm_acked(sm, 2, &why), 0);
	sm_lost(sm);
	assert_int_equal(sm_resumed(sm, 2, &why), 0);
	assert_int_equal(sm_unacked(sm), 0);
	assert_false(sm_want_ack(sm));
	sm_free(sm);
}

static void
test_resume_without_session(void **state)
{
	struct sm *sm = sm_new();
	const char *why = NULL;

	(void)state;
	assert_int_equal(sm_resumed(sm, 0, &why), -1);
	assert_non_null(why);
	/* Enabled without resumption: nothing to resume either. */
	sm_enable(sm);
	assert_int_equal(sm_enabled(sm, NULL), 0);
	sm_lost(sm);
	assert_null(sm_resume_id(sm));
	assert_int_equal(sm_resumed(sm, 0, &why), -1);
	/* Lost while only enabling. */
	sm_enable(sm);
	sm_lost(sm);
	assert_int_equal(sm_resumed(sm, 0, &why), -1);
	sm_free(sm);
}

/* Sent after <enable/>, lost before <enabled/>: sent again, not lost. */
static void
test_lost_while_enabling_keeps_stanzas(void **state)
{
	struct sm *sm = sm_new();
	struct squeue q;

	(void)state;
	squeue_init(&q);
	sm_enable(sm);
	sm_sent(sm, "<message/>", 10, SM_CLIENT, 7);
	sm_sent(sm, "<presence/>", 11, 0, 0);
	sm_lost(sm);
	assert_null(sm_resume_id(sm));
	sm_forget(sm, &q);
	assert_int_equal(squeue_count(&q), 1);
	assert_int_equal(squeue_tag(&q, 0), 7);
	assert_int_equal(sm_unacked(sm), 0);
	assert_false(sm_counting(sm));
	squeue_free(&q);
	sm_free(sm);
}

static void
test_forget_requeues_client_stanzas(void **state)
{
	struct sm *sm = start_at(0);
	struct squeue q;
	const char *p;
	size_t len;

	(void)state;
	squeue_init(&q);
	squeue_push(&q, "<queued/>", 9, SM_CLIENT);
	sm_sent(sm, "<own/>", 6, 0, 0);	/* the daemon's: not sent again */
	send_n(sm, 2);
	sm_lost(sm);
	sm_forget(sm, &q);
	assert_null(sm_resume_id(sm));
	assert_int_equal(sm_unacked(sm), 0);
	assert_int_equal(squeue_count(&q), 3);
	p = squeue_at(&q, 0, &len, NULL);
	assert_memory_equal(p, "<message id='0'/>", len);
	p = squeue_at(&q, 2, &len, NULL);
	assert_memory_equal(p, "<queued/>", len);
	squeue_free(&q);
	sm_free(sm);
}

static void
test_closed_keeps_nothing(void **state)
{
	struct sm *sm = start_at(0);

	(void)state;
	send_n(sm, 5);
	sm_closed(sm);
	assert_int_equal(sm_unacked(sm), 0);
	assert_null(sm_resume_id(sm));
	sm_free(sm);
}

/* A full window: everything kept in order until acknowledged. */
static void
test_full_window(void **state)
{
	struct sm *sm = start_at(UINT32_MAX - 500);
	const char *why;
	char want[32];
	int i;

	(void)state;
	send_n(sm, 1000);
	assert_int_equal(sm_unacked(sm), 1000);
	for (i = 0; i < 1000; i += 100) {
		assert_int_equal(sm_acked(sm, UINT32_MAX - 500 + (uint32_t)i,
		    &why), 0);
		snprintf(want, sizeof(want), "<message id='%d'/>", i);
		assert_front(sm, want);
	}
	assert_int_equal(sm_acked(sm, UINT32_MAX - 500 + 1000, &why), 0);
	assert_int_equal(sm_unacked(sm), 0);
	sm_free(sm);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_enable_flow),
		cmocka_unit_test(test_enable_refused),
		cmocka_unit_test(test_ack_wraps),
		cmocka_unit_test(test_ack_too_high),
		cmocka_unit_test(test_ack_backwards),
		cmocka_unit_test(test_ack_request_one_at_a_time),
		cmocka_unit_test(test_resume),
		cmocka_unit_test(test_resume_nothing_to_resend),
		cmocka_unit_test(test_resume_without_session),
		cmocka_unit_test(test_forget_requeues_client_stanzas),
		cmocka_unit_test(test_lost_while_enabling_keeps_stanzas),
		cmocka_unit_test(test_closed_keeps_nothing),
		cmocka_unit_test(test_full_window),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
