#include <netinet/in.h>
#include <arpa/inet.h>
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
#define SYSTEM_BUNDLE	"/etc/ssl/certs/ca-certificates.crt"
#define SYSTEM_CADIR	"/etc/ssl/certs"

enum link_state {
	LINK_IDLE,
	LINK_RESOLVING,
	LINK_CONNECTING,
	LINK_HANDSHAKE,
	LINK_OPEN,
};

/* One TCP connection; freed when libuv has closed its handle. */
struct conn {
	uv_tcp_t	 tcp;
	uv_connect_t	 creq;
	uv_write_t	 wreq;
	struct link	*link;		/* NULL once abandoned */
};

struct link {
	uv_loop_t		*loop;
	const struct link_cb	*cb;
	void			*arg;

	mbedtls_entropy_context	 entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt	 ca;
	mbedtls_ssl_config	 tlsconf;
	int			 configured;

	enum link_state		 state;
	uv_getaddrinfo_t	*gai;
	struct addrinfo		*addrs, *next_addr;
	struct conn		*conn;
	char			*domain;
	char			 port[8];
	char			 peer[INET6_ADDRSTRLEN + 16];
	int			 direct;
	int			 tls;		/* TLS layer in use */
	mbedtls_ssl_context	 ssl;
	struct buf		 cin;		/* ciphertext received */
	size_t			 cin_off;
	struct buf		 plain;		/* plaintext not yet encrypted */
	struct buf		 out;		/* bytes for the next write */
	struct buf		 wbuf;		/* bytes being written */
	int			 writing;
	size_t			 turn_read;	/* bytes since the last yield */
	int			 read_paused;
	uv_prepare_t		 flush;
	char			 reason[512];
	char			 rbuf[READ_SIZE];
	char			 pbuf[16384];
};

static void on_flush(uv_prepare_t *);

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
bio_send(void *ctx, const unsigned char *p, size_t n)
{
	struct link *l = ctx;

	buf_append(&l->out, p, n);
	schedule_flush(l);
	return (int)n;
}

static int
bio_recv(void *ctx, unsigned char *p, size_t n)
{
	struct link *l = ctx;
	size_t avail = l->cin.len - l->cin_off;

	if (avail == 0)
		return MBEDTLS_ERR_SSL_WANT_READ;
	if (n > avail)
		n = avail;
	memcpy(p, l->cin.data + l->cin_off, n);
	l->cin_off += n;
	return (int)n;
}

struct link *
link_new(uv_loop_t *loop, const struct link_cb *cb, void *arg)
{
	struct link *l = xcalloc(1, sizeof(*l));

	l->loop = loop;
	l->cb = cb;
	l->arg = arg;
	mbedtls_entropy_init(&l->entropy);
	mbedtls_ctr_drbg_init(&l->drbg);
	mbedtls_x509_crt_init(&l->ca);
	mbedtls_ssl_config_init(&l->tlsconf);
	mbedtls_ssl_init(&l->ssl);
	if (mbedtls_ctr_drbg_seed(&l->drbg, mbedtls_entropy_func,
	    &l->entropy, (const unsigned char *)"clawsd", 6) != 0) {
		log_error("TLS: cannot seed the random generator");
		link_free(l);
		return NULL;
	}
	buf_init(&l->cin);
	buf_init(&l->plain);
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

int
link_configure(struct link *l, const struct link_tls *t)
{
	mbedtls_ssl_config *c = &l->tlsconf;

	mbedtls_x509_crt_free(&l->ca);
	mbedtls_x509_crt_init(&l->ca);
	mbedtls_ssl_config_free(c);
	mbedtls_ssl_config_init(c);
	l->configured = 0;
	if (load_ca(&l->ca, t->ca_file) != 0)
		return -1;
	if (mbedtls_ssl_config_defaults(c, MBEDTLS_SSL_IS_CLIENT,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT) != 0) {
		log_error("TLS: cannot set up the configuration");
		return -1;
	}
	mbedtls_ssl_conf_min_version(c, MBEDTLS_SSL_MAJOR_VERSION_3,
	    MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_authmode(c, t->verify ? MBEDTLS_SSL_VERIFY_REQUIRED :
	    MBEDTLS_SSL_VERIFY_NONE);
	mbedtls_ssl_conf_ca_chain(c, &l->ca, NULL);
	mbedtls_ssl_conf_rng(c, mbedtls_ctr_drbg_random, &l->drbg);
	l->configured = 1;
	return 0;
}

static void
on_conn_closed(uv_handle_t *h)
{
	free(h->data);
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
	mbedtls_ssl_free(&l->ssl);
	mbedtls_ssl_init(&l->ssl);
	l->tls = 0;
	l->writing = 0;
	l->turn_read = 0;
	l->read_paused = 0;
	l->cin.len = l->cin_off = 0;
	l->plain.len = l->out.len = l->wbuf.len = 0;
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
	mbedtls_ssl_config_free(&l->tlsconf);
	mbedtls_x509_crt_free(&l->ca);
	mbedtls_ctr_drbg_free(&l->drbg);
	mbedtls_entropy_free(&l->entropy);
	buf_free(&l->cin);
	buf_free(&l->plain);
	buf_free(&l->out);
	buf_free(&l->wbuf);
	uv_close((uv_handle_t *)&l->flush, on_conn_closed);
}

/* Handshake as far as the bytes at hand allow; 1 when it is complete. */
static int
handshake(struct link *l)
{
	uint32_t flags;
	int rc;

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
	log_debug("TLS: %s with %s", mbedtls_ssl_get_version(&l->ssl),
	    mbedtls_ssl_get_ciphersuite(&l->ssl));
	return 1;
}

static int
tls_start(struct link *l)
{
	int rc;

	if (!l->configured) {
		fail(l, "TLS: not configured");
		return -1;
	}
	rc = mbedtls_ssl_setup(&l->ssl, &l->tlsconf);
	if (rc == 0)
		rc = mbedtls_ssl_set_hostname(&l->ssl, l->domain);
	if (rc != 0) {
		tls_fail(l, "setup", rc);
		return -1;
	}
	mbedtls_ssl_set_bio(&l->ssl, l, bio_send, bio_recv, NULL);
	l->tls = 1;
	l->state = LINK_HANDSHAKE;
	return handshake(l);
}

/* Decrypt what has arrived and pass it on, until mbedtls wants more. */
static void
tls_input(struct link *l, struct conn *c)
{
	int rc, was_handshake;

	while (l->conn == c) {
		if (l->state == LINK_HANDSHAKE) {
			was_handshake = l->direct;
			rc = handshake(l);
			if (rc <= 0)
				break;
			if (was_handshake)
				l->cb->connected(l->arg);
			else
				l->cb->secured(l->arg);
			schedule_flush(l);
			continue;
		}
		rc = mbedtls_ssl_read(&l->ssl, (unsigned char *)l->pbuf,
		    sizeof(l->pbuf));
		if (rc > 0) {
			l->cb->data(l->arg, l->pbuf, (size_t)rc);
			continue;
		}
		if (rc == MBEDTLS_ERR_SSL_WANT_READ ||
		    rc == MBEDTLS_ERR_SSL_WANT_WRITE)
			break;
		if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
			fail(l, "connection closed by the server");
		else
			tls_fail(l, "read", rc);
		return;
	}
	if (l->conn != c)
		return;
	if (l->cin_off == l->cin.len) {
		l->cin.len = l->cin_off = 0;
		buf_reset(&l->cin, 1 << 20);
	}
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct conn *c = h->data;

	b->base = c->link->rbuf;
	b->len = sizeof(c->link->rbuf);
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
		if (l->cin_off > 0 && l->cin_off == l->cin.len)
			l->cin.len = l->cin_off = 0;
		buf_append(&l->cin, b->base, (size_t)n);
		tls_input(l, c);
	}
	if (l->conn != c)
		return;
	l->turn_read += (size_t)n;
	if (l->turn_read >= READ_BUDGET) {
		uv_read_stop(s);
		l->read_paused = 1;
		schedule_flush(l);
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
	if (l->out.len > 0 || l->plain.len > 0)
		schedule_flush(l);
	else
		l->cb->drained(l->arg);
}

/* Seal the pending plaintext into TLS records, as large as they come. */
static int
encrypt_pending(struct link *l)
{
	size_t off = 0;
	int rc;

	while (off < l->plain.len) {
		rc = mbedtls_ssl_write(&l->ssl,
		    (const unsigned char *)l->plain.data + off,
		    l->plain.len - off);
		if (rc < 0) {
			tls_fail(l, "write", rc);
			return -1;
		}
		off += (size_t)rc;
	}
	l->plain.len = 0;
	return 0;
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
	if (l->read_paused) {
		l->read_paused = 0;
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	}
	if (l->writing || l->state < LINK_HANDSHAKE)
		return;
	if (l->state == LINK_OPEN && l->plain.len > 0) {
		if (!l->tls)
			buf_swap(&l->plain, &l->out);
		else if (encrypt_pending(l) != 0)
			return;
	}
	if (l->out.len == 0)
		return;
	buf_swap(&l->out, &l->wbuf);
	buf_reset(&l->out, 1 << 20);
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
		tls_start(l);
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
	tls_start(l);
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
	return l->plain.len + l->out.len + l->wbuf.len;
}
