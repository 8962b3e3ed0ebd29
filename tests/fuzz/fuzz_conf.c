/*
 * libFuzzer target: the configuration loader (daemon/conf.c, with inih).
 *
 * The input is the file: it is written to a memfd and loaded through
 * /proc/self/fd/N.  Inputs naming anything under /dev, /proc or /sys are
 * skipped, so that password_file and ca_file cannot make the fuzzer read a
 * terminal or a pipe (and block) or something huge.
 *
 * Invariants checked (abort on violation): every problem is printed as
 * "FILE:LINE: message" with a LINE within the file; a refused file prints
 * at least one problem and leaves the struct empty; an accepted one prints
 * none and holds values within the ranges of SPEC section 2; the change
 * tests say a configuration equals itself; loading twice gives the same.
 */
#include <sys/mman.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

static int
lines_in(const uint8_t *data, size_t size)
{
	size_t i;
	int n = 1;

	for (i = 0; i < size; i++)
		if (data[i] == '\n')
			n++;
	return n;
}

static void
check_problems(const char *path, const char *text, size_t len, int maxline)
{
	const char *p = text, *end = text + len, *nl;
	size_t plen = strlen(path);
	long line;
	char *after;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			fprintf(stderr, "unterminated problem line\n");
			abort();
		}
		if ((size_t)(nl - p) < plen + 4 || memcmp(p, path, plen) != 0 ||
		    p[plen] != ':') {
			fprintf(stderr, "problem without FILE:LINE: %.*s\n",
			    (int)(nl - p), p);
			abort();
		}
		line = strtol(p + plen + 1, &after, 10);
		if (after == p + plen + 1 || line < 1 || line > maxline ||
		    after[0] != ':' || after[1] != ' ') {
			fprintf(stderr, "bad line number (file has %d): "
			    "%.*s\n", maxline, (int)(nl - p), p);
			abort();
		}
		p = nl + 1;
	}
}

static void
check_conf(const struct conf *c)
{
	if (c->user == NULL || *c->user == '\0' || c->domain == NULL ||
	    *c->domain == '\0' || c->resource == NULL ||
	    c->password == NULL || *c->password == '\0' ||
	    c->sasl_mechanisms == NULL || c->socket_path == NULL)
		abort();
	if (c->port < 0 || c->port > 65535 || conf_port(c) < 1 ||
	    conf_port(c) > 65535)
		abort();
	if (c->priority < -128 || c->priority > 127)
		abort();
	if (c->socket_mode > 0777 || c->max_stanza_size == 0)
		abort();
	if (c->reconnect_max_delay < c->reconnect_delay)
		abort();
	if (c->tls == CONF_TLS_NONE &&
	    (c->host == NULL || strstr(c->sasl_mechanisms, "SCRAM-") == NULL))
		abort();
	if (conf_xmpp_changed(c, c) || conf_socket_changed(c, c))
		abort();
}

static int
load(const char *path, struct conf *c, char **text, size_t *len)
{
	FILE *errs;
	int rc;

	errs = open_memstream(text, len);
	if (errs == NULL)
		abort();
	rc = conf_load(c, path, errs);
	fclose(errs);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf c, again;
	char path[64], *text = NULL, *text2 = NULL;
	size_t len = 0, len2 = 0;
	int fd, rc, rc2;

	if (memmem(data, size, "/dev", 4) || memmem(data, size, "/proc", 5) ||
	    memmem(data, size, "/sys", 4))
		return 0;
	fd = memfd_create("fuzz-conf", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

	rc = load(path, &c, &text, &len);
	check_problems(path, text, len, lines_in(data, size));
	if (rc == 0) {
		if (len != 0)
			abort();
		check_conf(&c);
	} else {
		if (rc != -1 || len == 0)
			abort();
		if (c.user != NULL || c.password != NULL ||
		    c.socket_path != NULL)
			abort();
	}
	/* Deterministic: the same file, the same verdict and messages. */
	rc2 = load(path, &again, &text2, &len2);
	if (rc2 != rc || len2 != len || (len > 0 && memcmp(text, text2, len) != 0))
		abort();
	if (rc == 0 && (conf_xmpp_changed(&c, &again) ||
	    conf_socket_changed(&c, &again)))
		abort();
	conf_free(&c);
	conf_free(&again);
	free(text);
	free(text2);
	close(fd);
	return 0;
}
