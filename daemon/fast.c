#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

#include "fast.h"
#include "log.h"
#include "sasl.h"
#include "sfile.h"

#define FAST_MAX_FILE	(FAST_MAX_TOKEN + 256)
#define ID_MAX		64
#define HT_PREFIX	"HT-SHA-256-"

struct fast {
	char	*dir;			/* NULL: memory only */
	char	 id[ID_MAX + 1];
	char	*mech;			/* NULL: no token */
	char	*token;
};

struct fast *
fast_new(void)
{
	return xcalloc(1, sizeof(struct fast));
}

static void
forget(struct fast *f)
{
	if (f->token != NULL) {
		mbedtls_platform_zeroize(f->token, strlen(f->token));
		free(f->token);
	}
	free(f->mech);
	f->token = f->mech = NULL;
}

void
fast_free(struct fast *f)
{
	if (f == NULL)
		return;
	forget(f);
	free(f->dir);
	free(f);
}

/* Printable ASCII, no space: what fits a line field and an attribute. */
static int
printable(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return 0;
	for (; *s != '\0'; s++)
		if (*s < 0x21 || *s > 0x7e)
			return 0;
	return 1;
}

/*
 * The mechanisms this build can prove a token with, best first, and the
 * channel binding each proves (XEP-0484 section 3.1): -EXPR binds the
 * connection (TLS 1.3), -ENDP the server's certificate, -NONE nothing.
 * -UNIQ (tls-unique) is left out: it is unsafe without extended master
 * secret (RFC 9266), and TLS 1.3 has none.
 */
static const struct {
	const char	*mech;
	const char	*cb;
} ht[] = {
	{ HT_PREFIX "EXPR", "tls-exporter" },
	{ HT_PREFIX "ENDP", "tls-server-end-point" },
	{ HT_PREFIX "NONE", "" },
};

const char *
fast_cb_type(const char *mech)
{
	size_t i;

	for (i = 0; i < sizeof(ht) / sizeof(ht[0]); i++)
		if (strcmp(mech, ht[i].mech) == 0)
			return ht[i].cb;
	return NULL;
}

static int
known_mech(const char *mech)
{
	return fast_cb_type(mech) != NULL;
}

/* Can this connection prove `cb' ("" none), bound only if `bound'? */
static int
provable(const char *cb, const char *ours, int bound)
{
	if (*cb == '\0')
		return !bound;
	return sasl_cb_select(ours, &cb, 1) != NULL;
}

const char *
fast_choose(const char *const *offered, size_t n, const char *ours,
    int bound)
{
	size_t i;

	for (i = 0; i < sizeof(ht) / sizeof(ht[0]); i++)
		if (sasl_offered(ht[i].mech, offered, n) &&
		    provable(ht[i].cb, ours, bound))
			return ht[i].mech;
	return NULL;
}

int
fast_usable(const struct fast *f, const char *const *offered, size_t n,
    const char *ours, int bound)
{
	const char *best = fast_choose(offered, n, ours, bound);

	return f->token != NULL && best != NULL && strcmp(f->mech, best) == 0;
}

static int
new_id(struct fast *f)
{
	unsigned char r[16];

	if (sasl_random(r, sizeof(r)) != 0)
		return -1;
	r[6] = (r[6] & 0x0f) | 0x40;	/* RFC 9562: version 4 */
	r[8] = (r[8] & 0x3f) | 0x80;	/* the variant */
	snprintf(f->id, sizeof(f->id), "%02x%02x%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4],
	    r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
	    r[15]);
	return 0;
}

static int
take(struct fast *f, const char *mech, const char *token)
{
	char *m, *t;

	if (mech == NULL || token == NULL || !known_mech(mech) ||
	    !printable(token, FAST_MAX_TOKEN))
		return -1;
	m = xstrdup(mech);	/* `mech' may be ours: a rotation */
	t = xstrdup(token);
	forget(f);
	f->mech = m;
	f->token = t;
	return 0;
}

static int
save(struct fast *f)
{
	struct buf b;
	int rc;

	if (f->dir == NULL)
		return 0;
	buf_init(&b);
	buf_printf(&b, "id %s\n", f->id);
	if (f->token != NULL)
		buf_printf(&b, "token %s %s\n", f->mech, f->token);
	rc = sfile_write(f->dir, FAST_FILE, b.data, b.len, "sasl2");
	mbedtls_platform_zeroize(b.data, b.cap);
	buf_free(&b);
	return rc;
}

static void
parse_line(struct fast *f, char *line, int lineno)
{
	char *key = strtok(line, " "), *a = strtok(NULL, " ");
	char *b = strtok(NULL, " ");

	if (key != NULL && strcmp(key, "id") == 0 && a != NULL && b == NULL &&
	    printable(a, ID_MAX)) {
		snprintf(f->id, sizeof(f->id), "%s", a);
		return;
	}
	if (key != NULL && strcmp(key, "token") == 0 && b != NULL &&
	    strtok(NULL, " ") == NULL && take(f, a, b) == 0)
		return;
	log_warn("sasl2: %s/%s:%d: not a valid line, ignored", f->dir,
	    FAST_FILE, lineno);
}

static void
load(struct fast *f, struct buf *b)
{
	char *p = b->data, *nl;
	int lineno = 0;

	while (p < b->data + b->len && (nl = strchr(p, '\n')) != NULL) {
		*nl = '\0';
		parse_line(f, p, ++lineno);
		p = nl + 1;
	}
}

int
fast_open(struct fast *f, const char *dir)
{
	struct buf b;
	int rc = 0;

	/* A reload: the client id and the token stay with the directory. */
	if (f->id[0] != '\0' && (dir == NULL ? f->dir == NULL :
	    f->dir != NULL && strcmp(dir, f->dir) == 0))
		return 0;
	forget(f);
	free(f->dir);
	f->dir = NULL;
	f->id[0] = '\0';
	if (dir != NULL && sfile_dir(dir, "sasl2") == 0) {
		f->dir = xstrdup(dir);
		buf_init(&b);
		rc = sfile_read(dir, FAST_FILE, FAST_MAX_FILE, &b, "sasl2");
		if (rc == 1)
			load(f, &b);
		if (b.data != NULL)
			mbedtls_platform_zeroize(b.data, b.cap);
		buf_free(&b);
	}
	if (f->id[0] != '\0')
		return rc == -1 ? -1 : 0;
	if (new_id(f) != 0) {
		log_error("sasl2: no random numbers for the client id");
		return -1;
	}
	return save(f);
}

const char *
fast_client_id(const struct fast *f)
{
	return f->id;
}

const char *
fast_mech(const struct fast *f)
{
	return f->mech;
}

int
fast_set(struct fast *f, const char *mech, const char *token)
{
	if (take(f, mech, token) != 0)
		return -1;
	/* Not saved is still usable until the daemon stops: logged only. */
	(void)save(f);
	return 0;
}

void
fast_drop(struct fast *f)
{
	if (f->token == NULL)
		return;
	forget(f);
	(void)save(f);
}

static int
ht_hmac(const struct fast *f, const char *label, const unsigned char *cb,
    size_t cblen, unsigned char out[32])
{
	const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
	mbedtls_md_context_t ctx;
	int rc;

	mbedtls_md_init(&ctx);
	rc = mbedtls_md_setup(&ctx, md, 1);
	if (rc == 0)
		rc = mbedtls_md_hmac_starts(&ctx,
		    (const unsigned char *)f->token, strlen(f->token));
	if (rc == 0)
		rc = mbedtls_md_hmac_update(&ctx, (const unsigned char *)label,
		    strlen(label));
	if (rc == 0 && cblen > 0)
		rc = mbedtls_md_hmac_update(&ctx, cb, cblen);
	if (rc == 0)
		rc = mbedtls_md_hmac_finish(&ctx, out);
	mbedtls_md_free(&ctx);
	return rc == 0 ? 0 : -1;
}

int
fast_initial(const struct fast *f, const char *user, const unsigned char *cb,
    size_t cblen, struct buf *out)
{
	unsigned char h[32];

	if (f->token == NULL || ht_hmac(f, "Initiator", cb, cblen, h) != 0)
		return -1;
	buf_puts(out, user);
	buf_putc(out, '\0');
	buf_append(out, (const char *)h, sizeof(h));
	mbedtls_platform_zeroize(h, sizeof(h));
	return 0;
}

int
fast_verify(const struct fast *f, const unsigned char *cb, size_t cblen,
    const char *data, size_t len)
{
	unsigned char h[32];
	size_t i;
	unsigned char diff = 0;

	if (f->token == NULL || len != sizeof(h) ||
	    ht_hmac(f, "Responder", cb, cblen, h) != 0)
		return -1;
	for (i = 0; i < len; i++)
		diff |= h[i] ^ (unsigned char)data[i];
	return diff == 0 ? 0 : -1;
}
