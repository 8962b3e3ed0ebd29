/*
 * libFuzzer target: the SCRAM client (daemon/sasl.c) against what a server
 * sends.  The input up to its first '\n' is the server-first-message (as
 * decoded from <challenge/>), the rest the server-final-message (from
 * <success/>).
 *
 * Each input runs through SCRAM-SHA-1 and SCRAM-SHA-512 with the client
 * nonce of RFC 5802's example, or through SCRAM-SHA-256 with the nonce of
 * RFC 7677's example when it uses that one; user "user", password "pencil",
 * so the RFC exchanges in the corpus reach a verified <success/>.  The
 * offered lists for XEP-0474 are fixed (see OFFERED).  When the exchange
 * succeeds it is run again with the cache it filled: that one must take
 * SaltedPassword from the cache and give the same answers.
 *
 * Invariants checked (abort on violation): a failure has a reason and the
 * reason never holds the password; the client-final-message is
 * "c=biws,r=<the server's nonce>,p=<base64>" and never holds the password;
 * out-of-order calls (success before the proof, anything after the end,
 * a challenge to PLAIN) fail; the cache fills exactly when the server was
 * verified; the cached run equals the first.
 *
 * Iteration counts above ITER_MAX are skipped (not run): PBKDF2 with the
 * million the daemon allows takes a second, which would only slow the
 * fuzzer down; parse_iter's bounds are covered by the unit tests.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sasl.h"

#define USER		"user"
#define PASSWORD	"pencil"
#define NONCE_5802	"fyko+d2lbbFgONRv9qkxdawL"
#define NONCE_7677	"rOprNGfwEbeRWgbNEkqO"
#define ITER_MAX	4096UL

static const char *const OFFERED[] = {
	"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN",
};
static const char *const CBTYPES[] = { "tls-exporter", "tls-server-end-point" };

/* The iteration count as sasl.c reads it: the third attribute, "i=". */
static int
too_many_iterations(const char *msg, size_t len)
{
	const char *p = msg, *end = msg + len, *c;
	unsigned long n = 0;
	int field;

	for (field = 0; field < 2; field++) {
		c = memchr(p, ',', (size_t)(end - p));
		if (c == NULL)
			return 0;
		p = c + 1;
	}
	if (end - p < 2 || p[0] != 'i' || p[1] != '=')
		return 0;
	for (p += 2; p < end && *p != ','; p++) {
		if (*p < '0' || *p > '9')
			return 0;
		n = n * 10 + (unsigned long)(*p - '0');
		if (n > ITER_MAX)
			return 1;
	}
	return 0;
}

static void
no_secret(const char *data, size_t len, const char *what)
{
	if (data != NULL && memmem(data, len, PASSWORD, strlen(PASSWORD))) {
		fprintf(stderr, "the password shows in %s\n", what);
		abort();
	}
}

static void
failed(int rc, const char *err, const char *what)
{
	if (rc != -1 || err == NULL || *err == '\0') {
		fprintf(stderr, "%s: bad failure (rc %d)\n", what, rc);
		abort();
	}
	no_secret(err, strlen(err), "an error");
}

/*
 * One exchange.  Returns 1 when the server was verified; the client-final
 * message goes to `final'.
 */
static int
exchange(enum sasl_mech mech, const char *cnonce, struct sasl_cache *cache,
    const char *first, size_t flen, const char *last, size_t llen,
    int use_ssdp, struct buf *final, int *hit)
{
	struct sasl s;
	struct buf out;
	const char *err = NULL, *nonce, *comma;
	size_t noncelen;
	int rc, ok = 0;

	buf_init(&out);
	if (sasl_start(&s, mech, USER, PASSWORD, cnonce, &out) != 0)
		abort();
	if (out.len < 3 || memcmp(out.data, "n,,", 3) != 0)
		abort();
	sasl_set_cache(&s, cache);
	if (use_ssdp && sasl_set_offered(&s, OFFERED, 4, CBTYPES,
	    (size_t)(use_ssdp - 1)) != 0)
		abort();
	/* Success before the proof would skip verifying the server. */
	if (flen == 0) {
		rc = sasl_finish(&s, last, llen, &err);
		failed(rc, err, "early success");
		goto out;
	}
	out.len = 0;
	err = NULL;
	rc = sasl_step(&s, first, flen, &out, &err);
	*hit = sasl_cache_hit(&s);
	if (rc != 0) {
		failed(rc, err, "sasl_step");
		err = NULL;
		rc = sasl_finish(&s, last, llen, &err);
		failed(rc, err, "success after a refused challenge");
		goto out;
	}
	/* "c=biws,r=" nonce ",p=" proof; the nonce is the server's. */
	if (flen < 2 || memcmp(first, "r=", 2) != 0)
		abort();
	nonce = first + 2;
	comma = memchr(nonce, ',', flen - 2);
	if (comma == NULL)
		abort();
	noncelen = (size_t)(comma - nonce);
	if (out.len < 9 + noncelen + 4 ||
	    memcmp(out.data, "c=biws,r=", 9) != 0 ||
	    memcmp(out.data + 9, nonce, noncelen) != 0 ||
	    memcmp(out.data + 9 + noncelen, ",p=", 3) != 0 ||
	    memchr(out.data + 9 + noncelen + 3, ',',
	    out.len - 9 - noncelen - 3) != NULL) {
		fprintf(stderr, "bad client-final-message %.*s\n",
		    (int)out.len, out.data);
		abort();
	}
	no_secret(out.data + 9 + noncelen, out.len - 9 - noncelen,
	    "the client proof");
	buf_append(final, out.data, out.len);
	err = NULL;
	rc = sasl_finish(&s, last, llen, &err);
	if (rc == 0)
		ok = 1;
	else
		failed(rc, err, "sasl_finish");
	/* The exchange is over, whichever way: anything more is refused. */
	out.len = 0;
	err = NULL;
	rc = sasl_step(&s, first, flen, &out, &err);
	failed(rc, err, "a challenge after the end");
	err = NULL;
	rc = sasl_finish(&s, last, llen, &err);
	failed(rc, err, "a second success");
out:
	sasl_clear(&s);
	buf_free(&out);
	return ok;
}

static void
run(enum sasl_mech mech, const char *cnonce, const char *first, size_t flen,
    const char *last, size_t llen, int use_ssdp)
{
	struct sasl_cache cache;
	struct buf a, b;
	int hit = 0, ok;

	memset(&cache, 0, sizeof(cache));
	buf_init(&a);
	buf_init(&b);
	ok = exchange(mech, cnonce, &cache, first, flen, last, llen, use_ssdp,
	    &a, &hit);
	if (hit)
		abort();	/* the cache was empty */
	if (ok != cache.valid) {
		fprintf(stderr, "cache %s after %s\n", cache.valid ? "filled" :
		    "empty", ok ? "success" : "failure");
		abort();
	}
	if (ok) {
		if (!exchange(mech, cnonce, &cache, first, flen, last, llen,
		    use_ssdp, &b, &hit) || !hit) {
			fprintf(stderr, "the cached exchange differs\n");
			abort();
		}
		if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
			abort();
	}
	sasl_cache_clear(&cache);
	buf_free(&a);
	buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *d = (const char *)data, *nl, *last;
	size_t flen, llen;
	struct sasl s;
	struct buf out;
	const char *err = NULL;
	int use_ssdp;

	nl = memchr(d, '\n', size);
	flen = nl != NULL ? (size_t)(nl - d) : size;
	last = nl != NULL ? nl + 1 : d + size;
	llen = (size_t)(d + size - last);
	if (too_many_iterations(d, flen))
		return 0;
	/* XEP-0474 lists: none, mechanisms only, with channel bindings. */
	use_ssdp = (int)(size % 3);

	if (flen >= 2 + strlen(NONCE_7677) &&
	    memcmp(d + 2, NONCE_7677, strlen(NONCE_7677)) == 0) {
		run(SASL_SCRAM_SHA_256, NONCE_7677, d, flen, last, llen,
		    use_ssdp);
	} else {
		run(SASL_SCRAM_SHA_1, NONCE_5802, d, flen, last, llen,
		    use_ssdp);
		run(SASL_SCRAM_SHA_512, NONCE_5802, d, flen, last, llen,
		    use_ssdp);
	}

	/* PLAIN takes no challenge, and success only without data. */
	buf_init(&out);
	if (sasl_start(&s, SASL_PLAIN, USER, PASSWORD, NULL, &out) != 0)
		abort();
	if (sasl_step(&s, d, flen, &out, &err) != -1)
		abort();
	sasl_clear(&s);
	out.len = 0;
	if (sasl_start(&s, SASL_PLAIN, USER, PASSWORD, NULL, &out) != 0)
		abort();
	if ((sasl_finish(&s, last, llen, &err) == 0) != (llen == 0))
		abort();
	sasl_clear(&s);
	buf_free(&out);
	return 0;
}
