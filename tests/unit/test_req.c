/*
 * A client's request table: sequence numbers kept apart when ids collide,
 * answers accepted only from where the request went, expiry, the bound,
 * and the recent ids that bounces are matched against.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "req.h"

#define ACCOUNT	"bot@example.org"

static void
test_same_id_twice(void **state)
{
	struct req r;
	struct req_done d;
	unsigned long a, b;

	req_init(&r);
	a = req_add(&r, "1", "peer@example.org/x", 1, 1000);
	b = req_add(&r, "1", "peer@example.org/x", 2, 1000);
	assert_true(a != 0 && b != 0 && a != b);
	assert_int_equal(req_pending(&r), 2);
	/* The second answer first: each carries its own stanza's ordinal. */
	assert_true(req_answer(&r, b, "peer@example.org/x", ACCOUNT, &d));
	assert_string_equal(d.id, "1");
	assert_int_equal(d.n, 2);
	free(d.id);
	assert_false(req_answer(&r, b, "peer@example.org/x", ACCOUNT, &d));
	assert_true(req_answer(&r, a, "peer@example.org/x", ACCOUNT, &d));
	assert_int_equal(d.n, 1);
	free(d.id);
	assert_int_equal(req_pending(&r), 0);
	req_free(&r);
}

static void
test_answer_from(void **state)
{
	struct req r;
	struct req_done d;
	unsigned long full, bare, none;

	req_init(&r);
	full = req_add(&r, "f", "peer@example.org/x", 1, 1000);
	bare = req_add(&r, "b", "peer@example.org", 2, 1000);
	none = req_add(&r, "n", NULL, 3, 1000);
	/* Someone else using the id on the wire is not the answer. */
	assert_false(req_answer(&r, full, "mallory@example.org/x", ACCOUNT,
	    &d));
	assert_false(req_answer(&r, full, "peer@example.org/y", ACCOUNT, &d));
	assert_false(req_answer(&r, full, NULL, ACCOUNT, &d));
	assert_true(req_answer(&r, full, "peer@example.org/x", ACCOUNT, &d));
	free(d.id);
	/* A bare JID: itself or one of its resources. */
	assert_false(req_answer(&r, bare, "peer@example.org.evil", ACCOUNT,
	    &d));
	assert_true(req_answer(&r, bare, "peer@example.org/z", ACCOUNT, &d));
	free(d.id);
	/* The bare part without case, the resource exactly. */
	full = req_add(&r, "c", "Peer@Example.ORG/Desk", 6, 1000);
	assert_false(req_answer(&r, full, "peer@example.org/desk", ACCOUNT,
	    &d));
	assert_true(req_answer(&r, full, "peer@example.org/Desk", ACCOUNT,
	    &d));
	free(d.id);
	/* No `to': the account, its server, or no from. */
	assert_false(req_answer(&r, none, "peer@example.org", ACCOUNT, &d));
	assert_true(req_answer(&r, none, "example.org", ACCOUNT, &d));
	free(d.id);
	none = req_add(&r, "n", NULL, 4, 1000);
	assert_true(req_answer(&r, none, ACCOUNT, ACCOUNT, &d));
	free(d.id);
	none = req_add(&r, "n", NULL, 5, 1000);
	assert_true(req_answer(&r, none, NULL, ACCOUNT, &d));
	free(d.id);
	req_free(&r);
}

static void
test_expiry(void **state)
{
	struct req r;
	struct req_done d;
	unsigned long a;

	req_init(&r);
	a = req_add(&r, "early", NULL, 1, 100);
	req_add(&r, "late", NULL, 2, 200);
	assert_false(req_expired(&r, 99, &d));
	assert_true(req_expired(&r, 100, &d));
	assert_string_equal(d.id, "early");
	assert_int_equal(d.n, 1);
	free(d.id);
	assert_false(req_expired(&r, 150, &d));
	/* An answer after its time is no answer. */
	assert_false(req_answer(&r, a, NULL, ACCOUNT, &d));
	assert_true(req_expired(&r, 1000, &d));
	assert_string_equal(d.id, "late");
	free(d.id);
	assert_true(req_idle(&r));
	/* While nothing can be sent, the clock waits. */
	a = req_add(&r, "held", NULL, 3, 1100);
	req_extend(&r, 5000);
	assert_false(req_expired(&r, 4999, &d));
	req_extend(&r, 10);
	assert_true(req_expired(&r, 5000, &d));
	assert_string_equal(d.id, "held");
	free(d.id);
	req_free(&r);
}

static void
test_bound(void **state)
{
	struct req r;
	struct req_done d;
	unsigned long seq[REQ_MAX], again;
	char id[16];
	size_t i;

	req_init(&r);
	for (i = 0; i < REQ_MAX; i++) {
		snprintf(id, sizeof(id), "%zu", i);
		seq[i] = req_add(&r, id, NULL, i + 1, 1000);
		assert_true(seq[i] != 0);
	}
	assert_int_equal(req_add(&r, "over", NULL, 999, 1000), 0);
	/* A slot freed is used again, under a new sequence number. */
	req_cancel(&r, seq[7]);
	again = req_add(&r, "again", NULL, 1000, 1000);
	assert_true(again != 0);
	for (i = 0; i < REQ_MAX; i++)
		assert_true(again != seq[i]);
	assert_false(req_answer(&r, seq[7], NULL, ACCOUNT, &d));
	assert_true(req_answer(&r, again, NULL, ACCOUNT, &d));
	assert_string_equal(d.id, "again");
	free(d.id);
	req_free(&r);
}

static void
test_recent_ids(void **state)
{
	struct req r;
	struct req_done d;
	char id[16];
	size_t i;

	req_init(&r);
	req_sent(&r, "m1", 100);
	req_sent(&r, "m2", 200);
	assert_true(req_bounce(&r, "m1", 50));
	assert_false(req_bounce(&r, "m3", 50));
	assert_false(req_bounce(&r, "m1", 100));
	assert_false(req_expired(&r, 150, &d));	/* prunes m1 */
	assert_false(req_idle(&r));
	assert_true(req_bounce(&r, "m2", 150));
	assert_false(req_expired(&r, 200, &d));
	assert_true(req_idle(&r));
	/* Bounded: the oldest go first. */
	for (i = 0; i < REQ_RECENT + 10; i++) {
		snprintf(id, sizeof(id), "r%zu", i);
		req_sent(&r, id, 1000);
	}
	assert_false(req_bounce(&r, "r0", 0));
	assert_false(req_bounce(&r, "r9", 0));
	assert_true(req_bounce(&r, "r10", 0));
	req_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_id_twice),
		cmocka_unit_test(test_answer_from),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_recent_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
