/*
 * A folder of a unit test's own under /tmp, made by cmocka's setup and
 * removed whole by its teardown: `top' is /tmp/NAME.XXXXXX, `dir' the
 * state directory in it (top/state, which the module under test creates),
 * `file' a file in that directory.
 */
#ifndef CLAWSD_TESTS_TMPDIR_H
#define CLAWSD_TESTS_TMPDIR_H

struct tmpdir {
	char	 top[64];
	char	 dir[128];
	char	 file[160];
};

/* A new one in *st for cmocka; 0, or -1 (the test fails). */
int	 tmpdir_setup(void **st, const char *name, const char *file);
/* Removes *st's folder and everything in it. */
int	 tmpdir_teardown(void **st);

#endif
