/*
 * strophe_relay: the peer clawsd is measured against.  The same job, written
 * the way a competent user would with libstrophe (the library xmppipe and
 * most C bridges use): one XMPP session, a Unix socket, one line per stanza
 * to every socket client, and the clients' XML to the server.
 *
 * Design (tests/bench/README.md has the long form):
 * - libstrophe drives the XMPP session (xmpp_connect_client, SCRAM, TLS
 *   through OpenSSL with the bench CA, bind); initial presence on connect.
 * - Our own poll(2) loop holds the listener, the clients and the XMPP
 *   socket (its descriptor comes from the sockopt callback), with a 1 ms
 *   bound like libstrophe's own xmpp_run(); after every wake-up it calls
 *   xmpp_run_once(ctx, 0), which writes libstrophe's send queue, reads at
 *   most 4 KiB from the server and runs the handlers.  While a call yields
 *   stanzas the loop does not block (OpenSSL may hold decrypted bytes the
 *   socket no longer shows).
 * - Server -> clients: one handler for every stanza; xmpp_stanza_to_text,
 *   CR/LF rewritten as character references when present, '\n' appended,
 *   appended to each client's output buffer; buffers are written with one
 *   write(2) per client per loop turn; a client more than --client-buffer
 *   behind is disconnected.
 * - Clients -> server: expat per client, fed "<r>" first so a sequence of
 *   elements is one document; depth counting finds each top-level element
 *   (XML_GetCurrentByteIndex); the complete elements of one read go out
 *   with one xmpp_send_raw (--per-stanza: one call each).
 *   Not-well-formed input closes that client.  Reading from clients pauses
 *   while libstrophe's send queue is long (backpressure).
 * - The server's pings are answered, not relayed.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <expat.h>
#include <strophe.h>

#include "compat_expat.h"

#define MAX_CLIENTS	64
#define READ_SIZE	(1024 * 1024)
#define SENDQ_HIGH	1024		/* queued sends: stop reading clients */
#define SPAN_MAX	16384		/* one xmpp_send_raw, one TLS record */
#define RECONNECT_MS	3000
#define WRAPPER		"<r>"
#define ERR_DOWN	"<error xmlns=\"urn:x-clawsd\" reason=\"queue-full\">" \
			"not connected</error>\n"
#define ERR_XML		"<error xmlns=\"urn:x-clawsd\" " \
			"reason=\"not-well-formed\"/>\n"

struct obuf {
	char		*data;
	size_t		 len, off, cap;
};

struct client {
	int		 fd;
	int		 dead;
	struct obuf	 out;
	XML_Parser	 xp;
	int		 depth;
	char		*in;		/* bytes from `base' on */
	size_t		 inlen, incap;
	uint64_t	 base;		/* parser byte index of in[0] */
	uint64_t	 start;		/* of the open top-level element */
	uint64_t	 last_end;	/* of the last complete one */
	uint64_t	 span;		/* first element not yet sent */
	int		 pending;	/* complete elements from span on */
};

static struct {
	const char	*jid, *password, *host, *ca, *path, *tls;
	int		 port, verbose, per_stanza;
	size_t		 client_buffer;
} opt = {
	.jid = "bench@localhost/clawsd",
	.tls = "starttls",
	.host = "127.0.0.1",
	.client_buffer = 4194304,
};

static xmpp_ctx_t	*ctx;
static xmpp_conn_t	*xconn;
static int		 xfd = -1;
static int		 up;
static uint64_t		 reconnect_at;
static unsigned long	 stanzas;
static char		 status[512];
static size_t		 status_len;
static struct client	*clients[MAX_CLIENTS];
static int		 lfd = -1;
static volatile sig_atomic_t stop;
static char		*rbuf;

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("strophe_relay: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (opt.path != NULL && lfd >= 0)
		unlink(opt.path);
	exit(1);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

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

/* Clients */

static void
client_close(struct client *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	close(c->fd);
}

static void
client_send(struct client *c, const char *p, size_t n)
{
	if (c->dead)
		return;
	if (c->out.len - c->out.off + n > opt.client_buffer &&
	    c->out.len > c->out.off) {
		fprintf(stderr, "strophe_relay: client %d: more than %zu bytes "
		    "unread, disconnecting\n", c->fd, opt.client_buffer);
		client_close(c);
		return;
	}
	obuf_append(&c->out, p, n);
}

static void
broadcast(const char *p, size_t n)
{
	int i;

	for (i = 0; i < MAX_CLIENTS; i++)
		if (clients[i] != NULL)
			client_send(clients[i], p, n);
}

static void
set_status(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(status, sizeof(status) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(status) - 1)
		n = (int)strlen(status);
	status[n++] = '\n';
	status[n] = '\0';
	status_len = (size_t)n;
	broadcast(status, status_len);
}

static void
client_flush(struct client *c)
{
	ssize_t n;

	while (!c->dead && c->out.off < c->out.len) {
		n = write(c->fd, c->out.data + c->out.off,
		    c->out.len - c->out.off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				client_close(c);
			break;
		}
		c->out.off += (size_t)n;
	}
	if (c->out.off == c->out.len)
		c->out.off = c->out.len = 0;
}

static void XMLCALL
on_cstart(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct client *c = ud;

	(void)name;
	(void)atts;
	if (++c->depth == 2)
		c->start = (uint64_t)compat_xml_byte_index(c->xp);
}

static void XMLCALL
on_cend(void *ud, const XML_Char *name)
{
	struct client *c = ud;
	uint64_t end, prev = c->last_end;

	(void)name;
	if (c->depth-- != 2)
		return;
	end = (uint64_t)compat_xml_byte_index(c->xp) +
	    compat_xml_byte_count(c->xp);
	c->last_end = end;
	if (!up) {
		client_send(c, ERR_DOWN, sizeof(ERR_DOWN) - 1);
		return;
	}
	if (opt.per_stanza) {
		xmpp_send_raw(xconn, c->in + (c->start - c->base),
		    (size_t)(end - c->start));
		return;
	}
	if (c->pending && end - c->span > SPAN_MAX) {
		xmpp_send_raw(xconn, c->in + (c->span - c->base),
		    (size_t)(prev - c->span));
		c->pending = 0;
	}
	if (!c->pending++)
		c->span = c->start;
}

/*
 * The complete elements of one read go out in one xmpp_send_raw of at most
 * SPAN_MAX bytes: they are contiguous in the input but for whitespace, which
 * a stream allows.  One call per element costs libstrophe a queue entry, a
 * TLS record and a write(2) each (--per-stanza shows how much); a larger
 * call is written one TLS record per xmpp_run_once.
 */
static void
client_send_span(struct client *c)
{
	if (c->pending == 0)
		return;
	c->pending = 0;
	if (up)
		xmpp_send_raw(xconn, c->in + (c->span - c->base),
		    (size_t)(c->last_end - c->span));
}

static void
client_new(int fd)
{
	struct client *c;
	int i;

	for (i = 0; i < MAX_CLIENTS && clients[i] != NULL; i++)
		;
	if (i == MAX_CLIENTS) {
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		die("out of memory");
	c->fd = fd;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c->xp = XML_ParserCreate(NULL);
	if (c->xp == NULL)
		die("XML_ParserCreate");
	XML_SetUserData(c->xp, c);
	XML_SetElementHandler(c->xp, on_cstart, on_cend);
#ifdef HAVE_XML_REPARSE_DEFERRAL
	/* Else expat may hold back a complete element until more comes. */
	XML_SetReparseDeferralEnabled(c->xp, XML_FALSE);
#endif
	XML_Parse(c->xp, WRAPPER, sizeof(WRAPPER) - 1, 0);
	c->base = c->last_end = sizeof(WRAPPER) - 1;
	clients[i] = c;
	client_send(c, status, status_len);
}

static void
client_free(int i)
{
	struct client *c = clients[i];

	clients[i] = NULL;
	XML_ParserFree(c->xp);
	free(c->in);
	free(c->out.data);
	free(c);
}

/* Frame what the client wrote: complete top-level elements go out. */
static void
client_input(struct client *c, const char *p, size_t n)
{
	uint64_t keep;
	size_t drop;

	if (c->inlen + n > c->incap) {
		while (c->incap < c->inlen + n)
			c->incap = c->incap ? c->incap * 2 : READ_SIZE;
		c->in = realloc(c->in, c->incap);
		if (c->in == NULL)
			die("out of memory");
	}
	memcpy(c->in + c->inlen, p, n);
	c->inlen += n;
	if (XML_Parse(c->xp, c->in + c->inlen - n, (int)n, 0) ==
	    XML_STATUS_ERROR) {
		client_send_span(c);
		client_send(c, ERR_XML, sizeof(ERR_XML) - 1);
		client_flush(c);
		client_close(c);
		return;
	}
	client_send_span(c);
	/* Keep the open element, or what follows the last complete one. */
	keep = c->depth >= 2 ? c->start : c->last_end;
	drop = (size_t)(keep - c->base);
	if (drop > 0) {
		memmove(c->in, c->in + drop, c->inlen - drop);
		c->inlen -= drop;
		c->base = keep;
	}
}

static void
client_readable(struct client *c)
{
	ssize_t n;

	n = read(c->fd, rbuf, READ_SIZE);
	if (n > 0)
		client_input(c, rbuf, (size_t)n);
	else if (n == 0 || (errno != EAGAIN && errno != EINTR))
		client_close(c);
}

/* XMPP */

static int
on_sockopt(xmpp_conn_t *conn, void *sock)
{
	(void)conn;
	xfd = *(int *)sock;
	return 0;
}

/* A line holds no raw line break: CR and LF become character references. */
static void
relay_text(const char *p, size_t n)
{
	static struct obuf line;
	size_t i;

	if (memchr(p, '\n', n) == NULL && memchr(p, '\r', n) == NULL) {
		broadcast(p, n);
		return;
	}
	line.len = line.off = 0;
	for (i = 0; i < n; i++) {
		if (p[i] == '\n')
			obuf_append(&line, "&#10;", 5);
		else if (p[i] == '\r')
			obuf_append(&line, "&#13;", 5);
		else
			obuf_append(&line, p + i, 1);
	}
	broadcast(line.data, line.len);
}

static int
is_ping(xmpp_stanza_t *st)
{
	const char *type = xmpp_stanza_get_type(st);

	return type != NULL && strcmp(type, "get") == 0 &&
	    xmpp_stanza_get_child_by_name_and_ns(st, "ping", "urn:xmpp:ping")
	    != NULL;
}

static int
on_stanza(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	const char *name = xmpp_stanza_get_name(st);
	xmpp_stanza_t *res;
	char *text;
	size_t len;

	(void)ud;
	if (!up || name == NULL)
		return 1;
	stanzas++;
	if (strcmp(name, "iq") == 0 && is_ping(st)) {
		res = xmpp_iq_new(ctx, "result", xmpp_stanza_get_id(st));
		if (xmpp_stanza_get_from(st) != NULL)
			xmpp_stanza_set_to(res, xmpp_stanza_get_from(st));
		xmpp_send(conn, res);
		xmpp_stanza_release(res);
		return 1;
	}
	if (xmpp_stanza_to_text(st, &text, &len) != XMPP_EOK)
		return 1;
	relay_text(text, len);
	broadcast("\n", 1);
	xmpp_free(ctx, text);
	return 1;
}

static void
on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *se, void *ud)
{
	xmpp_stanza_t *pres;

	(void)se;
	(void)ud;
	if (ev == XMPP_CONN_CONNECT) {
		pres = xmpp_presence_new(ctx);
		xmpp_send(conn, pres);
		xmpp_stanza_release(pres);
		up = 1;
		set_status("<connected xmlns=\"urn:x-clawsd\" jid=\"%s\" "
		    "resumed=\"false\"/>", xmpp_conn_get_bound_jid(conn));
		if (opt.verbose)
			fprintf(stderr, "strophe_relay: connected as %s\n",
			    xmpp_conn_get_bound_jid(conn));
		return;
	}
	fprintf(stderr, "strophe_relay: disconnected (event %d, error %d)\n",
	    (int)ev, error);
	if (up)
		set_status("<disconnected xmlns=\"urn:x-clawsd\" "
		    "reason=\"connection lost\"/>");
	up = 0;
	xfd = -1;
	reconnect_at = now_ms() + RECONNECT_MS;
}

static void
xmpp_start(void)
{
	reconnect_at = 0;
	if (xmpp_connect_client(xconn, opt.host, (unsigned short)opt.port,
	    on_conn, NULL) != XMPP_EOK) {
		reconnect_at = now_ms() + RECONNECT_MS;
	}
}

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
listen_unix(void)
{
	struct sockaddr_un sun;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(opt.path) >= sizeof(sun.sun_path))
		die("socket path too long");
	strcpy(sun.sun_path, opt.path);
	unlink(opt.path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    listen(lfd, 128) != 0)
		die("%s: %s", opt.path, strerror(errno));
}

static void
usage(void)
{
	fprintf(stderr,
"usage: strophe_relay --socket PATH --port PORT --password PW [--jid JID]\n"
"                     [--host HOST] [--tls starttls|direct|none]\n"
"                     [--ca FILE] [--client-buffer BYTES] [--per-stanza]\n"
"                     [-v]\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "jid", required_argument, NULL, 'j' },
		{ "password", required_argument, NULL, 'w' },
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "tls", required_argument, NULL, 't' },
		{ "ca", required_argument, NULL, 'a' },
		{ "socket", required_argument, NULL, 's' },
		{ "client-buffer", required_argument, NULL, 'b' },
		{ "per-stanza", no_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct pollfd pfd[MAX_CLIENTS + 2];
	struct client *who[MAX_CLIENTS + 2];
	struct sigaction sa;
	long flags = XMPP_CONN_FLAG_DISABLE_SM;
	unsigned long before;
	int ch, i, n, busy = 0, timeout, throttled, fd;

	while ((ch = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j': opt.jid = optarg; break;
		case 'w': opt.password = optarg; break;
		case 'H': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 't': opt.tls = optarg; break;
		case 'a': opt.ca = optarg; break;
		case 's': opt.path = optarg; break;
		case 'b': opt.client_buffer = strtoul(optarg, NULL, 10); break;
		case 'S': opt.per_stanza = 1; break;
		case 'v': opt.verbose = 1; break;
		default: usage();
		}
	}
	if (optind != argc || opt.path == NULL || opt.password == NULL ||
	    opt.port <= 0)
		usage();
	if (strcmp(opt.tls, "none") == 0)
		flags |= XMPP_CONN_FLAG_DISABLE_TLS;
	else if (strcmp(opt.tls, "direct") == 0)
		flags |= XMPP_CONN_FLAG_LEGACY_SSL;
	else if (strcmp(opt.tls, "starttls") == 0)
		flags |= XMPP_CONN_FLAG_MANDATORY_TLS;
	else
		usage();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	rbuf = malloc(READ_SIZE);
	if (rbuf == NULL)
		die("out of memory");

	xmpp_initialize();
	ctx = xmpp_ctx_new(NULL, opt.verbose ?
	    xmpp_get_default_logger(XMPP_LEVEL_INFO) : NULL);
	xconn = xmpp_conn_new(ctx);
	if (ctx == NULL || xconn == NULL)
		die("cannot create the libstrophe context");
	xmpp_conn_set_flags(xconn, flags);
	xmpp_conn_set_jid(xconn, opt.jid);
	xmpp_conn_set_pass(xconn, opt.password);
	if (opt.ca != NULL)
		xmpp_conn_set_cafile(xconn, opt.ca);
	xmpp_conn_set_sockopt_callback(xconn, on_sockopt);
	xmpp_handler_add(xconn, on_stanza, NULL, NULL, NULL, NULL);
	snprintf(status, sizeof(status), "<disconnected xmlns=\"urn:x-clawsd\" "
	    "reason=\"connecting\"/>\n");
	status_len = strlen(status);

	listen_unix();
	xmpp_start();
	while (!stop) {
		n = 0;
		pfd[n].fd = lfd;
		pfd[n].events = POLLIN;
		who[n++] = NULL;
		if (xfd >= 0) {
			pfd[n].fd = xfd;
			pfd[n].events = POLLIN;
			if (xmpp_conn_is_connecting(xconn) ||
			    xmpp_conn_send_queue_len(xconn) > 0)
				pfd[n].events |= POLLOUT;
			who[n++] = NULL;
		}
		throttled = up && xmpp_conn_send_queue_len(xconn) > SENDQ_HIGH;
		for (i = 0; i < MAX_CLIENTS; i++) {
			struct client *c = clients[i];

			if (c == NULL)
				continue;
			pfd[n].fd = c->fd;
			pfd[n].events = throttled ? 0 : POLLIN;
			if (c->out.len > c->out.off)
				pfd[n].events |= POLLOUT;
			who[n++] = c;
		}
		/*
		 * libstrophe does not tell whether it still holds bytes to
		 * write (the send queue length leaves out the element in
		 * flight) nor runs its timers by itself: like its own
		 * xmpp_run(), wake up at least every millisecond.
		 */
		timeout = busy ? 0 : 1;
		if (reconnect_at != 0) {
			uint64_t now = now_ms();

			timeout = reconnect_at <= now ? 0 :
			    (int)(reconnect_at - now);
		}
		if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (stop)
			break;
		if (reconnect_at != 0 && now_ms() >= reconnect_at)
			xmpp_start();

		before = stanzas;
		xmpp_run_once(ctx, 0);

		for (i = 0; i < n; i++) {
			if (who[i] == NULL || who[i]->dead)
				continue;
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				client_readable(who[i]);
		}
		if (pfd[0].revents & POLLIN)
			while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
				client_new(fd);
		/* What the clients wrote goes out in this turn, not the next. */
		if (up && xmpp_conn_send_queue_len(xconn) > 0)
			xmpp_run_once(ctx, 0);
		busy = stanzas != before;
		for (i = 0; i < MAX_CLIENTS; i++) {
			if (clients[i] == NULL)
				continue;
			client_flush(clients[i]);
			if (clients[i]->dead)
				client_free(i);
		}
	}
	unlink(opt.path);
	if (up) {
		xmpp_disconnect(xconn);
		for (i = 0; i < 100 && !xmpp_conn_is_disconnected(xconn); i++)
			xmpp_run_once(ctx, 10);
	}
	xmpp_conn_release(xconn);
	xmpp_ctx_free(ctx);
	xmpp_shutdown();
	return 0;
}
