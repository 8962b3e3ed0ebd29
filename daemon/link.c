#include <netinet/in.h>
#include <arpa/inet.h>
#include <malloc.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "buf.h"
#include "link.h"
#include "log.h"

#define READ_SIZE	65536
/*
 * libuv reads up to 32 buffers in one go; after this many bytes the link
 * yields until the next loop turn, so that the lines they made reach the
 * subscribers before more arrive.
 */
#define READ_BUDGET	(4 * READ_SIZE)
/*
 * Record crypto costs about as much as parsing the stanzas inside: from
 * this many bytes on, it runs in libuv's thread pool while the loop parses
 * the previous batch.  Less than that (an interactive stanza) is done at
 * once, which costs no thread hand-off in latency.
 */
#define OFFLOAD_MIN	16384
/* Ciphertext kept while a batch is in the pool; reading stops beyond. */
#define RX_MAX		(1u << 20)
#define RECORD_MAX	16384
/* Buffers give back what a burst made them grow beyond this. */
#define BUF_KEEP	(2 * READ_SIZE)
#define SYSTEM_BUNDLE	"/etc/ssl/certs/ca-certificates.crt"
#define SYSTEM_CADIR	"/etc/ssl/certs"

enum link_state {
	LINK_IDLE,
	LINK_RESOLVING,
	LINK_CONNECTING,
	LINK_HANDSHAKE,
	LINK_OPEN,
};

/*
 * Trust anchors and settings.  A connection keeps the one it started with,
 * so a reload never changes them under a TLS session or a batch in the
 * thread pool.  The random generator is shared by those: it is locked.
 */
struct tlsconf {
	mbedtls_entropy_context	 entropy;
	mbedtls_ctr_drbg_context drbg;
	uv_mutex_t		 lock;
	mbedtls_x509_crt	 ca;
	mbedtls_ssl_config	 conf;
	int			 refs;
};

/*
 * One TCP connection and its TLS session; freed once libuv has closed its
 * handle and no batch of it is in the thread pool.  While `crypting', the
 * pool owns `ssl' and the four buffers; the loop touches neither.
 */
struct conn {
	uv_tcp_t	 tcp;
	uv_connect_t	 creq;
	uv_write_t	 wreq;
	uv_work_t	 work;
	struct link	*link;		/* NULL once abandoned */
	int		 open;		/* the handle is not closed yet */
	int		 crypting;
	struct tlsconf	*tc;		/* NULL: no TLS (yet) */
	mbedtls_ssl_context ssl;
	struct buf	 cin;		/* ciphertext for mbedtls to read */
	size_t		 cin_off;
	struct buf	 cout;		/* ciphertext mbedtls wrote */
	struct buf	 dec;		/* plaintext it decrypted */
	struct buf	 seal;		/* plaintext for it to encrypt */
	int		 rc;		/* outcome of the last pass */
	const char	*what;		/* the step that failed */
};

struct link {
	uv_loop_t		*loop;
	const struct link_cb	*cb;
	void			*arg;
	struct tlsconf		*tc;

	enum link_state		 state;
	uv_getaddrinfo_t	*gai;
	struct addrinfo		*addrs, *next_addr;
	struct conn		*conn;
	char			*domain;
	char			 port[8];
	char			 peer[INET6_ADDRSTRLEN + 16];
	int			 direct;
	int			 tls;		/* TLS layer in use */
	struct buf		 rx;		/* ciphertext not yet with conn */
	struct buf		 plain;		/* plaintext not yet encrypted */
	struct buf		 din;		/* plaintext being delivered */
	size_t			 sealing;	/* plaintext in the pool */
	struct buf		 out;		/* bytes for the next write */
	struct buf		 wbuf;		/* bytes being written */
	int			 writing;
	size_t			 turn_read;	/* bytes since the last yield */
	int			 read_paused;
	uv_prepare_t		 flush;
	char			 reason[512];
	char			 rbuf[READ_SIZE];
};

static void on_flush(uv_prepare_t *);
static void fail(struct link *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

/* The connection is over: say why, once, and go idle. */
static void
fail(struct link *l, const char *fmt, ...)
{
	char reason[sizeof(l->reason)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	memcpy(l->reason, reason, sizeof(reason));
	link_close(l);
	l->cb->closed(l->arg, l->reason);
}

static void
tls_fail(struct link *l, const char *what, int err)
{
	char text[128];

	mbedtls_strerror(err, text, sizeof(text));
	fail(l, "TLS: %s: %s", what, text);
}

/* Certificate problems in one line, e.g. "certificate expired". */
static void
verify_fail(struct link *l, uint32_t flags)
{
	char info[384], *p;

	mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
	for (p = info; *p; p++)
		if (*p == '\n')
			*p = p[1] ? ';' : '\0';
	fail(l, "TLS: certificate: %s", info);
}

static void
schedule_flush(struct link *l)
{
	if (!uv_is_active((uv_handle_t *)&l->flush))
		uv_prepare_start(&l->flush, on_flush);
}

static int
rng(void *ctx, unsigned char *p, size_t n)
{
	struct tlsconf *tc = ctx;
	int rc;

	uv_mutex_lock(&tc->lock);
	rc = mbedtls_ctr_drbg_random(&tc->drbg, p, n);
	uv_mutex_unlock(&tc->lock);
	return rc;
}

static void
tlsconf_unref(struct tlsconf *tc)
{
	if (tc == NULL || --tc->refs > 0)
		return;
	mbedtls_ssl_config_free(&tc->conf);
	mbedtls_x509_crt_free(&tc->ca);
	mbedtls_ctr_drbg_free(&tc->drbg);
	mbedtls_entropy_free(&tc->entropy);
	uv_mutex_destroy(&tc->lock);
	free(tc);
}

static int
bio_send(void *ctx, const unsigned char *p, size_t n)
{
	struct conn *c = ctx;

	buf_append(&c->cout, p, n);
	return (int)n;
}

static int
bio_recv(void *ctx, unsigned char *p, size_t n)
{
	struct conn *c = ctx;
	size_t avail = c->cin.len - c->cin_off;

	if (avail == 0)
		return MBEDTLS_ERR_SSL_WANT_READ;
	if (n > avail)
		n = avail;
	memcpy(p, c->cin.data + c->cin_off, n);
	c->cin_off += n;
	return (int)n;
}

static void
conn_release(struct conn *c)
{
	if (c->open || c->crypting)
		return;
	mbedtls_ssl_free(&c->ssl);
	tlsconf_unref(c->tc);
	buf_free(&c->cin);
	buf_free(&c->cout);
	buf_free(&c->dec);
	buf_free(&c->seal);
	free(c);
}

static void
on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	c->open = 0;
	conn_release(c);
}

static void
on_flush_closed(uv_handle_t *h)
{
	free(h->data);
}

struct link *
link_new(uv_loop_t *loop, const struct link_cb *cb, void *arg)
{
	struct link *l = xcalloc(1, sizeof(*l));

	l->loop = loop;
	l->cb = cb;
	l->arg = arg;
	buf_init(&l->rx);
	buf_init(&l->plain);
	buf_init(&l->din);
	buf_init(&l->out);
	buf_init(&l->wbuf);
	uv_prepare_init(loop, &l->flush);
	l->flush.data = l;
	return l;
}

static int
load_ca(mbedtls_x509_crt *ca, const char *file)
{
	int rc;

	if (file != NULL) {
		rc = mbedtls_x509_crt_parse_file(ca, file);
		if (rc < 0) {
			log_error("TLS: cannot load ca_file %s: -0x%04x", file,
			    -rc);
			return -1;
		}
		return 0;
	}
	if (mbedtls_x509_crt_parse_file(ca, SYSTEM_BUNDLE) >= 0)
		return 0;
	if (mbedtls_x509_crt_parse_path(ca, SYSTEM_CADIR) >= 0)
		return 0;
	log_warn("TLS: no system CA bundle found (%s)", SYSTEM_BUNDLE);
	return 0;
}

static struct tlsconf *
tlsconf_new(const struct link_tls *t)
{
	struct tlsconf *tc = xcalloc(1, sizeof(*tc));
	mbedtls_ssl_config *c = &tc->conf;

	tc->refs = 1;
	uv_mutex_init(&tc->lock);
	mbedtls_entropy_init(&tc->entropy);
	mbedtls_ctr_drbg_init(&tc->drbg);
	mbedtls_x509_crt_init(&tc->ca);
	mbedtls_ssl_config_init(c);
	if (mbedtls_ctr_drbg_seed(&tc->drbg, mbedtls_entropy_func,
	    &tc->entropy, (const unsigned char *)"clawsd", 6) != 0) {
		log_error("TLS: cannot seed the random generator");
		goto fail;
	}
	if (load_ca(&tc->ca, t->ca_file) != 0)
		goto fail;
	if (mbedtls_ssl_config_defaults(c, MBEDTLS_SSL_IS_CLIENT,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT) != 0) {
		log_error("TLS: cannot set up the configuration");
		goto fail;
	}
	mbedtls_ssl_conf_min_version(c, MBEDTLS_SSL_MAJOR_VERSION_3,
	    MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_authmode(c, t->verify ? MBEDTLS_SSL_VERIFY_REQUIRED :
	    MBEDTLS_SSL_VERIFY_NONE);
	mbedtls_ssl_conf_ca_chain(c, &tc->ca, NULL);
	mbedtls_ssl_conf_rng(c, rng, tc);
	return tc;
fail:
	tlsconf_unref(tc);
	return NULL;
}

int
link_configure(struct link *l, const struct link_tls *t)
{
	struct tlsconf *tc = tlsconf_new(t);

	if (tc == NULL)
		return -1;
	tlsconf_unref(l->tc);
	l->tc = tc;
	return 0;
}

void
link_close(struct link *l)
{
	if (l->gai != NULL) {
		/* Its callback still runs, sees no owner, and frees it. */
		l->gai->data = NULL;
		uv_cancel((uv_req_t *)l->gai);
		l->gai = NULL;
	}
	if (l->addrs != NULL) {
		uv_freeaddrinfo(l->addrs);
		l->addrs = l->next_addr = NULL;
	}
	if (l->conn != NULL) {
		l->conn->link = NULL;
		uv_close((uv_handle_t *)&l->conn->tcp, on_conn_closed);
		l->conn = NULL;
	}
	l->tls = 0;
	l->writing = 0;
	l->turn_read = 0;
	l->read_paused = 0;
	l->sealing = 0;
	l->rx.len = l->plain.len = l->din.len = 0;
	l->out.len = l->wbuf.len = 0;
	uv_prepare_stop(&l->flush);
	free(l->domain);
	l->domain = NULL;
	l->state = LINK_IDLE;
}

void
link_free(struct link *l)
{
	if (l == NULL)
		return;
	link_close(l);
	tlsconf_unref(l->tc);
	buf_free(&l->rx);
	buf_free(&l->plain);
	buf_free(&l->din);
	buf_free(&l->out);
	buf_free(&l->wbuf);
	uv_close((uv_handle_t *)&l->flush, on_flush_closed);
}

/* Handshake as far as the bytes at hand allow; 1 when it is complete. */
static int
handshake(struct link *l, struct conn *c)
{
	uint32_t flags;
	int rc;

	rc = mbedtls_ssl_handshake(&c->ssl);
	if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
		return 0;
	if (rc != 0) {
		flags = mbedtls_ssl_get_verify_result(&c->ssl);
		if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0)
			verify_fail(l, flags);
		else
			tls_fail(l, "handshake", rc);
		return -1;
	}
	l->state = LINK_OPEN;
	log_debug("TLS: %s with %s", mbedtls_ssl_get_version(&c->ssl),
	    mbedtls_ssl_get_ciphersuite(&c->ssl));
	return 1;
}

/*
 * Decrypt every complete record at hand, then seal the queued plaintext
 * into records as large as they come.  Runs on the loop or in the pool.
 */
static void
crypt_run(struct conn *c)
{
	size_t off;
	int rc;

	c->rc = 0;
	for (;;) {
		buf_reserve(&c->dec, RECORD_MAX);
		rc = mbedtls_ssl_read(&c->ssl,
		    (unsigned char *)c->dec.data + c->dec.len, RECORD_MAX);
		if (rc > 0) {
			c->dec.len += (size_t)rc;
			continue;
		}
		if (rc == MBEDTLS_ERR_SSL_WANT_READ ||
		    rc == MBEDTLS_ERR_SSL_WANT_WRITE)
			break;
		c->rc = rc == 0 ? MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY : rc;
		c->what = "read";
		return;
	}
	if (c->cin_off == c->cin.len)
		c->cin.len = c->cin_off = 0;
	for (off = 0; off < c->seal.len; off += (size_t)rc) {
		rc = mbedtls_ssl_write(&c->ssl,
		    (const unsigned char *)c->seal.data + off,
		    c->seal.len - off);
		if (rc < 0) {
			c->rc = rc;
			c->what = "write";
			return;
		}
	}
	c->seal.len = 0;
}

static void
crypt_work(uv_work_t *w)
{
	crypt_run(w->data);
}

/* Hand what arrived and what was queued to the connection's buffers. */
static size_t
crypt_load(struct link *l, struct conn *c)
{
	if (c->cin_off > 0) {
		buf_consume(&c->cin, c->cin_off);
		c->cin_off = 0;
	}
	if (c->cin.len == 0)
		buf_swap(&c->cin, &l->rx);
	else
		buf_append(&c->cin, l->rx.data, l->rx.len);
	l->rx.len = 0;
	if (c->seal.len == 0)
		buf_swap(&c->seal, &l->plain);
	else
		buf_append(&c->seal, l->plain.data, l->plain.len);
	l->plain.len = 0;
	return c->cin.len + c->seal.len;
}

static void crypt_after(uv_work_t *, int);
static void crypt_kick(struct link *, struct conn *);

/* Queue bytes for the socket, without a copy when nothing waits. */
static void
out_take(struct link *l, struct buf *b)
{
	if (b->len == 0)
		return;
	if (l->out.len == 0)
		buf_swap(&l->out, b);
	else
		buf_append(&l->out, b->data, b->len);
	b->len = 0;
	schedule_flush(l);
}

/* Start a pass in the pool when there is enough work for one. */
static int
crypt_offload(struct link *l, struct conn *c)
{
	if (c->crypting || l->rx.len + l->plain.len < OFFLOAD_MIN)
		return 0;
	crypt_load(l, c);
	l->sealing = c->seal.len;
	c->work.data = c;
	if (uv_queue_work(l->loop, &c->work, crypt_work, crypt_after) != 0)
		return 0;
	c->crypting = 1;
	return 1;
}

/*
 * Once a burst is over in both directions, give back what it made the
 * buffers grow to, and what the lines made of them left free in the heap.
 * Not before: freed pages faulted back in cost more than the copies.
 */
static void
trim(struct link *l, struct conn *c)
{
	struct buf *b[] = { &l->rx, &l->plain, &l->din, &l->out, &l->wbuf,
	    &c->cin, &c->cout, &c->dec, &c->seal };
	size_t i, cap = 0;

	if (c->crypting || l->writing || l->rx.len > 0 || l->plain.len > 0 ||
	    l->out.len > 0 || c->cin.len > 0)
		return;
	for (i = 0; i < sizeof(b) / sizeof(b[0]); i++)
		cap += b[i]->cap;
	if (cap <= sizeof(b) / sizeof(b[0]) * BUF_KEEP)
		return;
	for (i = 0; i < sizeof(b) / sizeof(b[0]); i++)
		buf_reset(b[i], BUF_KEEP);
	malloc_trim(0);
}

/*
 * Take what a pass made: ciphertext to the socket, plaintext to the
 * session.  The next batch goes to the pool before this one is delivered,
 * so that decryption and parsing overlap.
 */
static void
crypt_done(struct link *l, struct conn *c)
{
	int rc = c->rc;
	const char *what = c->what;

	l->sealing = 0;
	out_take(l, &c->cout);
	buf_swap(&c->dec, &l->din);
	if (rc == 0)
		crypt_offload(l, c);
	if (l->din.len > 0)
		l->cb->data(l->arg, l->din.data, l->din.len);
	if (l->conn != c)
		return;
	l->din.len = 0;
	if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
		fail(l, "connection closed by the server");
	else if (rc != 0)
		tls_fail(l, what, rc);
	else
		schedule_flush(l);
}

static void
crypt_after(uv_work_t *w, int status)
{
	struct conn *c = w->data;

	(void)status;
	c->crypting = 0;
	if (c->link == NULL) {
		conn_release(c);
		return;
	}
	crypt_done(c->link, c);
	/*
	 * What arrived meanwhile and was too little for the pool is
	 * decrypted now, not in on_flush: lines made in a prepare callback
	 * could wait for the next event before they are written.
	 */
	if (c->link != NULL && !c->crypting && c->link->rx.len > 0)
		crypt_kick(c->link, c);
}

/* Move the TLS session on with what the socket and the session gave. */
static void
crypt_kick(struct link *l, struct conn *c)
{
	int rc;

	if (c->crypting || crypt_offload(l, c))
		return;
	if (crypt_load(l, c) == 0 && l->state == LINK_OPEN)
		return;
	while (l->state == LINK_HANDSHAKE) {
		rc = handshake(l, c);
		if (rc < 0)
			return;
		out_take(l, &c->cout);
		if (rc == 0)
			return;
		if (l->direct)
			l->cb->connected(l->arg);
		else
			l->cb->secured(l->arg);
		if (l->conn != c)
			return;
		crypt_load(l, c);
	}
	crypt_run(c);
	crypt_done(l, c);
}

static int
tls_start(struct link *l, struct conn *c)
{
	int rc;

	if (l->tc == NULL) {
		fail(l, "TLS: not configured");
		return -1;
	}
	c->tc = l->tc;
	c->tc->refs++;
	rc = mbedtls_ssl_setup(&c->ssl, &c->tc->conf);
	if (rc == 0)
		rc = mbedtls_ssl_set_hostname(&c->ssl, l->domain);
	if (rc != 0) {
		tls_fail(l, "setup", rc);
		return -1;
	}
	mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
	l->tls = 1;
	l->state = LINK_HANDSHAKE;
	crypt_kick(l, c);
	return 0;
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct conn *c = h->data;

	struct link *l = c->link;

	(void)suggested;
	/* Ciphertext is read where it waits for mbedtls: no copy. */
	if (l->tls) {
		buf_reserve(&l->rx, READ_SIZE);
		b->base = l->rx.data + l->rx.len;
		b->len = READ_SIZE;
		return;
	}
	b->base = l->rbuf;
	b->len = sizeof(l->rbuf);
}

static void
pause_reading(struct link *l, struct conn *c)
{
	uv_read_stop((uv_stream_t *)&c->tcp);
	l->read_paused = 1;
	schedule_flush(l);
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = s->data;
	struct link *l = c->link;

	if (l == NULL || n == 0)
		return;
	if (n < 0) {
		if (n == UV_EOF)
			fail(l, "connection closed by the server");
		else
			fail(l, "TCP: read: %s", uv_strerror((int)n));
		return;
	}
	if (!l->tls)
		l->cb->data(l->arg, b->base, (size_t)n);
	else {
		l->rx.len += (size_t)n;
		crypt_kick(l, c);
	}
	if (l->conn != c)
		return;
	l->turn_read += (size_t)n;
	if (l->turn_read >= READ_BUDGET || l->rx.len >= RX_MAX)
		pause_reading(l, c);
}

static void
on_write(uv_write_t *req, int status)
{
	struct conn *c = req->data;
	struct link *l = c->link;

	if (l == NULL)
		return;
	l->writing = 0;
	l->wbuf.len = 0;
	if (status < 0) {
		fail(l, "TCP: write: %s", uv_strerror(status));
		return;
	}
	if (link_pending(l) > 0)
		schedule_flush(l);
	else
		trim(l, c);
	l->cb->written(l->arg);
}

static void
on_flush(uv_prepare_t *p)
{
	struct link *l = p->data;
	struct conn *c = l->conn;
	uv_buf_t b;
	int rc;

	uv_prepare_stop(p);
	if (c == NULL)
		return;
	l->turn_read = 0;
	if (l->read_paused && l->rx.len < RX_MAX) {
		l->read_paused = 0;
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	}
	if (l->state < LINK_HANDSHAKE)
		return;
	if (l->tls && l->state == LINK_OPEN) {
		crypt_kick(l, c);
		if (l->conn != c)
			return;
	} else if (!l->tls)
		out_take(l, &l->plain);
	if (l->writing || l->out.len == 0) {
		trim(l, c);
		return;
	}
	buf_swap(&l->out, &l->wbuf);
	b = uv_buf_init(l->wbuf.data, (unsigned)l->wbuf.len);
	c->wreq.data = c;
	rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (rc < 0) {
		fail(l, "TCP: write: %s", uv_strerror(rc));
		return;
	}
	l->writing = 1;
}

static void try_next(struct link *);

/* This address did not answer: keep why, drop its socket, try the next. */
static void
address_failed(struct link *l, struct conn *c, int err)
{
	snprintf(l->reason, sizeof(l->reason), "TCP: connect %s: %s",
	    l->peer, uv_strerror(err));
	log_info("%s", l->reason);
	l->conn = NULL;
	c->link = NULL;
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
	try_next(l);
}

static void
on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	struct link *l = c->link;

	if (l == NULL)
		return;
	if (status < 0) {
		address_failed(l, c, status);
		return;
	}
	log_debug("TCP: connected to %s", l->peer);
	uv_tcp_nodelay(&c->tcp, 1);
	uv_tcp_keepalive(&c->tcp, 1, 60);
	uv_freeaddrinfo(l->addrs);
	l->addrs = l->next_addr = NULL;
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (l->direct) {
		tls_start(l, c);
		return;
	}
	l->state = LINK_OPEN;
	l->cb->connected(l->arg);
}

static void
format_peer(struct link *l, const struct sockaddr *sa)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET6) {
		uv_ip6_name((const struct sockaddr_in6 *)sa, host,
		    sizeof(host));
		snprintf(l->peer, sizeof(l->peer), "[%s]:%s", host, l->port);
	} else {
		uv_ip4_name((const struct sockaddr_in *)sa, host,
		    sizeof(host));
		snprintf(l->peer, sizeof(l->peer), "%s:%s", host, l->port);
	}
}

/* Connect to the next address of the list; every one is tried in order. */
static void
try_next(struct link *l)
{
	struct addrinfo *ai = l->next_addr;
	struct conn *c;
	int rc;

	if (ai == NULL) {
		fail(l, "%s",
		    l->reason[0] ? l->reason : "TCP: no address to try");
		return;
	}
	l->next_addr = ai->ai_next;
	format_peer(l, ai->ai_addr);
	c = xcalloc(1, sizeof(*c));
	c->link = l;
	uv_tcp_init(l->loop, &c->tcp);
	c->tcp.data = c;
	c->creq.data = c;
	c->open = 1;
	mbedtls_ssl_init(&c->ssl);
	l->conn = c;
	l->state = LINK_CONNECTING;
	rc = uv_tcp_connect(&c->creq, &c->tcp, ai->ai_addr, on_connect);
	if (rc < 0)
		address_failed(l, c, rc);
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct link *l = req->data;

	free(req);
	if (l == NULL) {
		uv_freeaddrinfo(res);
		return;
	}
	l->gai = NULL;
	if (status < 0) {
		fail(l, "DNS: %s", uv_strerror(status));
		return;
	}
	l->addrs = l->next_addr = res;
	l->reason[0] = '\0';
	try_next(l);
}

void
link_connect(struct link *l, const char *host, int port, const char *domain,
    int direct)
{
	struct addrinfo hints;
	int rc;

	link_close(l);
	l->domain = xstrdup(domain);
	l->direct = direct;
	snprintf(l->port, sizeof(l->port), "%d", port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	l->gai = xcalloc(1, sizeof(*l->gai));
	l->gai->data = l;
	l->state = LINK_RESOLVING;
	rc = uv_getaddrinfo(l->loop, l->gai, on_resolved, host, l->port,
	    &hints);
	if (rc < 0) {
		free(l->gai);
		l->gai = NULL;
		fail(l, "DNS: %s: %s", host, uv_strerror(rc));
	}
}

void
link_starttls(struct link *l)
{
	if (l->state != LINK_OPEN || l->tls) {
		fail(l, "TLS: STARTTLS in the wrong state");
		return;
	}
	/* Plaintext sent after <proceed/> could only be an attack: drop it. */
	l->plain.len = 0;
	tls_start(l, l->conn);
}

int
link_encrypted(const struct link *l)
{
	return l->tls && l->state == LINK_OPEN;
}

void
link_write(struct link *l, const char *data, size_t len)
{
	if (l->conn == NULL)
		return;
	buf_append(&l->plain, data, len);
	schedule_flush(l);
}

size_t
link_pending(const struct link *l)
{
	return l->plain.len + l->sealing + l->out.len + l->wbuf.len;
}
