/*
 * clawsdctl: the socket protocol of clawsd from the shell (SPEC section 7),
 * so that scripts never write XML by hand.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <ini.h>
#include <jansson.h>

#include "buf.h"
#include "line.h"
#include "xmlw.h"

#define DEFAULT_CONF	"/etc/clawsd/clawsd.conf"
#define DEFAULT_SOCKET	"/run/clawsd/clawsd.sock"
#define EX_REFUSED	1
/* A line from the daemon is at most a stanza; bound it all the same. */
#define LINE_MAX_BYTES	(64u << 20)
#define CTL		" xmlns=\"urn:x-clawsd\""

struct ctl {
	const char	*socket;
	const char	*conf;
	int		 timeout;	/* seconds, -T */
	int		 quiet;
	int		 fd;
	struct buf	 in;		/* read from the daemon, not yet used */
	size_t		 used;		/* of `in', the lines handed out */
	int		 eof;
	struct line	 line;		/* the last line read, parsed */
	const char	*raw;		/* ... as it came, without \n */
	size_t		 rawlen;
	char		 idbase[64];	/* for the ids of our stanzas */
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: clawsdctl [-s SOCKET] [-c FILE] [-T SECONDS] [-q] COMMAND [ARGS]\n"
	    "  send [-t TYPE] [-i ID] [-l] JID [TEXT...]\n"
	    "  iq [-t get|set] JID PAYLOAD\n"
	    "  listen [-k KINDS] [-t TYPES] [-f FROM]... [-w NS]... "
	    "[-o xml|text|json]\n"
	    "  status [-o text|json]\n"
	    "  raw\n");
}

static int	usage_error(const char *, ...)
		    __attribute__((format(printf, 1, 2)));

static int
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "clawsdctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	return EX_USAGE;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The socket: -s, $CLAWSD_SOCKET, [socket] path of the file, the default. */
static int
on_ini(void *user, const char *section, const char *name, const char *value)
{
	char **path = user;

	if (strcmp(section, "socket") == 0 && strcmp(name, "path") == 0) {
		free(*path);
		*path = xstrdup(value);
	}
	return 1;
}

static char *
socket_path(const struct ctl *c)
{
	const char *env = getenv("CLAWSD_SOCKET");
	char *path = NULL;

	if (c->socket != NULL)
		return xstrdup(c->socket);
	if (env != NULL && env[0] != '\0')
		return xstrdup(env);
	if (ini_parse(c->conf, on_ini, &path) < 0 || path == NULL) {
		free(path);
		return xstrdup(DEFAULT_SOCKET);
	}
	return path;
}

static int
ctl_connect(struct ctl *c)
{
	struct sockaddr_un sun;
	char *path = socket_path(c);
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "clawsdctl: socket path too long: %s\n", path);
		free(path);
		return EX_UNAVAILABLE;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		fprintf(stderr, "clawsdctl: cannot reach the daemon at %s: %s\n",
		    path, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(path);
		return EX_UNAVAILABLE;
	}
	free(path);
	c->fd = fd;
	return 0;
}

static int
write_all(int fd, const char *p, size_t len, int sock)
{
	ssize_t n;

	while (len > 0) {
		n = sock ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
ctl_write(struct ctl *c, const struct buf *b)
{
	if (write_all(c->fd, b->data, b->len, 1) == 0)
		return 0;
	fprintf(stderr, "clawsdctl: write to the daemon: %s\n", strerror(errno));
	return EX_UNAVAILABLE;
}

static int
ctl_puts(struct ctl *c, const char *s)
{
	struct buf b = { (char *)s, strlen(s), 0 };

	return ctl_write(c, &b);
}

/* A complete line in what was read: parse it, 1; else 0. */
static int
take_line(struct ctl *c)
{
	char *start, *nl;

	if (c->in.len == c->used)
		return 0;
	start = c->in.data + c->used;
	nl = memchr(start, '\n', c->in.len - c->used);
	if (nl == NULL)
		return 0;
	c->raw = start;
	c->rawlen = (size_t)(nl - start);
	c->used += c->rawlen + 1;
	if (line_parse(&c->line, c->raw, c->rawlen) != 0)
		memset(c->line.name, 0, sizeof(c->line.name));
	return 1;
}

static int
read_some(struct ctl *c)
{
	ssize_t n;

	if (c->used > 0) {
		buf_consume(&c->in, c->used);
		c->used = 0;
	}
	if (c->in.len > LINE_MAX_BYTES) {
		fprintf(stderr, "clawsdctl: a line from the daemon is too "
		    "long\n");
		return -1;
	}
	buf_reserve(&c->in, 65536);
	do
		n = read(c->fd, c->in.data + c->in.len, 65536);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		fprintf(stderr, "clawsdctl: read from the daemon: %s\n",
		    strerror(errno));
		return -1;
	}
	if (n == 0)
		c->eof = 1;
	c->in.len += (size_t)n;
	return 0;
}

enum wait {
	W_LINE,		/* c->line holds the next line */
	W_INPUT,	/* standard input can be read */
	W_EOF,		/* the daemon closed the connection */
	W_TIMEOUT,
	W_ERROR,
};

/*
 * The next event: a line from the daemon, input on `in' (when >= 0), the
 * end of the connection, or `deadline' (ms, 0: none) passing.
 */
static enum wait
wait_event(struct ctl *c, int in, uint64_t deadline)
{
	struct pollfd pfd[2];
	uint64_t now;
	int n, ms;

	for (;;) {
		if (take_line(c))
			return W_LINE;
		if (c->eof)
			return W_EOF;
		pfd[0].fd = c->fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = in;
		pfd[1].events = POLLIN;
		ms = -1;
		if (deadline != 0) {
			now = now_ms();
			if (now >= deadline)
				return W_TIMEOUT;
			ms = (int)(deadline - now);
		}
		n = poll(pfd, in >= 0 ? 2 : 1, ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return W_ERROR;
		if (n == 0)
			continue;
		if (pfd[0].revents != 0) {
			if (read_some(c) != 0)
				return W_ERROR;
			/* A line goes first; the input waits a turn. */
			continue;
		}
		if (in >= 0 && pfd[1].revents != 0)
			return W_INPUT;
	}
}

static uint64_t
deadline_of(const struct ctl *c)
{
	return now_ms() + (uint64_t)c->timeout * 1000;
}

static int
is_ctl(const struct ctl *c, const char *name)
{
	return c->line.ctl && strcmp(c->line.name, name) == 0;
}

static int
is_stanza(const struct ctl *c, const char *name)
{
	return c->line.stanza && strcmp(c->line.name, name) == 0;
}

/* An error line: its reason and text on stderr. */
static void
print_error(const struct ctl *c)
{
	const char *reason = line_attr(&c->line, "reason");
	const char *n = line_attr(&c->line, "n");
	const char *id = line_attr(&c->line, "id");

	fprintf(stderr, "clawsdctl: %s: %s", reason ? reason : "error",
	    c->line.text.data ? c->line.text.data : "");
	if (n != NULL)
		fprintf(stderr, " (stanza %s%s%s)", n, id ? ", id " : "",
		    id ? id : "");
	fputc('\n', stderr);
}

static int
lost(const struct ctl *c, enum wait w)
{
	if (w == W_EOF)
		fprintf(stderr, "clawsdctl: the daemon closed the connection\n");
	return EX_UNAVAILABLE;
}

/*
 * The first line: the session's state.  An error line instead means the
 * daemon would not take us (too many clients).
 */
static int
hello(struct ctl *c)
{
	enum wait w = wait_event(c, -1, deadline_of(c));

	if (w == W_TIMEOUT) {
		fprintf(stderr, "clawsdctl: no answer from the daemon in %d s\n",
		    c->timeout);
		return EX_TEMPFAIL;
	}
	if (w != W_LINE)
		return lost(c, w);
	if (is_ctl(c, "error")) {
		print_error(c);
		return EX_UNAVAILABLE;
	}
	return 0;
}

static void
next_id(struct ctl *c, struct buf *out, unsigned long n)
{
	buf_printf(out, "%s-%lu", c->idbase, n);
}

/* send */

struct sender {
	struct ctl	*c;
	const char	*to;
	const char	*type;
	const char	*id;		/* -i, or NULL */
	unsigned long	 n;		/* messages written */
	unsigned long	 acked;
	int		 failed;
};

static int
send_message(struct sender *s, const char *text, size_t len)
{
	struct buf b;
	int rc;

	buf_init(&b);
	s->n++;
	buf_puts(&b, "<message");
	xmlw_attr_pair(&b, "to", s->to);
	xmlw_attr_pair(&b, "type", s->type);
	buf_puts(&b, " id=\"");
	if (s->id != NULL && s->n == 1)
		xmlw_attr(&b, s->id, strlen(s->id));
	else if (s->id != NULL)
		buf_printf(&b, "%s-%lu", s->id, s->n);
	else
		next_id(s->c, &b, s->n);
	buf_puts(&b, "\"><body>");
	xmlw_text(&b, text, len);
	buf_puts(&b, "</body></message>\n");
	rc = ctl_write(s->c, &b);
	buf_free(&b);
	return rc;
}

/* What the daemon says while messages wait: 0 goes on, else an exit. */
static int
sender_line(struct sender *s)
{
	struct ctl *c = s->c;
	const char *id;

	if (is_ctl(c, "ack")) {
		s->acked++;
		id = line_attr(&c->line, "id");
		if (!c->quiet)
			printf("%s\n", id ? id : "");
		return 0;
	}
	if (is_ctl(c, "error")) {
		print_error(c);
		s->failed = 1;
		/* About the connection, not one stanza: it is closed. */
		if (line_attr(&c->line, "n") == NULL)
			return EX_REFUSED;
		s->acked++;
		return 0;
	}
	if (is_stanza(c, "message") && (id = line_attr(&c->line, "type")) &&
	    strcmp(id, "error") == 0) {
		id = line_attr(&c->line, "id");
		fprintf(stderr, "clawsdctl: message %s bounced: %s\n",
		    id ? id : "", c->line.error[0] ? c->line.error : "error");
		s->failed = 1;
	}
	return 0;
}

static void
chop_newline(struct buf *b)
{
	if (b->len > 0 && b->data[b->len - 1] == '\n')
		b->len--;
}

static int
read_stdin(struct buf *b)
{
	ssize_t n;

	for (;;) {
		buf_reserve(b, 65536);
		n = read(STDIN_FILENO, b->data + b->len, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "clawsdctl: standard input: %s\n",
			    strerror(errno));
			return -1;
		}
		if (n == 0)
			return 0;
		b->len += (size_t)n;
	}
}

/* -l: every complete line of `b' is a message; the rest waits. */
static int
send_lines(struct sender *s, struct buf *b, int last)
{
	char *p, *nl;
	int rc;

	while ((nl = memchr(b->data, '\n', b->len)) != NULL) {
		p = b->data;
		rc = send_message(s, p, (size_t)(nl - p));
		buf_consume(b, (size_t)(nl + 1 - p));
		if (rc != 0)
			return rc;
	}
	if (last && b->len > 0) {
		rc = send_message(s, b->data, b->len);
		b->len = 0;
		return rc;
	}
	return 0;
}

static int
stdin_chunk(struct sender *s, struct buf *b, int *open)
{
	ssize_t n;

	buf_reserve(b, 65536);
	n = read(STDIN_FILENO, b->data + b->len, 65536);
	if (n < 0 && errno == EINTR)
		return 0;
	if (n < 0) {
		fprintf(stderr, "clawsdctl: standard input: %s\n",
		    strerror(errno));
		return EX_REFUSED;
	}
	b->len += (size_t)n;
	if (n == 0)
		*open = 0;
	return send_lines(s, b, n == 0);
}

static int
send_wait(struct sender *s, int streaming)
{
	struct ctl *c = s->c;
	struct buf in;
	int open = streaming, rc = 0;
	uint64_t deadline = streaming ? 0 : deadline_of(c);
	enum wait w;

	buf_init(&in);
	while (rc == 0 && (open || s->acked < s->n)) {
		w = wait_event(c, open ? STDIN_FILENO : -1, deadline);
		if (w == W_LINE)
			rc = sender_line(s);
		else if (w == W_INPUT) {
			rc = stdin_chunk(s, &in, &open);
			if (!open)
				deadline = deadline_of(c);
		} else if (w == W_TIMEOUT) {
			fprintf(stderr, "clawsdctl: %lu of %lu messages not yet "
			    "confirmed by the server after %d s: they stay "
			    "queued in the daemon and will still be sent\n",
			    s->n - s->acked, s->n, c->timeout);
			rc = EX_TEMPFAIL;
		} else
			rc = lost(c, w);
	}
	buf_free(&in);
	if (rc == 0 && s->failed)
		rc = EX_REFUSED;
	return rc;
}

static int
cmd_send(struct ctl *c, int argc, char **argv)
{
	struct sender s = { .c = c, .type = "chat" };
	struct buf text;
	int ch, lines = 0, rc, i;

	optind = 0;
	while ((ch = getopt(argc, argv, "+t:i:l")) != -1) {
		switch (ch) {
		case 't': s.type = optarg; break;
		case 'i': s.id = optarg; break;
		case 'l': lines = 1; break;
		default: usage(stderr); return EX_USAGE;
		}
	}
	if (optind >= argc)
		return usage_error("send: no JID");
	s.to = argv[optind++];
	if (lines && optind < argc)
		return usage_error("send: -l reads standard input, not "
		    "TEXT");
	buf_init(&text);
	for (i = optind; i < argc; i++) {
		if (i > optind)
			buf_putc(&text, ' ');
		buf_puts(&text, argv[i]);
	}
	if (!lines && optind == argc) {
		if (read_stdin(&text) != 0) {
			buf_free(&text);
			return EX_REFUSED;
		}
		chop_newline(&text);
	}
	if ((rc = ctl_connect(c)) != 0 || (rc = hello(c)) != 0 ||
	    (rc = ctl_puts(c, "<receipts" CTL "/><filter" CTL
	    " stanzas=\"\"/>\n")) != 0) {
		buf_free(&text);
		return rc;
	}
	if (!lines)
		rc = send_message(&s, text.data ? text.data : "", text.len);
	buf_free(&text);
	return rc != 0 ? rc : send_wait(&s, lines);
}

/* iq */

static int
cmd_iq(struct ctl *c, int argc, char **argv)
{
	const char *type = "get", *id, *t;
	struct buf b;
	enum wait w;
	int ch, rc;

	optind = 0;
	while ((ch = getopt(argc, argv, "+t:")) != -1) {
		if (ch != 't') {
			usage(stderr);
			return EX_USAGE;
		}
		type = optarg;
	}
	if (strcmp(type, "get") != 0 && strcmp(type, "set") != 0)
		return usage_error("iq: -t is get or set, not \"%s\"", type);
	if (argc - optind != 2)
		return usage_error("iq: expected JID PAYLOAD");
	if (!line_is_element(argv[optind + 1], strlen(argv[optind + 1])))
		return usage_error("iq: PAYLOAD is not one well-formed XML "
		    "element: %s", argv[optind + 1]);
	if ((rc = ctl_connect(c)) != 0 || (rc = hello(c)) != 0 ||
	    (rc = ctl_puts(c, "<filter" CTL " stanzas=\"\"/>\n")) != 0)
		return rc;
	buf_init(&b);
	buf_puts(&b, "<iq");
	xmlw_attr_pair(&b, "type", type);
	xmlw_attr_pair(&b, "to", argv[optind]);
	buf_puts(&b, " id=\"");
	next_id(c, &b, 1);
	buf_puts(&b, "\">");
	buf_puts(&b, argv[optind + 1]);
	buf_puts(&b, "</iq>\n");
	rc = ctl_write(c, &b);
	b.len = 0;
	next_id(c, &b, 1);
	buf_cstr(&b);
	while (rc == 0) {
		w = wait_event(c, -1, deadline_of(c));
		if (w == W_TIMEOUT) {
			fprintf(stderr, "clawsdctl: no answer in %d s\n",
			    c->timeout);
			rc = EX_TEMPFAIL;
		} else if (w != W_LINE)
			rc = lost(c, w);
		else if (is_ctl(c, "error")) {
			print_error(c);
			rc = EX_REFUSED;
		} else if (is_stanza(c, "iq") &&
		    (id = line_attr(&c->line, "id")) != NULL &&
		    strcmp(id, b.data) == 0) {
			t = line_attr(&c->line, "type");
			if (!c->quiet || (t && strcmp(t, "error") == 0))
				printf("%.*s\n", (int)c->rawlen, c->raw);
			if (t != NULL && strcmp(t, "result") == 0)
				break;
			fprintf(stderr, "clawsdctl: error answer: %s\n",
			    c->line.error[0] ? c->line.error : "error");
			rc = EX_REFUSED;
		}
	}
	buf_free(&b);
	return rc;
}

/* listen */

enum format { OUT_XML, OUT_TEXT, OUT_JSON };

static int
parse_format(const char *s, enum format *f, int xml_ok)
{
	if (xml_ok && strcmp(s, "xml") == 0)
		*f = OUT_XML;
	else if (strcmp(s, "text") == 0)
		*f = OUT_TEXT;
	else if (strcmp(s, "json") == 0)
		*f = OUT_JSON;
	else
		return -1;
	return 0;
}

/* A field of the text format: TAB, LF and backslash escaped. */
static void
put_field(const char *s, int last)
{
	for (; s != NULL && *s != '\0'; s++) {
		if (*s == '\t')
			fputs("\\t", stdout);
		else if (*s == '\n')
			fputs("\\n", stdout);
		else if (*s == '\\')
			fputs("\\\\", stdout);
		else
			putchar(*s);
	}
	putchar(last ? '\n' : '\t');
}

static const char *
stanza_type(const struct ctl *c)
{
	const char *t = line_attr(&c->line, "type");

	if (t != NULL)
		return t;
	if (strcmp(c->line.name, "message") == 0)
		return "normal";
	if (strcmp(c->line.name, "presence") == 0)
		return "available";
	return NULL;
}

static json_t *
jstr(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

static void
print_json(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);

	if (s != NULL)
		printf("%s\n", s);
	free(s);
	json_decref(o);
}

static void
print_relayed(const struct ctl *c, enum format f)
{
	const char *body = c->line.has_body ? c->line.body.data : NULL;
	json_t *o;

	if (f == OUT_XML) {
		printf("%.*s\n", (int)c->rawlen, c->raw);
	} else if (f == OUT_TEXT) {
		put_field(c->line.name, 0);
		put_field(stanza_type(c), 0);
		put_field(line_attr(&c->line, "from"), 0);
		put_field(line_attr(&c->line, "to"), 0);
		put_field(line_attr(&c->line, "id"), 0);
		put_field(body, 1);
	} else {
		o = json_object();
		json_object_set_new(o, "kind", json_string(c->line.name));
		json_object_set_new(o, "type", jstr(stanza_type(c)));
		json_object_set_new(o, "from", jstr(line_attr(&c->line, "from")));
		json_object_set_new(o, "to", jstr(line_attr(&c->line, "to")));
		json_object_set_new(o, "id", jstr(line_attr(&c->line, "id")));
		json_object_set_new(o, "body", jstr(body));
		json_object_set_new(o, "xml", json_stringn(c->raw, c->rawlen));
		print_json(o);
	}
}

/* connected (with the JID) or disconnected (with the reason). */
static void
print_state(const struct ctl *c, enum format f)
{
	const char *key = strcmp(c->line.name, "connected") == 0 ? "jid" :
	    "reason";
	const char *v = line_attr(&c->line, key);
	json_t *o;

	if (f == OUT_XML) {
		printf("%.*s\n", (int)c->rawlen, c->raw);
	} else if (f == OUT_TEXT) {
		put_field(c->line.name, 0);
		put_field(NULL, 0);
		put_field(NULL, 0);
		put_field(NULL, 0);
		put_field(NULL, 0);
		put_field(v, 1);
	} else {
		o = json_object();
		json_object_set_new(o, "kind", json_string(c->line.name));
		json_object_set_new(o, key, jstr(v));
		json_object_set_new(o, "xml", json_stringn(c->raw, c->rawlen));
		print_json(o);
	}
}

static void
list_add(struct buf *b, const char *words)
{
	const char *p;

	if (b->len > 0)
		buf_putc(b, ' ');
	/* Commas are separators too: -k message,iq. */
	for (p = words; *p != '\0'; p++)
		buf_putc(b, *p == ',' ? ' ' : *p);
}

static void
filter_attr(struct buf *cmd, const char *name, struct buf *list, int given)
{
	if (given)
		xmlw_attr_pair(cmd, name, buf_cstr(list));
	buf_free(list);
}

static int
cmd_listen(struct ctl *c, int argc, char **argv)
{
	struct buf kinds, types, from, with, cmd;
	int gk = 0, gt = 0, gf = 0, gw = 0, ch, rc;
	enum format f = OUT_XML;
	enum wait w;

	buf_init(&kinds);
	buf_init(&types);
	buf_init(&from);
	buf_init(&with);
	buf_init(&cmd);
	optind = 0;
	while ((ch = getopt(argc, argv, "+k:t:f:w:o:")) != -1) {
		switch (ch) {
		case 'k': list_add(&kinds, optarg); gk = 1; break;
		case 't': list_add(&types, optarg); gt = 1; break;
		case 'f': list_add(&from, optarg); gf = 1; break;
		case 'w': list_add(&with, optarg); gw = 1; break;
		case 'o':
			if (parse_format(optarg, &f, 1) == 0)
				break;
			/* FALLTHROUGH */
		default:
			gk = -1;
			break;
		}
	}
	buf_puts(&cmd, "<filter" CTL);
	filter_attr(&cmd, "stanzas", &kinds, gk == 1);
	filter_attr(&cmd, "types", &types, gt);
	filter_attr(&cmd, "from", &from, gf);
	filter_attr(&cmd, "with", &with, gw);
	buf_puts(&cmd, "/>\n");
	if (gk < 0 || optind != argc) {
		buf_free(&cmd);
		usage(stderr);
		return EX_USAGE;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((rc = ctl_connect(c)) != 0 || (rc = hello(c)) != 0 ||
	    (rc = ctl_write(c, &cmd)) != 0) {
		buf_free(&cmd);
		return rc;
	}
	buf_free(&cmd);
	for (;;) {
		if (is_ctl(c, "connected") || is_ctl(c, "disconnected"))
			print_state(c, f);
		else if (is_ctl(c, "error")) {
			print_error(c);
			return EX_REFUSED;
		} else if (c->line.stanza)
			print_relayed(c, f);
		w = wait_event(c, -1, 0);
		if (w != W_LINE)
			return lost(c, w);
	}
}

/* status */

static int
yes(const char *v)
{
	return v != NULL && strcmp(v, "yes") == 0;
}

/* Its rooms (SPEC 8): "room: JID yes|no NICK" lines, or a JSON array. */
static void
status_rooms(const struct line *l, enum format f, json_t *o)
{
	const char *jid, *nick, *joined;
	json_t *rooms = json_array(), *r;

	for (jid = line_room(l, NULL); jid != NULL; jid = line_room(l, jid)) {
		nick = jid + strlen(jid) + 1;
		joined = nick + strlen(nick) + 1;
		if (f == OUT_TEXT) {
			printf("room: %s %s %s\n", jid, yes(joined) ? "yes" :
			    "no", nick);
			continue;
		}
		r = json_object();
		json_object_set_new(r, "jid", jstr(jid));
		json_object_set_new(r, "nick", jstr(nick));
		json_object_set_new(r, "joined", json_boolean(yes(joined)));
		json_array_append_new(rooms, r);
	}
	json_object_set_new(o, "rooms", rooms);
}

static void
print_status(const struct line *l, enum format f)
{
	/* Its attributes (SPEC 4.5, 9) and their JSON types. */
	static const struct {
		const char	*key;
		enum { V_STRING, V_YESNO, V_NUMBER } type;
	} keys[] = {
		{ "state", V_STRING }, { "jid", V_STRING }, { "sm", V_YESNO },
		{ "queued", V_NUMBER }, { "unacked", V_NUMBER },
		{ "clients", V_NUMBER }, { "since", V_NUMBER },
		{ "catching_up", V_YESNO },
	};
	const char *k, *v;
	json_t *o = json_object();
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		k = keys[i].key;
		v = line_attr(l, k);
		if (f == OUT_TEXT && v != NULL)
			printf("%s: %s\n", k, v);
		else if (keys[i].type == V_STRING)
			json_object_set_new(o, k, jstr(v));
		else if (keys[i].type == V_YESNO)
			json_object_set_new(o, k, json_boolean(yes(v)));
		else if (v != NULL)
			json_object_set_new(o, k,
			    json_integer(strtoll(v, NULL, 10)));
	}
	status_rooms(l, f, o);
	if (f == OUT_JSON)
		print_json(o);
	else
		json_decref(o);
}

static int
cmd_status(struct ctl *c, int argc, char **argv)
{
	enum format f = OUT_TEXT;
	enum wait w;
	int ch, rc;

	optind = 0;
	while ((ch = getopt(argc, argv, "+o:")) != -1)
		if (ch != 'o' || parse_format(optarg, &f, 0) != 0) {
			usage(stderr);
			return EX_USAGE;
		}
	if (optind != argc)
		return usage_error("status: no arguments expected");
	if ((rc = ctl_connect(c)) != 0 || (rc = hello(c)) != 0 ||
	    (rc = ctl_puts(c, "<filter" CTL " stanzas=\"\"/><status" CTL
	    "/>\n")) != 0)
		return rc;
	do {
		w = wait_event(c, -1, deadline_of(c));
		if (w == W_TIMEOUT) {
			fprintf(stderr, "clawsdctl: no answer in %d s\n",
			    c->timeout);
			return EX_TEMPFAIL;
		}
		if (w != W_LINE)
			return lost(c, w);
	} while (!is_ctl(c, "status"));
	if (!c->quiet)
		print_status(&c->line, f);
	return 0;
}

/* raw */

static int
cmd_raw(struct ctl *c, int argc, char **argv)
{
	char chunk[65536];
	int open = 1, failed = 0, rc;
	uint64_t deadline = 0;
	enum wait w;
	ssize_t n;

	if (argc != 1)
		return usage_error("raw: no arguments expected");
	if ((rc = ctl_connect(c)) != 0)
		return rc;
	for (;;) {
		w = wait_event(c, open ? STDIN_FILENO : -1, deadline);
		if (w == W_LINE) {
			if (!c->quiet || is_ctl(c, "error"))
				printf("%.*s\n", (int)c->rawlen, c->raw);
			if (is_ctl(c, "error"))
				failed = 1;
			fflush(stdout);
			continue;
		}
		if (w == W_EOF)
			return failed ? EX_REFUSED : 0;
		if (w == W_TIMEOUT) {
			fprintf(stderr, "clawsdctl: the daemon still had "
			    "answers pending after %d s\n", c->timeout);
			return EX_TEMPFAIL;
		}
		if (w != W_INPUT)
			return lost(c, w);
		n = read(STDIN_FILENO, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0 && write_all(c->fd, chunk, (size_t)n, 1) != 0)
			return lost(c, W_ERROR);
		if (n <= 0) {
			/* SPEC 4.4: the daemon answers, then closes. */
			open = 0;
			shutdown(c->fd, SHUT_WR);
			deadline = deadline_of(c);
		}
	}
}

int
main(int argc, char **argv)
{
	static const struct {
		const char	*name;
		int		(*run)(struct ctl *, int, char **);
	} cmds[] = {
		{ "send", cmd_send }, { "iq", cmd_iq },
		{ "listen", cmd_listen }, { "status", cmd_status },
		{ "raw", cmd_raw },
	};
	struct ctl c;
	char *end;
	size_t i;
	int ch, rc;

	memset(&c, 0, sizeof(c));
	c.conf = DEFAULT_CONF;
	c.timeout = 30;
	c.fd = -1;
	while ((ch = getopt(argc, argv, "+s:c:T:qh")) != -1) {
		switch (ch) {
		case 's': c.socket = optarg; break;
		case 'c': c.conf = optarg; break;
		case 'T':
			c.timeout = (int)strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || c.timeout < 1 ||
			    c.timeout > 86400)
				return usage_error("-T: expected seconds "
				    "(1..86400): \"%s\"", optarg);
			break;
		case 'q': c.quiet = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EX_USAGE;
		}
	}
	if (optind >= argc)
		return usage_error("no command");
	signal(SIGPIPE, SIG_IGN);
	snprintf(c.idbase, sizeof(c.idbase), "clawsdctl-%lx-%ld",
	    (unsigned long)time(NULL), (long)getpid());
	buf_init(&c.in);
	line_init(&c.line);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[optind], cmds[i].name) == 0)
			break;
	if (i == sizeof(cmds) / sizeof(cmds[0]))
		rc = usage_error("unknown command \"%s\"", argv[optind]);
	else
		rc = cmds[i].run(&c, argc - optind, argv + optind);
	if (c.fd >= 0)
		close(c.fd);
	buf_free(&c.in);
	line_free(&c.line);
	if (fflush(stdout) != 0 && rc == 0)
		rc = EX_REFUSED;
	return rc;
}
