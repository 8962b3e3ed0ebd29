/*
 * Configuration file (SPEC section 2).
 *
 * inih splits the file into sections, keys and values; this file checks them.
 * inih as packaged by Debian gives the handler no line number and reports
 * only the first syntax error, so the file is fed to it through our own line
 * reader (conf_reader), which:
 *
 *  - counts the lines, so the handler knows which line it is looking at
 *    (inih handles a line completely before it asks for the next one);
 *  - strips leading whitespace, which turns off inih's multi-line values: an
 *    indented line would otherwise be glued silently to the previous value;
 *  - recognises the lines inih would reject, reports them and hands inih an
 *    empty line instead, so that every syntax error is reported;
 *  - notes the section headers, so that an empty unknown section is still
 *    reported and a missing required key is reported at its section's header.
 *
 * Every problem is printed as "FILE:LINE: message" and loading goes on, so a
 * single run of `clawsd -t' lists them all.  The password never appears in a
 * message: neither the value of `password' nor the content of a line that is
 * not understood is ever quoted.
 */
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <mbedtls/x509_crt.h>

#include <ini.h>
#include <mbedtls/platform_util.h>

#include "buf.h"
#include "conf.h"
#include "log.h"

#define DEFAULT_RESOURCE	"clawsd"
#define DEFAULT_SASL		"SCRAM-SHA-512 SCRAM-SHA-256 SCRAM-SHA-1 PLAIN"
#define DEFAULT_SOCKET_PATH	"/run/clawsd/clawsd.sock"

/* One day: long enough for any timer, and seconds * 1000 fits 32 bits. */
#define MAX_SECONDS		86400
/* RFC 7622 section 3: each part of a JID is at most 1023 bytes. */
#define JID_PART_MAX		1023
/* A password file is one short line; more is a mistake, not a password. */
#define PASSWORD_MAX		1024
/* Enough for any value quoted with escapes (a line is < 200 bytes). */
#define QUOTE_MAX		1024

enum section {
	SEC_XMPP,
	SEC_ROOMS,
	SEC_SOCKET,
	SEC_LOG,
	SEC_N
};

static const char *const section_names[SEC_N] = {
	"xmpp", "rooms", "socket", "log",
};

/* Rooms a file may list: each is an archive in the state file too. */
#define ROOMS_MAX		1000

enum key_id {
	K_USER,
	K_DOMAIN,
	K_RESOURCE,
	K_JID,
	K_PASSWORD,
	K_PASSWORD_FILE,
	K_HOST,
	K_PORT,
	K_TLS,
	K_TLS_VERIFY,
	K_CA_FILE,
	K_SASL_MECHANISMS,
	K_CHANNEL_BINDING,
	K_PRESENCE,
	K_PRIORITY,
	K_STREAM_MANAGEMENT,
	K_PING_INTERVAL,
	K_PING_TIMEOUT,
	K_CONNECT_TIMEOUT,
	K_RECONNECT_DELAY,
	K_RECONNECT_MAX_DELAY,
	K_QUEUE_MAX,
	K_MAX_STANZA_SIZE,
	K_CATCH_UP,
	K_CATCH_UP_MAX,
	K_STATE_DIRECTORY,
	K_ROOMS_PING_INTERVAL,
	K_PATH,
	K_MODE,
	K_GROUP,
	K_MAX_CLIENTS,
	K_CLIENT_BUFFER,
	K_REPLY_TIMEOUT,
	K_LEVEL,
	K_N
};

/* Problems are sorted by line before they are printed. */
struct problem {
	int		 line;
	size_t		 seq;
	char		*text;
};

struct loader {
	struct conf	*c;
	const char	*path;
	FILE		*fp;
	FILE		*errors;
	int		 line;			/* current line, from 1 */
	struct problem	*problems;		/* reported, in order found */
	size_t		 nproblems;
	int		 read_errno;		/* 0, or why reading stopped */
	int		 section_line[SEC_N];	/* its header's line, 0: none */
	int		 key_line[K_N];		/* line that set it, 0: unset */
};

typedef void	 setter(struct loader *, enum key_id, const char *);

struct key {
	enum section	 section;
	const char	*name;
	setter		*set;
	size_t		 off;		/* field, for the generic setters */
	long long	 min, max;	/* range, for the numeric setters */
};

static setter	set_string, set_bool, set_int, set_uint, set_size;
static setter	set_user, set_domain, set_resource, set_jid;
static setter	set_password, set_password_file, set_tls, set_ca_file;
static setter	set_channel_binding;
static setter	set_sasl, set_path, set_mode, set_group, set_level;
static setter	set_state_directory;

#define F(m)	offsetof(struct conf, m)

static const struct key keys[K_N] = {
	[K_USER] =		{ SEC_XMPP, "user", set_user, F(user), 0, 0 },
	[K_DOMAIN] =		{ SEC_XMPP, "domain", set_domain, F(domain),
				  0, 0 },
	[K_RESOURCE] =		{ SEC_XMPP, "resource", set_resource,
				  F(resource), 0, 0 },
	[K_JID] =		{ SEC_XMPP, "jid", set_jid, 0, 0, 0 },
	[K_PASSWORD] =		{ SEC_XMPP, "password", set_password, 0, 0, 0 },
	[K_PASSWORD_FILE] =	{ SEC_XMPP, "password_file", set_password_file,
				  0, 0, 0 },
	[K_HOST] =		{ SEC_XMPP, "host", set_string, F(host), 0, 0 },
	[K_PORT] =		{ SEC_XMPP, "port", set_int, F(port),
				  1, 65535 },
	[K_TLS] =		{ SEC_XMPP, "tls", set_tls, 0, 0, 0 },
	[K_TLS_VERIFY] =	{ SEC_XMPP, "tls_verify", set_bool,
				  F(tls_verify), 0, 0 },
	[K_CA_FILE] =		{ SEC_XMPP, "ca_file", set_ca_file, F(ca_file),
				  0, 0 },
	[K_SASL_MECHANISMS] =	{ SEC_XMPP, "sasl_mechanisms", set_sasl,
				  0, 0, 0 },
	[K_CHANNEL_BINDING] =	{ SEC_XMPP, "channel_binding",
				  set_channel_binding, 0, 0, 0 },
	[K_PRESENCE] =		{ SEC_XMPP, "presence", set_bool, F(presence),
				  0, 0 },
	[K_PRIORITY] =		{ SEC_XMPP, "priority", set_int, F(priority),
				  -128, 127 },
	[K_STREAM_MANAGEMENT] =	{ SEC_XMPP, "stream_management", set_bool,
				  F(stream_management), 0, 0 },
	[K_PING_INTERVAL] =	{ SEC_XMPP, "ping_interval", set_uint,
				  F(ping_interval), 0, MAX_SECONDS },
	[K_PING_TIMEOUT] =	{ SEC_XMPP, "ping_timeout", set_uint,
				  F(ping_timeout), 1, MAX_SECONDS },
	[K_CONNECT_TIMEOUT] =	{ SEC_XMPP, "connect_timeout", set_uint,
				  F(connect_timeout), 1, MAX_SECONDS },
	[K_RECONNECT_DELAY] =	{ SEC_XMPP, "reconnect_delay", set_uint,
				  F(reconnect_delay), 1, MAX_SECONDS },
	[K_RECONNECT_MAX_DELAY] = { SEC_XMPP, "reconnect_max_delay", set_uint,
				  F(reconnect_max_delay), 1, MAX_SECONDS },
	[K_QUEUE_MAX] =		{ SEC_XMPP, "queue_max", set_size, F(queue_max),
				  0, 1000000 },
	[K_MAX_STANZA_SIZE] =	{ SEC_XMPP, "max_stanza_size", set_size,
				  F(max_stanza_size), 1024, 64 << 20 },
	[K_CATCH_UP] =		{ SEC_XMPP, "catch_up", set_bool, F(catch_up),
				  0, 0 },
	[K_CATCH_UP_MAX] =	{ SEC_XMPP, "catch_up_max", set_size,
				  F(catch_up_max), 1, 100000 },
	[K_STATE_DIRECTORY] =	{ SEC_XMPP, "state_directory",
				  set_state_directory, F(state_directory),
				  0, 0 },
	[K_ROOMS_PING_INTERVAL] = { SEC_ROOMS, "rooms_ping_interval", set_uint,
				  F(rooms_ping_interval), 0, MAX_SECONDS },
	[K_PATH] =		{ SEC_SOCKET, "path", set_path, F(socket_path),
				  0, 0 },
	[K_MODE] =		{ SEC_SOCKET, "mode", set_mode, 0, 0, 0 },
	[K_GROUP] =		{ SEC_SOCKET, "group", set_group, 0, 0, 0 },
	[K_MAX_CLIENTS] =	{ SEC_SOCKET, "max_clients", set_size,
				  F(max_clients), 1, 65536 },
	[K_CLIENT_BUFFER] =	{ SEC_SOCKET, "client_buffer", set_size,
				  F(client_buffer), 65536, 1 << 30 },
	[K_REPLY_TIMEOUT] =	{ SEC_SOCKET, "reply_timeout", set_uint,
				  F(reply_timeout), 1, MAX_SECONDS },
	[K_LEVEL] =		{ SEC_LOG, "level", set_level, 0, 0, 0 },
};

#undef F

/* Preference order of the default; also the set of names we know. */
static const char *const mechanisms[] = {
	"SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN",
};
#define NMECHANISMS	(sizeof(mechanisms) / sizeof(mechanisms[0]))

/*
 * Reporting.
 */

static void __attribute__((format(printf, 3, 0)))
vreport(struct loader *ld, int line, const char *fmt, va_list ap)
{
	struct problem *p;
	va_list copy;
	int n;

	va_copy(copy, ap);
	n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	ld->problems = xrealloc(ld->problems,
	    (ld->nproblems + 1) * sizeof(*ld->problems));
	p = &ld->problems[ld->nproblems];
	p->line = line;
	p->seq = ld->nproblems++;
	p->text = xmalloc(n > 0 ? (size_t)n + 1 : 1);
	p->text[0] = '\0';
	if (n > 0)
		vsnprintf(p->text, (size_t)n + 1, fmt, ap);
}

static void __attribute__((format(printf, 3, 4)))
report(struct loader *ld, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(ld, line, fmt, ap);
	va_end(ap);
}

/* "[section] key: ..." at `line'. */
static void __attribute__((format(printf, 4, 5)))
key_report(struct loader *ld, int line, enum key_id id, const char *fmt, ...)
{
	struct problem *p;
	struct buf b;
	va_list ap;

	va_start(ap, fmt);
	vreport(ld, line, fmt, ap);
	va_end(ap);
	/* The prefix goes in front of the text, not into the format. */
	p = &ld->problems[ld->nproblems - 1];
	buf_init(&b);
	buf_printf(&b, "[%s] %s: %s", section_names[keys[id].section],
	    keys[id].name, p->text);
	free(p->text);
	p->text = xstrdup(buf_cstr(&b));
	buf_free(&b);
}

/*
 * `s' in double quotes, with quotes, backslashes and control bytes escaped
 * so that a message stays one readable line; cut short with "..." if it
 * does not fit `out'.
 */
static const char *
quote(char out[QUOTE_MAX], const char *s)
{
	size_t n = 0;
	unsigned char ch;

	out[n++] = '"';
	for (; *s != '\0'; s++) {
		if (n + 12 > QUOTE_MAX) {
			memcpy(out + n, "...", 3);
			n += 3;
			break;
		}
		ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			n += snprintf(out + n, QUOTE_MAX - n, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			n += snprintf(out + n, QUOTE_MAX - n, "\\x%02x", ch);
		else
			out[n++] = (char)ch;
	}
	out[n++] = '"';
	out[n] = '\0';
	return out;
}

/* A section or key name as is, unless it needs quoting to be readable. */
static const char *
name_str(char out[QUOTE_MAX], const char *s)
{
	const char *p;

	for (p = s; *p != '\0'; p++)
		if (!isgraph((unsigned char)*p) || *p == '"')
			return quote(out, s);
	return *s != '\0' ? s : quote(out, s);
}

/* The common case: "[section] key: problem: "value"" at the current line. */
static void
bad_value(struct loader *ld, enum key_id id, const char *problem,
    const char *value)
{
	char q[QUOTE_MAX];

	key_report(ld, ld->line, id, "%s: %s", problem, quote(q, value));
}

/*
 * Small helpers.
 */

static void *
field(struct loader *ld, enum key_id id)
{
	return (char *)ld->c + keys[id].off;
}

static void
replace(char **dst, const char *value)
{
	free(*dst);
	*dst = xstrdup(value);
}

static void
wipe_free(char *s)
{
	if (s == NULL)
		return;
	mbedtls_platform_zeroize(s, strlen(s));
	free(s);
}

static void
replace_secret(char **dst, const char *value, size_t len)
{
	wipe_free(*dst);
	*dst = xstrndup(value, len);
}

static int
streq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static int
all_digits(const char *s)
{
	return *s != '\0' && strspn(s, "0123456789") == strlen(s);
}

/*
 * Generic setters: the table gives the field and the range.
 */

static void
set_string(struct loader *ld, enum key_id id, const char *v)
{
	replace(field(ld, id), v);
}

static int
parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

static void
set_bool(struct loader *ld, enum key_id id, const char *v)
{
	int b;

	if (parse_bool(v, &b) == -1) {
		bad_value(ld, id, "expected yes or no", v);
		return;
	}
	*(int *)field(ld, id) = b;
}

/* Decimal, a sign only where the range allows negative numbers. */
static int
parse_number(struct loader *ld, enum key_id id, const char *v, long long *out)
{
	const struct key *k = &keys[id];
	const char *p = v;
	char range[64], *end;
	long long n;

	if (k->min < 0 && (*p == '-' || *p == '+'))
		p++;
	if (!isdigit((unsigned char)*p)) {
		bad_value(ld, id, "not a number", v);
		return -1;
	}
	errno = 0;
	n = strtoll(v, &end, 10);
	if (*end != '\0') {
		bad_value(ld, id, "not a number", v);
		return -1;
	}
	if (errno == ERANGE || n < k->min || n > k->max) {
		snprintf(range, sizeof(range), "out of range %lld..%lld",
		    k->min, k->max);
		bad_value(ld, id, range, v);
		return -1;
	}
	*out = n;
	return 0;
}

static void
set_int(struct loader *ld, enum key_id id, const char *v)
{
	long long n;

	if (parse_number(ld, id, v, &n) == 0)
		*(int *)field(ld, id) = (int)n;
}

static void
set_uint(struct loader *ld, enum key_id id, const char *v)
{
	long long n;

	if (parse_number(ld, id, v, &n) == 0)
		*(unsigned *)field(ld, id) = (unsigned)n;
}

static void
set_size(struct loader *ld, enum key_id id, const char *v)
{
	long long n;

	if (parse_number(ld, id, v, &n) == 0)
		*(size_t *)field(ld, id) = (size_t)n;
}

/*
 * The JID.
 */

enum jid_part {
	PART_USER,
	PART_DOMAIN,
	PART_RESOURCE,
};

/*
 * What is wrong with one part of a JID, NULL if nothing.  Minimal checks:
 * what would split the JID differently or break a stream header, and the
 * characters RFC 7622 keeps out of a localpart.
 */
static const char *
jid_part_problem(const char *s, enum jid_part part, char *msg, size_t len)
{
	static const char *const forbidden[] = {
		[PART_USER] = "\"&'/:<>@",
		[PART_DOMAIN] = "/@",
		[PART_RESOURCE] = "",
	};
	const unsigned char *p;

	if (*s == '\0')
		return "empty";
	if (strlen(s) > JID_PART_MAX)
		return "longer than 1023 bytes";
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			snprintf(msg, len, "invalid character 0x%02x", *p);
			return msg;
		}
		if ((*p == ' ' && part != PART_RESOURCE) ||
		    strchr(forbidden[part], *p) != NULL) {
			snprintf(msg, len, "invalid character '%c'", *p);
			return msg;
		}
	}
	return NULL;
}

static void
set_part(struct loader *ld, enum key_id id, const char *v, enum jid_part part)
{
	const char *problem;
	char msg[64];

	if ((problem = jid_part_problem(v, part, msg, sizeof(msg))) != NULL) {
		bad_value(ld, id, problem, v);
		return;
	}
	replace(field(ld, id), v);
}

static void
set_user(struct loader *ld, enum key_id id, const char *v)
{
	set_part(ld, id, v, PART_USER);
}

static void
set_domain(struct loader *ld, enum key_id id, const char *v)
{
	set_part(ld, id, v, PART_DOMAIN);
}

static void
set_resource(struct loader *ld, enum key_id id, const char *v)
{
	set_part(ld, id, v, PART_RESOURCE);
}

/* user@domain[/resource]: the resource is everything after the first '/'. */
static void
set_jid(struct loader *ld, enum key_id id, const char *v)
{
	static const char *const names[] = { "user", "domain", "resource" };
	char *part[3] = { NULL, NULL, NULL }, msg[64], problem[96];
	const char *at, *slash, *p;
	size_t bare;
	int i, ok = 1;

	slash = strchr(v, '/');
	bare = slash != NULL ? (size_t)(slash - v) : strlen(v);
	at = memchr(v, '@', bare);
	if (at == NULL) {
		bad_value(ld, id, "expected user@domain[/resource]", v);
		return;
	}
	part[PART_USER] = xstrndup(v, (size_t)(at - v));
	part[PART_DOMAIN] = xstrndup(at + 1, bare - (size_t)(at - v) - 1);
	if (slash != NULL)
		part[PART_RESOURCE] = xstrdup(slash + 1);
	for (i = 0; i < 3 && ok; i++) {
		if (part[i] == NULL)
			continue;
		p = jid_part_problem(part[i], i, msg, sizeof(msg));
		if (p != NULL) {
			snprintf(problem, sizeof(problem), "%s part: %s",
			    names[i], p);
			bad_value(ld, id, problem, v);
			ok = 0;
		}
	}
	if (ok) {
		replace(&ld->c->user, part[PART_USER]);
		replace(&ld->c->domain, part[PART_DOMAIN]);
		if (part[PART_RESOURCE] != NULL)
			replace(&ld->c->resource, part[PART_RESOURCE]);
	}
	for (i = 0; i < 3; i++)
		free(part[i]);
}

/*
 * The password.  Its value is never quoted in a message.
 */

static void
set_password(struct loader *ld, enum key_id id, const char *v)
{
	(void)id;
	replace_secret(&ld->c->password, v, strlen(v));
}

/* Read at most `len' bytes; -1 with errno on a read error. */
static ssize_t
read_all(int fd, char *buf, size_t len)
{
	size_t n = 0;
	ssize_t r;

	while (n < len) {
		r = read(fd, buf + n, len - n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -1;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	return (ssize_t)n;
}

/*
 * A relative name is a systemd credential (LoadCredential=) when systemd
 * says where those are; otherwise it is relative to the current directory.
 */
static char *
password_path(const char *v)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	struct buf b;

	if (v[0] == '/' || dir == NULL || *dir == '\0')
		return xstrdup(v);
	buf_init(&b);
	buf_printf(&b, "%s/%s", dir, v);
	return (char *)buf_cstr(&b);
}

/*
 * Read with read(2), not stdio, so that no copy of the password is left
 * behind in a stdio buffer; the one buffer we use is wiped.
 */
static void
set_password_file(struct loader *ld, enum key_id id, const char *v)
{
	char buf[PASSWORD_MAX + 1], q[QUOTE_MAX], *path;
	ssize_t n;
	size_t len;
	int fd, saved;

	path = password_path(v);
	quote(q, path);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	free(path);
	if (fd == -1) {
		key_report(ld, ld->line, id, "cannot read %s: %s", q,
		    strerror(errno));
		return;
	}
	n = read_all(fd, buf, sizeof(buf));
	saved = errno;
	close(fd);
	if (n == -1) {
		key_report(ld, ld->line, id, "cannot read %s: %s", q,
		    strerror(saved));
		return;
	}
	len = (size_t)n;
	if (len > PASSWORD_MAX) {
		key_report(ld, ld->line, id, "%s is larger than %d bytes", q,
		    PASSWORD_MAX);
		goto out;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len == 0)
		key_report(ld, ld->line, id, "%s is empty", q);
	else if (memchr(buf, '\0', len) != NULL)
		key_report(ld, ld->line, id, "%s holds a NUL byte", q);
	else if (memchr(buf, '\n', len) != NULL ||
	    memchr(buf, '\r', len) != NULL)
		key_report(ld, ld->line, id, "%s holds more than one line", q);
	else
		replace_secret(&ld->c->password, buf, len);
out:
	mbedtls_platform_zeroize(buf, sizeof(buf));
}

/*
 * The other [xmpp] keys that need more than the generic setters.
 */

static void
set_tls(struct loader *ld, enum key_id id, const char *v)
{
	if (strcasecmp(v, "starttls") == 0)
		ld->c->tls = CONF_TLS_STARTTLS;
	else if (strcasecmp(v, "direct") == 0)
		ld->c->tls = CONF_TLS_DIRECT;
	else if (strcasecmp(v, "none") == 0)
		ld->c->tls = CONF_TLS_NONE;
	else
		bad_value(ld, id, "expected starttls, direct or none", v);
}

static void
set_channel_binding(struct loader *ld, enum key_id id, const char *v)
{
	if (strcasecmp(v, "auto") == 0)
		ld->c->channel_binding = CONF_CB_AUTO;
	else if (strcasecmp(v, "require") == 0)
		ld->c->channel_binding = CONF_CB_REQUIRE;
	else if (strcasecmp(v, "no") == 0)
		ld->c->channel_binding = CONF_CB_NO;
	else
		bad_value(ld, id, "expected auto, require or no", v);
}

/*
 * Checked now, so that `clawsd -t' catches it rather than the first connect,
 * and loaded as link.c will load it (a file with no certificate mbedtls can
 * read fails there): a file that passes here never stops the daemon, at
 * start or on a reload.
 */
static void
set_ca_file(struct loader *ld, enum key_id id, const char *v)
{
	char q[QUOTE_MAX];
	mbedtls_x509_crt ca;
	struct stat st;
	int fd, rc;

	fd = open(v, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		key_report(ld, ld->line, id, "cannot read %s: %s", quote(q, v),
		    strerror(errno));
		return;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		bad_value(ld, id, "not a regular file", v);
		return;
	}
	close(fd);
	mbedtls_x509_crt_init(&ca);
	rc = mbedtls_x509_crt_parse_file(&ca, v);
	mbedtls_x509_crt_free(&ca);
	if (rc < 0) {
		key_report(ld, ld->line, id, "no certificate could be loaded "
		    "from %s", quote(q, v));
		return;
	}
	replace(field(ld, id), v);
}

static size_t
mechanism_index(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < NMECHANISMS; i++)
		if (strlen(mechanisms[i]) == len &&
		    strncasecmp(s, mechanisms[i], len) == 0)
			return i;
	return NMECHANISMS;
}

/* Names in any case, separated by blanks; stored upper case, one space. */
static void
set_sasl(struct loader *ld, enum key_id id, const char *v)
{
	struct buf out;
	const char *p = v;
	char *name;
	unsigned seen = 0;
	size_t len, i;
	int ok = 1;

	buf_init(&out);
	for (;;) {
		p += strspn(p, " \t");
		if (*p == '\0')
			break;
		len = strcspn(p, " \t");
		i = mechanism_index(p, len);
		name = xstrndup(p, len);
		if (i == NMECHANISMS) {
			bad_value(ld, id, "unknown mechanism", name);
			ok = 0;
		} else if (seen & (1u << i)) {
			bad_value(ld, id, "mechanism listed twice", name);
			ok = 0;
		} else {
			seen |= 1u << i;
			if (out.len > 0)
				buf_putc(&out, ' ');
			buf_puts(&out, mechanisms[i]);
		}
		free(name);
		p += len;
	}
	if (ok && seen != 0)
		replace(&ld->c->sasl_mechanisms, buf_cstr(&out));
	buf_free(&out);
}

/* Absolute: the daemon's working directory is no reference point. */
static void
set_state_directory(struct loader *ld, enum key_id id, const char *v)
{
	if (v[0] != '/') {
		bad_value(ld, id, "not an absolute path", v);
		return;
	}
	if (strlen(v) > 4000) {
		bad_value(ld, id, "longer than 4000 bytes", v);
		return;
	}
	replace(field(ld, id), v);
}

/*
 * [rooms]: every key but rooms_ping_interval is a room,
 * "ROOM@SERVICE = NICK [password=SECRET]".  The password is never quoted.
 */

#define PASSWORD_KEY	"password="
#define PASSWORD_TAG	" " PASSWORD_KEY

static void
room_report(struct loader *ld, const char *jid, const char *fmt,
    const char *detail)
{
	char q[QUOTE_MAX];

	report(ld, ld->line, "[rooms] %s: %s%s", name_str(q, jid), fmt,
	    detail);
}

static int
room_jid_ok(struct loader *ld, const char *jid)
{
	const char *at = strchr(jid, '@'), *p;
	char msg[64], *local, q[QUOTE_MAX];
	int ok = 1;

	if (at == NULL || strchr(jid, '/') != NULL) {
		room_report(ld, jid, "expected a room's bare JID, ROOM@SERVICE",
		    "");
		return 0;
	}
	local = xstrndup(jid, (size_t)(at - jid));
	if ((p = jid_part_problem(local, PART_USER, msg, sizeof(msg))) != NULL)
		ok = 0;
	else if ((p = jid_part_problem(at + 1, PART_DOMAIN, msg,
	    sizeof(msg))) != NULL)
		ok = 0;
	free(local);
	if (!ok)
		report(ld, ld->line, "[rooms] %s: not a room JID: %s",
		    quote(q, jid), p);
	return ok;
}

static void
set_room(struct loader *ld, const char *jid, const char *v)
{
	struct conf *c = ld->c;
	const char *pw, *problem;
	struct conf_room *r;
	char *nick, msg[64], q[QUOTE_MAX];
	size_t i, len;

	if (!room_jid_ok(ld, jid))
		return;
	for (i = 0; i < c->nrooms; i++)
		if (strcasecmp(c->rooms[i].jid, jid) == 0) {
			report(ld, ld->line, "[rooms] %s: duplicate room "
			    "(first at line %d)", name_str(q, jid),
			    c->rooms[i].line);
			return;
		}
	if (c->nrooms == ROOMS_MAX) {
		room_report(ld, jid, "more than 1000 rooms", "");
		return;
	}
	/* inih strips the blank before a password that has no nickname. */
	if (strncmp(v, PASSWORD_KEY, strlen(PASSWORD_KEY)) == 0) {
		len = 0;
		pw = v + strlen(PASSWORD_KEY);
	} else if ((pw = strstr(v, PASSWORD_TAG)) != NULL) {
		len = (size_t)(pw - v);
		pw += strlen(PASSWORD_TAG);
	} else {
		len = strlen(v);
	}
	while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--;
	nick = xstrndup(v, len);
	if ((problem = jid_part_problem(nick, PART_RESOURCE, msg,
	    sizeof(msg))) != NULL) {
		room_report(ld, jid, "nickname: ", problem);
		free(nick);
		return;
	}
	if (pw != NULL && *pw == '\0') {
		room_report(ld, jid, "empty password", "");
		free(nick);
		return;
	}
	c->rooms = xrealloc(c->rooms, (c->nrooms + 1) * sizeof(*c->rooms));
	r = &c->rooms[c->nrooms++];
	r->jid = xstrdup(jid);
	r->nick = nick;
	r->password = pw != NULL ? xstrdup(pw) : NULL;
	r->line = ld->line;
}

/*
 * [socket]
 */

static void
set_path(struct loader *ld, enum key_id id, const char *v)
{
	struct sockaddr_un sa;
	char problem[64];

	if (strlen(v) >= sizeof(sa.sun_path)) {
		snprintf(problem, sizeof(problem),
		    "too long for a Unix socket (max %zu bytes)",
		    sizeof(sa.sun_path) - 1);
		bad_value(ld, id, problem, v);
		return;
	}
	replace(field(ld, id), v);
}

/* Always octal, as with chmod: "660" is 0660. */
static void
set_mode(struct loader *ld, enum key_id id, const char *v)
{
	unsigned long mode;

	if (*v == '\0' || strspn(v, "01234567") != strlen(v)) {
		bad_value(ld, id, "not an octal number", v);
		return;
	}
	errno = 0;
	mode = strtoul(v, NULL, 8);
	if (errno == ERANGE || mode > 0777) {
		bad_value(ld, id, "out of range 0..0777", v);
		return;
	}
	ld->c->socket_mode = (unsigned)mode;
}

/*
 * 0 and the gid, -1 if there is no such group, or an errno value when the
 * group database could not be read.  getgrnam_r: libuv has threads.
 */
static int
lookup_group(const char *name, gid_t *gid)
{
	struct group gr, *res = NULL;
	size_t len = 1024;
	char *buf;
	int e;

	for (;;) {
		buf = xmalloc(len);
		e = getgrnam_r(name, &gr, buf, len, &res);
		if (e != ERANGE || len >= (1 << 20))
			break;
		free(buf);
		len *= 2;
	}
	if (res != NULL)
		*gid = gr.gr_gid;
	free(buf);
	if (res != NULL)
		return 0;
	/* getgrnam_r(3): these mean "not found" on some systems. */
	if (e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM)
		return -1;
	return e;
}

/* A group name, or a numeric gid which need not have a name. */
static void
set_group(struct loader *ld, enum key_id id, const char *v)
{
	unsigned long long n;
	char q[QUOTE_MAX];
	gid_t gid = (gid_t)-1;
	int e;

	if (all_digits(v)) {
		errno = 0;
		n = strtoull(v, NULL, 10);
		/* (gid_t)-1 means "no change" to chown(2). */
		if (errno == ERANGE || n >= (gid_t)-1 || (gid_t)n != n) {
			bad_value(ld, id, "gid out of range", v);
			return;
		}
		gid = (gid_t)n;
	} else if ((e = lookup_group(v, &gid)) == -1) {
		bad_value(ld, id, "unknown group", v);
		return;
	} else if (e != 0) {
		key_report(ld, ld->line, id, "cannot look up group %s: %s",
		    quote(q, v), strerror(e));
		return;
	}
	replace(&ld->c->socket_group, v);
	ld->c->socket_gid = gid;
}

/*
 * [log]
 */

static void
set_level(struct loader *ld, enum key_id id, const char *v)
{
	char lower[16];
	size_t i;
	int level = -1;

	if (strlen(v) < sizeof(lower)) {
		for (i = 0; v[i] != '\0'; i++)
			lower[i] = (char)tolower((unsigned char)v[i]);
		lower[i] = '\0';
		level = log_level_parse(lower);
	}
	if (level == -1) {
		bad_value(ld, id, "expected error, warn, info or debug", v);
		return;
	}
	ld->c->log_level = level;
}

/*
 * Reading the file.
 */

/* inih's find_chars_or_comment: an inline comment is " ;" (after a blank). */
static const char *
find_chars_or_comment(const char *s, const char *chars)
{
	int was_space = 0;

	while (*s != '\0' && (chars == NULL || strchr(chars, *s) == NULL) &&
	    !(was_space && *s == ';')) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

static int
section_index(const char *name, size_t len)
{
	int i;

	for (i = 0; i < SEC_N; i++)
		if (strlen(section_names[i]) == len &&
		    strncmp(name, section_names[i], len) == 0)
			return i;
	return -1;
}

static void
section_header(struct loader *ld, const char *name, size_t len)
{
	char q[QUOTE_MAX], *s;
	int i;

	if ((i = section_index(name, len)) == -1) {
		s = xstrndup(name, len);
		report(ld, ld->line, "[%s]: unknown section", name_str(q, s));
		free(s);
		return;
	}
	if (ld->section_line[i] != 0) {
		report(ld, ld->line, "[%s]: duplicate section (first at line "
		    "%d)", section_names[i], ld->section_line[i]);
		return;
	}
	ld->section_line[i] = ld->line;
}

/*
 * Check what inih will make of line `s' (leading blanks already gone).
 * Returns 0 if inih may see it, -1 after reporting it.  Never quotes the
 * line: it may be a password with a typo in the key.
 */
static int
check_line(struct loader *ld, const char *s)
{
	const char *end;

	if (*s == '\0' || *s == ';' || *s == '#')
		return 0;
	if (*s == '[') {
		end = find_chars_or_comment(s + 1, "]");
		if (*end != ']') {
			report(ld, ld->line, "syntax error: missing ']'");
			return -1;
		}
		section_header(ld, s + 1, (size_t)(end - s - 1));
		end++;
		end += strspn(end, " \t\r");
		if (*end != '\0' && *end != ';' && *end != '#')
			report(ld, ld->line,
			    "syntax error: text after the section header");
		return 0;
	}
	end = find_chars_or_comment(s, "=:");
	if (*end != '=' && *end != ':') {
		report(ld, ld->line, "syntax error: expected key = value");
		return -1;
	}
	return 0;
}

/*
 * The ini_reader: one line per call, whole or not at all.  A line too long
 * for inih's buffer (`num', 200 bytes) or holding a NUL byte is reported and
 * replaced by an empty line, rather than split or cut.
 */
static char *
conf_reader(char *str, int num, void *arg)
{
	struct loader *ld = arg;
	size_t len = 0, skip;
	int ch, nul = 0, toolong = 0;

	if ((ch = getc(ld->fp)) == EOF) {
		if (ferror(ld->fp))
			ld->read_errno = errno;
		/* inih's line buffer last held a line, maybe the password. */
		mbedtls_platform_zeroize(str, (size_t)num);
		return NULL;
	}
	ld->line++;
	for (; ch != EOF && ch != '\n'; ch = getc(ld->fp)) {
		if (ch == '\0')
			nul = 1;
		else if (len + 1 < (size_t)num)
			str[len++] = (char)ch;
		else
			toolong = 1;
	}
	str[len] = '\0';
	if (ch == EOF && ferror(ld->fp))
		ld->read_errno = errno;
	if (toolong || nul) {
		if (toolong)
			report(ld, ld->line, "line too long (max %d bytes)",
			    num - 1);
		else
			report(ld, ld->line, "line holds a NUL byte");
		str[0] = '\0';
		return str;
	}
	skip = 0;
	if (ld->line == 1 && strncmp(str, "\xef\xbb\xbf", 3) == 0)
		skip = 3;
	while (str[skip] != '\0' && isspace((unsigned char)str[skip]))
		skip++;
	memmove(str, str + skip, len - skip + 1);
	if (check_line(ld, str) == -1)
		str[0] = '\0';
	return str;
}

static int
key_index(int section, const char *name)
{
	int i;

	for (i = 0; i < K_N; i++)
		if ((int)keys[i].section == section &&
		    strcmp(keys[i].name, name) == 0)
			return i;
	return -1;
}

/* The ini_handler.  Always "success": we report problems ourselves. */
static int
conf_handler(void *arg, const char *section, const char *name,
    const char *value)
{
	struct loader *ld = arg;
	char q[QUOTE_MAX];
	int sec, id;

	if (*name == '\0') {
		report(ld, ld->line, "syntax error: missing key name");
		return 1;
	}
	if (*section == '\0') {
		report(ld, ld->line, "%s: key outside any section",
		    name_str(q, name));
		return 1;
	}
	if ((sec = section_index(section, strlen(section))) == -1)
		return 1;	/* reported at its header */
	if (sec == SEC_ROOMS && key_index(sec, name) == -1) {
		if (*value == '\0')
			report(ld, ld->line, "[rooms] %s: empty value (the "
			    "nickname)", name_str(q, name));
		else
			set_room(ld, name, value);
		return 1;
	}
	if ((id = key_index(sec, name)) == -1) {
		report(ld, ld->line, "[%s] %s: unknown key", section,
		    name_str(q, name));
		return 1;
	}
	if (ld->key_line[id] != 0) {
		key_report(ld, ld->line, id, "duplicate key (first at line %d)",
		    ld->key_line[id]);
		return 1;
	}
	ld->key_line[id] = ld->line;
	if (*value == '\0') {
		key_report(ld, ld->line, id, "empty value");
		return 1;
	}
	keys[id].set(ld, id, value);
	return 1;
}

/*
 * Checks across keys, once the whole file is read.
 */

int
conf_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcasecmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return 0;
}

/* Both `a' and `b' set: report at the later line, naming the earlier. */
static void
conflict(struct loader *ld, enum key_id a, enum key_id b)
{
	enum key_id t;

	if (ld->key_line[a] == 0 || ld->key_line[b] == 0)
		return;
	if (ld->key_line[a] < ld->key_line[b]) {
		t = a;
		a = b;
		b = t;
	}
	key_report(ld, ld->key_line[a], a, "conflicts with %s (line %d)",
	    keys[b].name, ld->key_line[b]);
}

/* Required keys are reported missing at the line of the section header. */
static void
check_required(struct loader *ld)
{
	int line = ld->section_line[SEC_XMPP];

	if (ld->key_line[K_JID] == 0) {
		if (ld->key_line[K_USER] == 0)
			key_report(ld, line, K_USER, "missing (or set jid)");
		if (ld->key_line[K_DOMAIN] == 0)
			key_report(ld, line, K_DOMAIN, "missing (or set jid)");
	}
	if (ld->key_line[K_PASSWORD] == 0 && ld->key_line[K_PASSWORD_FILE] == 0)
		key_report(ld, line, K_PASSWORD,
		    "missing (or set password_file)");
}

static void
check_tls(struct loader *ld)
{
	const struct conf *c = ld->c;

	if (c->tls != CONF_TLS_NONE)
		return;
	/* There is no channel to bind to. */
	if (c->channel_binding == CONF_CB_REQUIRE)
		key_report(ld, ld->key_line[K_CHANNEL_BINDING],
		    K_CHANNEL_BINDING, "require needs tls = starttls or "
		    "direct");
	if (c->host == NULL || !conf_is_loopback(c->host)) {
		key_report(ld, ld->key_line[K_TLS], K_TLS,
		    "none is only allowed when host is a loopback address");
		return;
	}
	/* PLAIN is never sent in the clear: some SCRAM must be allowed. */
	if (strstr(c->sasl_mechanisms, "SCRAM-") != NULL)
		return;
	key_report(ld, ld->key_line[K_SASL_MECHANISMS], K_SASL_MECHANISMS,
	    "tls = none needs a SCRAM mechanism (PLAIN is never sent "
	    "unencrypted)");
}

static void
check_delays(struct loader *ld)
{
	const struct conf *c = ld->c;

	if (c->reconnect_max_delay >= c->reconnect_delay)
		return;
	if (ld->key_line[K_RECONNECT_MAX_DELAY] != 0)
		key_report(ld, ld->key_line[K_RECONNECT_MAX_DELAY],
		    K_RECONNECT_MAX_DELAY, "less than reconnect_delay (%u)",
		    c->reconnect_delay);
	else
		key_report(ld, ld->key_line[K_RECONNECT_DELAY],
		    K_RECONNECT_DELAY, "more than reconnect_max_delay (%u)",
		    c->reconnect_max_delay);
}

/*
 * Without state_directory, the one systemd made for the unit
 * (StateDirectory=, passed as $STATE_DIRECTORY: the first of a
 * colon-separated list).
 */
static void
default_state_directory(struct loader *ld)
{
	const char *env = getenv("STATE_DIRECTORY");
	size_t len;

	if (ld->key_line[K_STATE_DIRECTORY] != 0 || env == NULL ||
	    env[0] != '/')
		return;
	len = strcspn(env, ":");
	if (len > 4000)
		return;
	free(ld->c->state_directory);
	ld->c->state_directory = xstrndup(env, len);
}

static void
check_all(struct loader *ld)
{
	if (ld->section_line[SEC_XMPP] == 0) {
		/* Nothing to point at but the end of the file. */
		report(ld, ld->line > 0 ? ld->line : 1, "[xmpp]: missing "
		    "section (user, domain and password are required)");
		return;
	}
	conflict(ld, K_JID, K_USER);
	conflict(ld, K_JID, K_DOMAIN);
	conflict(ld, K_JID, K_RESOURCE);
	conflict(ld, K_PASSWORD, K_PASSWORD_FILE);
	check_required(ld);
	check_tls(ld);
	check_delays(ld);
	default_state_directory(ld);
}

static int
problem_cmp(const void *a, const void *b)
{
	const struct problem *p = a, *q = b;

	if (p->line != q->line)
		return p->line < q->line ? -1 : 1;
	return p->seq < q->seq ? -1 : p->seq > q->seq;
}

/* In file order, which is how people fix them; stable within a line. */
static void
print_problems(struct loader *ld)
{
	size_t i;

	qsort(ld->problems, ld->nproblems, sizeof(*ld->problems), problem_cmp);
	for (i = 0; i < ld->nproblems; i++) {
		if (ld->errors != NULL)
			fprintf(ld->errors, "%s:%d: %s\n", ld->path,
			    ld->problems[i].line, ld->problems[i].text);
		free(ld->problems[i].text);
	}
	free(ld->problems);
	ld->problems = NULL;
}

static void
conf_defaults(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	c->resource = xstrdup(DEFAULT_RESOURCE);
	c->tls = CONF_TLS_STARTTLS;
	c->tls_verify = 1;
	c->sasl_mechanisms = xstrdup(DEFAULT_SASL);
	c->channel_binding = CONF_CB_AUTO;
	c->presence = 1;
	c->priority = 0;
	c->stream_management = 1;
	c->ping_interval = 60;
	c->ping_timeout = 30;
	c->connect_timeout = 30;
	c->reconnect_delay = 3;
	c->reconnect_max_delay = 300;
	c->queue_max = 1000;
	c->max_stanza_size = 262144;
	c->catch_up = 1;
	c->catch_up_max = 1000;
	c->rooms_ping_interval = 300;
	c->socket_path = xstrdup(DEFAULT_SOCKET_PATH);
	c->socket_mode = 0660;
	c->socket_group = NULL;
	c->socket_gid = (gid_t)-1;
	c->max_clients = 64;
	c->client_buffer = 4194304;
	c->reply_timeout = 60;
	c->log_level = LOG_LEVEL_INFO;
}

int
conf_load(struct conf *c, const char *path, FILE *errors)
{
	char iobuf[BUFSIZ];
	struct loader ld;
	struct conf tmp;
	int rc;

	memset(c, 0, sizeof(*c));
	memset(&ld, 0, sizeof(ld));
	ld.c = &tmp;
	ld.path = path;
	ld.errors = errors;
	if ((ld.fp = fopen(path, "re")) == NULL) {
		if (errors != NULL)
			fprintf(errors, "%s: cannot open: %s\n", path,
			    strerror(errno));
		return -1;
	}
	/* Our own stdio buffer, so that the password read into it is wiped. */
	setvbuf(ld.fp, iobuf, _IOFBF, sizeof(iobuf));
	conf_defaults(&tmp);
	rc = ini_parse_stream(conf_reader, &ld, conf_handler, &ld);
	fclose(ld.fp);
	mbedtls_platform_zeroize(iobuf, sizeof(iobuf));
	if (ld.read_errno != 0)
		report(&ld, ld.line, "read error: %s", strerror(ld.read_errno));
	/* Should not happen: conf_reader hides from inih what it rejects. */
	if (rc > 0)
		report(&ld, rc, "syntax error");
	else if (rc < 0)
		report(&ld, ld.line, "cannot parse (inih error %d)", rc);
	check_all(&ld);
	if (ld.nproblems > 0) {
		print_problems(&ld);
		conf_free(&tmp);
		return -1;
	}
	*c = tmp;
	return 0;
}

void
conf_free(struct conf *c)
{
	size_t i;

	wipe_free(c->password);
	free(c->user);
	free(c->domain);
	free(c->resource);
	free(c->host);
	free(c->ca_file);
	free(c->sasl_mechanisms);
	free(c->socket_path);
	free(c->socket_group);
	free(c->state_directory);
	for (i = 0; i < c->nrooms; i++) {
		free(c->rooms[i].jid);
		free(c->rooms[i].nick);
		wipe_free(c->rooms[i].password);
	}
	free(c->rooms);
	memset(c, 0, sizeof(*c));
}

int
conf_port(const struct conf *c)
{
	if (c->port != 0)
		return c->port;
	return c->tls == CONF_TLS_DIRECT ? 5223 : 5222;
}

int
conf_xmpp_changed(const struct conf *a, const struct conf *b)
{
	return !streq(a->user, b->user) ||
	    !streq(a->domain, b->domain) ||
	    !streq(a->resource, b->resource) ||
	    !streq(a->password, b->password) ||
	    !streq(a->host, b->host) ||
	    a->port != b->port ||
	    a->tls != b->tls ||
	    a->tls_verify != b->tls_verify ||
	    !streq(a->ca_file, b->ca_file) ||
	    !streq(a->sasl_mechanisms, b->sasl_mechanisms) ||
	    a->channel_binding != b->channel_binding ||
	    a->presence != b->presence ||
	    a->priority != b->priority ||
	    a->stream_management != b->stream_management ||
	    a->ping_interval != b->ping_interval ||
	    a->ping_timeout != b->ping_timeout ||
	    a->connect_timeout != b->connect_timeout ||
	    a->reconnect_delay != b->reconnect_delay ||
	    a->reconnect_max_delay != b->reconnect_max_delay ||
	    a->queue_max != b->queue_max ||
	    a->max_stanza_size != b->max_stanza_size;
}

int
conf_rooms_changed(const struct conf *a, const struct conf *b)
{
	size_t i;

	if (a->nrooms != b->nrooms ||
	    a->rooms_ping_interval != b->rooms_ping_interval)
		return 1;
	for (i = 0; i < a->nrooms; i++)
		if (strcmp(a->rooms[i].jid, b->rooms[i].jid) != 0 ||
		    strcmp(a->rooms[i].nick, b->rooms[i].nick) != 0 ||
		    !streq(a->rooms[i].password, b->rooms[i].password))
			return 1;
	return 0;
}

int
conf_socket_changed(const struct conf *a, const struct conf *b)
{
	return !streq(a->socket_path, b->socket_path) ||
	    a->socket_mode != b->socket_mode ||
	    !streq(a->socket_group, b->socket_group) ||
	    a->socket_gid != b->socket_gid ||
	    a->max_clients != b->max_clients ||
	    a->client_buffer != b->client_buffer;
}
