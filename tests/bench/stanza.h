/*
 * The stanzas of the benchmark, shared by xmppd, pub and expat_limit so that
 * every tool measures the same bytes, and the little the tools share besides.
 * Header-only: each tool is one .c.
 */
#ifndef BENCH_STANZA_H
#define BENCH_STANZA_H

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The stream header a server (or, with `to', a client) opens with. */
#define BENCH_STREAM_HEAD \
	"<?xml version='1.0'?><stream:stream xmlns='jabber:client' " \
	"xmlns:stream='http://etherx.jabber.org/streams' version='1.0' " \
	"from='localhost' id='bench-stream' xml:lang='en'>"

/*
 * A server -> client chat message, about 250 bytes: from, to, type, id,
 * xml:lang, a body with one entity, a XEP-0085 chat state.  Single quotes,
 * as Prosody and ejabberd write them.  `id' is the only variable part.
 */
#define BENCH_SRV_FMT \
	"<message from='alice@localhost/laptop' to='bench@localhost/clawsd' " \
	"type='chat' id='%s' xml:lang='en'><body>Build %s finished: " \
	"0 errors, 2 warnings. It&apos;s on staging.</body>" \
	"<active xmlns='http://jabber.org/protocol/chatstates'/></message>"

/* A client -> server message, as a script would write it to the socket. */
#define BENCH_CLI_FMT \
	"<message to='alice@localhost/laptop' type='chat' id='%s'><body>" \
	"Report %s from the bench publisher: disk 73%% used, load 0.42, " \
	"every service up, nothing to do. It&apos;s fine.</body><active " \
	"xmlns='http://jabber.org/protocol/chatstates'/></message>"

static inline uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Connect to the relay's socket, retrying until it exists; exits on failure. */
static inline int
bench_connect(const char *who, const char *path, int timeout_s)
{
	struct sockaddr_un sun;
	uint64_t end = now_ns() + (uint64_t)timeout_s * 1000000000u;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	for (;;) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			fprintf(stderr, "%s: socket: %s\n", who,
			    strerror(errno));
			exit(1);
		}
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			return fd;
		close(fd);
		if (now_ns() > end) {
			fprintf(stderr, "%s: connect %s: %s\n", who, path,
			    strerror(errno));
			exit(1);
		}
		usleep(500);
	}
}

static inline void *
bench_alloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL) {
		fprintf(stderr, "out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

/* One stanza into dst (room for 512 bytes); returns its length. */
static inline size_t
bench_stanza(char *dst, int client, const char *id)
{
	int n;

	if (client)
		n = snprintf(dst, 512, BENCH_CLI_FMT, id, id);
	else
		n = snprintf(dst, 512, BENCH_SRV_FMT, id, id);
	return n > 0 ? (size_t)n : 0;
}

/*
 * `count' stanzas back to back, ids "<prefix><seq>" with seq from 1, and an
 * optional separator byte after each one (0: none).  The caller frees.
 */
static inline char *
bench_stanzas(size_t count, int client, const char *prefix, int sep,
    size_t *lenp)
{
	char id[64], one[512];
	size_t i, n, len = 0, cap = count * 300 + 1;
	char *buf = bench_alloc(cap);

	for (i = 0; i < count; i++) {
		snprintf(id, sizeof(id), "%s%zu", prefix, i + 1);
		n = bench_stanza(one, client, id);
		if (len + n + 1 > cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			if (buf == NULL) {
				fprintf(stderr, "out of memory\n");
				exit(1);
			}
		}
		memcpy(buf + len, one, n);
		len += n;
		if (sep)
			buf[len++] = (char)sep;
	}
	*lenp = len;
	return buf;
}

#endif
