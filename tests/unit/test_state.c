/*
 * state.c: the archive ids kept in state_directory: created 0700, written
 * atomically, read back, and bad content ignored line by line.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "state.h"
#include "tmpdir.h"

static int
setup(void **st)
{
	return tmpdir_setup(st, "test_state", STATE_FILE);
}

static int
teardown(void **st)
{
	return tmpdir_teardown(st);
}

static char *
slurp(const char *path)
{
	struct buf b;
	char chunk[4096];
	size_t n;
	FILE *fp = fopen(path, "r");

	assert_non_null(fp);
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_append(&b, chunk, n);
	fclose(fp);
	buf_cstr(&b);
	return b.data;
}

static void
spit(const char *path, const char *data, size_t len)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static void
test_round_trip(void **st)
{
	struct tmpdir *fx = *st;
	struct state *s = state_new();
	struct stat sb;
	char *text;

	assert_int_equal(state_open(s, fx->dir), 0);
	assert_int_equal(stat(fx->dir, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0700);
	assert_null(state_get(s, "bot@example.org"));
	assert_false(state_dirty(s));
	assert_int_equal(state_save(s), 0);
	assert_int_equal(access(fx->file, F_OK), -1);	/* nothing to say */

	assert_int_equal(state_set(s, "bot@example.org", "a1"), 0);
	assert_int_equal(state_set(s, "ops@muc.example.org", "r-7 x"), 0);
	assert_int_equal(state_set(s, "bot@example.org", "a2"), 0);
	assert_true(state_dirty(s));
	assert_int_equal(state_save(s), 0);
	assert_false(state_dirty(s));
	text = slurp(fx->file);
	assert_string_equal(text, "bot@example.org a2\n"
	    "ops@muc.example.org r-7 x\n");
	free(text);
	assert_int_equal(stat(fx->file, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	strcat(fx->file, ".tmp");
	assert_int_equal(access(fx->file, F_OK), -1);
	fx->file[strlen(fx->file) - 4] = '\0';
	/* The same id again changes nothing. */
	assert_int_equal(state_set(s, "bot@example.org", "a2"), 0);
	assert_false(state_dirty(s));
	state_free(s);

	s = state_new();
	assert_int_equal(state_open(s, fx->dir), 0);
	assert_string_equal(state_get(s, "bot@example.org"), "a2");
	assert_string_equal(state_get(s, "ops@muc.example.org"), "r-7 x");
	assert_false(state_dirty(s));
	state_free(s);
}

static void
test_refused_values(void **st)
{
	struct tmpdir *fx = *st;
	struct state *s = state_new();
	char big[STATE_MAX_ID + 2], name[64];
	int i;

	assert_int_equal(state_open(s, NULL), 0);	/* memory only */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(state_set(s, "a@b", big), -1);
	big[STATE_MAX_ID] = '\0';
	assert_int_equal(state_set(s, "a@b", big), 0);
	assert_int_equal(state_set(s, "a@b", "x\ny"), -1);
	assert_int_equal(state_set(s, "a b@c", "x"), -1);
	assert_int_equal(state_set(s, "", "x"), -1);
	assert_int_equal(state_set(s, "a@b", ""), -1);
	assert_string_equal(state_get(s, "a@b"), big);
	for (i = 1; i < STATE_MAX_ENTRIES; i++) {
		snprintf(name, sizeof(name), "r%d@muc", i);
		assert_int_equal(state_set(s, name, "1"), 0);
	}
	assert_int_equal(state_set(s, "one-more@muc", "1"), -1);
	assert_int_equal(state_save(s), 0);	/* nowhere to write */
	(void)fx;
	state_free(s);
}

static void
test_bad_file(void **st)
{
	static const char text[] =
	    "bot@example.org a1\n"
	    "no-id-here\n"
	    "bot@example.org again\n"
	    "ctl@example.org x\001y\n"
	    "nul@example.org x\0y\n"
	    "good@example.org g 1\n"
	    "unfinished@example.org z";
	struct tmpdir *fx = *st;
	struct state *s = state_new();

	assert_int_equal(mkdir(fx->dir, 0700), 0);
	spit(fx->file, text, sizeof(text) - 1);
	assert_int_equal(state_open(s, fx->dir), 0);
	assert_string_equal(state_get(s, "bot@example.org"), "a1");
	assert_string_equal(state_get(s, "good@example.org"), "g 1");
	assert_null(state_get(s, "no-id-here"));
	assert_null(state_get(s, "ctl@example.org"));
	assert_null(state_get(s, "nul@example.org"));
	assert_null(state_get(s, "unfinished@example.org"));
	state_free(s);
}

static void
test_oversized_file(void **st)
{
	struct tmpdir *fx = *st;
	struct state *s = state_new();
	char *big = calloc(1, STATE_MAX_FILE + 1);
	char *text;

	assert_non_null(big);
	memset(big, '\n', STATE_MAX_FILE + 1);
	memcpy(big, "a@b c\n", 6);
	assert_int_equal(mkdir(fx->dir, 0700), 0);
	spit(fx->file, big, STATE_MAX_FILE + 1);
	free(big);
	assert_int_equal(state_open(s, fx->dir), -1);
	assert_null(state_get(s, "a@b"));
	/* The next save replaces it. */
	assert_int_equal(state_set(s, "a@b", "d"), 0);
	assert_int_equal(state_save(s), 0);
	text = slurp(fx->file);
	assert_string_equal(text, "a@b d\n");
	free(text);
	state_free(s);
}

static void
test_not_a_directory(void **st)
{
	struct tmpdir *fx = *st;
	struct state *s = state_new();

	spit(fx->dir, "x", 1);
	assert_int_equal(state_open(s, fx->dir), -1);
	assert_int_equal(state_open(s, "/proc/no/such/dir"), -1);
	state_free(s);
}

#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_round_trip),
		T(test_refused_values),
		T(test_bad_file),
		T(test_oversized_file),
		T(test_not_a_directory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
