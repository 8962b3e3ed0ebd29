/*
 * The stanza FIFO (daemon/squeue.c): order and bytes kept across ring
 * growth, a ring that wraps, the compaction of its byte buffer, partial
 * and total drops, and the merge used when stanzas are sent again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "squeue.h"

static void
push_num(struct squeue *q, int n, int flags)
{
	char text[32];

	snprintf(text, sizeof(text), "<m n='%d'/>", n);
	squeue_push(q, text, strlen(text), flags);
}

static void
assert_at(const struct squeue *q, size_t i, int n)
{
	char want[32];
	const char *p;
	size_t len;
	int flags;

	snprintf(want, sizeof(want), "<m n='%d'/>", n);
	p = squeue_at(q, i, &len, &flags);
	assert_non_null(p);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(p, want, len);
}

static void
test_fifo_order(void **state)
{
	struct squeue q;
	size_t len;
	int i;

	(void)state;
	squeue_init(&q);
	assert_null(squeue_at(&q, 0, &len, NULL));
	for (i = 0; i < 1000; i++)	/* grows the ring several times */
		push_num(&q, i, 0);
	assert_int_equal(squeue_count(&q), 1000);
	for (i = 0; i < 1000; i++)
		assert_at(&q, (size_t)i, i);
	assert_null(squeue_at(&q, 1000, &len, NULL));
	squeue_free(&q);
}

/* Push and drop in turns: the ring wraps, the bytes are compacted. */
static void
test_ring_wraps(void **state)
{
	struct squeue q;
	int next = 0, first = 0, round;

	(void)state;
	squeue_init(&q);
	for (round = 0; round < 200; round++) {
		int k;

		for (k = 0; k < 37; k++)
			push_num(&q, next++, 0);
		squeue_drop(&q, 30);
		first += 30;
		assert_int_equal(squeue_count(&q), (size_t)(next - first));
		assert_at(&q, 0, first);
		assert_at(&q, squeue_count(&q) - 1, next - 1);
	}
	/* The bytes held stay within a small multiple of the live ones. */
	assert_true(q.bytes.len < 4 * squeue_count(&q) * 16 + 4096);
	squeue_free(&q);
}

static void
test_drop_all_and_more(void **state)
{
	struct squeue q;
	int i;

	(void)state;
	squeue_init(&q);
	for (i = 0; i < 10; i++)
		push_num(&q, i, 0);
	squeue_drop(&q, 0);
	assert_int_equal(squeue_count(&q), 10);
	squeue_drop(&q, 25);
	assert_int_equal(squeue_count(&q), 0);
	push_num(&q, 42, 0);
	assert_at(&q, 0, 42);
	squeue_free(&q);
}

static void
test_prepend_by_mask(void **state)
{
	struct squeue to, from;
	int i, flags;
	size_t len;

	(void)state;
	squeue_init(&to);
	squeue_init(&from);
	for (i = 0; i < 3; i++)
		push_num(&to, 100 + i, 1);
	for (i = 0; i < 6; i++)
		push_num(&from, i, i % 2);	/* odd ones match */
	squeue_prepend(&to, &from, 1);
	assert_int_equal(squeue_count(&from), 0);
	assert_int_equal(squeue_count(&to), 6);
	assert_at(&to, 0, 1);
	assert_at(&to, 1, 3);
	assert_at(&to, 2, 5);
	assert_at(&to, 3, 100);
	assert_at(&to, 5, 102);
	assert_non_null(squeue_at(&to, 0, &len, &flags));
	assert_int_equal(flags, 1);
	/* Nothing to move: unchanged. */
	squeue_prepend(&to, &from, 1);
	assert_int_equal(squeue_count(&to), 6);
	assert_at(&to, 0, 1);
	squeue_free(&to);
	squeue_free(&from);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_order),
		cmocka_unit_test(test_ring_wraps),
		cmocka_unit_test(test_drop_all_and_more),
		cmocka_unit_test(test_prepend_by_mask),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
