/*
 * SASL client mechanisms.  SCRAM follows RFC 5802 (SHA-1) and RFC 7677
 * (SHA-256; SHA-512 is the same construction with a longer hash), with the
 * downgrade protection of XEP-0474 and the channel binding of the -PLUS
 * variants (RFC 5802 section 6, types chosen as XEP-0440 says); PLAIN
 * follows RFC 4616.  All
 * cryptography is mbedtls'.
 *
 * SASLprep (RFC 4013) is not applied: names and passwords go out as the
 * UTF-8 bytes the configuration holds, which is what SASLprep yields for
 * ASCII and for most already-normalized text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/constant_time.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

#include "compat_mbedtls.h"
#include "sasl.h"

/*
 * RFC 7677 section 4: at least 4096 iterations; fewer make a stolen
 * exchange cheap to brute-force, and a server that asks for fewer is
 * broken or hostile.
 */
#define SCRAM_MIN_ITER		4096UL
/*
 * The iteration count is CPU time a hostile or misconfigured server makes
 * the daemon spend.  Servers use 4096 to a few hundred thousand; a million
 * is over a second of SHA-512 on a current x86 core, which still leaves
 * room for stronger settings.
 */
#define SCRAM_MAX_ITER		1000000UL

/* 24 random bytes: 192 bits, 32 base64 characters. */
#define NONCE_RAW		24

/* Room for base64 of `n' bytes plus the NUL mbedtls writes. */
#define B64_SIZE(n)		(4 * (((n) + 2) / 3) + 1)

/* An empty authzid: the GS2 header is the flag and ",,". */
#define GS2_NO_CB		"n,,"
#define GS2_CB_CAPABLE		"y,,"

enum {
	STEP_IDLE,		/* zeroed or cleared */
	STEP_STARTED,		/* initial message sent */
	STEP_DERIVING,		/* waiting for SaltedPassword */
	STEP_PROVED,		/* SCRAM client-final-message sent */
	STEP_DONE,		/* server verified */
	STEP_FAILED,		/* refused: the exchange cannot go on */
};

static const char *const mech_names[] = {
	[SASL_SCRAM_SHA_512] = "SCRAM-SHA-512",
	[SASL_SCRAM_SHA_256] = "SCRAM-SHA-256",
	[SASL_SCRAM_SHA_1] = "SCRAM-SHA-1",
	[SASL_PLAIN] = "PLAIN",
	[SASL_SCRAM_SHA_512_PLUS] = "SCRAM-SHA-512-PLUS",
	[SASL_SCRAM_SHA_256_PLUS] = "SCRAM-SHA-256-PLUS",
	[SASL_SCRAM_SHA_1_PLUS] = "SCRAM-SHA-1-PLUS",
};

#define NMECHS	(sizeof(mech_names) / sizeof(mech_names[0]))

const char *
sasl_mech_name(enum sasl_mech mech)
{
	if (mech < 0 || (size_t)mech >= NMECHS)
		return "none";
	return mech_names[mech];
}

static enum sasl_mech
mech_lookup(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < NMECHS; i++)
		if (strlen(mech_names[i]) == len &&
		    memcmp(mech_names[i], name, len) == 0)
			return (enum sasl_mech)i;
	return SASL_NONE;
}

enum sasl_mech
sasl_mech_parse(const char *name)
{
	return mech_lookup(name, strlen(name));
}

int
sasl_is_plus(enum sasl_mech mech)
{
	return mech == SASL_SCRAM_SHA_512_PLUS ||
	    mech == SASL_SCRAM_SHA_256_PLUS || mech == SASL_SCRAM_SHA_1_PLUS;
}

int
sasl_is_scram(enum sasl_mech mech)
{
	return mech == SASL_SCRAM_SHA_512 || mech == SASL_SCRAM_SHA_256 ||
	    mech == SASL_SCRAM_SHA_1 || sasl_is_plus(mech);
}

/* The -PLUS variant of a SCRAM mechanism; SASL_NONE for the others. */
static enum sasl_mech
plus_of(enum sasl_mech mech)
{
	switch (mech) {
	case SASL_SCRAM_SHA_512:
		return SASL_SCRAM_SHA_512_PLUS;
	case SASL_SCRAM_SHA_256:
		return SASL_SCRAM_SHA_256_PLUS;
	case SASL_SCRAM_SHA_1:
		return SASL_SCRAM_SHA_1_PLUS;
	default:
		return SASL_NONE;
	}
}

int
sasl_offers_plus(const char *const *offered, size_t noffered)
{
	size_t i, n;

	for (i = 0; i < noffered; i++) {
		n = strlen(offered[i]);
		if (n >= 5 && strcmp(offered[i] + n - 5, "-PLUS") == 0)
			return 1;
	}
	return 0;
}

int
sasl_offered(const char *name, const char *const *offered, size_t noffered)
{
	size_t i;

	for (i = 0; i < noffered; i++)
		if (strcmp(offered[i], name) == 0)
			return 1;
	return 0;
}

/* The first of `prefs' offered; with `plus', the first -PLUS offered. */
static enum sasl_mech
select_pass(const char *prefs, const char *const *offered, size_t noffered,
    int encrypted, int plus)
{
	enum sasl_mech mech;
	size_t n;

	for (;;) {
		prefs += strspn(prefs, " \t");
		n = strcspn(prefs, " \t");
		if (n == 0)
			return SASL_NONE;
		mech = mech_lookup(prefs, n);
		prefs += n;
		/* -PLUS comes only from `plus', with the binding it needs. */
		if (mech == SASL_NONE || sasl_is_plus(mech))
			continue;
		/* PLAIN hands the password to anyone on the path. */
		if (mech == SASL_PLAIN && !encrypted)
			continue;
		if (plus)
			mech = plus_of(mech);
		if (mech != SASL_NONE && sasl_offered(mech_names[mech],
		    offered, noffered))
			return mech;
	}
}

enum sasl_mech
sasl_select(const char *prefs, const char *const *offered, size_t noffered,
    int encrypted, int plus)
{
	enum sasl_mech mech = SASL_NONE;

	/* A bound login beats any preference between hashes. */
	if (plus)
		mech = select_pass(prefs, offered, noffered, encrypted, 1);
	if (mech == SASL_NONE)
		mech = select_pass(prefs, offered, noffered, encrypted, 0);
	return mech;
}

const char *
sasl_cb_select(const char *ours, const char *const *cbtypes, size_t ncb)
{
	size_t i, n;

	for (;;) {
		ours += strspn(ours, " ");
		n = strcspn(ours, " ");
		if (n == 0)
			return NULL;
		for (i = 0; i < ncb; i++)
			if (strlen(cbtypes[i]) == n &&
			    memcmp(cbtypes[i], ours, n) == 0)
				return cbtypes[i];
		ours += n;
	}
}

static const mbedtls_md_info_t *
scram_md(enum sasl_mech mech)
{
	switch (mech) {
	case SASL_SCRAM_SHA_512:
	case SASL_SCRAM_SHA_512_PLUS:
		return mbedtls_md_info_from_type(MBEDTLS_MD_SHA512);
	case SASL_SCRAM_SHA_256:
	case SASL_SCRAM_SHA_256_PLUS:
		return mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
	case SASL_SCRAM_SHA_1:
	case SASL_SCRAM_SHA_1_PLUS:
		return mbedtls_md_info_from_type(MBEDTLS_MD_SHA1);
	default:
		return NULL;
	}
}

/* RFC 5802 "printable": visible ASCII except ','. */
static int
is_printable(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return 0;
	return 1;
}

int
sasl_random(unsigned char *out, size_t len)
{
	static const char pers[] = "clawsd sasl random";
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	int rc;

	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
	    (const unsigned char *)pers, sizeof(pers) - 1);
	if (rc == 0)
		rc = mbedtls_ctr_drbg_random(&drbg, out, len);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return rc == 0 ? 0 : -1;
}

static int
random_nonce(char *dst, size_t size)
{
	unsigned char raw[NONCE_RAW];
	size_t olen;

	if (sasl_random(raw, sizeof(raw)) != 0)
		return -1;
	return mbedtls_base64_encode((unsigned char *)dst, size, &olen, raw,
	    sizeof(raw)) == 0 ? 0 : -1;
}

/* saslname of RFC 5802: ',' and '=' would break the attribute syntax. */
static char *
escape_user(const char *user)
{
	struct buf b;
	char *s;

	buf_init(&b);
	for (; *user != '\0'; user++) {
		if (*user == ',')
			buf_puts(&b, "=2C");
		else if (*user == '=')
			buf_puts(&b, "=3D");
		else
			buf_putc(&b, *user);
	}
	s = xstrndup(b.data, b.len);
	buf_free(&b);
	return s;
}

static void
plain_start(const char *user, const char *password, struct buf *out)
{
	/* Empty authzid: act as the authenticated identity itself. */
	buf_putc(out, '\0');
	buf_puts(out, user);
	buf_putc(out, '\0');
	buf_puts(out, password);
}

/* The GS2 header of RFC 5802 section 7 into `gs2'. */
static void
gs2_header(enum sasl_mech mech, const struct sasl_cb *cb, struct buf *gs2)
{
	if (sasl_is_plus(mech))
		buf_printf(gs2, "p=%s,,", cb->type);
	else if (cb != NULL && cb->capable)
		buf_puts(gs2, GS2_CB_CAPABLE);
	else
		buf_puts(gs2, GS2_NO_CB);
}

/*
 * The "c=" value: base64 of the GS2 header and, bound, the channel's data.
 * The server checks both, so a rewritten flag or another channel fails.
 */
static char *
encode_cbind(const struct buf *gs2, enum sasl_mech mech,
    const struct sasl_cb *cb)
{
	struct buf raw;
	char *enc;
	size_t olen, size;

	buf_init(&raw);
	buf_append(&raw, gs2->data, gs2->len);
	if (sasl_is_plus(mech))
		buf_append(&raw, (const char *)cb->data, cb->len);
	size = B64_SIZE(raw.len);
	enc = xmalloc(size);
	if (mbedtls_base64_encode((unsigned char *)enc, size, &olen,
	    (const unsigned char *)raw.data, raw.len) != 0) {
		free(enc);
		enc = NULL;
	}
	buf_free(&raw);
	return enc;
}

static int
scram_start(struct sasl *s, const char *user, const char *password,
    const char *cnonce, const struct sasl_cb *cb, struct buf *out)
{
	struct buf gs2;

	buf_init(&gs2);
	gs2_header(s->mech, cb, &gs2);
	s->cbind = encode_cbind(&gs2, s->mech, cb);
	if (s->cbind == NULL) {
		buf_free(&gs2);
		return -1;
	}
	s->authcid = escape_user(user);
	s->password = xstrdup(password);
	buf_append(out, gs2.data, gs2.len);
	gs2.len = 0;
	buf_printf(&gs2, "n=%s,r=%s", s->authcid, cnonce);
	s->client_first_bare = xstrndup(gs2.data, gs2.len);
	buf_free(&gs2);
	buf_puts(out, s->client_first_bare);
	return 0;
}

/* A type (a cb-name of RFC 5056: letters, digits, '.', '-') and data. */
static int
cb_valid(enum sasl_mech mech, const struct sasl_cb *cb)
{
	size_t n;

	if (!sasl_is_plus(mech))
		return cb == NULL || cb->type == NULL;
	if (cb == NULL || cb->type == NULL || cb->data == NULL ||
	    cb->len == 0 || cb->len > SASL_CB_MAX)
		return 0;
	n = strspn(cb->type, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
	return n > 0 && cb->type[n] == '\0';
}

int
sasl_start(struct sasl *s, enum sasl_mech mech, const char *user,
    const char *password, const char *cnonce, struct buf *out)
{
	return sasl_start_cb(s, mech, user, password, cnonce, NULL, out);
}

int
sasl_start_cb(struct sasl *s, enum sasl_mech mech, const char *user,
    const char *password, const char *cnonce, const struct sasl_cb *cb,
    struct buf *out)
{
	char nonce[B64_SIZE(NONCE_RAW)];

	memset(s, 0, sizeof(*s));
	s->mech = SASL_NONE;
	if (mech < 0 || (size_t)mech >= NMECHS)
		return -1;
	if (user == NULL || *user == '\0' ||
	    password == NULL || *password == '\0' || !cb_valid(mech, cb))
		return -1;
	if (mech == SASL_PLAIN) {
		plain_start(user, password, out);
		s->mech = mech;
		s->step = STEP_STARTED;
		return 0;
	}
	if (cnonce == NULL) {
		if (random_nonce(nonce, sizeof(nonce)) == -1)
			return -1;
		cnonce = nonce;
	}
	if (*cnonce == '\0' || !is_printable(cnonce, strlen(cnonce)))
		return -1;
	s->mech = mech;
	if (scram_start(s, user, password, cnonce, cb, out) == -1) {
		s->mech = SASL_NONE;
		return -1;
	}
	s->step = STEP_STARTED;
	return 0;
}

/* Our nonce: client_first_bare is "n=" authcid ",r=" cnonce. */
static const char *
client_nonce(const struct sasl *s)
{
	return s->client_first_bare + 2 + strlen(s->authcid) + 3;
}

/*
 * Take attribute `name' at *p (up to `end'): its value is everything up to
 * the next ',' or the end.  Moves *p past the separator.
 */
static int
take_attr(const char **p, const char *end, char name, const char **val,
    size_t *vlen)
{
	const char *comma;

	if (end - *p < 2 || (*p)[0] != name || (*p)[1] != '=')
		return -1;
	*val = *p + 2;
	comma = memchr(*val, ',', (size_t)(end - *val));
	*vlen = (size_t)((comma != NULL ? comma : end) - *val);
	*p = comma != NULL ? comma + 1 : end;
	return 0;
}

static int
parse_iter(const char *s, size_t len, unsigned long *iter)
{
	unsigned long n = 0;
	size_t i;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		n = n * 10 + (unsigned long)(s[i] - '0');
		if (n > SCRAM_MAX_ITER)
			return -1;
	}
	if (n < SCRAM_MIN_ITER)
		return -1;
	*iter = n;
	return 0;
}

/*
 * mbedtls 2.28 silently drops an incomplete final group and skips line
 * breaks; SCRAM attributes are plain padded base64, so hold them to that.
 */
static int
b64_decode(unsigned char *dst, size_t size, size_t *olen, const char *s,
    size_t len)
{
	if (len % 4 != 0 || !is_printable(s, len))
		return MBEDTLS_ERR_BASE64_INVALID_CHARACTER;
	return mbedtls_base64_decode(dst, size, olen,
	    (const unsigned char *)s, len);
}

static unsigned char *
decode_salt(const char *s, size_t len, size_t *saltlen)
{
	unsigned char *salt;
	size_t n;

	/* Sizing call: anything but "too small" is bad or empty input. */
	if (b64_decode(NULL, 0, &n, s, len) !=
	    MBEDTLS_ERR_BASE64_BUFFER_TOO_SMALL)
		return NULL;
	salt = xmalloc(n);
	if (b64_decode(salt, n, saltlen, s, len) != 0) {
		free(salt);
		return NULL;
	}
	return salt;
}

struct server_first {
	const char	*nonce;
	size_t		 noncelen;
	const char	*salt;
	size_t		 saltlen;
	unsigned long	 iter;
	const char	*ext;		/* optional attributes after "i=" */
	size_t		 extlen;
};

static const char *
parse_server_first(const struct sasl *s, const char *msg, size_t len,
    struct server_first *sf)
{
	const char *p = msg, *end = msg + len, *cnonce, *iter;
	size_t cnlen, iterlen;

	if (memchr(msg, '\0', len) != NULL)
		return "malformed challenge";
	if (len >= 2 && msg[0] == 'm' && msg[1] == '=')
		return "unsupported mandatory extension";
	if (take_attr(&p, end, 'r', &sf->nonce, &sf->noncelen) == -1)
		return "missing nonce";
	if (take_attr(&p, end, 's', &sf->salt, &sf->saltlen) == -1)
		return "missing salt";
	if (take_attr(&p, end, 'i', &iter, &iterlen) == -1)
		return "missing iteration count";
	/* Anything after is an optional extension, which we may ignore. */
	sf->ext = p;
	sf->extlen = (size_t)(end - p);
	cnonce = client_nonce(s);
	cnlen = strlen(cnonce);
	/* The server must add a part of its own for the exchange to be fresh. */
	if (sf->noncelen <= cnlen || memcmp(sf->nonce, cnonce, cnlen) != 0 ||
	    !is_printable(sf->nonce, sf->noncelen))
		return "server nonce does not extend ours";
	if (parse_iter(iter, iterlen, &sf->iter) == -1)
		return "iteration count out of range";
	return NULL;
}

static int
cache_matches(const struct sasl_cache *c, const struct sasl *s,
    const unsigned char *salt, size_t saltlen, unsigned long iter)
{
	/* -PLUS or not, the same hash gives the same SaltedPassword. */
	return c->valid && scram_md(c->mech) == scram_md(s->mech) &&
	    c->iter == iter &&
	    c->saltlen == saltlen && memcmp(c->salt, salt, saltlen) == 0 &&
	    strcmp(c->authcid, s->authcid) == 0;
}

/*
 * SCRAM's Hi(password, salt, i): the one costly step of an exchange, with
 * copies of all it needs, so that it can run on another thread.
 */
struct sasl_hi {
	enum sasl_mech	 mech;
	char		*password;
	unsigned char	*salt;
	size_t		 saltlen;
	unsigned long	 iter;
	unsigned char	 salted[SASL_MAX_HASH];
	int		 rc;
};

void
sasl_hi(struct sasl_hi *hi)
{
	const mbedtls_md_info_t *md = scram_md(hi->mech);

	hi->rc = compat_pbkdf2_hmac(md, (const unsigned char *)hi->password,
	    strlen(hi->password), hi->salt, hi->saltlen, (unsigned int)hi->iter,
	    (uint32_t)mbedtls_md_get_size(md), hi->salted);
}

void
sasl_hi_free(struct sasl_hi *hi)
{
	if (hi == NULL)
		return;
	if (hi->password != NULL) {
		mbedtls_platform_zeroize(hi->password, strlen(hi->password));
		free(hi->password);
	}
	free(hi->salt);
	mbedtls_platform_zeroize(hi, sizeof(*hi));
	free(hi);
}

/*
 * A freshly computed SaltedPassword waits in s->pending until
 * sasl_finish() has seen the server prove it knows the same: a wrong
 * password never reaches the cache.
 */
static void
keep_pending(struct sasl *s, const struct sasl_hi *hi, size_t hlen)
{
	sasl_cache_clear(&s->pending);
	s->pending.mech = s->mech;
	s->pending.authcid = xstrdup(s->authcid);
	s->pending.salt = xmalloc(hi->saltlen);
	memcpy(s->pending.salt, hi->salt, hi->saltlen);
	s->pending.saltlen = hi->saltlen;
	s->pending.iter = hi->iter;
	memcpy(s->pending.salted, hi->salted, hlen);
	s->pending.valid = 1;
}

/*
 * RFC 5802 section 3: the client proof for `auth_message' into `proof', and
 * ServerKey into s->server_key for sasl_finish.
 */
static int
scram_prove(struct sasl *s, const mbedtls_md_info_t *md,
    const unsigned char *salted, unsigned char *proof)
{
	unsigned char client_key[SASL_MAX_HASH];
	unsigned char stored_key[SASL_MAX_HASH], client_sig[SASL_MAX_HASH];
	size_t i, hlen = mbedtls_md_get_size(md);
	int rc;

	rc = mbedtls_md_hmac(md, salted, hlen,
		    (const unsigned char *)"Client Key", 10, client_key);
	if (rc == 0)
		rc = mbedtls_md(md, client_key, hlen, stored_key);
	if (rc == 0)
		rc = mbedtls_md_hmac(md, stored_key, hlen,
		    (const unsigned char *)s->auth_message,
		    strlen(s->auth_message), client_sig);
	if (rc == 0)
		rc = mbedtls_md_hmac(md, salted, hlen,
		    (const unsigned char *)"Server Key", 10, s->server_key);
	if (rc == 0)
		for (i = 0; i < hlen; i++)
			proof[i] = client_key[i] ^ client_sig[i];
	mbedtls_platform_zeroize(client_key, sizeof(client_key));
	mbedtls_platform_zeroize(stored_key, sizeof(stored_key));
	mbedtls_platform_zeroize(client_sig, sizeof(client_sig));
	return rc == 0 ? 0 : -1;
}

static int
cmp_names(const void *a, const void *b)
{
	/* strcmp orders as unsigned char: the "i;octet" collation. */
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void
put_sorted(struct buf *b, const char *const *names, size_t n, char sep)
{
	const char **v;
	size_t i;

	v = xcalloc(n, sizeof(*v));
	memcpy(v, names, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_names);
	for (i = 0; i < n; i++) {
		if (i > 0)
			buf_putc(b, sep);
		buf_puts(b, v[i]);
	}
	free(v);
}

/*
 * XEP-0474: hash of the sorted mechanism names joined by `sep', then, when
 * channel-binding types were advertised, `listsep' and their sorted names
 * joined by `sep'.  Version 0.4 and later use 0x1e and 0x1f in attribute
 * "h"; 0.3 (ejabberd, older Prosody modules) used ',' and '|' in "d".
 */
static int
ssdp_digest(const mbedtls_md_info_t *md, const char *const *mechs,
    size_t nmechs, const char *const *cbtypes, size_t ncb, char sep,
    char listsep, unsigned char *out)
{
	struct buf b;
	int rc;

	buf_init(&b);
	put_sorted(&b, mechs, nmechs, sep);
	if (ncb > 0) {
		buf_putc(&b, listsep);
		put_sorted(&b, cbtypes, ncb, sep);
	}
	rc = mbedtls_md(md, (const unsigned char *)b.data, b.len, out);
	buf_free(&b);
	return rc == 0 ? 0 : -1;
}

int
sasl_set_offered(struct sasl *s, const char *const *mechs, size_t nmechs,
    const char *const *cbtypes, size_t ncb)
{
	const mbedtls_md_info_t *md;

	if (s->step != STEP_STARTED)
		return -1;
	if (s->mech == SASL_PLAIN)
		return 0;
	md = scram_md(s->mech);
	s->ssdp_set = 0;
	if (ssdp_digest(md, mechs, nmechs, cbtypes, ncb, '\x1e', '\x1f',
	    s->ssdp_h) == -1 ||
	    ssdp_digest(md, mechs, nmechs, cbtypes, ncb, ',', '|',
	    s->ssdp_d) == -1)
		return -1;
	s->ssdp_set = 1;
	return 0;
}

/*
 * Every "h=" and "d=" among the optional attributes of the server-first-
 * message must match what we saw offered.  The attributes are part of the
 * AuthMessage our proof signs, so the server notices if they were forged.
 */
static const char *
check_ssdp(const struct sasl *s, const mbedtls_md_info_t *md,
    const char *ext, size_t len)
{
	const char *p = ext, *end = ext + len, *v;
	const unsigned char *want;
	unsigned char got[SASL_MAX_HASH];
	size_t vlen, n, hlen = mbedtls_md_get_size(md);

	while (p < end) {
		if (take_attr(&p, end, 'h', &v, &vlen) == 0)
			want = s->ssdp_h;
		else if (take_attr(&p, end, 'd', &v, &vlen) == 0)
			want = s->ssdp_d;
		else {
			/* Another extension: skip it. */
			v = memchr(p, ',', (size_t)(end - p));
			p = v != NULL ? v + 1 : end;
			continue;
		}
		if (!s->ssdp_set)
			return "downgrade protection without the offered "
			    "mechanisms";
		if (b64_decode(got, sizeof(got), &n, v, vlen) != 0 ||
		    n != hlen || memcmp(got, want, hlen) != 0)
			return "downgrade attack detected";
	}
	return NULL;
}

static void
forget_password(struct sasl *s)
{
	if (s->password == NULL)
		return;
	mbedtls_platform_zeroize(s->password, strlen(s->password));
	free(s->password);
	s->password = NULL;
}

/*
 * The server-first-message checked, the exchange's messages kept, and the
 * Hi() job for SaltedPassword made: 1 when it has to run, 0 when the cache
 * had the result.
 */
static int
scram_begin(struct sasl *s, const char *msg, size_t len,
    struct sasl_hi **hi, const char **err)
{
	const mbedtls_md_info_t *md = scram_md(s->mech);
	struct server_first sf;
	struct sasl_hi *job;
	struct buf b;
	unsigned char *salt;
	size_t saltlen;

	if ((*err = parse_server_first(s, msg, len, &sf)) != NULL)
		return -1;
	/* Before PBKDF2: an attacker gets no CPU time out of us. */
	if ((*err = check_ssdp(s, md, sf.ext, sf.extlen)) != NULL)
		return -1;
	if ((salt = decode_salt(sf.salt, sf.saltlen, &saltlen)) == NULL) {
		*err = "bad salt";
		return -1;
	}
	buf_init(&b);
	buf_printf(&b, "c=%s,r=", s->cbind);
	buf_append(&b, sf.nonce, sf.noncelen);
	s->without_proof = xstrndup(b.data, b.len);
	b.len = 0;
	buf_puts(&b, s->client_first_bare);
	buf_putc(&b, ',');
	buf_append(&b, msg, len);
	buf_putc(&b, ',');
	buf_puts(&b, s->without_proof);
	s->auth_message = xstrndup(b.data, b.len);
	buf_free(&b);

	job = xcalloc(1, sizeof(*job));
	job->mech = s->mech;
	job->salt = salt;
	job->saltlen = saltlen;
	job->iter = sf.iter;
	*hi = job;
	if (s->cache != NULL && cache_matches(s->cache, s, salt, saltlen,
	    sf.iter)) {
		memcpy(job->salted, s->cache->salted, mbedtls_md_get_size(md));
		s->cache_hit = 1;
		forget_password(s);
		return 0;
	}
	job->password = s->password;
	s->password = NULL;
	return 1;
}

/* The client-final-message, from SaltedPassword. */
static int
scram_end(struct sasl *s, const struct sasl_hi *hi, struct buf *out,
    const char **err)
{
	const mbedtls_md_info_t *md = scram_md(s->mech);
	unsigned char proof[SASL_MAX_HASH];
	char proof64[B64_SIZE(SASL_MAX_HASH)];
	size_t olen;
	int rc = hi->rc;

	if (rc == 0 && !s->cache_hit && s->cache != NULL)
		keep_pending(s, hi, mbedtls_md_get_size(md));
	if (rc == 0)
		rc = scram_prove(s, md, hi->salted, proof);
	if (rc == 0)
		rc = mbedtls_base64_encode((unsigned char *)proof64,
		    sizeof(proof64), &olen, proof, mbedtls_md_get_size(md));
	mbedtls_platform_zeroize(proof, sizeof(proof));
	if (rc != 0) {
		*err = "crypto failure";
		return -1;
	}
	buf_puts(out, s->without_proof);
	buf_puts(out, ",p=");
	buf_append(out, proof64, olen);
	return 0;
}

int
sasl_step_begin(struct sasl *s, const char *challenge, size_t len,
    struct buf *out, struct sasl_hi **hi, const char **err)
{
	struct sasl_hi *job = NULL;
	int rc;

	*hi = NULL;
	/* PLAIN is a single message: a challenge is a protocol violation. */
	if (s->step != STEP_STARTED || s->mech == SASL_PLAIN) {
		*err = "unexpected challenge";
		return -1;
	}
	rc = scram_begin(s, challenge, len, &job, err);
	if (rc == -1) {
		s->step = STEP_FAILED;
		return -1;
	}
	s->step = STEP_DERIVING;
	if (rc == 0)
		return sasl_step_end(s, job, out, err);
	*hi = job;
	return 1;
}

int
sasl_step_end(struct sasl *s, struct sasl_hi *hi, struct buf *out,
    const char **err)
{
	int rc = -1;

	if (s->step != STEP_DERIVING)
		*err = "unexpected key";
	else
		rc = scram_end(s, hi, out, err);
	sasl_hi_free(hi);
	s->step = rc == 0 ? STEP_PROVED : STEP_FAILED;
	return rc;
}

int
sasl_step(struct sasl *s, const char *challenge, size_t len, struct buf *out,
    const char **err)
{
	struct sasl_hi *hi;
	int rc;

	rc = sasl_step_begin(s, challenge, len, out, &hi, err);
	if (rc != 1)
		return rc;
	sasl_hi(hi);
	return sasl_step_end(s, hi, out, err);
}

static int
scram_finish(struct sasl *s, const char *msg, size_t len, const char **err)
{
	const mbedtls_md_info_t *md = scram_md(s->mech);
	unsigned char got[SASL_MAX_HASH], want[SASL_MAX_HASH];
	const char *p = msg, *v;
	size_t vlen, n, hlen = mbedtls_md_get_size(md);
	int rc;

	if (len >= 2 && msg[0] == 'e' && msg[1] == '=') {
		*err = "server error";
		return -1;
	}
	if (take_attr(&p, msg + len, 'v', &v, &vlen) == -1) {
		*err = "malformed server-final-message";
		return -1;
	}
	if (b64_decode(got, sizeof(got), &n, v, vlen) != 0 || n != hlen) {
		*err = "bad server signature";
		return -1;
	}
	rc = mbedtls_md_hmac(md, s->server_key, hlen,
	    (const unsigned char *)s->auth_message, strlen(s->auth_message),
	    want);
	if (rc != 0) {
		*err = "crypto failure";
		return -1;
	}
	/* Constant time: do not tell an impostor how much of it was right. */
	if (mbedtls_ct_memcmp(got, want, hlen) != 0) {
		*err = "server signature mismatch";
		return -1;
	}
	return 0;
}

static int
check_success(struct sasl *s, const char *data, size_t len, const char **err)
{
	if (s->mech == SASL_PLAIN && s->step == STEP_STARTED) {
		if (len == 0)
			return 0;
		*err = "unexpected additional data";
		return -1;
	}
	if (s->mech != SASL_PLAIN && s->step == STEP_PROVED)
		return scram_finish(s, data, len, err);
	/* Success before our proof would skip verifying the server. */
	*err = "unexpected success";
	return -1;
}

int
sasl_finish(struct sasl *s, const char *data, size_t len, const char **err)
{
	if (check_success(s, data, len, err) == -1) {
		s->step = STEP_FAILED;
		return -1;
	}
	s->step = STEP_DONE;
	/* The server proved it: SaltedPassword is right for this salt. */
	if (s->cache != NULL && s->pending.valid) {
		sasl_cache_clear(s->cache);
		*s->cache = s->pending;
		/* Moved, not freed: the cache owns salt and authcid now. */
		mbedtls_platform_zeroize(&s->pending, sizeof(s->pending));
	}
	return 0;
}

void
sasl_set_cache(struct sasl *s, struct sasl_cache *cache)
{
	s->cache = cache;
}

int
sasl_cache_hit(const struct sasl *s)
{
	return s->cache_hit;
}

void
sasl_cache_clear(struct sasl_cache *c)
{
	free(c->authcid);
	free(c->salt);
	mbedtls_platform_zeroize(c, sizeof(*c));
}

static void
free_string(char **p)
{
	free(*p);
	*p = NULL;
}

void
sasl_clear(struct sasl *s)
{
	forget_password(s);
	free_string(&s->authcid);
	free_string(&s->client_first_bare);
	free_string(&s->auth_message);
	free_string(&s->without_proof);
	free_string(&s->cbind);
	mbedtls_platform_zeroize(s->server_key, sizeof(s->server_key));
	sasl_cache_clear(&s->pending);
	s->cache = NULL;
	s->cache_hit = 0;
	s->ssdp_set = 0;
	memset(s->ssdp_h, 0, sizeof(s->ssdp_h));
	memset(s->ssdp_d, 0, sizeof(s->ssdp_d));
	s->mech = SASL_NONE;
	s->step = STEP_IDLE;
}
