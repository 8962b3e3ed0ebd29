/*
 * xmppd: a synthetic XMPP server for the benchmark (tests/bench/README.md).
 *
 * Single-threaded, epoll, mbedtls.  It speaks just enough XMPP for a client
 * to log in: stream header, features with STARTTLS (and direct TLS on a
 * second port), SASL SCRAM-SHA-1 (no PLAIN, so a client never sends its
 * password on a clear stream), stream restart, resource binding, answers to
 * session and ping requests, initial presence.  It never offers stream
 * management.  Once the client's initial presence arrives it runs one mode:
 *
 *   --blast N        N ~250-byte messages, as fast as the link takes them
 *   --sink N         count the client's messages until N (no XML parsing on
 *                    that path: a substring count, so it is never the limit)
 *   --rate R --count N   N messages at R per second, each id holding the
 *                    CLOCK_MONOTONIC time of its sending, for latency
 *   (none)           stay idle, answering pings
 *
 * --raw skips XMPP (the ceiling runs: what this server pushes or swallows
 * over plain TCP or TLS), and --connect PORT turns it into the client side
 * of such a run.  With --wait a blast or rate run starts only when "go" is
 * read on stdin.  Events go to stdout, one line each, with monotonic
 * nanoseconds, for the orchestrator (bench.py) to compute rates:
 *
 *   port P / tls-port P          listening
 *   session NS                   the client's initial presence arrived
 *   sealed NS BYTES              blast ready (TLS: records encrypted ahead)
 *   start NS                     first byte of the blast or rate run
 *   sent NS BYTES                all of it handed to the kernel
 *   sink COUNT FIRST_NS LAST_NS  N messages counted (or "report" on stdin)
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <expat.h>
#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "compat_expat.h"
#include "compat_mbedtls.h"
#include "stanza.h"

#define RBUF_SIZE	(256 * 1024)	/* one read(2) */
#define OUT_HIGH	(256 * 1024)	/* encrypt no further ahead */
#define PLAIN_CHUNK	(1024 * 1024)	/* one write(2) of a plain blast */
#define TLS_CHUNK	16384		/* one TLS record */
#define DEFER_READ	(1024 * 1024)	/* one read(2) of a deferred sink */
#define DEFER_MAX	(512u << 20)	/* decrypt at once past this */
#define DEFER_IDLE_MS	20		/* decrypt after this much silence */
#define SCRAM_SALT	"clawsd-bench-salt"
#define NS_SASL		"urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_TLS		"urn:ietf:params:xml:ns:xmpp-tls"
#define NS_BIND		"urn:ietf:params:xml:ns:xmpp-bind"

enum kind { K_LISTEN, K_LISTEN_TLS, K_STDIN, K_TIMER, K_CONN };

enum phase {
	PH_XMPP,	/* negotiating, then idle: expat sees everything */
	PH_COUNT,	/* sink: substring count of "<message" */
	PH_RAW,		/* ceiling: input discarded */
};

enum stop { STOP_NONE, STOP_RESTART, STOP_TLS, STOP_COUNT };

struct obuf {
	char		*data;
	size_t		 len, off, cap;
};

struct ev {
	enum kind	 kind;
	int		 fd;
};

struct conn {
	struct ev	 ev;		/* first: epoll data points here */
	uint32_t	 events;	/* registered with epoll */
	int		 direct;	/* TLS from the first byte */
	int		 client;	/* we connected (ceiling runs) */
	int		 tls, handshaking;
	int		 dead;
	mbedtls_ssl_context ssl;
	struct obuf	 out;
	char		*rbuf;
	size_t		 rlen, roff;

	enum phase	 phase;
	XML_Parser	 xp;
	int		 depth;
	uint64_t	 fed;		/* bytes given to this parser */
	enum stop	 stop;
	uint64_t	 stop_pos;	/* parser byte index of the stop */
	int		 authed, bound, established, started;

	char		 el[32], el_id[128], el_type[16], el_mech[32];
	char		 child[32], resource[128];
	int		 in_res;
	char		*text;
	size_t		 textlen;

	char		 cbare[512], sfirst[512], nonce[256];
	char		 tail[8];	/* a "<message" split across reads */
	size_t		 taillen;

	int		 hold;		/* sealed blast waits for "go" */
	int		 deferred;	/* TLS sink: decrypt when idle */
	char		*dbuf;		/* ciphertext not yet decrypted */
	size_t		 dlen, dcap, dpos;
	struct dlog	*dlog;		/* when each read ended */
	size_t		 nlog, logcap, logpos;
};

struct dlog {
	size_t		 end;		/* dbuf offset after the read */
	uint64_t	 t;
};

static struct {
	int		 port, tls_port, connect_port;
	const char	*cert, *key, *ca;
	const char	*user, *password, *suite;
	int		 iterations;
	int		 raw, wait, verbose;
	size_t		 blast, sink, count;
	double		 rate;
} opt = {
	.user = "bench",
	.password = "bench-password",
	.iterations = 4096,
	.suite = "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256",
};

static int			 epfd;
static int			 go;
static struct conn		*mconn;		/* the one running the mode */
static char			*blast_buf;
static size_t			 blast_len, blast_off;
static int			 blast_done;
static struct ev		 timer_ev = { K_TIMER, -1 };
static uint64_t			 rate_seq, rate_due;
static size_t			 sink_count;
static char			*sink_room;	/* pre-faulted, for the sink */
static size_t			 sink_room_cap;
static uint64_t			 sink_first, sink_last;
static int			 sink_reported;
static struct conn		*conns[16];
static uint64_t			 feed_time;	/* 0: now */

static mbedtls_entropy_context	 entropy;
static mbedtls_ctr_drbg_context	 drbg;
static mbedtls_ssl_config	 srvconf, cliconf;
static mbedtls_x509_crt		 srvcert, cacert;
static mbedtls_pk_context	 srvkey;
static unsigned char		 stored_key[20], server_key[20];
static char			 salt_b64[64];
static int			 suites[2];

static void conn_close(struct conn *);
static void pump(struct conn *);
static void start_mode(struct conn *);
static void defer_start(struct conn *);

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("xmppd: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void
say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void
debug(const char *fmt, ...)
{
	va_list ap;

	if (!opt.verbose)
		return;
	va_start(ap, fmt);
	fputs("xmppd: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void
tls_die(const char *what, int rc)
{
	char text[160];

	mbedtls_strerror(rc, text, sizeof(text));
	die("%s: %s", what, text);
}

/* Output buffer */

static void
obuf_append(struct obuf *b, const void *p, size_t n)
{
	if (b->off > 0 && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + n > b->cap && b->off > 0) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 65536;

		while (cap < b->len + n)
			cap *= 2;
		b->data = realloc(b->data, cap);
		if (b->data == NULL)
			die("out of memory");
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static size_t
obuf_pending(const struct obuf *b)
{
	return b->len - b->off;
}

/* epoll */

static void
ep_add(struct ev *e, uint32_t events)
{
	struct epoll_event ee = { .events = events, .data.ptr = e };

	if (epoll_ctl(epfd, EPOLL_CTL_ADD, e->fd, &ee) != 0)
		die("epoll_ctl: %s", strerror(errno));
}

static void
conn_update(struct conn *c)
{
	struct epoll_event ee = { .data.ptr = c };
	uint32_t want = EPOLLIN;

	if (c->dead)
		return;
	if (!c->hold && (obuf_pending(&c->out) > 0 ||
	    (c == mconn && blast_buf != NULL && blast_off < blast_len)))
		want |= EPOLLOUT;
	if (want == c->events)
		return;
	ee.events = want;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->ev.fd, &ee) != 0)
		die("epoll_ctl: %s", strerror(errno));
	c->events = want;
}

static void
set_nonblock(int fd)
{
	int one = 1;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Writing */

static int
conn_flush(struct conn *c)
{
	ssize_t n;

	while (!c->dead && !c->hold && obuf_pending(&c->out) > 0) {
		n = write(c->ev.fd, c->out.data + c->out.off,
		    obuf_pending(&c->out));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			debug("write: %s", strerror(errno));
			conn_close(c);
			return -1;
		}
		c->out.off += (size_t)n;
	}
	if (c->out.off == c->out.len)
		c->out.off = c->out.len = 0;
	conn_update(c);
	if (c == mconn && blast_buf != NULL && !c->hold && c->started &&
	    blast_off == blast_len && obuf_pending(&c->out) == 0 &&
	    !blast_done) {
		blast_done = 1;
		say("sent %llu %zu", (unsigned long long)now_ns(), blast_len);
		if (c->client)
			exit(0);
	}
	return 0;
}

static int
bio_send(void *ctx, const unsigned char *p, size_t n)
{
	obuf_append(&((struct conn *)ctx)->out, p, n);
	return (int)n;
}

/* Reads are large and buffered: mbedtls asks for a record header first. */
static int
bio_recv(void *ctx, unsigned char *p, size_t n)
{
	struct conn *c = ctx;
	ssize_t r;

	if (c->deferred) {
		if (c->dpos == c->dlen)
			return MBEDTLS_ERR_SSL_WANT_READ;
		if (n > c->dlen - c->dpos)
			n = c->dlen - c->dpos;
		memcpy(p, c->dbuf + c->dpos, n);
		c->dpos += n;
		return (int)n;
	}
	if (c->roff == c->rlen) {
		r = read(c->ev.fd, c->rbuf, RBUF_SIZE);
		if (r < 0)
			return errno == EAGAIN || errno == EINTR ?
			    MBEDTLS_ERR_SSL_WANT_READ :
			    MBEDTLS_ERR_NET_RECV_FAILED;
		if (r == 0)
			return MBEDTLS_ERR_NET_CONN_RESET;
		c->rlen = (size_t)r;
		c->roff = 0;
	}
	if (n > c->rlen - c->roff)
		n = c->rlen - c->roff;
	memcpy(p, c->rbuf + c->roff, n);
	c->roff += n;
	return (int)n;
}

/* Plaintext to the peer, through TLS when it is on. */
static void
conn_send(struct conn *c, const char *p, size_t n)
{
	int rc;

	if (c->dead)
		return;
	if (!c->tls) {
		obuf_append(&c->out, p, n);
		return;
	}
	while (n > 0) {
		rc = mbedtls_ssl_write(&c->ssl, (const unsigned char *)p, n);
		if (rc < 0)
			tls_die("ssl_write", rc);
		p += rc;
		n -= (size_t)rc;
	}
}

static void
conn_puts(struct conn *c, const char *s)
{
	conn_send(c, s, strlen(s));
}

static void
conn_printf(struct conn *c, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		die("conn_printf: line too long");
	conn_send(c, buf, (size_t)n);
}

/* Attribute value with ' & < escaped, for ids echoed back. */
static void
escape_attr(char *dst, size_t size, const char *src)
{
	size_t o = 0;
	const char *rep;

	for (; *src != '\0' && o + 7 < size; src++) {
		rep = *src == '\'' ? "&apos;" : *src == '&' ? "&amp;" :
		    *src == '<' ? "&lt;" : NULL;
		if (rep != NULL) {
			memcpy(dst + o, rep, strlen(rep));
			o += strlen(rep);
		} else
			dst[o++] = *src;
	}
	dst[o] = '\0';
}

/* TLS */

static void
tls_init(void)
{
	int rc;

	if (compat_crypto_init() != 0)
		die("cannot initialise the crypto library");
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
	    (const unsigned char *)"xmppd", 5) != 0)
		die("cannot seed the random generator");
	if (opt.cert != NULL) {
		mbedtls_x509_crt_init(&srvcert);
		mbedtls_pk_init(&srvkey);
		mbedtls_ssl_config_init(&srvconf);
		if ((rc = mbedtls_x509_crt_parse_file(&srvcert, opt.cert)) != 0)
			tls_die(opt.cert, rc);
		if ((rc = compat_pk_parse_keyfile(&srvkey, opt.key,
		    mbedtls_ctr_drbg_random, &drbg)) != 0)
			tls_die(opt.key, rc);
		if (mbedtls_ssl_config_defaults(&srvconf, MBEDTLS_SSL_IS_SERVER,
		    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT))
			die("ssl_config_defaults");
		mbedtls_ssl_conf_rng(&srvconf, mbedtls_ctr_drbg_random, &drbg);
		compat_ssl_conf_tls12_only(&srvconf);
		if ((rc = mbedtls_ssl_conf_own_cert(&srvconf, &srvcert,
		    &srvkey)) != 0)
			tls_die("own_cert", rc);
		/* One suite for every client: the runs stay comparable. */
		if (strcmp(opt.suite, "default") != 0) {
			suites[0] = mbedtls_ssl_get_ciphersuite_id(opt.suite);
			if (suites[0] == 0)
				die("unknown ciphersuite %s", opt.suite);
			mbedtls_ssl_conf_ciphersuites(&srvconf, suites);
		}
	}
	if (opt.ca != NULL) {
		mbedtls_x509_crt_init(&cacert);
		mbedtls_ssl_config_init(&cliconf);
		if ((rc = mbedtls_x509_crt_parse_file(&cacert, opt.ca)) != 0)
			tls_die(opt.ca, rc);
		if (mbedtls_ssl_config_defaults(&cliconf, MBEDTLS_SSL_IS_CLIENT,
		    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT))
			die("ssl_config_defaults");
		mbedtls_ssl_conf_rng(&cliconf, mbedtls_ctr_drbg_random, &drbg);
		mbedtls_ssl_conf_authmode(&cliconf,
		    MBEDTLS_SSL_VERIFY_REQUIRED);
		mbedtls_ssl_conf_ca_chain(&cliconf, &cacert, NULL);
	}
}

static void
tls_start(struct conn *c)
{
	int rc;

	rc = mbedtls_ssl_setup(&c->ssl, c->client ? &cliconf : &srvconf);
	if (rc == 0 && c->client)
		rc = mbedtls_ssl_set_hostname(&c->ssl, "localhost");
	if (rc != 0)
		tls_die("ssl_setup", rc);
	mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
	c->rlen = c->roff = 0;
	c->tls = c->handshaking = 1;
}

/* SCRAM-SHA-1, server side (RFC 5802), with a fixed salt. */

static void
hmac(const unsigned char *key, size_t klen, const char *msg, size_t mlen,
    unsigned char out[20])
{
	mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA1), key, klen,
	    (const unsigned char *)msg, mlen, out);
}

static void
scram_init(void)
{
	const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA1);
	unsigned char salted[20], client_key[20];
	size_t olen;

	if (compat_pbkdf2_hmac(md, (const unsigned char *)opt.password,
	    strlen(opt.password), (const unsigned char *)SCRAM_SALT,
	    strlen(SCRAM_SALT), (unsigned)opt.iterations, sizeof(salted),
	    salted) != 0)
		die("PBKDF2");
	hmac(salted, 20, "Client Key", 10, client_key);
	mbedtls_md(md, client_key, 20, stored_key);
	hmac(salted, 20, "Server Key", 10, server_key);
	mbedtls_base64_encode((unsigned char *)salt_b64, sizeof(salt_b64),
	    &olen, (const unsigned char *)SCRAM_SALT, strlen(SCRAM_SALT));
}

static int
b64_decode(const char *in, size_t inlen, char *out, size_t size)
{
	size_t olen;

	if (mbedtls_base64_decode((unsigned char *)out, size - 1, &olen,
	    (const unsigned char *)in, inlen) != 0)
		return -1;
	out[olen] = '\0';
	return (int)olen;
}

static void
sasl_send(struct conn *c, const char *el, const char *payload, size_t len)
{
	char b64[1024];
	size_t olen = 0;

	mbedtls_base64_encode((unsigned char *)b64, sizeof(b64), &olen,
	    (const unsigned char *)payload, len);
	b64[olen] = '\0';
	conn_printf(c, "<%s xmlns='" NS_SASL "'>%s</%s>", el, b64, el);
}

static void
sasl_failure(struct conn *c, const char *cond)
{
	debug("SASL failure: %s", cond);
	conn_printf(c, "<failure xmlns='" NS_SASL "'><%s/></failure>", cond);
}

/* "key=value," attribute of a SCRAM message, NUL-terminated into dst. */
static int
scram_attr(const char *msg, char key, char *dst, size_t size)
{
	const char *p = msg, *end;

	while (p != NULL && *p != '\0') {
		if (p[0] == key && p[1] == '=') {
			p += 2;
			end = strchr(p, ',');
			if (end == NULL)
				end = p + strlen(p);
			if ((size_t)(end - p) >= size)
				return -1;
			memcpy(dst, p, (size_t)(end - p));
			dst[end - p] = '\0';
			return 0;
		}
		p = strchr(p, ',');
		if (p != NULL)
			p++;
	}
	return -1;
}

static void
scram_first(struct conn *c)
{
	char msg[1024], user[128], cnonce[128], sfx[33];
	unsigned char rnd[24];
	const char *bare;
	size_t olen;
	int n;

	if (strcmp(c->el_mech, "SCRAM-SHA-1") != 0) {
		sasl_failure(c, "invalid-mechanism");
		return;
	}
	n = b64_decode(c->text, c->textlen, msg, sizeof(msg));
	/* gs2-header: "n,," or "y,,", then client-first-message-bare. */
	bare = n > 0 ? strchr(msg, ',') : NULL;
	bare = bare != NULL ? strchr(bare + 1, ',') : NULL;
	if (bare == NULL || scram_attr(++bare, 'n', user, sizeof(user)) ||
	    scram_attr(bare, 'r', cnonce, sizeof(cnonce))) {
		sasl_failure(c, "malformed-request");
		return;
	}
	if (strcmp(user, opt.user) != 0) {
		sasl_failure(c, "not-authorized");
		return;
	}
	snprintf(c->cbare, sizeof(c->cbare), "%s", bare);
	mbedtls_ctr_drbg_random(&drbg, rnd, sizeof(rnd));
	mbedtls_base64_encode((unsigned char *)sfx, sizeof(sfx), &olen, rnd,
	    sizeof(rnd));
	sfx[olen] = '\0';
	snprintf(c->nonce, sizeof(c->nonce), "%s%s", cnonce, sfx);
	snprintf(c->sfirst, sizeof(c->sfirst), "r=%s,s=%s,i=%d", c->nonce,
	    salt_b64, opt.iterations);
	sasl_send(c, "challenge", c->sfirst, strlen(c->sfirst));
}

static void
scram_final(struct conn *c)
{
	char msg[1024], nonce[256], proof64[64], auth[2048], v[64];
	unsigned char proof[24], sig[20], key[20], check[20], ssig[20];
	const char *p;
	size_t olen, i;
	int n, alen;

	n = b64_decode(c->text, c->textlen, msg, sizeof(msg));
	p = n > 0 ? strstr(msg, ",p=") : NULL;
	if (p == NULL || scram_attr(msg, 'r', nonce, sizeof(nonce)) ||
	    scram_attr(msg, 'p', proof64, sizeof(proof64))) {
		sasl_failure(c, "malformed-request");
		return;
	}
	if (strcmp(nonce, c->nonce) != 0 ||
	    mbedtls_base64_decode(proof, sizeof(proof), &olen,
	    (const unsigned char *)proof64, strlen(proof64)) != 0 ||
	    olen != 20) {
		sasl_failure(c, "not-authorized");
		return;
	}
	alen = snprintf(auth, sizeof(auth), "%s,%s,%.*s", c->cbare, c->sfirst,
	    (int)(p - msg), msg);
	hmac(stored_key, 20, auth, (size_t)alen, sig);
	for (i = 0; i < 20; i++)
		key[i] = proof[i] ^ sig[i];
	mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA1), key, 20, check);
	if (memcmp(check, stored_key, 20) != 0) {
		sasl_failure(c, "not-authorized");
		return;
	}
	hmac(server_key, 20, auth, (size_t)alen, ssig);
	memcpy(v, "v=", 2);
	mbedtls_base64_encode((unsigned char *)v + 2, sizeof(v) - 2, &olen,
	    ssig, 20);
	sasl_send(c, "success", v, olen + 2);
	c->authed = 1;
	debug("authenticated %s", opt.user);
}

/* The XMPP side: expat sees one top-level element at a time. */

static const char *
local_name(const char *name)
{
	const char *p = strrchr(name, '|');

	return p != NULL ? p + 1 : name;
}

static void
stop_parser(struct conn *c, enum stop why)
{
	c->stop = why;
	c->stop_pos = (uint64_t)compat_xml_byte_index(c->xp) +
	    compat_xml_byte_count(c->xp);
	XML_StopParser(c->xp, XML_FALSE);
}

static void
stream_open(struct conn *c)
{
	conn_puts(c, BENCH_STREAM_HEAD "<stream:features>");
	if (!c->authed) {
		if (!c->tls)
			conn_puts(c, "<starttls xmlns='" NS_TLS "'/>");
		conn_puts(c, "<mechanisms xmlns='" NS_SASL "'>"
		    "<mechanism>SCRAM-SHA-1</mechanism></mechanisms>");
	} else
		conn_puts(c, "<bind xmlns='" NS_BIND "'/>");
	conn_puts(c, "</stream:features>");
}

/*
 * A TLS blast is encrypted before "go": the timed run then costs this
 * server a write(2) per megabyte, whatever mbedtls' record speed.
 */
static void
preseal(struct conn *c)
{
	int rc;

	if (blast_buf == NULL || c->hold || c->started)
		return;
	if (c->tls) {
		c->hold = 1;
		while (blast_off < blast_len) {
			rc = mbedtls_ssl_write(&c->ssl, (const unsigned char *)
			    blast_buf + blast_off, blast_len - blast_off <
			    TLS_CHUNK ? blast_len - blast_off : TLS_CHUNK);
			if (rc < 0)
				tls_die("ssl_write", rc);
			blast_off += (size_t)rc;
		}
		conn_update(c);
	}
	say("sealed %llu %zu", (unsigned long long)now_ns(),
	    obuf_pending(&c->out));
}

static void
establish(struct conn *c)
{
	c->established = 1;
	say("session %llu", (unsigned long long)now_ns());
	if (opt.sink) {
		mconn = c;
		stop_parser(c, STOP_COUNT);
		return;
	}
	preseal(c);
	if (go || !opt.wait)
		start_mode(c);
}

static void
handle_iq(struct conn *c)
{
	char id[300], jid[300];

	escape_attr(id, sizeof(id), c->el_id);
	if (strcmp(c->el_type, "get") != 0 && strcmp(c->el_type, "set") != 0)
		return;
	if (strcmp(c->child, "bind") == 0 && c->authed) {
		escape_attr(jid, sizeof(jid), c->resource[0] ? c->resource :
		    "clawsd");
		conn_printf(c, "<iq type='result' id='%s'><bind xmlns='"
		    NS_BIND "'><jid>%s@localhost/%s</jid></bind></iq>", id,
		    opt.user, jid);
		c->bound = 1;
		debug("bound %s@localhost/%s", opt.user, jid);
		return;
	}
	/* session, ping, and anything else: an empty result. */
	conn_printf(c, "<iq type='result' id='%s'/>", id);
}

static void
element(struct conn *c)
{
	if (strcmp(c->el, "starttls") == 0 && !c->tls) {
		conn_puts(c, "<proceed xmlns='" NS_TLS "'/>");
		stop_parser(c, STOP_TLS);
	} else if (strcmp(c->el, "auth") == 0 && !c->authed)
		scram_first(c);
	else if (strcmp(c->el, "response") == 0 && !c->authed) {
		scram_final(c);
		if (c->authed)
			stop_parser(c, STOP_RESTART);
	} else if (strcmp(c->el, "iq") == 0)
		handle_iq(c);
	else if (strcmp(c->el, "presence") == 0 && c->bound &&
	    !c->established)
		establish(c);
}

static void XMLCALL
on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct conn *c = ud;
	const char *local = local_name(name), *an;
	int i;

	c->depth++;
	if (c->depth == 1) {
		stream_open(c);
		return;
	}
	if (c->depth == 2) {
		snprintf(c->el, sizeof(c->el), "%s", local);
		c->el_id[0] = c->el_type[0] = c->el_mech[0] = '\0';
		c->child[0] = c->resource[0] = '\0';
		c->textlen = 0;
		for (i = 0; atts[i] != NULL; i += 2) {
			an = local_name(atts[i]);
			if (strcmp(an, "id") == 0)
				snprintf(c->el_id, sizeof(c->el_id), "%s",
				    atts[i + 1]);
			else if (strcmp(an, "type") == 0)
				snprintf(c->el_type, sizeof(c->el_type), "%s",
				    atts[i + 1]);
			else if (strcmp(an, "mechanism") == 0)
				snprintf(c->el_mech, sizeof(c->el_mech), "%s",
				    atts[i + 1]);
		}
		return;
	}
	if (c->depth == 3 && c->child[0] == '\0')
		snprintf(c->child, sizeof(c->child), "%s", local);
	if (c->depth == 4 && strcmp(local, "resource") == 0)
		c->in_res = 1;
}

static void XMLCALL
on_end(void *ud, const XML_Char *name)
{
	struct conn *c = ud;

	(void)name;
	if (c->depth == 2)
		element(c);
	else if (c->depth == 4)
		c->in_res = 0;
	else if (c->depth == 1) {
		debug("stream closed by the client");
		conn_puts(c, "</stream:stream>");
		conn_flush(c);
		conn_close(c);
		XML_StopParser(c->xp, XML_FALSE);
	}
	c->depth--;
}

static void XMLCALL
on_text(void *ud, const XML_Char *s, int len)
{
	struct conn *c = ud;
	size_t n = (size_t)len, have;

	if (c->depth == 2 && c->textlen + n < 4096) {
		memcpy(c->text + c->textlen, s, n);
		c->textlen += n;
	} else if (c->in_res) {
		have = strlen(c->resource);
		if (have + n < sizeof(c->resource)) {
			memcpy(c->resource + have, s, n);
			c->resource[have + n] = '\0';
		}
	}
}

static void
parser_new(struct conn *c)
{
	if (c->xp == NULL)
		c->xp = XML_ParserCreateNS(NULL, '|');
	else
		XML_ParserReset(c->xp, NULL);
	if (c->xp == NULL)
		die("XML_ParserCreateNS");
	XML_SetUserData(c->xp, c);
	XML_SetElementHandler(c->xp, on_start, on_end);
	XML_SetCharacterDataHandler(c->xp, on_text);
#ifdef HAVE_XML_REPARSE_DEFERRAL
	/* An element held back would deadlock the negotiation. */
	XML_SetReparseDeferralEnabled(c->xp, XML_FALSE);
#endif
	c->depth = 0;
	c->fed = 0;
}

/* Sink: count "<message", including one split across two reads. */
static void
count_messages(struct conn *c, const char *p, size_t n)
{
	static const char pat[] = "<message";
	const char *q = p, *end = p + n;
	size_t before = sink_count, need, rest;

	if (c->taillen > 0) {
		need = 8 - c->taillen;
		if (n >= need) {
			if (memcmp(p, pat + c->taillen, need) == 0)
				sink_count++;
			c->taillen = 0;
		} else if (memcmp(p, pat + c->taillen, n) == 0) {
			memcpy(c->tail + c->taillen, p, n);
			c->taillen += n;
			return;
		} else
			c->taillen = 0;
	}
	while ((q = memchr(q, '<', (size_t)(end - q))) != NULL) {
		rest = (size_t)(end - q);
		if (rest >= 8) {
			if (memcmp(q, pat, 8) == 0)
				sink_count++;
		} else {
			if (memcmp(q, pat, rest) == 0) {
				memcpy(c->tail, q, rest);
				c->taillen = rest;
			}
			break;
		}
		q++;
	}
	if (sink_count == before)
		return;
	if (before == 0)
		sink_first = feed_time ? feed_time : now_ns();
	if (sink_count >= opt.sink && !sink_reported) {
		sink_last = feed_time ? feed_time : now_ns();
		sink_reported = 1;
		say("sink %zu %llu %llu", sink_count,
		    (unsigned long long)sink_first,
		    (unsigned long long)sink_last);
		if (c->client)
			exit(0);
	}
}

static void
feed(struct conn *c, const char *p, size_t n)
{
	uint64_t base;
	size_t used;

	while (n > 0 && !c->dead) {
		if (c->phase == PH_COUNT) {
			count_messages(c, p, n);
			return;
		}
		if (c->phase == PH_RAW)
			return;
		c->stop = STOP_NONE;
		base = c->fed;
		if (XML_Parse(c->xp, p, (int)n, 0) == XML_STATUS_ERROR &&
		    c->stop == STOP_NONE) {
			if (!c->dead) {
				fprintf(stderr, "xmppd: client XML: %s\n",
				    XML_ErrorString(XML_GetErrorCode(c->xp)));
				conn_close(c);
			}
			return;
		}
		if (c->stop == STOP_NONE) {
			c->fed += n;
			return;
		}
		used = (size_t)(c->stop_pos - base);
		if (used > n)
			used = n;
		p += used;
		n -= used;
		switch (c->stop) {
		case STOP_RESTART:
			parser_new(c);
			break;
		case STOP_TLS:
			conn_flush(c);
			parser_new(c);
			tls_start(c);
			return;		/* nothing may follow <starttls/> */
		case STOP_COUNT:
			c->phase = PH_COUNT;
			defer_start(c);
			break;
		default:
			break;
		}
	}
}

/* Modes */

static void
start_mode(struct conn *c)
{
	struct itimerspec its;
	uint64_t ns;

	if (c->started || c->dead)
		return;
	c->started = 1;
	mconn = c;
	if (opt.blast) {
		preseal(c);
		c->hold = 0;
		say("start %llu", (unsigned long long)now_ns());
		pump(c);
	} else if (opt.rate > 0) {
		ns = (uint64_t)(1e9 / opt.rate);
		memset(&its, 0, sizeof(its));
		its.it_interval.tv_sec = (time_t)(ns / 1000000000u);
		its.it_interval.tv_nsec = (long)(ns % 1000000000u);
		its.it_value = its.it_interval;
		say("start %llu", (unsigned long long)now_ns());
		if (timerfd_settime(timer_ev.fd, 0, &its, NULL) != 0)
			die("timerfd_settime: %s", strerror(errno));
	} else if (opt.sink) {
		c->phase = PH_COUNT;
		defer_start(c);
	}
}

/* Blast: as much as the socket takes, encrypted ahead by OUT_HIGH. */
static void
pump(struct conn *c)
{
	size_t n;
	ssize_t w;
	int rc;

	while (!c->dead && blast_off < blast_len) {
		n = blast_len - blast_off;
		if (c->tls) {
			if (obuf_pending(&c->out) >= OUT_HIGH) {
				conn_flush(c);
				if (obuf_pending(&c->out) >= OUT_HIGH)
					break;
			}
			rc = mbedtls_ssl_write(&c->ssl, (const unsigned char *)
			    blast_buf + blast_off, n < TLS_CHUNK ? n :
			    TLS_CHUNK);
			if (rc < 0)
				tls_die("ssl_write", rc);
			blast_off += (size_t)rc;
			continue;
		}
		if (obuf_pending(&c->out) > 0) {
			conn_flush(c);
			if (obuf_pending(&c->out) > 0)
				break;
		}
		w = write(c->ev.fd, blast_buf + blast_off,
		    n < PLAIN_CHUNK ? n : PLAIN_CHUNK);
		if (w < 0) {
			if (errno == EAGAIN)
				break;
			if (errno == EINTR)
				continue;
			debug("write: %s", strerror(errno));
			conn_close(c);
			return;
		}
		blast_off += (size_t)w;
	}
	conn_flush(c);
}

static void
on_timer(void)
{
	char buf[65536], id[64];
	uint64_t ticks, ts;
	size_t len = 0;

	if (read(timer_ev.fd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return;
	if (mconn == NULL || mconn->dead)
		return;
	rate_due += ticks;
	ts = now_ns();
	while (rate_due > 0 && rate_seq < opt.count) {
		snprintf(id, sizeof(id), "l%llu-%llu",
		    (unsigned long long)++rate_seq, (unsigned long long)ts);
		len += bench_stanza(buf + len, 0, id);
		rate_due--;
		if (len + 512 > sizeof(buf)) {
			conn_send(mconn, buf, len);
			len = 0;
		}
	}
	if (len > 0)
		conn_send(mconn, buf, len);
	conn_flush(mconn);
	if (rate_seq >= opt.count) {
		struct itimerspec off;

		memset(&off, 0, sizeof(off));
		timerfd_settime(timer_ev.fd, 0, &off, NULL);
		say("sent %llu %llu", (unsigned long long)now_ns(),
		    (unsigned long long)rate_seq);
	}
}

/* Connections */

static struct conn *
conn_new(int fd, int direct, int client)
{
	struct conn *c = calloc(1, sizeof(*c));
	size_t i;

	if (c == NULL)
		die("out of memory");
	c->ev.kind = K_CONN;
	c->ev.fd = fd;
	c->direct = direct;
	c->client = client;
	c->rbuf = bench_alloc(RBUF_SIZE);
	c->text = bench_alloc(4096);
	mbedtls_ssl_init(&c->ssl);
	set_nonblock(fd);
	c->events = EPOLLIN;
	ep_add(&c->ev, EPOLLIN);
	for (i = 0; i < sizeof(conns) / sizeof(conns[0]); i++)
		if (conns[i] == NULL) {
			conns[i] = c;
			break;
		}
	if (i == sizeof(conns) / sizeof(conns[0]))
		die("too many connections");
	if (opt.raw || client)
		c->phase = opt.sink ? PH_COUNT : PH_RAW;
	else {
		c->phase = PH_XMPP;
		parser_new(c);
	}
	if (direct || (client && opt.ca != NULL))
		tls_start(c);
	return c;
}

static void
conn_close(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->ev.fd, NULL);
	close(c->ev.fd);
}

static void
conn_free(struct conn *c)
{
	size_t i;

	for (i = 0; i < sizeof(conns) / sizeof(conns[0]); i++)
		if (conns[i] == c)
			conns[i] = NULL;
	if (mconn == c)
		mconn = NULL;
	if (c->xp != NULL)
		XML_ParserFree(c->xp);
	mbedtls_ssl_free(&c->ssl);
	free(c->out.data);
	free(c->rbuf);
	free(c->text);
	free(c->dbuf);
	free(c->dlog);
	free(c);
}

/* The link is up (TCP, or TLS handshake done): XMPP, or the raw mode. */
static void
conn_ready(struct conn *c)
{
	if (c->tls)
		debug("TLS: %s with %s", mbedtls_ssl_get_version(&c->ssl),
		    mbedtls_ssl_get_ciphersuite(&c->ssl));
	if (!opt.raw && !c->client)
		return;
	preseal(c);
	if (go || !opt.wait || opt.sink)
		start_mode(c);
}

/*
 * The sink over TLS: mbedtls decrypts ~100 MB/s, not enough to be out of
 * the way.  Ciphertext is kept as it comes, each read's end and time noted;
 * once the link is quiet (or much is kept) it is decrypted and counted, each
 * message dated by the read that completed its record.
 */
static void
defer_start(struct conn *c)
{
	size_t n;

	if (!c->tls || c->deferred)
		return;
	c->deferred = 1;
	c->dlen = c->dpos = c->nlog = c->logpos = 0;
	if (c->dbuf == NULL && sink_room != NULL) {
		c->dbuf = sink_room;
		c->dcap = sink_room_cap;
		sink_room = NULL;
	}
	n = c->rlen - c->roff;
	if (n > 0) {
		if (c->dcap < n + DEFER_READ) {
			c->dcap = n + DEFER_READ;
			c->dbuf = realloc(c->dbuf, c->dcap);
			if (c->dbuf == NULL)
				die("out of memory");
		}
		memcpy(c->dbuf, c->rbuf + c->roff, n);
		c->dlen = n;
		c->roff = c->rlen;
		c->logcap = 1024;
		c->dlog = bench_alloc(c->logcap * sizeof(*c->dlog));
		c->dlog[c->nlog].end = n;
		c->dlog[c->nlog++].t = now_ns();
	}
}

static void
defer_process(struct conn *c)
{
	static char pbuf[TLS_CHUNK + 1024];
	int rc;

	while (c->dpos < c->dlen && !c->dead) {
		rc = mbedtls_ssl_read(&c->ssl, (unsigned char *)pbuf,
		    sizeof(pbuf));
		if (rc == MBEDTLS_ERR_SSL_WANT_READ)
			break;
		if (rc <= 0) {
			debug("TLS read: -0x%04x, closing", -rc);
			conn_close(c);
			break;
		}
		while (c->logpos + 1 < c->nlog &&
		    c->dlog[c->logpos].end < c->dpos)
			c->logpos++;
		feed_time = c->dlog[c->logpos].t;
		count_messages(c, pbuf, (size_t)rc);
		feed_time = 0;
	}
	if (c->dpos == c->dlen)
		c->dlen = c->dpos = c->nlog = c->logpos = 0;
}

static void
defer_read(struct conn *c)
{
	ssize_t n;

	for (;;) {
		if (c->dcap - c->dlen < DEFER_READ) {
			c->dcap = c->dcap ? c->dcap * 2 : 16 * DEFER_READ;
			c->dbuf = realloc(c->dbuf, c->dcap);
			if (c->dbuf == NULL)
				die("out of memory");
		}
		n = read(c->ev.fd, c->dbuf + c->dlen, DEFER_READ);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0 && errno == EAGAIN)
				break;
			defer_process(c);
			debug("connection closed by the peer");
			conn_close(c);
			return;
		}
		c->dlen += (size_t)n;
		if (c->nlog == c->logcap) {
			c->logcap = c->logcap ? c->logcap * 2 : 1024;
			c->dlog = realloc(c->dlog, c->logcap * sizeof(*c->dlog));
			if (c->dlog == NULL)
				die("out of memory");
		}
		c->dlog[c->nlog].end = c->dlen;
		c->dlog[c->nlog++].t = now_ns();
	}
	if (c->dlen - c->dpos > DEFER_MAX)
		defer_process(c);
}

static int
defer_pending(void)
{
	size_t i;

	for (i = 0; i < sizeof(conns) / sizeof(conns[0]); i++)
		if (conns[i] != NULL && !conns[i]->dead &&
		    conns[i]->deferred && conns[i]->dpos < conns[i]->dlen)
			return 1;
	return 0;
}

static void
defer_all(void)
{
	size_t i;

	for (i = 0; i < sizeof(conns) / sizeof(conns[0]); i++)
		if (conns[i] != NULL && !conns[i]->dead &&
		    conns[i]->deferred)
			defer_process(conns[i]);
}

static void
conn_readable(struct conn *c)
{
	static char pbuf[TLS_CHUNK + 1024];
	ssize_t n;
	int rc, rounds;

	for (rounds = 0; rounds < 64 && !c->dead; rounds++) {
		if (c->deferred) {
			defer_read(c);
			break;
		}
		if (c->tls && c->handshaking) {
			rc = mbedtls_ssl_handshake(&c->ssl);
			conn_flush(c);
			if (rc == MBEDTLS_ERR_SSL_WANT_READ ||
			    rc == MBEDTLS_ERR_SSL_WANT_WRITE)
				break;
			if (rc != 0) {
				char text[160];

				mbedtls_strerror(rc, text, sizeof(text));
				fprintf(stderr, "xmppd: TLS handshake: %s\n",
				    text);
				conn_close(c);
				return;
			}
			c->handshaking = 0;
			conn_ready(c);
			continue;
		}
		if (c->tls) {
			rc = mbedtls_ssl_read(&c->ssl, (unsigned char *)pbuf,
			    sizeof(pbuf));
			if (rc > 0) {
				feed(c, pbuf, (size_t)rc);
				continue;
			}
			if (rc == MBEDTLS_ERR_SSL_WANT_READ ||
			    rc == MBEDTLS_ERR_SSL_WANT_WRITE)
				break;
			debug("TLS read: -0x%04x, closing", -rc);
			conn_close(c);
			return;
		}
		n = read(c->ev.fd, c->rbuf, RBUF_SIZE);
		if (n > 0) {
			feed(c, c->rbuf, (size_t)n);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		debug("connection closed by the peer");
		conn_close(c);
		return;
	}
	conn_flush(c);
}

static int
listen_on(int port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    listen(fd, 16) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
		die("listen on 127.0.0.1:%d: %s", port, strerror(errno));
	return fd;
}

static int
listen_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	getsockname(fd, (struct sockaddr *)&sin, &len);
	return ntohs(sin.sin_port);
}

static void
on_accept(struct ev *l)
{
	struct conn *c;
	int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	debug("accepted a connection (%s)", l->kind == K_LISTEN_TLS ?
	    "direct TLS" : "plain");
	c = conn_new(fd, l->kind == K_LISTEN_TLS, 0);
	if (!c->tls && opt.raw)
		conn_ready(c);
}

static void
connect_out(void)
{
	struct sockaddr_in sin;
	struct conn *c;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)opt.connect_port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
		die("connect to 127.0.0.1:%d: %s", opt.connect_port,
		    strerror(errno));
	c = conn_new(fd, 0, 1);
	if (c->tls)
		conn_readable(c);	/* sends the ClientHello */
	else
		conn_ready(c);
}

static void
on_stdin(void)
{
	static char line[256];
	static size_t len;
	char *nl;
	ssize_t n;
	size_t i;

	n = read(0, line + len, sizeof(line) - 1 - len);
	if (n <= 0)
		exit(0);	/* the orchestrator went away */
	len += (size_t)n;
	line[len] = '\0';
	while ((nl = strchr(line, '\n')) != NULL) {
		*nl = '\0';
		if (strcmp(line, "go") == 0) {
			go = 1;
			for (i = 0; i < sizeof(conns) / sizeof(conns[0]); i++)
				if (conns[i] != NULL && !conns[i]->dead &&
				    (conns[i]->established ||
				    ((opt.raw || conns[i]->client) &&
				    !conns[i]->handshaking)))
					start_mode(conns[i]);
		} else if (strcmp(line, "report") == 0) {
			defer_all();
			say("sink %zu %llu %llu", sink_count,
			    (unsigned long long)sink_first,
			    (unsigned long long)now_ns());
		} else if (strcmp(line, "quit") == 0)
			exit(0);
		len -= (size_t)(nl + 1 - line);
		memmove(line, nl + 1, len + 1);
	}
	if (len == sizeof(line) - 1)
		len = 0;
}

static void
usage(void)
{
	fprintf(stderr,
"usage: xmppd [--port P] [--tls-port P --cert FILE --key FILE]\n"
"             [--blast N | --sink N | --rate R --count N] [--wait] [--raw]\n"
"             [--connect PORT [--ca FILE]] [--user U] [--password P]\n"
"             [--iterations I] [--ciphersuite NAME|default] [-v]\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "tls-port", required_argument, NULL, 'P' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'a' },
		{ "user", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'w' },
		{ "iterations", required_argument, NULL, 'i' },
		{ "ciphersuite", required_argument, NULL, 'S' },
		{ "blast", required_argument, NULL, 'b' },
		{ "sink", required_argument, NULL, 's' },
		{ "rate", required_argument, NULL, 'r' },
		{ "count", required_argument, NULL, 'n' },
		{ "connect", required_argument, NULL, 'C' },
		{ "raw", no_argument, NULL, 'R' },
		{ "wait", no_argument, NULL, 'W' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct epoll_event evs[32];
	struct ev lev, tlev, inev;
	struct ev *e;
	size_t i;
	int ch, n, k;

	opt.tls_port = -1;
	while ((ch = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p': opt.port = atoi(optarg); break;
		case 'P': opt.tls_port = atoi(optarg); break;
		case 'c': opt.cert = optarg; break;
		case 'k': opt.key = optarg; break;
		case 'a': opt.ca = optarg; break;
		case 'u': opt.user = optarg; break;
		case 'w': opt.password = optarg; break;
		case 'i': opt.iterations = atoi(optarg); break;
		case 'S': opt.suite = optarg; break;
		case 'b': opt.blast = strtoul(optarg, NULL, 10); break;
		case 's': opt.sink = strtoul(optarg, NULL, 10); break;
		case 'r': opt.rate = atof(optarg); break;
		case 'n': opt.count = strtoul(optarg, NULL, 10); break;
		case 'C': opt.connect_port = atoi(optarg); break;
		case 'R': opt.raw = 1; break;
		case 'W': opt.wait = 1; break;
		case 'v': opt.verbose = 1; break;
		default: usage();
		}
	}
	if (optind != argc || (opt.tls_port >= 0 && (!opt.cert || !opt.key)) ||
	    (opt.rate > 0 && opt.count == 0) || opt.iterations < 1)
		usage();
	signal(SIGPIPE, SIG_IGN);
	tls_init();
	scram_init();
	if (opt.blast) {
		blast_buf = bench_stanzas(opt.blast, 0, "b", 0, &blast_len);
		debug("blast: %zu stanzas, %zu bytes", opt.blast, blast_len);
	}
	/*
	 * The TLS sink keeps all the ciphertext: room for it, faulted in now
	 * rather than grown and faulted during the timed run, where it would
	 * take CPU from the relay on a small machine.
	 */
	if (opt.sink > 0) {
		sink_room_cap = opt.sink * 512 + 16 * DEFER_READ;
		sink_room = bench_alloc(sink_room_cap);
		memset(sink_room, 0, sink_room_cap);
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1: %s", strerror(errno));
	timer_ev.fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (timer_ev.fd < 0)
		die("timerfd_create: %s", strerror(errno));
	ep_add(&timer_ev, EPOLLIN);
	if (opt.wait) {
		inev.kind = K_STDIN;
		inev.fd = 0;
		ep_add(&inev, EPOLLIN);
	}
	if (opt.connect_port > 0)
		connect_out();
	else {
		lev.kind = K_LISTEN;
		lev.fd = listen_on(opt.port);
		ep_add(&lev, EPOLLIN);
		say("port %d", listen_port(lev.fd));
		if (opt.tls_port >= 0) {
			tlev.kind = K_LISTEN_TLS;
			tlev.fd = listen_on(opt.tls_port);
			ep_add(&tlev, EPOLLIN);
			say("tls-port %d", listen_port(tlev.fd));
		}
	}
	for (;;) {
		n = epoll_wait(epfd, evs, 32, defer_pending() ? DEFER_IDLE_MS :
		    -1);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		if (n == 0)
			defer_all();
		for (k = 0; k < n; k++) {
			e = evs[k].data.ptr;
			switch (e->kind) {
			case K_LISTEN:
			case K_LISTEN_TLS:
				on_accept(e);
				break;
			case K_STDIN:
				on_stdin();
				break;
			case K_TIMER:
				on_timer();
				break;
			case K_CONN: {
				struct conn *c = (struct conn *)e;

				if (c->dead)
					break;
				if (evs[k].events & (EPOLLIN | EPOLLERR |
				    EPOLLHUP))
					conn_readable(c);
				if (!c->dead && (evs[k].events & EPOLLOUT)) {
					conn_flush(c);
					if (c == mconn && blast_buf != NULL &&
					    c->started)
						pump(c);
				}
				break;
			}
			}
		}
		for (i = 0; i < sizeof(conns) / sizeof(conns[0]); i++)
			if (conns[i] != NULL && conns[i]->dead) {
				if (conns[i] == mconn && opt.connect_port > 0)
					exit(0);
				conn_free(conns[i]);
			}
	}
}
