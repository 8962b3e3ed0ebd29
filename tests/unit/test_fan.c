/*
 * Shared output blocks: what each client's queue hands to writev, in
 * order, after partial writes, with lines for one client in between, and
 * with lines longer than a block.  The ASan run of the unit tests checks
 * that every block is freed with its last view.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "fan.h"

/* Everything the queue would write, through views of at most `max'. */
static void
drain(struct fan_queue *q, struct buf *out, int max, size_t step)
{
	uv_buf_t bufs[8];
	size_t n;
	int i, nb;

	while (q->bytes > 0) {
		nb = fan_queue_bufs(q, bufs, max);
		assert_true(nb > 0);
		n = 0;
		for (i = 0; i < nb && n < step; i++) {
			size_t take = bufs[i].len;

			if (take > step - n)
				take = step - n;
			buf_append(out, bufs[i].base, take);
			n += take;
		}
		fan_queue_consume(q, n);
	}
}

static void
test_lines_reach_every_queue_in_order(void **state)
{
	struct fan f;
	struct fan_queue a, b;
	struct fan_ref r;
	struct buf oa, ob;
	uv_buf_t bufs[8];

	fan_init(&f);
	fan_queue_init(&a);
	fan_queue_init(&b);
	buf_init(&oa);
	buf_init(&ob);
	fan_put(&f, "one\n", 4, &r);
	fan_queue_push(&a, &r);
	fan_queue_push(&b, &r);
	fan_put(&f, "only a\n", 7, &r);
	fan_queue_push(&a, &r);
	fan_put(&f, "two\n", 4, &r);
	fan_queue_push(&a, &r);
	fan_queue_push(&b, &r);
	/* a's lines follow each other in the block: one view */
	assert_int_equal(fan_queue_bufs(&a, bufs, 8), 1);
	/* b skipped a line: two views */
	assert_int_equal(fan_queue_bufs(&b, bufs, 8), 2);
	assert_int_equal(a.bytes, 15);
	assert_int_equal(b.bytes, 8);
	drain(&a, &oa, 8, 3);
	drain(&b, &ob, 1, 5);
	assert_string_equal(buf_cstr(&oa), "one\nonly a\ntwo\n");
	assert_string_equal(buf_cstr(&ob), "one\ntwo\n");
	fan_free(&f);
	fan_queue_clear(&a);
	fan_queue_clear(&b);
	buf_free(&oa);
	buf_free(&ob);
}

/* Many blocks, lines longer than a block, a queue cleared with views. */
static void
test_blocks_and_long_lines(void **state)
{
	struct fan f;
	struct fan_queue a, b;
	struct fan_ref r;
	struct buf want, got;
	char *line;
	size_t i, len;

	fan_init(&f);
	fan_queue_init(&a);
	fan_queue_init(&b);
	buf_init(&want);
	buf_init(&got);
	line = malloc(200000);
	assert_non_null(line);
	for (i = 0; i < 400; i++) {
		len = i % 50 == 49 ? 150000 : 1000 + i;
		memset(line, 'a' + (int)(i % 26), len);
		line[len - 1] = '\n';
		fan_put(&f, line, len, &r);
		fan_queue_push(&a, &r);
		fan_queue_push(&b, &r);
		buf_append(&want, line, len);
	}
	assert_int_equal(a.bytes, want.len);
	drain(&a, &got, 8, 70000);
	assert_int_equal(got.len, want.len);
	assert_memory_equal(got.data, want.data, want.len);
	fan_free(&f);
	fan_queue_clear(&b);	/* the last views of every block */
	fan_queue_clear(&a);
	free(line);
	buf_free(&want);
	buf_free(&got);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines_reach_every_queue_in_order),
		cmocka_unit_test(test_blocks_and_long_lines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
