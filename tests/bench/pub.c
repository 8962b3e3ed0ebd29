/*
 * pub: a publisher for the benchmark.  Connects to the relay's Unix socket
 * (retrying until it exists), waits for the <connected .../> status line,
 * then writes N client messages (stanza.h, ~250 bytes each, ids p1..pN),
 * prepared in memory, in writes of up to 1 MiB; with -r, RATE stanzas a
 * second instead (a write every 10 ms), for relays run under valgrind.
 * It reads the socket all along and counts <error .../> lines (a relay
 * that drops stanzas says so).
 * After the last byte it stays connected until "quit" or EOF on stdin, or
 * TIMEOUT seconds, so the relay is never measured closing a client.
 *
 * stdout, one line each, monotonic nanoseconds:
 *   ready NS          the <connected/> line was read
 *   start NS          first write
 *   written NS BYTES  last write returned
 *   errors K          on exit: error lines read from the relay
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stanza.h"

#define CHUNK		(1024 * 1024)

static size_t		 errors;
static int		 connected;
static char		 head[16];
static size_t		 headlen;

static void
lines(const char *p, size_t n)
{
	const char *end = p + n, *nl;
	size_t k, seglen;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		seglen = (size_t)((nl ? nl : end) - p);
		k = sizeof(head) - headlen < seglen ? sizeof(head) - headlen :
		    seglen;
		memcpy(head + headlen, p, k);
		headlen += k;
		if (nl == NULL)
			break;
		if (headlen >= 10 && memcmp(head, "<connected", 10) == 0)
			connected = 1;
		else if (headlen >= 6 && memcmp(head, "<error", 6) == 0)
			errors++;
		else if (headlen >= 13 && memcmp(head, "<disconnected", 13)
		    == 0 && connected)
			fprintf(stderr, "pub: the relay lost its session\n");
		headlen = 0;
		p = nl + 1;
	}
}

/* Read what the relay wrote; -1 when it closed the connection. */
static int
drain(int fd)
{
	char buf[65536];
	ssize_t r;

	for (;;) {
		r = read(fd, buf, sizeof(buf));
		if (r > 0) {
			lines(buf, (size_t)r);
			continue;
		}
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		return -1;
	}
}

static void
usage(void)
{
	fprintf(stderr, "usage: pub -s PATH -n N [-r RATE] [-t TIMEOUT]\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	struct pollfd pfd[2];
	const char *path = NULL;
	char *data, cmd[64];
	size_t count = 0, len, off = 0, n, rate = 0, due;
	uint64_t deadline, t0;
	ssize_t w;
	int ch, fd, timeout_s = 60, rc = 0;

	while ((ch = getopt(argc, argv, "s:n:r:t:")) != -1) {
		switch (ch) {
		case 's': path = optarg; break;
		case 'n': count = strtoul(optarg, NULL, 10); break;
		case 'r': rate = strtoul(optarg, NULL, 10); break;
		case 't': timeout_s = atoi(optarg); break;
		default: usage();
		}
	}
	if (path == NULL || count == 0)
		usage();
	data = bench_stanzas(count, 1, "p", 0, &len);
	fd = bench_connect("pub", path, timeout_s);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	deadline = now_ns() + (uint64_t)timeout_s * 1000000000u;
	pfd[0].fd = fd;
	pfd[0].events = POLLIN;
	while (!connected) {
		if (poll(pfd, 1, 1000) < 0 && errno != EINTR)
			break;
		if (drain(fd) < 0 || now_ns() > deadline) {
			fprintf(stderr, "pub: no <connected/> line\n");
			return 1;
		}
	}
	t0 = now_ns();
	printf("ready %llu\nstart %llu\n", (unsigned long long)t0,
	    (unsigned long long)t0);
	fflush(stdout);
	while (off < len) {
		n = len - off < CHUNK ? len - off : CHUNK;
		if (rate > 0) {
			/* Stanzas are nearly the same size: pace by bytes. */
			due = (size_t)((double)len * (double)rate *
			    (double)(now_ns() - t0) / 1e9 / (double)count);
			if (due > len)
				due = len;
			if (due <= off) {
				usleep(10000);
				continue;
			}
			if (n > due - off)
				n = due - off;
		}
		w = write(fd, data + off, n);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			fprintf(stderr, "pub: write: %s\n", strerror(errno));
			rc = 1;
			break;
		}
		pfd[0].events = POLLIN | POLLOUT;
		if (poll(pfd, 1, 1000) < 0 && errno != EINTR)
			break;
		if ((pfd[0].revents & POLLIN) && drain(fd) < 0) {
			fprintf(stderr, "pub: the relay closed the socket\n");
			rc = 1;
			break;
		}
	}
	printf("written %llu %zu\n", (unsigned long long)now_ns(), off);
	fflush(stdout);
	/* Stay until told, reading error lines. */
	pfd[0].events = POLLIN;
	pfd[1].fd = 0;
	pfd[1].events = POLLIN;
	deadline = now_ns() + (uint64_t)timeout_s * 1000000000u;
	while (rc == 0 && now_ns() < deadline) {
		if (poll(pfd, 2, 1000) < 0 && errno != EINTR)
			break;
		if ((pfd[0].revents & (POLLIN | POLLHUP)) && drain(fd) < 0)
			break;
		if (pfd[1].revents & (POLLIN | POLLHUP)) {
			w = read(0, cmd, sizeof(cmd));
			if (w <= 0 || memmem(cmd, (size_t)w, "quit", 4))
				break;
		}
	}
	printf("errors %zu\n", errors);
	fflush(stdout);
	close(fd);
	return rc;
}
