/*
 * sub: a subscriber for the benchmark.  Opens CONNS connections to the
 * relay's Unix socket (retrying until it exists), waits until each has read
 * a <connected .../> status line, then counts the lines that start with
 * "<message" until every connection has N of them.  Reads are 1 MiB and
 * lines are found with memchr; only the first bytes of a line are looked
 * at, except with -l, which parses the send time out of each message id
 * ("l<seq>-<monotonic ns>", from xmppd --rate) and records the latency.
 *
 * stdout, one line each, monotonic nanoseconds:
 *   ready NS                 all connected; NS: the first <connected/> line
 *   done FIRST_NS LAST_NS    first message line read, last one read
 *   lat COUNT P50 P99 MAX    with -l, nanoseconds
 * Exit 0, or 3 after TIMEOUT seconds without progress ("timeout K" first)
 * or when the relay closes a connection short of N ("closed K" first).
 */
#include <sys/epoll.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stanza.h"

#define READ_SIZE	(1024 * 1024)
#define HEAD		16
#define MAX_CONNS	64

struct sconn {
	int		 fd;
	int		 connected, eof;
	size_t		 msgs;
	char		 head[HEAD];	/* first bytes of the current line */
	size_t		 headlen;
	char		*line;		/* -l: the current line, when split */
	size_t		 linelen, linecap;
};

static size_t		 want;
static int		 latency;
static uint64_t		*lat;
static size_t		 nlat;
static uint64_t		 t_first, t_last, t_connected;
static size_t		 nconns, ndone, nready;

/* "... id='l<seq>-<ns>' ..." (either quote): the send time, or 0. */
static uint64_t
sent_at(const char *p, size_t n)
{
	const char *end = p + n, *q = p;
	uint64_t v = 0;

	while ((q = memmem(q, (size_t)(end - q), " id=", 4)) != NULL) {
		q += 4;
		if (q + 2 < end && (*q == '"' || *q == '\'') && q[1] == 'l')
			break;
	}
	if (q == NULL)
		return 0;
	q = memchr(q, '-', (size_t)(end - q));
	if (q == NULL)
		return 0;
	for (q++; q < end && *q >= '0' && *q <= '9'; q++)
		v = v * 10 + (uint64_t)(*q - '0');
	return v;
}

static void
line_done(struct sconn *c, const char *line, size_t len, uint64_t t)
{
	uint64_t sent;

	if (c->headlen >= 8 && memcmp(c->head, "<message", 8) == 0) {
		if (!c->connected)
			return;
		if (t_first == 0)
			t_first = t;
		if (latency && nlat < want && (sent = sent_at(line, len)) != 0)
			lat[nlat++] = t - sent;
		if (++c->msgs == want) {
			ndone++;
			t_last = t;
		}
	} else if (c->headlen >= 10 && memcmp(c->head, "<connected", 10) == 0) {
		if (!c->connected) {
			c->connected = 1;
			nready++;
			if (t_connected == 0)
				t_connected = t;
		}
	} else if (c->headlen >= 13 &&
	    memcmp(c->head, "<disconnected", 13) == 0 && c->connected) {
		fprintf(stderr, "sub: %.*s\n", (int)len, line);
		c->connected = 0;
		nready--;
	}
}

static void
input(struct sconn *c, const char *p, size_t n, uint64_t t)
{
	const char *end = p + n, *nl, *seg;
	size_t k, seglen;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		seglen = (size_t)((nl ? nl : end) - p);
		if (c->headlen < HEAD) {
			k = HEAD - c->headlen < seglen ? HEAD - c->headlen :
			    seglen;
			memcpy(c->head + c->headlen, p, k);
			c->headlen += k;
		}
		if (latency && (nl == NULL || c->linelen > 0)) {
			if (c->linelen + seglen > c->linecap) {
				c->linecap = (c->linelen + seglen) * 2;
				c->line = realloc(c->line, c->linecap);
				if (c->line == NULL) {
					fprintf(stderr, "sub: out of memory\n");
					exit(1);
				}
			}
			memcpy(c->line + c->linelen, p, seglen);
			c->linelen += seglen;
		}
		if (nl == NULL)
			break;
		seg = c->linelen > 0 ? c->line : p;
		line_done(c, seg, c->linelen > 0 ? c->linelen : seglen, t);
		c->headlen = c->linelen = 0;
		p = nl + 1;
	}
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void
usage(void)
{
	fprintf(stderr, "usage: sub -s PATH [-c CONNS] [-n N] [-l] "
	    "[-t TIMEOUT]\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	struct sconn conns[MAX_CONNS];
	struct epoll_event ee, evs[MAX_CONNS];
	const char *path = NULL;
	char *buf;
	uint64_t t, t_progress;
	size_t i, progress = 0, last_progress = (size_t)-1;
	int ch, epfd, n, k, timeout_s = 60, said_ready = 0;
	ssize_t r;

	nconns = 1;
	want = 1;
	while ((ch = getopt(argc, argv, "s:c:n:lt:")) != -1) {
		switch (ch) {
		case 's': path = optarg; break;
		case 'c': nconns = strtoul(optarg, NULL, 10); break;
		case 'n': want = strtoul(optarg, NULL, 10); break;
		case 'l': latency = 1; break;
		case 't': timeout_s = atoi(optarg); break;
		default: usage();
		}
	}
	if (path == NULL || nconns < 1 || nconns > MAX_CONNS || want < 1)
		usage();
	buf = bench_alloc(READ_SIZE);
	if (latency)
		lat = bench_alloc(want * sizeof(*lat));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	memset(conns, 0, sizeof(conns));
	for (i = 0; i < nconns; i++) {
		conns[i].fd = bench_connect("sub", path, timeout_s);
		ee.events = EPOLLIN;
		ee.data.ptr = &conns[i];
		epoll_ctl(epfd, EPOLL_CTL_ADD, conns[i].fd, &ee);
	}
	t_progress = now_ns();
	while (ndone < nconns) {
		n = epoll_wait(epfd, evs, MAX_CONNS, 1000);
		for (k = 0; k < n; k++) {
			struct sconn *c = evs[k].data.ptr;

			r = read(c->fd, buf, READ_SIZE);
			t = now_ns();
			if (r > 0) {
				input(c, buf, (size_t)r, t);
				continue;
			}
			if (r < 0 && errno == EINTR)
				continue;
			fprintf(stderr, "sub: connection closed by the relay "
			    "after %zu messages\n", c->msgs);
			if (c->msgs < want) {
				printf("closed %zu\n", c->msgs);
				fflush(stdout);
				return 3;
			}
			epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
			c->eof = 1;
		}
		if (!said_ready && nready == nconns) {
			said_ready = 1;
			printf("ready %llu\n", (unsigned long long)t_connected);
			fflush(stdout);
		}
		for (progress = 0, i = 0; i < nconns; i++)
			progress += conns[i].msgs + (size_t)conns[i].connected;
		t = now_ns();
		if (progress != last_progress) {
			last_progress = progress;
			t_progress = t;
		} else if (t - t_progress > (uint64_t)timeout_s * 1000000000u) {
			size_t least = want;

			for (i = 0; i < nconns; i++)
				if (conns[i].msgs < least)
					least = conns[i].msgs;
			printf("timeout %zu\n", least);
			fflush(stdout);
			return 3;
		}
	}
	printf("done %llu %llu\n", (unsigned long long)t_first,
	    (unsigned long long)t_last);
	if (latency && nlat > 0) {
		qsort(lat, nlat, sizeof(*lat), cmp_u64);
		printf("lat %zu %llu %llu %llu\n", nlat,
		    (unsigned long long)lat[nlat / 2],
		    (unsigned long long)lat[nlat * 99 / 100],
		    (unsigned long long)lat[nlat - 1]);
	}
	fflush(stdout);
	return 0;
}
