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
#include "compat_mbedtls.h"
#include "link.h"
#include "log.h"

#define READ_SIZE	65536
/* Plaintext of one TLS record, at most. */
#define RECORD_MAX	16384
/*
 * libuv reads up to 32 buffers in one go; after this many bytes the link
 * yields until the next loop turn, so that the lines they made reach the
 * subscribers before more arrive.
 */
#define READ_BUDGET	(4 * READ_SIZE)
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
 * Trust anchors and settings.  A TLS session keeps the one it started
 * with, so a reload never changes them under an open connection.
 */
struct tlsconf {
	mbedtls_entropy_context	 entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt	 ca;
	mbedtls_ssl_config	 conf;
	int			 verify;
	int			 refs;
};

/* One TCP connection; freed once libuv has closed its handle. */
struct conn {
	uv_tcp_t	 tcp;
	uv_connect_t	 creq;
	uv_write_t	 wreq;
	struct link	*link;		/* NULL once abandoned */
};

/*
 * Everything runs on the loop: ciphertext is read into `rx', where
 * mbedtls reads it from; each record is opened into `rbuf' and handed to
 * the session; the session's bytes wait in `plain' and are sealed into
 * `out' once per loop turn, just before the write.
 */
struct link {
	uv_loop_t		*loop;
	const struct link_cb	*cb;
	void			*arg;
	struct tlsconf		*tc;		/* for the next TLS session */

	enum link_state		 state;
	uv_getaddrinfo_t	*gai;
	struct addrinfo		*addrs, *next_addr;
	struct conn		*conn;
	char			*domain;
	char			 port[8];
	char			 peer[INET6_ADDRSTRLEN + 16];
	int			 direct;
	struct tlsconf		*stc;		/* the session's; NULL: no TLS */
	mbedtls_ssl_context	 ssl;
	int			 offered;	/* a session to resume */
	int			 certified;	/* a certificate was checked */
	/*
	 * The last session with a verified server, to resume the next
	 * connection to that name, under the settings of `tc' (a reload
	 * forgets it).  Memory only: it holds the keys of the connection.
	 */
	mbedtls_ssl_session	 resume;
	char			*resume_domain;	/* NULL: none kept */
	struct buf		 rx;		/* ciphertext from the socket */
	size_t			 rx_off;	/* of it, what mbedtls took */
	struct buf		 plain;		/* bytes not yet sealed */
	struct buf		 out;		/* bytes for the next write */
	struct buf		 wbuf;		/* bytes being written */
	int			 writing;
	size_t			 turn_read;	/* bytes since the last yield */
	int			 read_paused;
	uv_prepare_t		 flush;		/* active while connected */
	char			 reason[512];
	char			 rbuf[READ_SIZE];	/* plaintext */
};

static void on_alloc(uv_handle_t *, size_t, uv_buf_t *);
static void on_read(uv_stream_t *, ssize_t, const uv_buf_t *);
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

/* Forget the session kept to resume; mbedtls wipes its keys. */
static void
resume_forget(struct link *l)
{
	mbedtls_ssl_session_free(&l->resume);
	mbedtls_ssl_session_init(&l->resume);
	free(l->resume_domain);
	l->resume_domain = NULL;
}

/*
 * Keep the connection's session (the one of TLS 1.2, a TLS 1.3 ticket),
 * if its certificate was verified under the settings the next connection
 * will have: a resumed session is not verified again.
 */
static void
resume_keep(struct link *l)
{
	if (!l->stc->verify || l->stc != l->tc)
		return;
	resume_forget(l);
	if (mbedtls_ssl_get_session(&l->ssl, &l->resume) != 0) {
		resume_forget(l);
		return;
	}
	l->resume_domain = xstrdup(l->domain);
	log_debug("TLS: session kept to resume");
}

/* Offer the kept session if it is for this name, once (RFC 8446, C.4). */
static void
resume_offer(struct link *l)
{
	l->offered = l->resume_domain != NULL &&
	    strcmp(l->resume_domain, l->domain) == 0 &&
	    mbedtls_ssl_set_session(&l->ssl, &l->resume) == 0;
	resume_forget(l);
}

/* Called for each certificate checked: only a full handshake has them. */
static int
on_verify(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct link *l = arg;

	(void)crt;
	(void)depth;
	(void)flags;
	l->certified = 1;
	return 0;
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
	free(tc);
}

/* Records mbedtls writes go straight to the next write. */
static int
bio_send(void *ctx, const unsigned char *p, size_t n)
{
	struct link *l = ctx;

	buf_append(&l->out, p, n);
	return (int)n;
}

static int
bio_recv(void *ctx, unsigned char *p, size_t n)
{
	struct link *l = ctx;
	size_t avail = l->rx.len - l->rx_off;

	if (avail == 0)
		return MBEDTLS_ERR_SSL_WANT_READ;
	if (n > avail)
		n = avail;
	memcpy(p, l->rx.data + l->rx_off, n);
	l->rx_off += n;
	return (int)n;
}

static void
on_conn_closed(uv_handle_t *h)
{
	free(h->data);
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
	int rc;

	rc = uv_prepare_init(loop, &l->flush);
	if (rc != 0) {
		log_error("link: %s", uv_strerror(rc));
		free(l);
		return NULL;
	}
	l->loop = loop;
	l->cb = cb;
	l->arg = arg;
	mbedtls_ssl_init(&l->ssl);
	mbedtls_ssl_session_init(&l->resume);
	buf_init(&l->rx);
	buf_init(&l->plain);
	buf_init(&l->out);
	buf_init(&l->wbuf);
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
	compat_ssl_conf_versions(c);
	compat_ssl_conf_resumption(c);
	tc->verify = t->verify;
	mbedtls_ssl_conf_authmode(c, t->verify ? MBEDTLS_SSL_VERIFY_REQUIRED :
	    MBEDTLS_SSL_VERIFY_NONE);
	mbedtls_ssl_conf_ca_chain(c, &tc->ca, NULL);
	mbedtls_ssl_conf_rng(c, mbedtls_ctr_drbg_random, &tc->drbg);
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
	resume_forget(l);
	return 0;
}

void
link_close(struct link *l)
{
	if (l->gai != NULL) {
		/*
		 * Cancelled, or already running (EBUSY): either way its
		 * callback runs, sees no owner, and frees it.
		 */
		l->gai->data = NULL;
		(void)uv_cancel((uv_req_t *)l->gai);
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
	mbedtls_ssl_free(&l->ssl);
	mbedtls_ssl_init(&l->ssl);
	tlsconf_unref(l->stc);
	l->stc = NULL;
	l->writing = 0;
	l->turn_read = 0;
	l->read_paused = 0;
	l->rx.len = l->rx_off = 0;
	l->plain.len = l->out.len = l->wbuf.len = 0;
	(void)uv_prepare_stop(&l->flush);	/* cannot fail */
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
	resume_forget(l);
	buf_free(&l->rx);
	buf_free(&l->plain);
	buf_free(&l->out);
	buf_free(&l->wbuf);
	uv_close((uv_handle_t *)&l->flush, on_flush_closed);
}

/* Handshake as far as the bytes at hand allow; 1 when it is complete. */
static int
handshake(struct link *l)
{
	uint32_t flags;
	int rc, resumed;

	rc = mbedtls_ssl_handshake(&l->ssl);
	if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
		return 0;
	if (rc != 0) {
		flags = mbedtls_ssl_get_verify_result(&l->ssl);
		if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0)
			verify_fail(l, flags);
		else
			tls_fail(l, "handshake", rc);
		return -1;
	}
	l->state = LINK_OPEN;
	resumed = l->offered && !l->certified;
	log_info("TLS: %s with %s%s", mbedtls_ssl_get_version(&l->ssl),
	    mbedtls_ssl_get_ciphersuite(&l->ssl), resumed ? " (resumed)" : "");
	if (l->offered && !resumed)
		log_debug("TLS: the server did not resume the session");
	if (!compat_ssl_is_tls13(&l->ssl))
		resume_keep(l);
	return 1;
}

/* Plaintext to the session; 0 if the link is still the same one after. */
static int
deliver(struct link *l, const char *data, size_t len)
{
	struct conn *c = l->conn;

	l->cb->data(l->arg, data, len);
	return l->conn == c ? 0 : -1;
}

/*
 * Open every complete record at hand, and hand each to the session at
 * once, while its plaintext is still in the cache (make bench: a little
 * faster than batches of 64 KiB).  A record cut by the end of the read
 * waits in `rx' for the rest.
 */
static void
tls_open(struct link *l)
{
	int rc, again = 0;

	for (;;) {
		rc = mbedtls_ssl_read(&l->ssl, (unsigned char *)l->rbuf,
		    RECORD_MAX);
		if (rc > 0) {
			if (deliver(l, l->rbuf, (size_t)rc) != 0)
				return;
			again = 0;
		} else if (compat_ssl_new_ticket(rc)) {
			resume_keep(l);
			again = 0;
		} else if (rc == MBEDTLS_ERR_SSL_WANT_READ && !again &&
		    mbedtls_ssl_check_pending(&l->ssl)) {
			/* A record held back (a ticket), or one cut short. */
			again = 1;
		} else
			break;
	}
	if (l->rx_off == l->rx.len)
		l->rx.len = l->rx_off = 0;
	if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
		return;
	if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
		fail(l, "connection closed by the server");
	else
		tls_fail(l, "read", rc);
}

/* Move the TLS session on with the ciphertext at hand. */
static void
tls_input(struct link *l)
{
	struct conn *c = l->conn;
	int rc;

	if (l->state == LINK_HANDSHAKE) {
		rc = handshake(l);
		if (rc <= 0)
			return;
		if (l->direct)
			l->cb->connected(l->arg);
		else
			l->cb->secured(l->arg);
		if (l->conn != c)
			return;
	}
	tls_open(l);
}

static void
tls_start(struct link *l)
{
	int rc;

	if (l->tc == NULL) {
		fail(l, "TLS: not configured");
		return;
	}
	l->stc = l->tc;
	l->stc->refs++;
	rc = mbedtls_ssl_setup(&l->ssl, &l->stc->conf);
	if (rc == 0)
		rc = mbedtls_ssl_set_hostname(&l->ssl, l->domain);
	if (rc != 0) {
		tls_fail(l, "setup", rc);
		return;
	}
	mbedtls_ssl_set_verify(&l->ssl, on_verify, l);
	l->certified = 0;
	resume_offer(l);
	mbedtls_ssl_set_bio(&l->ssl, l, bio_send, bio_recv, NULL);
	l->state = LINK_HANDSHAKE;
	tls_input(l);
}

/* Seal what the session wrote into records, as large as they come. */
static int
tls_seal(struct link *l)
{
	size_t off;
	int rc;

	for (off = 0; off < l->plain.len; off += (size_t)rc) {
		rc = mbedtls_ssl_write(&l->ssl,
		    (const unsigned char *)l->plain.data + off,
		    l->plain.len - off);
		if (rc < 0) {
			tls_fail(l, "write", rc);
			return -1;
		}
	}
	l->plain.len = 0;
	return 0;
}

/*
 * Once a burst is over in both directions, give back what it made the
 * buffers grow to, and what the lines made of them left free in the heap.
 * Not before: freed pages faulted back in cost more than the copies.
 */
static void
trim(struct link *l)
{
	struct buf *b[] = { &l->rx, &l->plain, &l->out, &l->wbuf };
	size_t i, cap = 0;

	if (l->writing || l->rx.len > 0 || l->plain.len > 0 || l->out.len > 0)
		return;
	for (i = 0; i < sizeof(b) / sizeof(b[0]); i++)
		cap += b[i]->cap;
	if (cap <= sizeof(b) / sizeof(b[0]) * BUF_KEEP)
		return;
	for (i = 0; i < sizeof(b) / sizeof(b[0]); i++)
		buf_reset(b[i], BUF_KEEP);
	malloc_trim(0);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct conn *c = h->data;
	struct link *l = c->link;

	(void)suggested;
	if (l->stc == NULL) {
		b->base = l->rbuf;
		b->len = sizeof(l->rbuf);
		return;
	}
	/*
	 * Ciphertext is read where mbedtls reads it from: no copy.  What
	 * it took goes once there is no room behind the rest.
	 */
	if (l->rx.cap - l->rx.len <= READ_SIZE && l->rx_off > 0) {
		buf_consume(&l->rx, l->rx_off);
		l->rx_off = 0;
	}
	buf_reserve(&l->rx, READ_SIZE);
	b->base = l->rx.data + l->rx.len;
	b->len = READ_SIZE;
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
	if (l->stc == NULL)
		l->cb->data(l->arg, b->base, (size_t)n);
	else {
		l->rx.len += (size_t)n;
		tls_input(l);
	}
	if (l->conn != c)
		return;
	l->turn_read += (size_t)n;
	if (l->turn_read >= READ_BUDGET) {
		(void)uv_read_stop(s);		/* cannot fail */
		l->read_paused = 1;
	}
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
	l->cb->written(l->arg);
}

/* Queue bytes for the socket, without a copy when nothing waits. */
static void
out_take(struct link *l, struct buf *b)
{
	if (l->out.len == 0)
		buf_swap(&l->out, b);
	else
		buf_append(&l->out, b->data, b->len);
	b->len = 0;
}

/*
 * Once a loop turn, before it blocks: read again after a yield, seal what
 * the session wrote in this turn, and write everything in one request.
 */
static void
on_flush(uv_prepare_t *p)
{
	struct link *l = p->data;
	struct conn *c = l->conn;
	uv_buf_t b;
	int rc;

	l->turn_read = 0;
	if (l->read_paused) {
		l->read_paused = 0;
		rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
		if (rc != 0) {
			fail(l, "TCP: read: %s", uv_strerror(rc));
			return;
		}
	}
	if (l->state == LINK_OPEN && l->stc != NULL) {
		if (tls_seal(l) != 0)
			return;
	} else if (l->state == LINK_OPEN)
		out_take(l, &l->plain);
	if (l->writing || l->out.len == 0) {
		trim(l);
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
	int rc;

	if (l == NULL)
		return;
	if (status < 0) {
		address_failed(l, c, status);
		return;
	}
	log_debug("TCP: connected to %s", l->peer);
	uv_freeaddrinfo(l->addrs);
	l->addrs = l->next_addr = NULL;
	rc = uv_tcp_nodelay(&c->tcp, 1);
	if (rc == 0)
		rc = uv_tcp_keepalive(&c->tcp, 1, 60);
	if (rc == 0)
		rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rc == 0)
		rc = uv_prepare_start(&l->flush, on_flush);
	if (rc != 0) {
		fail(l, "TCP: %s: %s", l->peer, uv_strerror(rc));
		return;
	}
	if (l->direct) {
		tls_start(l);
		return;
	}
	l->state = LINK_OPEN;
	l->cb->connected(l->arg);
}

static void
format_peer(struct link *l, const struct sockaddr *sa)
{
	char host[INET6_ADDRSTRLEN];
	int rc;

	if (sa->sa_family == AF_INET6)
		rc = uv_ip6_name((const struct sockaddr_in6 *)sa, host,
		    sizeof(host));
	else
		rc = uv_ip4_name((const struct sockaddr_in *)sa, host,
		    sizeof(host));
	if (rc != 0)
		snprintf(host, sizeof(host), "?");
	snprintf(l->peer, sizeof(l->peer),
	    sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, l->port);
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
	rc = uv_tcp_init(l->loop, &c->tcp);
	if (rc != 0) {
		free(c);
		fail(l, "TCP: %s", uv_strerror(rc));
		return;
	}
	c->link = l;
	c->tcp.data = c;
	c->creq.data = c;
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
	if (l->state != LINK_OPEN || l->stc != NULL) {
		fail(l, "TLS: STARTTLS in the wrong state");
		return;
	}
	/* Plaintext sent after <proceed/> could only be an attack: drop it. */
	l->plain.len = 0;
	tls_start(l);
}

int
link_encrypted(const struct link *l)
{
	return l->stc != NULL && l->state == LINK_OPEN;
}

/* RFC 9266: 32 bytes, as long as the tls-unique it replaces. */
#define EXPORTER_LEN	32

const char *
link_cb_types(struct link *l)
{
	unsigned char probe[EXPORTER_LEN];

	if (!link_encrypted(l))
		return "";
	/* The library decides whether it can: ask it. */
	if (compat_tls_exporter(&l->ssl, probe, sizeof(probe)) == 0)
		return "tls-exporter tls-server-end-point";
	return "tls-server-end-point";
}

/*
 * RFC 5929 section 4.1: the server certificate hashed with the hash of its
 * signature algorithm, SHA-256 in place of MD5 and SHA-1.
 */
static int
server_end_point(struct link *l, unsigned char *out, size_t size)
{
	const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&l->ssl);
	const mbedtls_md_info_t *md;
	mbedtls_md_type_t type;

	if (crt == NULL)
		return -1;
	type = compat_crt_sig_md(crt);
	if (type == MBEDTLS_MD_MD5 || type == MBEDTLS_MD_SHA1)
		type = MBEDTLS_MD_SHA256;
	md = mbedtls_md_info_from_type(type);
	if (md == NULL || mbedtls_md_get_size(md) > size ||
	    mbedtls_md(md, crt->raw.p, crt->raw.len, out) != 0)
		return -1;
	return mbedtls_md_get_size(md);
}

int
link_cb_data(struct link *l, const char *type, unsigned char *out,
    size_t size)
{
	if (!link_encrypted(l))
		return -1;
	if (strcmp(type, "tls-exporter") == 0) {
		if (size < EXPORTER_LEN ||
		    compat_tls_exporter(&l->ssl, out, EXPORTER_LEN) == -1)
			return -1;
		return EXPORTER_LEN;
	}
	if (strcmp(type, "tls-server-end-point") == 0)
		return server_end_point(l, out, size);
	return -1;
}

/* The flush handle, active while connected, writes it this loop turn. */
void
link_write(struct link *l, const char *data, size_t len)
{
	if (l->conn == NULL)
		return;
	buf_append(&l->plain, data, len);
}

size_t
link_pending(const struct link *l)
{
	return l->plain.len + l->out.len + l->wbuf.len;
}
