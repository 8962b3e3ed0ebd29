/*
 * SASL mechanisms against the RFC 5802 and RFC 7677 examples, a SCRAM-SHA-512
 * vector computed with Python, and the ways a server can get it wrong; the
 * SaltedPassword cache; XEP-0474 downgrade protection against the XEP's
 * examples and vectors computed with Python.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sasl.h"

/* RFC 5802 section 5. */
#define SHA1_CNONCE	"fyko+d2lbbFgONRv9qkxdawL"
#define SHA1_SFIRST	"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j," \
			"s=QSXCR+Q6sek8bf92,i=4096"
#define SHA1_CFINAL	"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j," \
			"p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
#define SHA1_SFINAL	"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="

/* RFC 7677 section 3. */
#define SHA256_CNONCE	"rOprNGfwEbeRWgbNEkqO"
#define SHA256_SFIRST	"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," \
			"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define SHA256_CFINAL	"c=biws,r=rOprNGfwEbeRWgbNEkqO" \
			"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," \
			"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define SHA256_SFINAL	"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/*
 * No RFC example for SHA-512; these come from /usr/bin/python3 (the same
 * script, with sha256 and the RFC 7677 inputs, reproduces that example):
 *
 *	import base64, hashlib, hmac
 *	h = hashlib.sha512
 *	user, pw = "juliet", "r0m30myr0m30"
 *	cnonce, snonce = "tyR2ODUo4XkP8R4eZpMtBqBX", "Fz0zuZ8yq2yR7kTpR4wJ"
 *	salt, it = b"clawsd-test-salt", 4096
 *	cfb = "n=%s,r=%s" % (user, cnonce)
 *	sf = "r=%s%s,s=%s,i=%d" % (cnonce, snonce,
 *	    base64.b64encode(salt).decode(), it)
 *	cfwp = "c=biws,r=%s%s" % (cnonce, snonce)
 *	am = ",".join((cfb, sf, cfwp)).encode()
 *	sp = hashlib.pbkdf2_hmac("sha512", pw.encode(), salt, it)
 *	ck = hmac.new(sp, b"Client Key", h).digest()
 *	cs = hmac.new(h(ck).digest(), am, h).digest()
 *	sk = hmac.new(sp, b"Server Key", h).digest()
 *	print(sf)
 *	print(cfwp + ",p=" + base64.b64encode(
 *	    bytes(a ^ b for a, b in zip(ck, cs))).decode())
 *	print("v=" + base64.b64encode(hmac.new(sk, am, h).digest()).decode())
 */
#define SHA512_CNONCE	"tyR2ODUo4XkP8R4eZpMtBqBX"
#define SHA512_SFIRST	"r=tyR2ODUo4XkP8R4eZpMtBqBXFz0zuZ8yq2yR7kTpR4wJ," \
			"s=Y2xhd3NkLXRlc3Qtc2FsdA==,i=4096"
#define SHA512_CFINAL	"c=biws,r=tyR2ODUo4XkP8R4eZpMtBqBXFz0zuZ8yq2yR7kTpR4wJ," \
			"p=rxYLJYGgJl6xiiLrZZC0WJBhumUzOlc2Z/gofq5IksOyzZy5" \
			"Rl+rvkNvUSsL9fsT0nkGNiuSlwokO61VS2t2pw=="
#define SHA512_SFINAL	"v=FT5DN9VKEBZ9kEjVKQ/Z3b/qXCfi7E1W4Ydq/IeDoEDcjIpe" \
			"Cnv+bJA9RunWsXxyHdfCg3ehoPk9vlnwQN5jag=="

/*
 * XEP-0474 vectors from /usr/bin/python3 (the first two reproduce the
 * examples of XEP-0474 0.5.0, "h=", and 0.3.0, "d="):
 *
 *	import base64, hashlib, hmac
 *	def ssdp(h, mechs, cbs, sep="\x1e", lsep="\x1f"):
 *	    s = sep.join(sorted(mechs))
 *	    if cbs:
 *	        s += lsep + sep.join(sorted(cbs))
 *	    return base64.b64encode(hashlib.new(h, s.encode()).digest()).decode()
 *	print(ssdp("sha1", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"],
 *	    ["tls-server-end-point", "tls-exporter"]))
 *	print(ssdp("sha1", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"],
 *	    ["tls-server-end-point", "tls-exporter"], ",", "|"))
 *	# Full SCRAM-SHA-256 exchange with "h="
 *	h = hashlib.sha256
 *	user, pw = "user", "pencil"
 *	cnonce, snonce = "rOprNGfwEbeRWgbNEkqO", "clawsd-ssdp"
 *	salt, it = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096
 *	mechs = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
 *	cbs = ["tls-server-end-point", "tls-exporter"]
 *	cfb = "n=%s,r=%s" % (user, cnonce)
 *	sf = "r=%s%s,s=%s,i=%d,h=%s" % (cnonce, snonce,
 *	    base64.b64encode(salt).decode(), it, ssdp("sha256", mechs, cbs))
 *	cfwp = "c=biws,r=%s%s" % (cnonce, snonce)
 *	am = ",".join((cfb, sf, cfwp)).encode()
 *	sp = hashlib.pbkdf2_hmac("sha256", pw.encode(), salt, it)
 *	ck = hmac.new(sp, b"Client Key", h).digest()
 *	cs = hmac.new(h(ck).digest(), am, h).digest()
 *	sk = hmac.new(sp, b"Server Key", h).digest()
 *	print(sf)
 *	print(cfwp + ",p=" + base64.b64encode(
 *	    bytes(a ^ b for a, b in zip(ck, cs))).decode())
 *	print("v=" + base64.b64encode(hmac.new(sk, am, h).digest()).decode())
 *	# "d=" of XEP-0474 0.3 for SCRAM-SHA-512, no channel binding
 *	print(ssdp("sha512", ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1",
 *	    "PLAIN"], [], ",", "|"))
 */
#define SSDP_H_SHA1	"G6k/rBLDqgOhRRaCuuatSDFkJ08="
#define SSDP_D_SHA1	"dRc3RenuSY9ypgPpERowoaySQZY="
#define SSDP_SFIRST	"r=rOprNGfwEbeRWgbNEkqOclawsd-ssdp," \
			"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," \
			"h=n1xb5ywFwgC0CeBi3yOR59+yoM7x2+FqqjQJOg7bmtA="
#define SSDP_CFINAL	"c=biws,r=rOprNGfwEbeRWgbNEkqOclawsd-ssdp," \
			"p=WQmq0Il4gsbtzhR2fcnvYE5a+8PQ+r94Tej24nm8D+M="
#define SSDP_SFINAL	"v=GQIDthIXBezGqm3MuQrB7k0mBOFMQkzTg54C9DytOAY="
#define SSDP_D_SHA512	"QW6vaCcOmtRfUWzeTQZcSXQv1nlGRlddpDrqwQXwiV6sNbkh" \
			"BzfMTKBKu9NoBTqYPMQ9nIeovME9w0gckez6pA=="

struct vector {
	enum sasl_mech	 mech;
	const char	*user;
	const char	*password;
	const char	*cnonce;
	const char	*sfirst;
	const char	*cfinal;
	const char	*sfinal;
};

static const struct vector sha1_vec = {
	SASL_SCRAM_SHA_1, "user", "pencil", SHA1_CNONCE,
	SHA1_SFIRST, SHA1_CFINAL, SHA1_SFINAL,
};
static const struct vector sha256_vec = {
	SASL_SCRAM_SHA_256, "user", "pencil", SHA256_CNONCE,
	SHA256_SFIRST, SHA256_CFINAL, SHA256_SFINAL,
};
static const struct vector sha512_vec = {
	SASL_SCRAM_SHA_512, "juliet", "r0m30myr0m30", SHA512_CNONCE,
	SHA512_SFIRST, SHA512_CFINAL, SHA512_SFINAL,
};

static void
assert_buf(struct buf *b, const char *want, size_t len)
{
	assert_int_equal(b->len, len);
	assert_memory_equal(b->data, want, len);
}

/* Start `v' and answer its server-first-message; leaves `s' ready to finish. */
static void
run_to_final(struct sasl *s, const struct vector *v)
{
	struct buf out;
	const char *err = NULL;
	char first[128];

	buf_init(&out);
	assert_int_equal(sasl_start(s, v->mech, v->user, v->password,
	    v->cnonce, &out), 0);
	snprintf(first, sizeof(first), "n,,n=%s,r=%s", v->user, v->cnonce);
	assert_string_equal(buf_cstr(&out), first);
	buf_reset(&out, 0);
	assert_int_equal(sasl_step(s, v->sfirst, strlen(v->sfirst), &out,
	    &err), 0);
	assert_null(err);
	assert_string_equal(buf_cstr(&out), v->cfinal);
	buf_free(&out);
}

static void
check_vector(const struct vector *v)
{
	struct sasl s;
	const char *err = NULL;

	run_to_final(&s, v);
	assert_int_equal(sasl_finish(&s, v->sfinal, strlen(v->sfinal), &err),
	    0);
	sasl_clear(&s);
}

/* Flip one base64 character of the server signature: must be refused. */
static void
check_tampered(const struct vector *v)
{
	struct sasl s;
	const char *err = NULL;
	char bad[128];

	snprintf(bad, sizeof(bad), "%s", v->sfinal);
	bad[2] = bad[2] == 'A' ? 'B' : 'A';
	run_to_final(&s, v);
	assert_int_equal(sasl_finish(&s, bad, strlen(bad), &err), -1);
	assert_string_equal(err, "server signature mismatch");
	sasl_clear(&s);
}

static void
test_scram_sha1(void **state)
{
	(void)state;
	check_vector(&sha1_vec);
	check_tampered(&sha1_vec);
}

static void
test_scram_sha256(void **state)
{
	(void)state;
	check_vector(&sha256_vec);
	check_tampered(&sha256_vec);
}

static void
test_scram_sha512(void **state)
{
	(void)state;
	check_vector(&sha512_vec);
	check_tampered(&sha512_vec);
}

/* Each server-final-message is tried on a fresh SHA-1 exchange. */
static void
check_bad_final(const char *sfinal, const char *want_err)
{
	struct sasl s;
	const char *err = NULL;

	run_to_final(&s, &sha1_vec);
	assert_int_equal(sasl_finish(&s, sfinal, strlen(sfinal), &err), -1);
	assert_string_equal(err, want_err);
	/* A refusal is final: the right signature now comes too late. */
	assert_int_equal(sasl_finish(&s, SHA1_SFINAL, strlen(SHA1_SFINAL),
	    &err), -1);
	sasl_clear(&s);
}

static void
test_scram_bad_final(void **state)
{
	(void)state;
	/* Another exchange's valid signature. */
	check_bad_final(SHA256_SFINAL, "bad server signature");
	check_bad_final("v=rmF9pqV8S7suAoZWja4dJRkF", "bad server signature");
	/* A stray character that mbedtls 2.28 alone would ignore. */
	check_bad_final(SHA1_SFINAL "A", "bad server signature");
	check_bad_final("v=", "bad server signature");
	check_bad_final("", "malformed server-final-message");
	check_bad_final("x=" SHA1_SFINAL, "malformed server-final-message");
	check_bad_final("e=invalid-proof", "server error");
}

/* A server-final-message may carry extensions after the verifier. */
static void
test_scram_final_extension(void **state)
{
	struct sasl s;
	const char *err = NULL;
	static const char v[] = SHA1_SFINAL ",x=whatever";

	(void)state;
	run_to_final(&s, &sha1_vec);
	assert_int_equal(sasl_finish(&s, v, strlen(v), &err), 0);
	sasl_clear(&s);
}

static void
plain_first(struct sasl *s, struct buf *out)
{
	static const char want[] = "\0tim\0tanstaaftanstaaf";

	buf_init(out);
	assert_int_equal(sasl_start(s, SASL_PLAIN, "tim", "tanstaaftanstaaf",
	    NULL, out), 0);
	assert_buf(out, want, sizeof(want) - 1);
}

/* PLAIN has no challenge and no additional data on success. */
static void
test_plain(void **state)
{
	struct sasl s;
	struct buf out;
	const char *err = NULL;

	(void)state;
	plain_first(&s, &out);
	assert_int_equal(sasl_finish(&s, "", 0, &err), 0);
	sasl_clear(&s);
	buf_free(&out);

	plain_first(&s, &out);
	assert_int_equal(sasl_step(&s, "x", 1, &out, &err), -1);
	assert_string_equal(err, "unexpected challenge");
	sasl_clear(&s);
	buf_free(&out);

	plain_first(&s, &out);
	assert_int_equal(sasl_finish(&s, "x", 1, &err), -1);
	assert_string_equal(err, "unexpected additional data");
	sasl_clear(&s);
	buf_free(&out);
}

static void
test_select(void **state)
{
	static const char *const all[] = {
		"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
		"SCRAM-SHA-512",
	};
	static const char *const old[] = { "DIGEST-MD5", "PLAIN" };
	static const char *const ext[] = { "EXTERNAL" };
	static const char *defaults =
	    "SCRAM-SHA-512 SCRAM-SHA-256 SCRAM-SHA-1 PLAIN";

	(void)state;
	assert_int_equal(sasl_select(defaults, all, 5, 0, 0), SASL_SCRAM_SHA_512);
	assert_int_equal(sasl_select(defaults, all, 4, 0, 0), SASL_SCRAM_SHA_256);
	assert_int_equal(sasl_select(defaults, all, 2, 0, 0), SASL_SCRAM_SHA_1);
	assert_int_equal(sasl_select("  SCRAM-SHA-1   SCRAM-SHA-512 ", all, 5,
	    0, 0), SASL_SCRAM_SHA_1);
	assert_int_equal(sasl_select("PLAIN SCRAM-SHA-1", all, 5, 1, 0),
	    SASL_PLAIN);
	assert_int_equal(sasl_select("PLAIN SCRAM-SHA-1", all, 5, 0, 0),
	    SASL_SCRAM_SHA_1);
	/* Unknown or partial names in the preferences are skipped. */
	assert_int_equal(sasl_select("DIGEST-MD5 SCRAM-SHA SCRAM-SHA-256",
	    all, 5, 0, 0), SASL_SCRAM_SHA_256);
	assert_int_equal(sasl_select(defaults, old, 2, 1, 0), SASL_PLAIN);
	assert_int_equal(sasl_select(defaults, old, 2, 0, 0), SASL_NONE);
	assert_int_equal(sasl_select(defaults, ext, 1, 1, 0), SASL_NONE);
	assert_int_equal(sasl_select(defaults, all, 0, 1, 0), SASL_NONE);
	assert_int_equal(sasl_select("", all, 5, 1, 0), SASL_NONE);
	/* Able to bind: a -PLUS first, whatever the hash. */
	assert_int_equal(sasl_select(defaults, all, 5, 1, 1),
	    SASL_SCRAM_SHA_256_PLUS);
	assert_int_equal(sasl_select(defaults, all, 3, 1, 1),
	    SASL_SCRAM_SHA_256);
	assert_int_equal(sasl_select("SCRAM-SHA-1", all, 5, 1, 1),
	    SASL_SCRAM_SHA_1);
	assert_int_equal(sasl_select("PLAIN", all, 5, 1, 1), SASL_PLAIN);
	/* A -PLUS name in the preferences is no preference. */
	assert_int_equal(sasl_select("SCRAM-SHA-256-PLUS", all, 5, 1, 1),
	    SASL_NONE);
}

static void
test_mech_names(void **state)
{
	enum sasl_mech m;

	(void)state;
	for (m = SASL_SCRAM_SHA_512; m <= SASL_SCRAM_SHA_1_PLUS; m++)
		assert_int_equal(sasl_mech_parse(sasl_mech_name(m)), m);
	assert_string_equal(sasl_mech_name(SASL_SCRAM_SHA_256),
	    "SCRAM-SHA-256");
	assert_string_equal(sasl_mech_name(SASL_SCRAM_SHA_1_PLUS),
	    "SCRAM-SHA-1-PLUS");
	assert_int_equal(sasl_mech_parse("SCRAM-SHA-256-plus"), SASL_NONE);
	assert_int_equal(sasl_mech_parse("plain"), SASL_NONE);
	assert_int_equal(sasl_mech_parse(""), SASL_NONE);
}

/* Each server-first-message is answered by a fresh SHA-1 exchange. */
static void
check_bad_first(const char *sfirst, size_t len, const char *want_err)
{
	struct sasl s;
	struct buf out;
	const char *err = NULL;

	buf_init(&out);
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_1, "user", "pencil",
	    SHA1_CNONCE, &out), 0);
	buf_reset(&out, 0);
	assert_int_equal(sasl_step(&s, sfirst, len, &out, &err), -1);
	assert_string_equal(err, want_err);
	assert_int_equal(out.len, 0);
	/* No second chance, even with a good one. */
	assert_int_equal(sasl_step(&s, SHA1_SFIRST, strlen(SHA1_SFIRST), &out,
	    &err), -1);
	assert_int_equal(out.len, 0);
	sasl_clear(&s);
	buf_free(&out);
}

#define BAD_FIRST(msg, err)	check_bad_first(msg, sizeof(msg) - 1, err)

#define R	"r=" SHA1_CNONCE "srv"
#define S	"s=QSXCR+Q6sek8bf92"

static void
test_bad_server_first(void **state)
{
	static const char nul[] = R "," S ",i=40\0" "96";

	(void)state;
	BAD_FIRST("", "missing nonce");
	BAD_FIRST("garbage", "missing nonce");
	BAD_FIRST(S "," R ",i=4096", "missing nonce");
	BAD_FIRST(R ",i=4096", "missing salt");
	BAD_FIRST(R "," S, "missing iteration count");
	BAD_FIRST(R "," S ",", "missing iteration count");
	BAD_FIRST("m=ext," R "," S ",i=4096",
	    "unsupported mandatory extension");
	BAD_FIRST("r=somebodyelse," S ",i=4096",
	    "server nonce does not extend ours");
	BAD_FIRST("r=fyko+d2lbbFgONRv9qkxdaw," S ",i=4096",
	    "server nonce does not extend ours");
	/* The server must contribute a part of its own. */
	BAD_FIRST("r=" SHA1_CNONCE "," S ",i=4096",
	    "server nonce does not extend ours");
	BAD_FIRST("r=" SHA1_CNONCE "\x01," S ",i=4096",
	    "server nonce does not extend ours");
	BAD_FIRST(R "," S ",i=0", "iteration count out of range");
	BAD_FIRST(R "," S ",i=-1", "iteration count out of range");
	BAD_FIRST(R "," S ",i=", "iteration count out of range");
	BAD_FIRST(R "," S ",i=4k", "iteration count out of range");
	BAD_FIRST(R "," S ",i=1000001", "iteration count out of range");
	/* RFC 7677: at least 4096. */
	BAD_FIRST(R "," S ",i=1", "iteration count out of range");
	BAD_FIRST(R "," S ",i=4095", "iteration count out of range");
	BAD_FIRST(R "," S ",i=2147483648", "iteration count out of range");
	BAD_FIRST(R "," S ",i=99999999999999999999999",
	    "iteration count out of range");
	BAD_FIRST(R ",s=,i=4096", "bad salt");
	BAD_FIRST(R ",s=!!!!,i=4096", "bad salt");
	/* Unpadded, and a line break: mbedtls alone would take both. */
	BAD_FIRST(R ",s=QSXCR+Q6sek8bf9,i=4096", "bad salt");
	BAD_FIRST(R ",s=QSXCR+Q6\r\nsek8bf92,i=4096", "bad salt");
	check_bad_first(nul, sizeof(nul) - 1, "malformed challenge");
}

/*
 * The two halves, as the daemon runs them with PBKDF2 on the thread pool:
 * the same answer as sasl_step(); no PBKDF2 job when the cache has the
 * key; a job given up is freed whole (ASan); a key for no exchange, or
 * twice, is refused.
 */
static void
test_two_halves(void **state)
{
	struct sasl_cache cache;
	struct sasl_hi *hi;
	struct sasl s;
	struct buf out;
	const char *err = NULL;

	(void)state;
	memset(&cache, 0, sizeof(cache));
	buf_init(&out);
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_1, "user", "pencil",
	    SHA1_CNONCE, &out), 0);
	sasl_set_cache(&s, &cache);
	out.len = 0;
	assert_int_equal(sasl_step_begin(&s, SHA1_SFIRST, strlen(SHA1_SFIRST),
	    &out, &hi, &err), 1);
	assert_non_null(hi);
	assert_int_equal(out.len, 0);
	sasl_hi(hi);
	assert_int_equal(sasl_step_end(&s, hi, &out, &err), 0);
	assert_string_equal(buf_cstr(&out), SHA1_CFINAL);
	assert_int_equal(sasl_finish(&s, SHA1_SFINAL, strlen(SHA1_SFINAL),
	    &err), 0);
	sasl_clear(&s);

	/* Cached: answered at once. */
	out.len = 0;
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_1, "user", "pencil",
	    SHA1_CNONCE, &out), 0);
	sasl_set_cache(&s, &cache);
	out.len = 0;
	assert_int_equal(sasl_step_begin(&s, SHA1_SFIRST, strlen(SHA1_SFIRST),
	    &out, &hi, &err), 0);
	assert_null(hi);
	assert_string_equal(buf_cstr(&out), SHA1_CFINAL);
	assert_int_equal(sasl_cache_hit(&s), 1);
	sasl_clear(&s);
	sasl_cache_clear(&cache);

	/* Given up: the exchange cleared first, the job freed later. */
	out.len = 0;
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_1, "user", "pencil",
	    SHA1_CNONCE, &out), 0);
	assert_int_equal(sasl_step_begin(&s, SHA1_SFIRST, strlen(SHA1_SFIRST),
	    &out, &hi, &err), 1);
	sasl_clear(&s);
	sasl_hi(hi);
	out.len = 0;
	assert_int_equal(sasl_step_end(&s, hi, &out, &err), -1);
	assert_string_equal(err, "unexpected key");
	assert_int_equal(out.len, 0);
	sasl_clear(&s);
	buf_free(&out);
}

/* Optional extensions after the iteration count are ignored. */
static void
test_server_first_extension(void **state)
{
	struct sasl s;
	struct buf out;
	const char *err = NULL;
	static const char sfirst[] = R "," S ",i=4096,x=ignored";

	(void)state;
	buf_init(&out);
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_1, "user", "pencil",
	    SHA1_CNONCE, &out), 0);
	buf_reset(&out, 0);
	assert_int_equal(sasl_step(&s, sfirst, strlen(sfirst), &out, &err), 0);
	assert_true(strncmp(buf_cstr(&out), "c=biws," R ",p=",
	    strlen("c=biws," R ",p=")) == 0);
	sasl_clear(&s);
	buf_free(&out);
}

static void
test_escape_user(void **state)
{
	struct sasl s;
	struct buf out;

	(void)state;
	buf_init(&out);
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_256, "a,b=c", "pw",
	    "nonce", &out), 0);
	assert_string_equal(buf_cstr(&out), "n,,n=a=2Cb=3Dc,r=nonce");
	sasl_clear(&s);
	buf_free(&out);
}

static void
test_bad_start(void **state)
{
	struct sasl s;
	struct buf out;

	(void)state;
	buf_init(&out);
	assert_int_equal(sasl_start(&s, SASL_NONE, "u", "p", "n", &out), -1);
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_1, "", "p", "n", &out),
	    -1);
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_1, "u", "", "n", &out),
	    -1);
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_1, "u", "p", "", &out),
	    -1);
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_1, "u", "p", "a,b",
	    &out), -1);
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_1, "u", "p", "a b",
	    &out), -1);
	assert_int_equal(out.len, 0);
	sasl_clear(&s);
	buf_free(&out);
}

/* Calls out of order are refused, and end the exchange. */
static void
test_out_of_order(void **state)
{
	struct sasl s;
	struct buf out;
	const char *err = NULL;

	(void)state;
	memset(&s, 0, sizeof(s));
	buf_init(&out);
	assert_int_equal(sasl_step(&s, SHA1_SFIRST, strlen(SHA1_SFIRST), &out,
	    &err), -1);
	assert_int_equal(sasl_finish(&s, "", 0, &err), -1);

	/* <success/> before the proof would skip verifying the server. */
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_1, "user", "pencil",
	    SHA1_CNONCE, &out), 0);
	assert_int_equal(sasl_finish(&s, SHA1_SFINAL, strlen(SHA1_SFINAL),
	    &err), -1);
	assert_string_equal(err, "unexpected success");
	buf_reset(&out, 0);
	assert_int_equal(sasl_step(&s, SHA1_SFIRST, strlen(SHA1_SFIRST), &out,
	    &err), -1);
	assert_int_equal(out.len, 0);
	sasl_clear(&s);

	/* A second challenge or a second success. */
	run_to_final(&s, &sha1_vec);
	assert_int_equal(sasl_step(&s, SHA1_SFIRST, strlen(SHA1_SFIRST), &out,
	    &err), -1);
	sasl_clear(&s);
	run_to_final(&s, &sha1_vec);
	assert_int_equal(sasl_finish(&s, SHA1_SFINAL, strlen(SHA1_SFINAL),
	    &err), 0);
	assert_int_equal(sasl_finish(&s, SHA1_SFINAL, strlen(SHA1_SFINAL),
	    &err), -1);
	sasl_clear(&s);
	buf_free(&out);
}

/* "n,,n=user,r=" then the nonce: 24 random bytes are 32 base64 chars. */
static void
random_first(struct sasl *s, struct buf *out)
{
	static const char prefix[] = "n,,n=user,r=";

	buf_init(out);
	assert_int_equal(sasl_start(s, SASL_SCRAM_SHA_256, "user", "pencil",
	    NULL, out), 0);
	assert_int_equal(out->len, sizeof(prefix) - 1 + 32);
	assert_memory_equal(out->data, prefix, sizeof(prefix) - 1);
	assert_null(strchr(buf_cstr(out) + sizeof(prefix) - 1, ','));
}

static void
test_random_nonce(void **state)
{
	struct sasl a, b;
	struct buf oa, ob;

	(void)state;
	random_first(&a, &oa);
	random_first(&b, &ob);
	assert_string_not_equal(buf_cstr(&oa), buf_cstr(&ob));
	sasl_clear(&a);
	sasl_clear(&b);
	buf_free(&oa);
	buf_free(&ob);
}

/* Start `v' on `cache' and answer its server-first-message. */
static void
cached_to_final(struct sasl *s, const struct vector *v, const char *password,
    struct sasl_cache *cache, int want_hit)
{
	struct buf out;
	const char *err = NULL;

	buf_init(&out);
	assert_int_equal(sasl_start(s, v->mech, v->user, password, v->cnonce,
	    &out), 0);
	sasl_set_cache(s, cache);
	buf_reset(&out, 0);
	assert_int_equal(sasl_step(s, v->sfirst, strlen(v->sfirst), &out,
	    &err), 0);
	assert_int_equal(sasl_cache_hit(s), want_hit);
	if (strcmp(password, v->password) == 0 || want_hit)
		assert_string_equal(buf_cstr(&out), v->cfinal);
	else
		assert_string_not_equal(buf_cstr(&out), v->cfinal);
	buf_free(&out);
}

static void
assert_cache_empty(const struct sasl_cache *c)
{
	static const struct sasl_cache zero;

	assert_memory_equal(c, &zero, sizeof(zero));
}

/*
 * The second login with the same mechanism, user, salt and iteration count
 * takes SaltedPassword from the cache: even a wrong password then yields
 * the proof of the right one, which PBKDF2 could not have produced.
 */
static void
test_cache_reuse(void **state)
{
	struct sasl_cache cache;
	struct sasl s;
	const char *err = NULL;

	(void)state;
	memset(&cache, 0, sizeof(cache));
	cached_to_final(&s, &sha1_vec, "pencil", &cache, 0);
	/* Nothing is cached before the server has proved itself. */
	assert_int_equal(cache.valid, 0);
	assert_int_equal(sasl_finish(&s, SHA1_SFINAL, strlen(SHA1_SFINAL),
	    &err), 0);
	sasl_clear(&s);
	assert_int_equal(cache.valid, 1);
	assert_int_equal(cache.mech, SASL_SCRAM_SHA_1);
	assert_string_equal(cache.authcid, "user");
	assert_int_equal(cache.iter, 4096);
	assert_int_equal(cache.saltlen, 12);

	cached_to_final(&s, &sha1_vec, "not-the-password", &cache, 1);
	assert_int_equal(sasl_finish(&s, SHA1_SFINAL, strlen(SHA1_SFINAL),
	    &err), 0);
	sasl_clear(&s);
	assert_int_equal(cache.valid, 1);

	/* Without the cache the wrong password is wrong again. */
	cached_to_final(&s, &sha1_vec, "not-the-password", NULL, 0);
	sasl_clear(&s);

	sasl_cache_clear(&cache);
	assert_cache_empty(&cache);
	cached_to_final(&s, &sha1_vec, "pencil", &cache, 0);
	sasl_clear(&s);
	/* Cleared before finishing: the fresh value is gone with it. */
	assert_cache_empty(&cache);
	sasl_cache_clear(&cache);
}

/* Each of mechanism, user, salt and iteration count must match. */
static void
check_cache_miss(struct sasl_cache *cache, enum sasl_mech mech,
    const char *user, const char *sfirst)
{
	struct sasl s;
	struct buf out;
	const char *err = NULL;

	buf_init(&out);
	assert_int_equal(sasl_start(&s, mech, user, "pencil", SHA1_CNONCE,
	    &out), 0);
	sasl_set_cache(&s, cache);
	assert_int_equal(sasl_step(&s, sfirst, strlen(sfirst), &out, &err), 0);
	assert_int_equal(sasl_cache_hit(&s), 0);
	sasl_clear(&s);
	/* The entry that did not match is still there. */
	assert_int_equal(cache->valid, 1);
	assert_int_equal(cache->mech, SASL_SCRAM_SHA_1);
	assert_int_equal(cache->iter, 4096);
	buf_free(&out);
}

static void
test_cache_miss(void **state)
{
	struct sasl_cache cache;
	struct sasl s;
	const char *err = NULL;

	(void)state;
	memset(&cache, 0, sizeof(cache));
	cached_to_final(&s, &sha1_vec, "pencil", &cache, 0);
	assert_int_equal(sasl_finish(&s, SHA1_SFINAL, strlen(SHA1_SFINAL),
	    &err), 0);
	sasl_clear(&s);

	check_cache_miss(&cache, SASL_SCRAM_SHA_256, "user", SHA1_SFIRST);
	check_cache_miss(&cache, SASL_SCRAM_SHA_1, "resu", SHA1_SFIRST);
	check_cache_miss(&cache, SASL_SCRAM_SHA_1, "user", R "," S ",i=4097");
	check_cache_miss(&cache, SASL_SCRAM_SHA_1, "user",
	    R ",s=QSXCR+Q6sek8bf93,i=4096");
	check_cache_miss(&cache, SASL_SCRAM_SHA_1, "user",
	    R ",s=QSXCR+Q6sek8bf92AA==,i=4096");
	cached_to_final(&s, &sha1_vec, "pencil", &cache, 1);
	sasl_clear(&s);

	/* A verified login with other parameters replaces the entry. */
	cached_to_final(&s, &sha256_vec, "pencil", &cache, 0);
	assert_int_equal(cache.mech, SASL_SCRAM_SHA_1);
	assert_int_equal(sasl_finish(&s, SHA256_SFINAL, strlen(SHA256_SFINAL),
	    &err), 0);
	sasl_clear(&s);
	assert_int_equal(cache.mech, SASL_SCRAM_SHA_256);
	cached_to_final(&s, &sha256_vec, "x", &cache, 1);
	sasl_clear(&s);
	cached_to_final(&s, &sha1_vec, "pencil", &cache, 0);
	sasl_clear(&s);
	sasl_cache_clear(&cache);
}

/* A wrong password, or a server that does not prove itself, caches nothing. */
static void
test_cache_unverified(void **state)
{
	struct sasl_cache cache;
	struct sasl s;
	const char *err = NULL;
	char bad[128];

	(void)state;
	memset(&cache, 0, sizeof(cache));
	cached_to_final(&s, &sha1_vec, "pencils", &cache, 0);
	assert_int_equal(sasl_finish(&s, SHA1_SFINAL, strlen(SHA1_SFINAL),
	    &err), -1);
	assert_string_equal(err, "server signature mismatch");
	sasl_clear(&s);
	assert_cache_empty(&cache);

	cached_to_final(&s, &sha1_vec, "pencil", &cache, 0);
	assert_int_equal(sasl_finish(&s, "e=other-error", 13, &err), -1);
	sasl_clear(&s);
	assert_cache_empty(&cache);

	snprintf(bad, sizeof(bad), "%s", SHA1_SFINAL);
	bad[2] = bad[2] == 'A' ? 'B' : 'A';
	cached_to_final(&s, &sha1_vec, "pencil", &cache, 0);
	assert_int_equal(sasl_finish(&s, bad, strlen(bad), &err), -1);
	sasl_clear(&s);
	assert_cache_empty(&cache);

	/* PLAIN has no SaltedPassword. */
	{
		struct buf out;

		buf_init(&out);
		assert_int_equal(sasl_start(&s, SASL_PLAIN, "tim", "tanstaaf",
		    NULL, &out), 0);
		sasl_set_cache(&s, &cache);
		assert_int_equal(sasl_finish(&s, "", 0, &err), 0);
		assert_int_equal(sasl_cache_hit(&s), 0);
		sasl_clear(&s);
		buf_free(&out);
	}
	assert_cache_empty(&cache);
}

static const char *const spec_mechs[] = { "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1" };
static const char *const spec_cbs[] = {
	"tls-server-end-point", "tls-exporter",
};

/*
 * Answer `sfirst' (for the RFC 5802 nonce and password) after telling the
 * exchange what was offered; `mechs' NULL: sasl_set_offered() not called.
 */
static void
check_ssdp(enum sasl_mech mech, const char *sfirst,
    const char *const *mechs, size_t nmechs, const char *const *cbs,
    size_t ncb, const char *want_err)
{
	struct sasl s;
	struct buf out;
	const char *err = NULL;

	buf_init(&out);
	assert_int_equal(sasl_start(&s, mech, "user", "pencil", SHA1_CNONCE,
	    &out), 0);
	if (mechs != NULL)
		assert_int_equal(sasl_set_offered(&s, mechs, nmechs, cbs, ncb),
		    0);
	buf_reset(&out, 0);
	if (want_err == NULL) {
		assert_int_equal(sasl_step(&s, sfirst, strlen(sfirst), &out,
		    &err), 0);
		assert_true(out.len > 0);
	} else {
		assert_int_equal(sasl_step(&s, sfirst, strlen(sfirst), &out,
		    &err), -1);
		assert_string_equal(err, want_err);
		assert_int_equal(out.len, 0);
	}
	sasl_clear(&s);
	buf_free(&out);
}

#define ATTACK	"downgrade attack detected"

/* The hash matches what we saw offered: go on. */
static void
test_ssdp_match(void **state)
{
	static const char *const mechs256[] = {
		"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN",
	};
	/* Another order than the server's: the hash sorts them. */
	static const char *const mechs512[] = {
		"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512",
	};
	struct sasl s;
	struct buf out;
	const char *err = NULL;

	(void)state;
	/* A full exchange: the attribute is part of the signed AuthMessage. */
	buf_init(&out);
	assert_int_equal(sasl_start(&s, SASL_SCRAM_SHA_256, "user", "pencil",
	    SHA256_CNONCE, &out), 0);
	assert_int_equal(sasl_set_offered(&s, mechs256, 4, spec_cbs, 2), 0);
	buf_reset(&out, 0);
	assert_int_equal(sasl_step(&s, SSDP_SFIRST, strlen(SSDP_SFIRST), &out,
	    &err), 0);
	assert_string_equal(buf_cstr(&out), SSDP_CFINAL);
	assert_int_equal(sasl_finish(&s, SSDP_SFINAL, strlen(SSDP_SFINAL),
	    &err), 0);
	sasl_clear(&s);
	buf_free(&out);

	/* The XEP's examples, current ("h=") and 0.3 ("d=", ejabberd). */
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,h=" SSDP_H_SHA1,
	    spec_mechs, 2, spec_cbs, 2, NULL);
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,d=" SSDP_D_SHA1,
	    spec_mechs, 2, spec_cbs, 2, NULL);
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,d=" SSDP_D_SHA1
	    ",x=y,h=" SSDP_H_SHA1, spec_mechs, 2, spec_cbs, 2, NULL);
	check_ssdp(SASL_SCRAM_SHA_512, "r=" SHA1_CNONCE "srv," S ",i=4096,"
	    "d=" SSDP_D_SHA512, mechs512, 4, NULL, 0, NULL);
}

/* The lists we saw are not the ones the server sent: refuse. */
static void
test_ssdp_mismatch(void **state)
{
	static const char *const sha1_only[] = { "SCRAM-SHA-1" };
	static const char *const cb_one[] = { "tls-server-end-point" };
	static const char *const mechs512[] = {
		"SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1",
	};

	(void)state;
	/* A mechanism, a channel-binding type, or all of these stripped. */
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,h=" SSDP_H_SHA1,
	    sha1_only, 1, spec_cbs, 2, ATTACK);
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,h=" SSDP_H_SHA1,
	    spec_mechs, 2, cb_one, 1, ATTACK);
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,h=" SSDP_H_SHA1,
	    spec_mechs, 2, NULL, 0, ATTACK);
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,d=" SSDP_D_SHA1,
	    sha1_only, 1, spec_cbs, 2, ATTACK);
	check_ssdp(SASL_SCRAM_SHA_512, "r=" SHA1_CNONCE "srv," S ",i=4096,"
	    "d=" SSDP_D_SHA512, mechs512, 3, NULL, 0, ATTACK);
	/* One version's hash under the other's name. */
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,h=" SSDP_D_SHA1,
	    spec_mechs, 2, spec_cbs, 2, ATTACK);
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,d=" SSDP_H_SHA1,
	    spec_mechs, 2, spec_cbs, 2, ATTACK);
	/* Hashed with another function than the mechanism's. */
	check_ssdp(SASL_SCRAM_SHA_256, R "," S ",i=4096,h=" SSDP_H_SHA1,
	    spec_mechs, 2, spec_cbs, 2, ATTACK);
	/* One of two is wrong. */
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,h=" SSDP_H_SHA1
	    ",d=" SSDP_H_SHA1, spec_mechs, 2, spec_cbs, 2, ATTACK);
	/* Malformed values. */
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,h=", spec_mechs, 2,
	    spec_cbs, 2, ATTACK);
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,h=G6k/rBLDqgOhRRaCuuat",
	    spec_mechs, 2, spec_cbs, 2, ATTACK);
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,h=" SSDP_H_SHA1 "AAAA",
	    spec_mechs, 2, spec_cbs, 2, ATTACK);
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,h=G6k/rBLDqgOhRRaCuua"
	    "tSDFkJ08", spec_mechs, 2, spec_cbs, 2, ATTACK);
	/* A hash we cannot check, because nobody told us what was offered. */
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,h=" SSDP_H_SHA1, NULL, 0,
	    NULL, 0, "downgrade protection without the offered mechanisms");
}

/* No hash: nothing to check, whatever we were told. */
static void
test_ssdp_absent(void **state)
{
	struct sasl s;
	struct buf out;
	const char *err = NULL;

	(void)state;
	check_ssdp(SASL_SCRAM_SHA_1, SHA1_SFIRST, spec_mechs, 2, spec_cbs, 2,
	    NULL);
	check_ssdp(SASL_SCRAM_SHA_1, R "," S ",i=4096,x=h=" SSDP_D_SHA1,
	    spec_mechs, 2, NULL, 0, NULL);
	check_ssdp(SASL_SCRAM_SHA_1, SHA1_SFIRST, NULL, 0, NULL, 0, NULL);

	/* sasl_set_offered() wants an exchange waiting for its challenge. */
	memset(&s, 0, sizeof(s));
	assert_int_equal(sasl_set_offered(&s, spec_mechs, 2, NULL, 0), -1);
	run_to_final(&s, &sha1_vec);
	assert_int_equal(sasl_set_offered(&s, spec_mechs, 2, NULL, 0), -1);
	sasl_clear(&s);
	/* PLAIN has nothing to protect it with, and takes it quietly. */
	plain_first(&s, &out);
	assert_int_equal(sasl_set_offered(&s, spec_mechs, 2, NULL, 0), 0);
	assert_int_equal(sasl_finish(&s, "", 0, &err), 0);
	sasl_clear(&s);
	buf_free(&out);
}

static void
test_is_scram(void **state)
{
	(void)state;
	assert_true(sasl_is_scram(SASL_SCRAM_SHA_512));
	assert_true(sasl_is_scram(SASL_SCRAM_SHA_256));
	assert_true(sasl_is_scram(SASL_SCRAM_SHA_1));
	assert_false(sasl_is_scram(SASL_PLAIN));
	assert_false(sasl_is_scram(SASL_NONE));
	assert_true(sasl_is_scram(SASL_SCRAM_SHA_512_PLUS));
	assert_true(sasl_is_scram(SASL_SCRAM_SHA_1_PLUS));
	assert_true(sasl_is_plus(SASL_SCRAM_SHA_256_PLUS));
	assert_false(sasl_is_plus(SASL_SCRAM_SHA_256));
	assert_false(sasl_is_plus(SASL_PLAIN));
	assert_false(sasl_is_plus(SASL_NONE));
}

/*
 * SCRAM-SHA-256-PLUS bound to tls-exporter with the data 00 01 .. 1f, from
 * the SHA-512 script above with sha256, these inputs and
 *	gs2 = "p=tls-exporter,,"
 *	cfwp = "c=%s,r=%s%s" % (base64.b64encode(gs2.encode() +
 *	    bytes(range(32))).decode(), cnonce, snonce)
 */
#define PLUS_CNONCE	"rOprNGfwEbeRWgbNEkqO"
#define PLUS_SFIRST	"r=rOprNGfwEbeRWgbNEkqO3rfcNHYJY1ZVvWVs7j," \
			"s=Y2xhd3NkLWNiLXNhbHQ=,i=4096"
#define PLUS_CFINAL	"c=cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERIT" \
			"FBUWFxgZGhscHR4f,r=rOprNGfwEbeRWgbNEkqO3rfcNHYJY1ZVvWVs7j," \
			"p=gk7YtpdsgqBhnAu4PU3sJ5++0t4LhF5+V9ryjyOARGc="
#define PLUS_SFINAL	"v=pZ5POraB5WabUFg+dM8hwDT7pJlIOO5ZLqovFt0ffXs="

static const unsigned char cb_data[32] = {
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
};

/* Start `mech' with `cb' from the RFC 7677 nonce; the initial message. */
static int
start_cb(struct sasl *s, enum sasl_mech mech, const struct sasl_cb *cb,
    struct buf *out)
{
	buf_init(out);
	return sasl_start_cb(s, mech, "user", "pencil", PLUS_CNONCE, cb, out);
}

static void
plus_to_final(struct sasl *s, struct sasl_cache *cache)
{
	static const struct sasl_cb cb = {
		"tls-exporter", cb_data, sizeof(cb_data), 1,
	};
	struct buf out;
	const char *err = NULL;

	assert_int_equal(start_cb(s, SASL_SCRAM_SHA_256_PLUS, &cb, &out), 0);
	assert_string_equal(buf_cstr(&out),
	    "p=tls-exporter,,n=user,r=" PLUS_CNONCE);
	sasl_set_cache(s, cache);
	buf_reset(&out, 0);
	assert_int_equal(sasl_step(s, PLUS_SFIRST, strlen(PLUS_SFIRST), &out,
	    &err), 0);
	assert_string_equal(buf_cstr(&out), PLUS_CFINAL);
	buf_free(&out);
}

/* The bound exchange, and the server's signature checked over it. */
static void
test_plus_exchange(void **state)
{
	struct sasl s;
	const char *err = NULL;
	char bad[] = PLUS_SFINAL;

	(void)state;
	plus_to_final(&s, NULL);
	assert_int_equal(sasl_finish(&s, PLUS_SFINAL, strlen(PLUS_SFINAL),
	    &err), 0);
	sasl_clear(&s);
	assert_null(s.cbind);

	bad[2] = bad[2] == 'A' ? 'B' : 'A';
	plus_to_final(&s, NULL);
	assert_int_equal(sasl_finish(&s, bad, strlen(bad), &err), -1);
	assert_string_equal(err, "server signature mismatch");
	sasl_clear(&s);
	/* The unbound exchange's signature does not do for the bound one. */
	plus_to_final(&s, NULL);
	assert_int_equal(sasl_finish(&s, SHA256_SFINAL, strlen(SHA256_SFINAL),
	    &err), -1);
	sasl_clear(&s);
}

/* The GS2 flag: "n" unable to bind, "y" able with no -PLUS offered. */
static void
test_gs2_header(void **state)
{
	static const struct sasl_cb unable = { NULL, NULL, 0, 0 };
	static const struct sasl_cb capable = { NULL, NULL, 0, 1 };
	static const struct sasl_cb bound = {
		"tls-server-end-point", cb_data, sizeof(cb_data), 1,
	};
	struct sasl s;
	struct buf out;
	const char *err = NULL;

	(void)state;
	assert_int_equal(start_cb(&s, SASL_SCRAM_SHA_256, NULL, &out), 0);
	assert_string_equal(buf_cstr(&out), "n,,n=user,r=" PLUS_CNONCE);
	sasl_clear(&s);
	buf_free(&out);
	assert_int_equal(start_cb(&s, SASL_SCRAM_SHA_256, &unable, &out), 0);
	assert_string_equal(buf_cstr(&out), "n,,n=user,r=" PLUS_CNONCE);
	sasl_clear(&s);
	buf_free(&out);

	/* "y,," is signed too: c= carries it, base64 "eSws". */
	assert_int_equal(start_cb(&s, SASL_SCRAM_SHA_256, &capable, &out), 0);
	assert_string_equal(buf_cstr(&out), "y,,n=user,r=" PLUS_CNONCE);
	buf_reset(&out, 0);
	assert_int_equal(sasl_step(&s, PLUS_SFIRST, strlen(PLUS_SFIRST), &out,
	    &err), 0);
	assert_true(strncmp(buf_cstr(&out), "c=eSws,r=", 9) == 0);
	sasl_clear(&s);
	buf_free(&out);

	assert_int_equal(start_cb(&s, SASL_SCRAM_SHA_1_PLUS, &bound, &out), 0);
	assert_string_equal(buf_cstr(&out),
	    "p=tls-server-end-point,,n=user,r=" PLUS_CNONCE);
	sasl_clear(&s);
	buf_free(&out);

	/* PLAIN has no GS2 header; being able to bind changes nothing. */
	assert_int_equal(start_cb(&s, SASL_PLAIN, &capable, &out), 0);
	assert_int_equal(out.len, strlen("user") + strlen("pencil") + 2);
	sasl_clear(&s);
	buf_free(&out);
}

/* -PLUS needs a type and data; the others must not have a type. */
static void
test_cb_bad_start(void **state)
{
	static const unsigned char big[SASL_CB_MAX + 1];
	static const struct sasl_cb no_data = { "tls-exporter", NULL, 0, 1 };
	static const struct sasl_cb too_long = {
		"tls-exporter", big, sizeof(big), 1,
	};
	static const struct sasl_cb bad_type = {
		"tls,exporter", cb_data, sizeof(cb_data), 1,
	};
	static const struct sasl_cb empty_type = {
		"", cb_data, sizeof(cb_data), 1,
	};
	static const struct sasl_cb no_type = { NULL, NULL, 0, 1 };
	static const struct sasl_cb typed = {
		"tls-exporter", cb_data, sizeof(cb_data), 1,
	};
	const struct sasl_cb *plus_bad[] = {
		NULL, &no_data, &too_long, &bad_type, &empty_type, &no_type,
	};
	struct sasl s;
	struct buf out;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(plus_bad) / sizeof(plus_bad[0]); i++) {
		assert_int_equal(start_cb(&s, SASL_SCRAM_SHA_1_PLUS,
		    plus_bad[i], &out), -1);
		assert_int_equal(out.len, 0);
		sasl_clear(&s);
		buf_free(&out);
	}
	assert_int_equal(start_cb(&s, SASL_SCRAM_SHA_1, &typed, &out), -1);
	sasl_clear(&s);
	buf_free(&out);
	assert_int_equal(start_cb(&s, SASL_PLAIN, &typed, &out), -1);
	sasl_clear(&s);
	buf_free(&out);
}

/* XEP-0440: our best type among those advertised. */
static void
test_cb_select(void **state)
{
	static const char *const all[] = {
		"tls-server-end-point", "tls-unique", "tls-exporter",
	};
	static const char *const unique[] = { "tls-unique" };
	static const char *const prefix[] = { "tls-export" };
	static const char *const ours = "tls-exporter tls-server-end-point";

	(void)state;
	assert_string_equal(sasl_cb_select(ours, all, 3), "tls-exporter");
	assert_string_equal(sasl_cb_select(ours, all, 1),
	    "tls-server-end-point");
	assert_string_equal(sasl_cb_select("tls-server-end-point", all, 3),
	    "tls-server-end-point");
	assert_null(sasl_cb_select(ours, unique, 1));
	assert_null(sasl_cb_select(ours, prefix, 1));
	assert_null(sasl_cb_select(ours, all, 0));
	assert_null(sasl_cb_select("", all, 3));
}

static void
test_offers_plus(void **state)
{
	static const char *const plus[] = {
		"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS",
	};
	static const char *const odd[] = { "PLUS", "-PLUSX" };

	(void)state;
	assert_true(sasl_offers_plus(plus, 3));
	assert_false(sasl_offers_plus(plus, 2));
	assert_false(sasl_offers_plus(odd, 2));
	assert_false(sasl_offers_plus(plus, 0));
}

/* A -PLUS login and an unbound one share SaltedPassword. */
static void
test_plus_cache(void **state)
{
	static const struct sasl_cb capable = { NULL, NULL, 0, 1 };
	struct sasl_cache cache;
	struct sasl s;
	struct buf out;
	const char *err = NULL;

	(void)state;
	memset(&cache, 0, sizeof(cache));
	plus_to_final(&s, &cache);
	assert_int_equal(sasl_cache_hit(&s), 0);
	assert_int_equal(sasl_finish(&s, PLUS_SFINAL, strlen(PLUS_SFINAL),
	    &err), 0);
	sasl_clear(&s);
	assert_int_equal(cache.valid, 1);
	plus_to_final(&s, &cache);
	assert_int_equal(sasl_cache_hit(&s), 1);
	sasl_clear(&s);

	assert_int_equal(start_cb(&s, SASL_SCRAM_SHA_256, &capable, &out), 0);
	sasl_set_cache(&s, &cache);
	buf_reset(&out, 0);
	assert_int_equal(sasl_step(&s, PLUS_SFIRST, strlen(PLUS_SFIRST), &out,
	    &err), 0);
	assert_int_equal(sasl_cache_hit(&s), 1);
	sasl_clear(&s);
	buf_free(&out);
	sasl_cache_clear(&cache);
}

static void
test_clear(void **state)
{
	static const unsigned char zero[SASL_MAX_HASH];
	struct sasl_cache cache;
	struct sasl s;

	(void)state;
	memset(&cache, 0, sizeof(cache));
	run_to_final(&s, &sha256_vec);
	sasl_clear(&s);
	assert_null(s.authcid);
	assert_null(s.password);
	assert_null(s.client_first_bare);
	assert_null(s.auth_message);
	assert_memory_equal(s.server_key, zero, sizeof(zero));
	/* A fresh SaltedPassword waiting for the server's proof goes too. */
	cached_to_final(&s, &sha256_vec, "pencil", &cache, 0);
	assert_int_equal(s.pending.valid, 1);
	sasl_clear(&s);
	assert_cache_empty(&s.pending);
	assert_null(s.cache);
	assert_cache_empty(&cache);
	/* Clearing twice is harmless. */
	sasl_clear(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scram_sha1),
		cmocka_unit_test(test_scram_sha256),
		cmocka_unit_test(test_scram_sha512),
		cmocka_unit_test(test_scram_bad_final),
		cmocka_unit_test(test_scram_final_extension),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_select),
		cmocka_unit_test(test_mech_names),
		cmocka_unit_test(test_bad_server_first),
		cmocka_unit_test(test_server_first_extension),
		cmocka_unit_test(test_two_halves),
		cmocka_unit_test(test_escape_user),
		cmocka_unit_test(test_bad_start),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_random_nonce),
		cmocka_unit_test(test_clear),
		cmocka_unit_test(test_cache_reuse),
		cmocka_unit_test(test_cache_miss),
		cmocka_unit_test(test_cache_unverified),
		cmocka_unit_test(test_ssdp_match),
		cmocka_unit_test(test_ssdp_mismatch),
		cmocka_unit_test(test_ssdp_absent),
		cmocka_unit_test(test_is_scram),
		cmocka_unit_test(test_plus_exchange),
		cmocka_unit_test(test_gs2_header),
		cmocka_unit_test(test_cb_bad_start),
		cmocka_unit_test(test_cb_select),
		cmocka_unit_test(test_offers_plus),
		cmocka_unit_test(test_plus_cache),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
