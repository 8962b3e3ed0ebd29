/*
 * log.c: whatever a logged string carries (peer text: a server's error
 * text, a client's stanza id), one call writes one line, in the journal
 * format and in the plain one, with controls, bytes that are not UTF-8
 * and invisible code points escaped, and valid UTF-8 kept as it is.
 */
#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

/* What one log call writes to stderr, with the journal format or not. */
static char *
capture(int journal, const char *peer)
{
	static char out[16384];
	char js[64];
	struct stat st;
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	assert_non_null(f);
	assert_true(saved >= 0);
	fflush(stderr);
	assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino);
	if (journal)
		setenv("JOURNAL_STREAM", js, 1);
	else
		unsetenv("JOURNAL_STREAM");
	log_init();
	log_warn("stream error: %s", peer);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	rewind(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	fclose(f);
	unsetenv("JOURNAL_STREAM");
	log_init();
	return out;
}

/* One line, ending in its only newline, containing `want'. */
static void
expect_line(int journal, const char *peer, const char *want)
{
	char *out = capture(journal, peer);
	size_t len = strlen(out);

	assert_true(len > 0);
	assert_int_equal(out[len - 1], '\n');
	if (memchr(out, '\n', len - 1) != NULL || strchr(out, '\r') != NULL)
		fail_msg("more than one line: %s", out);
	if (journal)
		assert_memory_equal(out, "<4>stream error: ", 17);
	if (strstr(out, want) == NULL)
		fail_msg("want %s in %s", want, out);
}

static void
test_forged_entry(void **state)
{
	int journal;

	for (journal = 0; journal < 2; journal++) {
		expect_line(journal, "bye\n<3>forged entry",
		    "bye\\n<3>forged entry");
		expect_line(journal, "a\r\n<3>b\rc", "a\\r\\n<3>b\\rc");
	}
}

static void
test_escapes(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "tab\there", "tab\\there" },
		{ "esc\x1b[2Jx", "esc\\x1b[2Jx" },
		{ "bell\x07 del\x7f", "bell\\x07 del\\x7f" },
		{ "back\\slash", "back\\\\slash" },
		/* not UTF-8: a lone continuation byte, an overlong '/', a
		 * surrogate, a truncated sequence at the end */
		{ "a\x80z", "a\\x80z" },
		{ "\xc0\xaf", "\\xc0\\xaf" },
		{ "\xed\xa0\x80", "\\xed\\xa0\\x80" },
		{ "end\xe6\x97", "end\\xe6\\x97" },
		/* C1 NEL, line separator, right-to-left override, BOM */
		{ "n\xc2\x85l", "n\\u0085l" },
		{ "l\xe2\x80\xa8s", "l\\u2028s" },
		{ "r\xe2\x80\xaeo", "r\\u202eo" },
		{ "\xef\xbb\xbf" "bom", "\\ufeffbom" },
		/* printable UTF-8 stays */
		{ "h\xc3\xa9llo \xe6\x97\xa5 \xf0\x9f\x98\x80",
		  "h\xc3\xa9llo \xe6\x97\xa5 \xf0\x9f\x98\x80" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_line(0, cases[i].in, cases[i].out);
}

/* The longest message, all of it to escape: one whole line still. */
static void
test_long(void **state)
{
	char peer[3000];

	memset(peer, '\n', sizeof(peer) - 1);
	peer[sizeof(peer) - 1] = '\0';
	expect_line(1, peer, "\\n\\n\\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forged_entry),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
