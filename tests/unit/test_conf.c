/*
 * conf.c: defaults, every key, and the exact "FILE:LINE: message" of every
 * kind of problem.  Each test works in its own mkdtemp directory.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "conf.h"
#include "log.h"

#define SECRET	"hunter2-s3cret"

/* A CA certificate (self-signed, P-256), for ca_file. */
#define TEST_CA	"-----BEGIN CERTIFICATE-----\n" \
	"MIIBkjCCATmgAwIBAgIUVlPW1cQaqBwfDRDyxtcYdzzF3ucwCgYIKoZIzj0EAwIw\n" \
	"HjEcMBoGA1UEAwwTY2xhd3NkIHRlc3RfY29uZiBDQTAgFw0yNjEyMDYwMTQyMTVa\n" \
	"GA8yMTI2MTExMjAxNDIxNVowHjEcMBoGA1UEAwwTY2xhd3NkIHRlc3RfY29uZiBD\n" \
	"QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNDqj4mQXGM7hRIG3ZCwqH+8ysSp\n" \
	"B5OQGzgTsGYo8C403EN4V0zs9+0DfBFnQvGwCIaTMp/KPWABO1ZBBFCizhujUzBR\n" \
	"MB0GA1UdDgQWBBTjavGHLUE/Yy6mHtThKz76RxjvujAfBgNVHSMEGDAWgBTjavGH\n" \
	"LUE/Yy6mHtThKz76RxjvujAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cA\n" \
	"MEQCIFKfoTR7CZcMcRNgfCADH9RJ0UXTx5Hgk0MtUOWX08d/AiBRDGo8hrhiUxsL\n" \
	"lOHvAigiBNvpTXrclvMNBw39xeArkw==\n" \
	"-----END CERTIFICATE-----\n"

struct fx {
	char	 dir[64];
	char	 conf[128];		/* dir/clawsd.conf */
	char	*out;			/* what conf_load printed */
	size_t	 outlen;
	char	*tmp[64];		/* strings freed at teardown */
	size_t	 ntmp;
};

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	strcpy(fx->dir, "/tmp/test_conf.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->conf, sizeof(fx->conf), "%s/clawsd.conf", fx->dir);
	unsetenv("CREDENTIALS_DIRECTORY");
	unsetenv("STATE_DIRECTORY");
	*state = fx;
	return 0;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
teardown(void **state)
{
	struct fx *fx = *state;
	size_t i;

	nftw(fx->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	for (i = 0; i < fx->ntmp; i++)
		free(fx->tmp[i]);
	free(fx->out);
	free(fx);
	unsetenv("CREDENTIALS_DIRECTORY");
	return 0;
}

/* printf into a string that lives until teardown. */
static const char * __attribute__((format(printf, 2, 3)))
fmt(struct fx *fx, const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	assert_true(vasprintf(&s, f, ap) >= 0);
	va_end(ap);
	assert_true(fx->ntmp < sizeof(fx->tmp) / sizeof(fx->tmp[0]));
	fx->tmp[fx->ntmp++] = s;
	return s;
}

/* Write `len' bytes to dir/name; returns the full path. */
static const char *
write_file(struct fx *fx, const char *name, const char *data, size_t len)
{
	const char *path = fmt(fx, "%s/%s", fx->dir, name);
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	return path;
}

static const char *
write_str(struct fx *fx, const char *name, const char *data)
{
	return write_file(fx, name, data, strlen(data));
}

/* Load `len' bytes of configuration, keeping what was printed in fx->out. */
static int
load_bytes(struct fx *fx, struct conf *c, const char *text, size_t len)
{
	FILE *errors;
	int rc;

	write_file(fx, "clawsd.conf", text, len);
	free(fx->out);
	fx->out = NULL;
	errors = open_memstream(&fx->out, &fx->outlen);
	assert_non_null(errors);
	rc = conf_load(c, fx->conf, errors);
	assert_int_equal(fclose(errors), 0);
	return rc;
}

static int
load(struct fx *fx, struct conf *c, const char *text)
{
	return load_bytes(fx, c, text, strlen(text));
}

static void
assert_empty_conf(const struct conf *c)
{
	static const struct conf zero;

	assert_memory_equal(c, &zero, sizeof(zero));
}

/*
 * `text' must fail with exactly these lines, given as "LINE: message"
 * (NULL-terminated); the file name is added here.  A failed load leaves
 * the conf empty.
 */
static void
expect_bytes(struct fx *fx, const char *text, size_t len, ...)
{
	struct conf c;
	struct buf want;
	const char *line;
	va_list ap;

	memset(&c, 0xa5, sizeof(c));
	assert_int_equal(load_bytes(fx, &c, text, len), -1);
	assert_empty_conf(&c);
	conf_free(&c);

	buf_init(&want);
	va_start(ap, len);
	while ((line = va_arg(ap, const char *)) != NULL)
		buf_printf(&want, "%s:%s\n", fx->conf, line);
	va_end(ap);
	assert_string_equal(fx->out, buf_cstr(&want));
	buf_free(&want);
}

#define expect_errors(fx, text, ...) \
	expect_bytes(fx, text, strlen(text), __VA_ARGS__, (const char *)NULL)

#define MINIMAL \
	"[xmpp]\n" \
	"user = bot\n" \
	"domain = example.org\n" \
	"password = " SECRET "\n"

static void
test_minimal_defaults(void **state)
{
	struct fx *fx = *state;
	struct conf c;

	assert_int_equal(load(fx, &c, MINIMAL), 0);
	assert_string_equal(fx->out, "");
	assert_string_equal(c.user, "bot");
	assert_string_equal(c.domain, "example.org");
	assert_string_equal(c.resource, "clawsd");
	assert_string_equal(c.password, SECRET);
	assert_null(c.host);
	assert_int_equal(c.port, 0);
	assert_int_equal(conf_port(&c), 5222);
	assert_int_equal(c.tls, CONF_TLS_STARTTLS);
	assert_int_equal(c.tls_verify, 1);
	assert_null(c.ca_file);
	assert_string_equal(c.sasl_mechanisms,
	    "SCRAM-SHA-512 SCRAM-SHA-256 SCRAM-SHA-1 PLAIN");
	assert_int_equal(c.channel_binding, CONF_CB_AUTO);
	assert_int_equal(c.presence, 1);
	assert_int_equal(c.priority, 0);
	assert_int_equal(c.stream_management, 1);
	assert_int_equal(c.ping_interval, 60);
	assert_int_equal(c.ping_timeout, 30);
	assert_int_equal(c.connect_timeout, 30);
	assert_int_equal(c.reconnect_delay, 3);
	assert_int_equal(c.reconnect_max_delay, 300);
	assert_int_equal(c.queue_max, 1000);
	assert_int_equal(c.max_stanza_size, 262144);
	assert_string_equal(c.socket_path, "/run/clawsd/clawsd.sock");
	assert_int_equal(c.socket_mode, 0660);
	assert_null(c.socket_group);
	assert_int_equal(c.socket_gid, (gid_t)-1);
	assert_int_equal(c.max_clients, 64);
	assert_int_equal(c.client_buffer, 4194304);
	assert_int_equal(c.reply_timeout, 60);
	assert_int_equal(c.log_level, LOG_LEVEL_INFO);
	assert_int_equal(c.catch_up, 1);
	assert_int_equal(c.catch_up_max, 1000);
	assert_null(c.state_directory);
	assert_int_equal(c.nrooms, 0);
	assert_int_equal(c.rooms_ping_interval, 300);
	conf_free(&c);
	assert_empty_conf(&c);
	conf_free(&c);		/* twice is fine */
}

static void
test_every_key(void **state)
{
	struct fx *fx = *state;
	struct group *gr = getgrgid(getgid());
	const char *ca = write_str(fx, "ca.pem", TEST_CA);
	const char *text;
	struct conf c;

	text = fmt(fx,
	    "[xmpp]\n"
	    "user = bot\n"
	    "domain = example.org\n"
	    "resource = desk top\n"
	    "password = " SECRET "\n"
	    "host = xmpp.example.org\n"
	    "port = 15223\n"
	    "tls = Direct\n"
	    "tls_verify = off\n"
	    "ca_file = %s\n"
	    "sasl_mechanisms = plain\tscram-sha-1  SCRAM-SHA-256\n"
	    "channel_binding = Require\n"
	    "presence = FALSE\n"
	    "priority = -128\n"
	    "stream_management = 0\n"
	    "ping_interval = 0\n"
	    "ping_timeout = 5\n"
	    "connect_timeout = 86400\n"
	    "reconnect_delay = 1\n"
	    "reconnect_max_delay = 1\n"
	    "queue_max = 0\n"
	    "max_stanza_size = 67108864\n"
	    "[socket]\n"
	    "path = /tmp/x.sock\n"
	    "mode = 600\n"
	    "group = %s\n"
	    "max_clients = 1\n"
	    "client_buffer = 65536\n"
	    "reply_timeout = 86400\n"
	    "[log]\n"
	    "level = DEBUG\n", ca, gr != NULL ? gr->gr_name : "0");
	assert_int_equal(load(fx, &c, text), 0);
	assert_string_equal(fx->out, "");
	assert_string_equal(c.resource, "desk top");
	assert_string_equal(c.host, "xmpp.example.org");
	assert_int_equal(c.port, 15223);
	assert_int_equal(conf_port(&c), 15223);
	assert_int_equal(c.tls, CONF_TLS_DIRECT);
	assert_int_equal(c.tls_verify, 0);
	assert_string_equal(c.ca_file, ca);
	assert_string_equal(c.sasl_mechanisms,
	    "PLAIN SCRAM-SHA-1 SCRAM-SHA-256");
	assert_int_equal(c.channel_binding, CONF_CB_REQUIRE);
	assert_int_equal(c.presence, 0);
	assert_int_equal(c.priority, -128);
	assert_int_equal(c.stream_management, 0);
	assert_int_equal(c.ping_interval, 0);
	assert_int_equal(c.ping_timeout, 5);
	assert_int_equal(c.connect_timeout, 86400);
	assert_int_equal(c.reconnect_delay, 1);
	assert_int_equal(c.reconnect_max_delay, 1);
	assert_int_equal(c.queue_max, 0);
	assert_int_equal(c.max_stanza_size, 64 << 20);
	assert_string_equal(c.socket_path, "/tmp/x.sock");
	assert_int_equal(c.socket_mode, 0600);
	assert_string_equal(c.socket_group, gr != NULL ? gr->gr_name : "0");
	assert_int_equal(c.socket_gid, gr != NULL ? getgid() : 0);
	assert_int_equal(c.max_clients, 1);
	assert_int_equal(c.client_buffer, 65536);
	assert_int_equal(c.reply_timeout, 86400);
	assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
	conf_free(&c);
}

static void
test_port_defaults(void **state)
{
	struct fx *fx = *state;
	struct conf c;

	assert_int_equal(load(fx, &c, MINIMAL "tls = direct\n"), 0);
	assert_int_equal(conf_port(&c), 5223);
	conf_free(&c);
	assert_int_equal(load(fx, &c, MINIMAL "port = 1\n[socket]\n"
	    "group = 4321\n"), 0);
	assert_int_equal(conf_port(&c), 1);
	assert_string_equal(c.socket_group, "4321");
	assert_int_equal(c.socket_gid, 4321);
	conf_free(&c);
}

static void
test_jid(void **state)
{
	struct fx *fx = *state;
	struct conf c;

	assert_int_equal(load(fx, &c,
	    "[xmpp]\njid = bob@example.org/lap/top@x\npassword = x\n"), 0);
	assert_string_equal(c.user, "bob");
	assert_string_equal(c.domain, "example.org");
	assert_string_equal(c.resource, "lap/top@x");
	conf_free(&c);

	assert_int_equal(load(fx, &c, "[xmpp]\njid = bob@example.org\n"
	    "password = x\n"), 0);
	assert_string_equal(c.user, "bob");
	assert_string_equal(c.domain, "example.org");
	assert_string_equal(c.resource, "clawsd");
	conf_free(&c);
}

static void
test_jid_errors(void **state)
{
	struct fx *fx = *state;

	expect_errors(fx,
	    "[xmpp]\n"
	    "password = x\n"
	    "jid = example.org\n",
	    "3: [xmpp] jid: expected user@domain[/resource]: \"example.org\"");
	expect_errors(fx,
	    "[xmpp]\n"
	    "password = x\n"
	    "jid = @example.org\n",
	    "3: [xmpp] jid: user part: empty: \"@example.org\"");
	expect_errors(fx,
	    "[xmpp]\n"
	    "password = x\n"
	    "jid = a@b@c\n",
	    "3: [xmpp] jid: domain part: invalid character '@': \"a@b@c\"");
	expect_errors(fx,
	    "[xmpp]\n"
	    "password = x\n"
	    "jid = a@b/\n",
	    "3: [xmpp] jid: resource part: empty: \"a@b/\"");
	expect_errors(fx,
	    "[xmpp]\n"
	    "password = x\n"
	    "jid = a@/r\n",
	    "3: [xmpp] jid: domain part: empty: \"a@/r\"");
	expect_errors(fx,
	    "[xmpp]\n"
	    "user = a@b\n"
	    "domain = exa mple.org\n"
	    "resource = a\tb\n"
	    "password = x\n",
	    "2: [xmpp] user: invalid character '@': \"a@b\"",
	    "3: [xmpp] domain: invalid character ' ': \"exa mple.org\"",
	    "4: [xmpp] resource: invalid character 0x09: \"a\\x09b\"");
	/* jid excludes each of user, domain and resource. */
	expect_errors(fx,
	    "[xmpp]\n"
	    "user = a\n"
	    "jid = a@b\n"
	    "password = x\n"
	    "domain = b\n"
	    "resource = r\n",
	    "3: [xmpp] jid: conflicts with user (line 2)",
	    "5: [xmpp] domain: conflicts with jid (line 3)",
	    "6: [xmpp] resource: conflicts with jid (line 3)");
}

static void
test_password_file(void **state)
{
	struct fx *fx = *state;
	const char *pw;
	struct conf c;

	/* One newline is stripped, a CRLF too; no newline at all is fine. */
	pw = write_str(fx, "a.pass", SECRET "\n");
	assert_int_equal(load(fx, &c, fmt(fx, "[xmpp]\nuser = u\n"
	    "domain = d\npassword_file = %s\n", pw)), 0);
	assert_string_equal(c.password, SECRET);
	conf_free(&c);

	pw = write_str(fx, "b.pass", SECRET "\r\n");
	assert_int_equal(load(fx, &c, fmt(fx, "[xmpp]\nuser = u\n"
	    "domain = d\npassword_file = %s\n", pw)), 0);
	assert_string_equal(c.password, SECRET);
	conf_free(&c);

	/* Blanks are part of the password: only the newline goes. */
	pw = write_str(fx, "c.pass", " " SECRET " ");
	assert_int_equal(load(fx, &c, fmt(fx, "[xmpp]\nuser = u\n"
	    "domain = d\npassword_file = %s\n", pw)), 0);
	assert_string_equal(c.password, " " SECRET " ");
	conf_free(&c);
}

static void
test_password_file_credentials(void **state)
{
	struct fx *fx = *state;
	const char *creds = fmt(fx, "%s/creds", fx->dir);
	const char *abs;
	struct conf c;

	assert_int_equal(mkdir(creds, 0700), 0);
	write_str(fx, "creds/clawsd.pass", "from-credentials\n");
	abs = write_str(fx, "clawsd.pass", "absolute\n");
	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", creds, 1), 0);

	assert_int_equal(load(fx, &c, "[xmpp]\nuser = u\ndomain = d\n"
	    "password_file = clawsd.pass\n"), 0);
	assert_string_equal(c.password, "from-credentials");
	conf_free(&c);

	/* An absolute path is used as it is. */
	assert_int_equal(load(fx, &c, fmt(fx, "[xmpp]\nuser = u\ndomain = d\n"
	    "password_file = %s\n", abs)), 0);
	assert_string_equal(c.password, "absolute");
	conf_free(&c);

	/* The message names the path that was tried. */
	expect_errors(fx, "[xmpp]\nuser = u\ndomain = d\n"
	    "password_file = other.pass\n",
	    fmt(fx, "4: [xmpp] password_file: cannot read \"%s/other.pass\": "
	    "No such file or directory", creds));

	/* A very long path is cut short in the message. */
	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", fmt(fx,
	    "/nonexistent%0*d", 3000, 0), 1), 0);
	assert_int_equal(load(fx, &c, "[xmpp]\nuser = u\ndomain = d\n"
	    "password_file = other.pass\n"), -1);
	assert_true(strlen(fx->out) < strlen(fx->conf) + 1100);
	assert_non_null(strstr(fx->out, "0000...\": "));
}

static void
test_password_file_errors(void **state)
{
	struct fx *fx = *state;
	const char *empty = write_str(fx, "empty.pass", "");
	const char *nl = write_str(fx, "nl.pass", "\n");
	const char *two = write_str(fx, "two.pass", SECRET "\n\n");
	const char *bigpath;
	char big[1100];

	memset(big, 'x', sizeof(big));
	bigpath = write_file(fx, "big.pass", big, sizeof(big));
	expect_errors(fx, fmt(fx,
	    "[xmpp]\n"
	    "user = u\n"
	    "domain = d\n"
	    "password_file = %s\n", empty),
	    fmt(fx, "4: [xmpp] password_file: \"%s\" is empty", empty));
	expect_errors(fx, fmt(fx,
	    "[xmpp]\n"
	    "user = u\n"
	    "domain = d\n"
	    "password_file = %s\n", nl),
	    fmt(fx, "4: [xmpp] password_file: \"%s\" is empty", nl));
	expect_errors(fx, fmt(fx,
	    "[xmpp]\n"
	    "user = u\n"
	    "domain = d\n"
	    "password_file = %s\n", two),
	    fmt(fx, "4: [xmpp] password_file: \"%s\" holds more than one line",
	    two));
	expect_errors(fx, fmt(fx,
	    "[xmpp]\n"
	    "user = u\n"
	    "domain = d\n"
	    "password_file = %s\n", bigpath),
	    fmt(fx, "4: [xmpp] password_file: \"%s\" is larger than 1024 "
	    "bytes", bigpath));
	expect_errors(fx,
	    "[xmpp]\n"
	    "user = u\n"
	    "password_file = /nonexistent/clawsd.pass\n"
	    "domain = d\n",
	    "3: [xmpp] password_file: cannot read "
	    "\"/nonexistent/clawsd.pass\": No such file or directory");
	expect_errors(fx, fmt(fx,
	    "[xmpp]\n"
	    "user = u\n"
	    "domain = d\n"
	    "password_file = %s\n", fx->dir),
	    fmt(fx, "4: [xmpp] password_file: cannot read \"%s\": "
	    "Is a directory", fx->dir));
	assert_null(strstr(fx->out, SECRET));
}

static void
test_syntax_errors(void **state)
{
	struct fx *fx = *state;

	expect_errors(fx,
	    "[xmpp\n"
	    "user = u\n"
	    "just words\n"
	    "[xmpp] junk\n"
	    "domain = d\n"
	    "= value\n"
	    "password " SECRET "\n"
	    "password = x\n",
	    "1: syntax error: missing ']'",
	    "2: user: key outside any section",
	    "3: syntax error: expected key = value",
	    "4: syntax error: text after the section header",
	    "4: [xmpp] user: missing (or set jid)",
	    "6: syntax error: missing key name",
	    "7: syntax error: expected key = value");
	assert_null(strstr(fx->out, SECRET));
}

static void
test_long_line_and_nul(void **state)
{
	struct fx *fx = *state;
	struct buf text;
	struct conf c;
	size_t i;

	/* 199 bytes fit in inih's line buffer (200 with the NUL) ... */
	buf_init(&text);
	buf_puts(&text, MINIMAL "host = ");
	for (i = strlen("host = "); i < 199; i++)
		buf_putc(&text, 'h');
	buf_puts(&text, "\n");
	assert_int_equal(load(fx, &c, buf_cstr(&text)), 0);
	assert_int_equal(strlen(c.host), 199 - strlen("host = "));
	conf_free(&c);

	/* ... 200 do not: the whole line is refused, not split. */
	buf_reset(&text, 0);
	buf_puts(&text, MINIMAL "host = ");
	for (i = strlen("host = "); i < 200; i++)
		buf_putc(&text, 'h');
	buf_puts(&text, "\nport = x\n");
	expect_errors(fx, buf_cstr(&text),
	    "5: line too long (max 199 bytes)",
	    "6: [xmpp] port: not a number: \"x\"");
	buf_free(&text);

	expect_bytes(fx, MINIMAL "host = a\0b\nport = y\n",
	    strlen(MINIMAL) + 20,
	    "5: line holds a NUL byte",
	    "6: [xmpp] port: not a number: \"y\"",
	    (const char *)NULL);
}

static void
test_unknown_and_duplicates(void **state)
{
	struct fx *fx = *state;

	expect_errors(fx,
	    "stray = 1\n"
	    "[xmpp]\n"
	    "user = u\n"
	    "usr = u\n"
	    "domain = d\n"
	    "password = x\n"
	    "user = v\n"
	    "[Log]\n"
	    "anything = goes\n"
	    "[empty]\n"
	    "[xmpp]\n"
	    "[socket]\n"
	    "level = info\n"
	    "[x y]\n",
	    "1: stray: key outside any section",
	    "4: [xmpp] usr: unknown key",
	    "7: [xmpp] user: duplicate key (first at line 3)",
	    "8: [Log]: unknown section",
	    "10: [empty]: unknown section",
	    "11: [xmpp]: duplicate section (first at line 2)",
	    "13: [socket] level: unknown key",
	    "14: [\"x y\"]: unknown section");
}

static void
test_bad_values(void **state)
{
	struct fx *fx = *state;

	expect_errors(fx, fmt(fx,
	    "[xmpp]\n"					/* 1 */
	    "user = u\n"
	    "domain = d\n"
	    "password = x\n"
	    "port = 52x2\n"				/* 5 */
	    "tls = ssl\n"
	    "tls_verify = maybe\n"
	    "ca_file = /nonexistent/ca.pem\n"
	    "sasl_mechanisms = SCRAM-SHA-1 DIGEST-MD5 scram-sha-1\n"
	    "presence = 2\n"				/* 10 */
	    "priority = 128\n"
	    "stream_management =\n"
	    "ping_interval = -1\n"
	    "ping_timeout = 0\n"
	    "connect_timeout = 86401\n"			/* 15 */
	    "reconnect_delay = 1.5\n"
	    "queue_max = 99999999999999999999999\n"
	    "max_stanza_size = 1023\n"
	    "host =  \n"
	    "[socket]\n"				/* 20 */
	    "path = /%0120d\n"
	    "mode = 0689\n"
	    "group = no-such-group-clawsd\n"
	    "max_clients = 0\n"
	    "client_buffer = 65535\n"			/* 25 */
	    "reply_timeout = 0\n"
	    "[log]\n"
	    "level = trace\n", 0),
	    "5: [xmpp] port: not a number: \"52x2\"",
	    "6: [xmpp] tls: expected starttls, direct or none: \"ssl\"",
	    "7: [xmpp] tls_verify: expected yes or no: \"maybe\"",
	    "8: [xmpp] ca_file: cannot read \"/nonexistent/ca.pem\": "
	    "No such file or directory",
	    "9: [xmpp] sasl_mechanisms: unknown mechanism: \"DIGEST-MD5\"",
	    "9: [xmpp] sasl_mechanisms: mechanism listed twice: "
	    "\"scram-sha-1\"",
	    "10: [xmpp] presence: expected yes or no: \"2\"",
	    "11: [xmpp] priority: out of range -128..127: \"128\"",
	    "12: [xmpp] stream_management: empty value",
	    "13: [xmpp] ping_interval: not a number: \"-1\"",
	    "14: [xmpp] ping_timeout: out of range 1..86400: \"0\"",
	    "15: [xmpp] connect_timeout: out of range 1..86400: \"86401\"",
	    "16: [xmpp] reconnect_delay: not a number: \"1.5\"",
	    "17: [xmpp] queue_max: out of range 0..1000000: "
	    "\"99999999999999999999999\"",
	    "18: [xmpp] max_stanza_size: out of range 1024..67108864: "
	    "\"1023\"",
	    "19: [xmpp] host: empty value",
	    fmt(fx, "21: [socket] path: too long for a Unix socket "
	    "(max 107 bytes): \"/%0120d\"", 0),
	    "22: [socket] mode: not an octal number: \"0689\"",
	    "23: [socket] group: unknown group: \"no-such-group-clawsd\"",
	    "24: [socket] max_clients: out of range 1..65536: \"0\"",
	    "25: [socket] client_buffer: out of range 65536..1073741824: "
	    "\"65535\"",
	    "26: [socket] reply_timeout: out of range 1..86400: \"0\"",
	    "28: [log] level: expected error, warn, info or debug: "
	    "\"trace\"");
}

/*
 * A CA file is loaded as the daemon will load it: one that has no
 * certificate would stop the daemon at start, or leave a reload with the
 * old TLS settings, so `clawsd -t' refuses it.
 */
static void
test_ca_file_not_certificates(void **state)
{
	struct fx *fx = *state;
	const char *junk = write_str(fx, "junk.pem", "not a certificate\n");
	const char *empty = write_str(fx, "empty.pem", "");
	const char *cut = write_str(fx, "cut.pem", "-----BEGIN CERTIFICATE-----\n"
	    "MIIBkjCCATmgAwIBAgIUVlPW1cQaqBwfDRDyxtcYdzzF3ucwCgYIKoZIzj0EAwIw\n"
	    "-----END CERTIFICATE-----\n");

	expect_errors(fx, fmt(fx, MINIMAL "ca_file = %s\n", junk),
	    fmt(fx, "5: [xmpp] ca_file: no certificate could be loaded from "
	    "\"%s\"", junk));
	expect_errors(fx, fmt(fx, MINIMAL "ca_file = %s\n", empty),
	    fmt(fx, "5: [xmpp] ca_file: no certificate could be loaded from "
	    "\"%s\"", empty));
	expect_errors(fx, fmt(fx, MINIMAL "ca_file = %s\n", cut),
	    fmt(fx, "5: [xmpp] ca_file: no certificate could be loaded from "
	    "\"%s\"", cut));
}

static void
test_more_bad_values(void **state)
{
	struct fx *fx = *state;

	expect_errors(fx, fmt(fx,
	    MINIMAL
	    "port = 65536\n"
	    "priority = +1x\n"
	    "ca_file = %s\n"
	    "[socket]\n"
	    "mode = 1000\n"
	    "group = 4294967295\n", fx->dir),
	    "5: [xmpp] port: out of range 1..65535: \"65536\"",
	    "6: [xmpp] priority: not a number: \"+1x\"",
	    fmt(fx, "7: [xmpp] ca_file: not a regular file: \"%s\"", fx->dir),
	    "9: [socket] mode: out of range 0..0777: \"1000\"",
	    "10: [socket] group: gid out of range: \"4294967295\"");
}

static void
test_channel_binding(void **state)
{
	static const struct {
		const char	*text;
		enum conf_cb	 want;
	} ok[] = {
		{ "auto", CONF_CB_AUTO },
		{ "REQUIRE", CONF_CB_REQUIRE },
		{ "no", CONF_CB_NO },
	};
	struct fx *fx = *state;
	struct conf c;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(load(fx, &c, fmt(fx, MINIMAL
		    "channel_binding = %s\n", ok[i].text)), 0);
		assert_int_equal(c.channel_binding, ok[i].want);
		conf_free(&c);
	}
	expect_errors(fx, MINIMAL "channel_binding = yes\n",
	    "5: [xmpp] channel_binding: expected auto, require or no: "
	    "\"yes\"");
	expect_errors(fx, MINIMAL "channel_binding = tls-exporter\n",
	    "5: [xmpp] channel_binding: expected auto, require or no: "
	    "\"tls-exporter\"");
	/* Without TLS there is no channel to bind to. */
	expect_errors(fx, MINIMAL "channel_binding = require\nhost = ::1\n"
	    "tls = none\n",
	    "5: [xmpp] channel_binding: require needs tls = starttls or "
	    "direct");
	assert_int_equal(load(fx, &c, MINIMAL "channel_binding = auto\n"
	    "host = ::1\ntls = none\n"), 0);
	conf_free(&c);
}

static void
test_missing_required(void **state)
{
	struct fx *fx = *state;

	expect_errors(fx,
	    "# nothing yet\n"
	    "[socket]\n"
	    "[xmpp]\n"
	    "resource = r\n",
	    "3: [xmpp] user: missing (or set jid)",
	    "3: [xmpp] domain: missing (or set jid)",
	    "3: [xmpp] password: missing (or set password_file)");
	/* A key with a bad value is not also "missing". */
	expect_errors(fx,
	    "[xmpp]\n"
	    "user = a b\n"
	    "domain = d\n"
	    "password =\n",
	    "2: [xmpp] user: invalid character ' ': \"a b\"",
	    "4: [xmpp] password: empty value");
	/* Without the section, the end of the file is all there is. */
	expect_errors(fx,
	    "[log]\n"
	    "level = debug\n"
	    "; end\n",
	    "3: [xmpp]: missing section (user, domain and password are "
	    "required)");
	expect_errors(fx, "",
	    "1: [xmpp]: missing section (user, domain and password are "
	    "required)");
}

static void
test_password_conflict(void **state)
{
	struct fx *fx = *state;
	const char *pw = write_str(fx, "p.pass", SECRET "\n");

	expect_errors(fx, fmt(fx,
	    "[xmpp]\n"
	    "user = u\n"
	    "password_file = %s\n"
	    "domain = d\n"
	    "password = " SECRET "\n", pw),
	    "5: [xmpp] password: conflicts with password_file (line 3)");
}

static void
test_tls_none(void **state)
{
	static const char *const ok[] = {
		"127.0.0.1", "127.1.2.3", "::1", "localhost", "LocalHost",
	};
	static const char *const refused[] = {
		"example.org", "10.0.0.1", "128.0.0.1", "::2", "::ffff:1.2.3.4",
	};
	struct fx *fx = *state;
	struct conf c;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(load(fx, &c, fmt(fx, MINIMAL
		    "tls = none\nhost = %s\n", ok[i])), 0);
		assert_int_equal(c.tls, CONF_TLS_NONE);
		assert_int_equal(conf_port(&c), 5222);
		conf_free(&c);
	}
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		expect_errors(fx, fmt(fx, MINIMAL "tls = none\nhost = %s\n",
		    refused[i]),
		    "5: [xmpp] tls: none is only allowed when host is a "
		    "loopback address");
	expect_errors(fx, MINIMAL "tls = none\n",
	    "5: [xmpp] tls: none is only allowed when host is a loopback "
	    "address");
	/* PLAIN is never sent in the clear, so it alone cannot work. */
	expect_errors(fx, MINIMAL "host = ::1\nsasl_mechanisms = PLAIN\n"
	    "tls = none\n",
	    "6: [xmpp] sasl_mechanisms: tls = none needs a SCRAM mechanism "
	    "(PLAIN is never sent unencrypted)");
}

static void
test_reconnect_delays(void **state)
{
	struct fx *fx = *state;

	expect_errors(fx, MINIMAL "reconnect_delay = 30\n"
	    "reconnect_max_delay = 10\n",
	    "6: [xmpp] reconnect_max_delay: less than reconnect_delay (30)");
	expect_errors(fx, MINIMAL "reconnect_delay = 301\n",
	    "5: [xmpp] reconnect_delay: more than reconnect_max_delay (300)");
}

static void
test_syntax_variants(void **state)
{
	struct fx *fx = *state;
	struct conf c;

	/* BOM, CRLF, indentation, comments, `key: value'. */
	assert_int_equal(load(fx, &c,
	    "\xef\xbb\xbf; comment\r\n"
	    "# another\r\n"
	    "  [xmpp]   ; trailing comment\r\n"
	    "\tuser = u\r\n"
	    "    domain: d.example ; inline comment\r\n"
	    "password = p;art#of it\r\n"
	    "\r\n"
	    "   \r\n"
	    "[socket]  # here too\n"
	    "path = /tmp/a b.sock\n"), 0);
	assert_string_equal(fx->out, "");
	assert_string_equal(c.user, "u");
	assert_string_equal(c.domain, "d.example");
	assert_string_equal(c.password, "p;art#of it");
	assert_string_equal(c.socket_path, "/tmp/a b.sock");
	conf_free(&c);
}

static void
test_password_never_printed(void **state)
{
	struct fx *fx = *state;
	const char *pw = write_str(fx, "p.pass", SECRET "\n" SECRET "\n");

	expect_errors(fx, fmt(fx,
	    "[xmpp]\n"
	    "user = u\n"
	    "domain = d\n"
	    "password = " SECRET "\n"
	    "password = " SECRET "\n"
	    "pasword = " SECRET "\n"
	    "password " SECRET "\n"
	    "password_file = %s\n"
	    SECRET "\n"
	    "[" SECRET "\n"
	    "[xmpp]\n", pw),
	    "5: [xmpp] password: duplicate key (first at line 4)",
	    "6: [xmpp] pasword: unknown key",
	    "7: syntax error: expected key = value",
	    fmt(fx, "8: [xmpp] password_file: \"%s\" holds more than one line",
	    pw),
	    "8: [xmpp] password_file: conflicts with password (line 4)",
	    "9: syntax error: expected key = value",
	    "10: syntax error: missing ']'",
	    "11: [xmpp]: duplicate section (first at line 1)");
	assert_null(strstr(fx->out, SECRET));
	assert_null(strstr(fx->out, "hunter"));
}

static void
test_open_error(void **state)
{
	struct fx *fx = *state;
	struct conf c;
	char *out = NULL;
	size_t len;
	FILE *errors = open_memstream(&out, &len);
	const char *path = fmt(fx, "%s/missing.conf", fx->dir);

	assert_non_null(errors);
	assert_int_equal(conf_load(&c, path, errors), -1);
	fclose(errors);
	assert_string_equal(out, fmt(fx, "%s: cannot open: No such file or "
	    "directory\n", path));
	assert_empty_conf(&c);
	free(out);

	/* Without an error stream, problems are only counted. */
	write_str(fx, "bad.conf", "[xmpp]\n");
	assert_int_equal(conf_load(&c, fmt(fx, "%s/bad.conf", fx->dir), NULL),
	    -1);
	assert_empty_conf(&c);
}

static void
test_changed(void **state)
{
	struct fx *fx = *state;
	struct conf a, b;

	assert_int_equal(load(fx, &a, MINIMAL), 0);
	assert_int_equal(load(fx, &b, MINIMAL), 0);
	assert_false(conf_xmpp_changed(&a, &b));
	assert_false(conf_socket_changed(&a, &b));
	conf_free(&b);

	assert_int_equal(load(fx, &b, MINIMAL "[log]\nlevel = debug\n"), 0);
	assert_false(conf_xmpp_changed(&a, &b));
	assert_false(conf_socket_changed(&a, &b));
	conf_free(&b);

	assert_int_equal(load(fx, &b, MINIMAL "host = h\n"), 0);
	assert_true(conf_xmpp_changed(&a, &b));
	assert_false(conf_socket_changed(&a, &b));
	conf_free(&b);

	assert_int_equal(load(fx, &b, "[xmpp]\nuser = bot\n"
	    "domain = example.org\npassword = other\n"), 0);
	assert_true(conf_xmpp_changed(&a, &b));
	conf_free(&b);

	assert_int_equal(load(fx, &b, MINIMAL "queue_max = 5\n"), 0);
	assert_true(conf_xmpp_changed(&a, &b));
	conf_free(&b);

	assert_int_equal(load(fx, &b, MINIMAL "channel_binding = no\n"), 0);
	assert_true(conf_xmpp_changed(&a, &b));
	conf_free(&b);

	assert_int_equal(load(fx, &b, MINIMAL "[socket]\nmode = 0600\n"), 0);
	assert_false(conf_xmpp_changed(&a, &b));
	assert_true(conf_socket_changed(&a, &b));
	conf_free(&b);

	assert_int_equal(load(fx, &b, MINIMAL "[socket]\ngroup = 0\n"), 0);
	assert_true(conf_socket_changed(&a, &b));
	conf_free(&b);
	conf_free(&a);
}

/* The shipped example must pass `clawsd -t' as it is. */
static void
test_example_config(void **state)
{
	struct fx *fx = *state;
	char path[PATH_MAX], *slash;
	struct conf c;
	char *out = NULL;
	size_t len;
	FILE *errors;

	(void)fx;
	/* __FILE__ is tests/unit/test_conf.c, relative to the top directory. */
	snprintf(path, sizeof(path), "%s", __FILE__);
	if ((slash = strstr(path, "tests/unit/")) == NULL)
		skip();
	snprintf(slash, sizeof(path) - (size_t)(slash - path),
	    "conf/clawsd.conf");
	if (access(path, R_OK) == -1)
		skip();
	errors = open_memstream(&out, &len);
	assert_non_null(errors);
	assert_int_equal(conf_load(&c, path, errors), 0);
	fclose(errors);
	assert_string_equal(out, "");
	free(out);
	assert_string_equal(c.user, "clawsd");
	assert_string_equal(c.domain, "example.org");
	assert_string_equal(c.password, "change-me");
	assert_string_equal(c.resource, "clawsd");
	assert_int_equal(c.ping_interval, 60);
	assert_int_equal(c.client_buffer, 4194304);
	conf_free(&c);
}

static void
test_catch_up_and_rooms(void **state)
{
	struct fx *fx = *state;
	struct conf c;

	assert_int_equal(load(fx, &c, MINIMAL
	    "catch_up = no\n"
	    "catch_up_max = 200\n"
	    "state_directory = /var/lib/clawsd\n"
	    "[rooms]\n"
	    "ops@conference.example.org = bot\n"
	    "rooms_ping_interval = 0\n"
	    "Secret@Conference.example.org = the bot  password=" SECRET "\n"),
	    0);
	assert_string_equal(fx->out, "");
	assert_int_equal(c.catch_up, 0);
	assert_int_equal(c.catch_up_max, 200);
	assert_string_equal(c.state_directory, "/var/lib/clawsd");
	assert_int_equal(c.rooms_ping_interval, 0);
	assert_int_equal(c.nrooms, 2);
	assert_string_equal(c.rooms[0].jid, "ops@conference.example.org");
	assert_string_equal(c.rooms[0].nick, "bot");
	assert_null(c.rooms[0].password);
	assert_int_equal(c.rooms[0].line, 9);
	assert_string_equal(c.rooms[1].jid, "Secret@Conference.example.org");
	assert_string_equal(c.rooms[1].nick, "the bot");
	assert_string_equal(c.rooms[1].password, SECRET);
	conf_free(&c);
}

/* systemd's StateDirectory= when the file names none. */
static void
test_state_directory_from_systemd(void **state)
{
	struct fx *fx = *state;
	struct conf c;

	setenv("STATE_DIRECTORY", "/var/lib/clawsd/work:/var/lib/other", 1);
	assert_int_equal(load(fx, &c, MINIMAL), 0);
	assert_string_equal(c.state_directory, "/var/lib/clawsd/work");
	conf_free(&c);
	assert_int_equal(load(fx, &c, MINIMAL "state_directory = /srv/s\n"), 0);
	assert_string_equal(c.state_directory, "/srv/s");
	conf_free(&c);
	setenv("STATE_DIRECTORY", "relative", 1);
	assert_int_equal(load(fx, &c, MINIMAL), 0);
	assert_null(c.state_directory);
	conf_free(&c);
	unsetenv("STATE_DIRECTORY");
}

static void
test_rooms_errors(void **state)
{
	struct fx *fx = *state;

	expect_errors(fx, fmt(fx,
	    MINIMAL
	    "catch_up = sometimes\n"			/* 5 */
	    "catch_up_max = 0\n"
	    "state_directory = var/lib/clawsd\n"
	    "[rooms]\n"
	    "ops@conference.example.org = bot\n"
	    "OPS@conference.example.org = bot2\n"	/* 10 */
	    "conference.example.org = bot\n"
	    "ops@conference.example.org/bot = bot\n"
	    "a<b@conference.example.org = bot\n"
	    "dev@conference.example.org =\n"
	    "qa@conference.example.org = password=" SECRET "\n" /* 15 */
	    "hr@conference.example.org = bot password=\n"
	    "rooms_ping_interval = 86401\n"
	    "it@conference.example.org = b\x01t\n"),
	    "5: [xmpp] catch_up: expected yes or no: \"sometimes\"",
	    "6: [xmpp] catch_up_max: out of range 1..100000: \"0\"",
	    "7: [xmpp] state_directory: not an absolute path: "
	    "\"var/lib/clawsd\"",
	    "10: [rooms] OPS@conference.example.org: duplicate room "
	    "(first at line 9)",
	    "11: [rooms] conference.example.org: expected a room's bare JID, "
	    "ROOM@SERVICE",
	    "12: [rooms] ops@conference.example.org/bot: expected a room's "
	    "bare JID, ROOM@SERVICE",
	    "13: [rooms] \"a<b@conference.example.org\": not a room JID: "
	    "invalid character '<'",
	    "14: [rooms] dev@conference.example.org: empty value (the "
	    "nickname)",
	    "15: [rooms] qa@conference.example.org: nickname: empty",
	    "16: [rooms] hr@conference.example.org: empty password",
	    "17: [rooms] rooms_ping_interval: out of range 0..86400: "
	    "\"86401\"",
	    "18: [rooms] it@conference.example.org: nickname: invalid "
	    "character 0x01");
	assert_null(strstr(fx->out, SECRET));
}

static void
test_rooms_changed(void **state)
{
	struct fx *fx = *state;
	struct conf a, b;

	assert_int_equal(load(fx, &a, MINIMAL "[rooms]\nr@muc.example.org = "
	    "bot\n"), 0);
	assert_int_equal(load(fx, &b, MINIMAL "[rooms]\nr@muc.example.org = "
	    "bot\n"), 0);
	assert_false(conf_rooms_changed(&a, &b));
	conf_free(&b);
	assert_int_equal(load(fx, &b, MINIMAL "[rooms]\nr@muc.example.org = "
	    "bot password=x\n"), 0);
	assert_true(conf_rooms_changed(&a, &b));
	assert_false(conf_xmpp_changed(&a, &b));
	conf_free(&b);
	assert_int_equal(load(fx, &b, MINIMAL), 0);
	assert_true(conf_rooms_changed(&a, &b));
	conf_free(&b);
	conf_free(&a);
}

#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_minimal_defaults),
		T(test_every_key),
		T(test_port_defaults),
		T(test_jid),
		T(test_jid_errors),
		T(test_password_file),
		T(test_password_file_credentials),
		T(test_password_file_errors),
		T(test_syntax_errors),
		T(test_long_line_and_nul),
		T(test_unknown_and_duplicates),
		T(test_bad_values),
		T(test_ca_file_not_certificates),
		T(test_more_bad_values),
		T(test_channel_binding),
		T(test_missing_required),
		T(test_password_conflict),
		T(test_tls_none),
		T(test_reconnect_delays),
		T(test_syntax_variants),
		T(test_password_never_printed),
		T(test_open_error),
		T(test_changed),
		T(test_example_config),
		T(test_catch_up_and_rooms),
		T(test_state_directory_from_systemd),
		T(test_rooms_errors),
		T(test_rooms_changed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
