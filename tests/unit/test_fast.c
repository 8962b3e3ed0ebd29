/*
 * fast.c: the SASL2 client id and the FAST token in the state directory
 * (0600, read back, bad lines ignored) and the HT-SHA-256 proofs, checked
 * against HMAC-SHA-256 values computed independently (Python's hmac).
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
#include "fast.h"
#include "tmpdir.h"

#define TOKEN	"secret-token:fast-abc"
/* hmac.new(TOKEN, b"Initiator", sha256), and b"Responder" */
static const char initiator[] =
    "31a40f95e222589afb8c28c212119413c99f1530ed11458f2ccd141988ee709e";
static const char responder[] =
    "90fd060e34951aa445e2728bb488b74255c5b8355fea618546f7588e5427a204";

/* The same with the channel binding 00 01 ... 1f after the label. */
static const char initiator_cb[] =
    "18ade4b5964609ea3b0c6afca1cbcdf45db48e0170743d45571808f19ca1d20e";
static const char responder_cb[] =
    "f3686c9880622e02ca67c42aada7cb49412c5f9f38681a6e7c8889d8b5ae7173";

static int
setup(void **st)
{
	return tmpdir_setup(st, "test_fast", FAST_FILE);
}

static int
teardown(void **st)
{
	return tmpdir_teardown(st);
}

static void
unhex(const char *hex, unsigned char *out)
{
	unsigned v;
	size_t i;

	for (i = 0; hex[2 * i] != '\0'; i++) {
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (unsigned char)v;
	}
}

static void
spit(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void
test_new_id_saved_0600(void **st)
{
	struct tmpdir *fx = *st;
	struct fast *f = fast_new(), *g = fast_new();
	struct stat sb;
	char id[80];

	assert_int_equal(fast_open(f, fx->dir), 0);
	/* A version 4 UUID. */
	assert_int_equal(strlen(fast_client_id(f)), 36);
	assert_int_equal(fast_client_id(f)[14], '4');
	assert_null(fast_mech(f));
	assert_int_equal(stat(fx->file, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	snprintf(id, sizeof(id), "%s", fast_client_id(f));
	/* A restart reads the same id. */
	assert_int_equal(fast_open(g, fx->dir), 0);
	assert_string_equal(fast_client_id(g), id);
	fast_free(f);
	fast_free(g);
}

static void
test_token_kept_and_dropped(void **st)
{
	struct tmpdir *fx = *st;
	struct fast *f = fast_new(), *g = fast_new();

	assert_int_equal(fast_open(f, fx->dir), 0);
	assert_int_equal(fast_set(f, "HT-SHA-256-NONE", TOKEN), 0);
	/* A rotation passes the mechanism fast_mech() returned. */
	assert_int_equal(fast_set(f, fast_mech(f), TOKEN), 0);
	assert_int_equal(fast_open(g, fx->dir), 0);
	assert_string_equal(fast_mech(g), "HT-SHA-256-NONE");
	assert_string_equal(fast_client_id(g), fast_client_id(f));
	fast_drop(g);
	fast_free(g);
	g = fast_new();
	assert_int_equal(fast_open(g, fx->dir), 0);
	assert_null(fast_mech(g));
	fast_free(f);
	fast_free(g);
}

static void
test_unusable_tokens_refused(void **st)
{
	struct fast *f = fast_new();

	assert_int_equal(fast_open(f, NULL), 0);
	assert_int_equal(fast_set(f, "HT-SHA-256-NONE", "with space"), -1);
	assert_int_equal(fast_set(f, "HT-SHA-256-NONE", ""), -1);
	assert_int_equal(fast_set(f, "HT-MD5-NONE", TOKEN), -1);
	assert_int_equal(fast_set(f, NULL, TOKEN), -1);
	assert_null(fast_mech(f));
	fast_free(f);
}

static void
test_bad_lines_ignored(void **st)
{
	struct tmpdir *fx = *st;
	struct fast *f = fast_new();

	assert_int_equal(mkdir(fx->dir, 0700), 0);
	spit(fx->file, "id abc\ngarbage\ntoken HT-SHA-256-NONE\n"
	    "token HT-SHA-256-NONE " TOKEN " extra\n");
	assert_int_equal(fast_open(f, fx->dir), 0);
	assert_string_equal(fast_client_id(f), "abc");
	assert_null(fast_mech(f));
	fast_free(f);
}

static void
test_ht_proofs(void **st)
{
	struct fast *f = fast_new();
	unsigned char want[32], resp[32];
	struct buf b;

	assert_int_equal(fast_open(f, NULL), 0);
	buf_init(&b);
	assert_int_equal(fast_initial(f, "bot", NULL, 0, &b), -1);
	assert_int_equal(fast_set(f, "HT-SHA-256-NONE", TOKEN), 0);
	assert_int_equal(fast_initial(f, "bot", NULL, 0, &b), 0);
	unhex(initiator, want);
	assert_int_equal(b.len, 4 + 32);
	assert_memory_equal(b.data, "bot\0", 4);
	assert_memory_equal(b.data + 4, want, 32);
	unhex(responder, resp);
	assert_int_equal(fast_verify(f, NULL, 0, (char *)resp, 32), 0);
	/* The initiator's value, a short one, a changed byte: no proof. */
	assert_int_equal(fast_verify(f, NULL, 0, (char *)want, 32), -1);
	assert_int_equal(fast_verify(f, NULL, 0, (char *)resp, 31), -1);
	resp[31] ^= 1;
	assert_int_equal(fast_verify(f, NULL, 0, (char *)resp, 32), -1);
	buf_free(&b);
	fast_free(f);
}

static void
test_ht_bound_proofs(void **st)
{
	struct fast *f = fast_new();
	unsigned char cb[32], want[32], resp[32];
	struct buf b;
	size_t i;

	for (i = 0; i < sizeof(cb); i++)
		cb[i] = (unsigned char)i;
	assert_int_equal(fast_open(f, NULL), 0);
	assert_int_equal(fast_set(f, "HT-SHA-256-EXPR", TOKEN), 0);
	buf_init(&b);
	assert_int_equal(fast_initial(f, "bot", cb, sizeof(cb), &b), 0);
	unhex(initiator_cb, want);
	assert_int_equal(b.len, 4 + 32);
	assert_memory_equal(b.data + 4, want, 32);
	unhex(responder_cb, resp);
	assert_int_equal(fast_verify(f, cb, sizeof(cb), (char *)resp, 32), 0);
	/* The same token over another channel proves nothing. */
	assert_int_equal(fast_verify(f, NULL, 0, (char *)resp, 32), -1);
	cb[0] ^= 1;
	assert_int_equal(fast_verify(f, cb, sizeof(cb), (char *)resp, 32), -1);
	buf_free(&b);
	fast_free(f);
}

static void
test_ht_mechanism_choice(void **st)
{
	const char *all[] = { "HT-SHA-256-NONE", "HT-SHA-256-UNIQ",
	    "HT-SHA-256-EXPR", "HT-SHA-256-ENDP" };
	const char *none[] = { "HT-SHA-256-NONE" };
	const char *endp[] = { "HT-SHA-256-ENDP", "HT-SHA-256-NONE" };
	const char *both = "tls-exporter tls-server-end-point";
	struct fast *f = fast_new();

	assert_string_equal(fast_cb_type("HT-SHA-256-EXPR"), "tls-exporter");
	assert_string_equal(fast_cb_type("HT-SHA-256-ENDP"),
	    "tls-server-end-point");
	assert_string_equal(fast_cb_type("HT-SHA-256-NONE"), "");
	assert_null(fast_cb_type("HT-SHA-256-UNIQ"));
	/* The best binding both sides have, whatever the server's order. */
	assert_string_equal(fast_choose(all, 4, both, 0), "HT-SHA-256-EXPR");
	assert_string_equal(fast_choose(all, 4, "tls-server-end-point", 0),
	    "HT-SHA-256-ENDP");
	assert_string_equal(fast_choose(all, 4, "", 0), "HT-SHA-256-NONE");
	assert_string_equal(fast_choose(endp, 2, "tls-exporter", 0),
	    "HT-SHA-256-NONE");
	/* `require': bound, or no token at all. */
	assert_string_equal(fast_choose(all, 4, both, 1), "HT-SHA-256-EXPR");
	assert_null(fast_choose(none, 1, both, 1));
	assert_null(fast_choose(endp, 2, "tls-exporter", 1));
	assert_null(fast_choose(NULL, 0, both, 0));

	assert_int_equal(fast_open(f, NULL), 0);
	assert_false(fast_usable(f, all, 4, both, 0));
	assert_int_equal(fast_set(f, "HT-SHA-256-EXPR", TOKEN), 0);
	assert_true(fast_usable(f, all, 4, both, 1));
	/* TLS 1.2 makes no tls-exporter; nor does a server not offering it. */
	assert_false(fast_usable(f, all, 4, "tls-server-end-point", 0));
	assert_false(fast_usable(f, endp, 2, both, 0));
	assert_int_equal(fast_set(f, "HT-SHA-256-NONE", TOKEN), 0);
	assert_true(fast_usable(f, all, 4, "", 0));
	assert_false(fast_usable(f, all, 4, both, 1));
	/* Binding has become possible: a better token is to be had. */
	assert_false(fast_usable(f, all, 4, both, 0));
	assert_true(fast_usable(f, none, 1, both, 0));
	fast_free(f);
}

#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_new_id_saved_0600),
		T(test_token_kept_and_dropped),
		T(test_unusable_tokens_refused),
		T(test_bad_lines_ignored),
		T(test_ht_proofs),
		T(test_ht_bound_proofs),
		T(test_ht_mechanism_choice),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
