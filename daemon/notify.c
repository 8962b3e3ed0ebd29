/*
 * The sd_notify protocol and socket activation, as documented in
 * sd_notify(3) and sd_listen_fds(3), in the few lines the daemon needs
 * rather than a dependency on libsystemd.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"

#define LISTEN_FDS_START	3	/* SD_LISTEN_FDS_START */
#define NOTIFY_MAX		1024	/* longest message we compose */

/*
 * An environment variable holding a decimal number: 0 and *v set, or -1
 * when it is unset or not a plain number.
 */
static int
env_number(const char *name, unsigned long long *v)
{
	const char *s = getenv(name);
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	*v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	return 0;
}

/* Is $name, when set, our pid?  Variables meant for a parent are not ours. */
static int
env_is_our_pid(const char *name)
{
	unsigned long long pid;

	if (getenv(name) == NULL)
		return 1;
	return env_number(name, &pid) == 0 && pid == (unsigned long long)getpid();
}

/*
 * $NOTIFY_SOCKET as an address: a path, or an abstract name written with a
 * leading '@'.  1 when there is one, 0 when unset, -1 when unusable.
 */
static int
notify_addr(struct sockaddr_un *sun, socklen_t *len)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t n;

	if (path == NULL || *path == '\0')
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n < 2 ||
	    n >= sizeof(sun->sun_path)) {
		log_warn("notify: unsupported NOTIFY_SOCKET %s", path);
		return -1;
	}
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, n);
	if (path[0] == '@')
		sun->sun_path[0] = '\0';
	/* An abstract name is exactly its bytes; a path has its NUL. */
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
	    (path[0] == '/'));
	return 1;
}

int
notify_send(const char *msg)
{
	/* Bounded, so a stuck receiver cannot stall the event loop for long. */
	static const struct timeval timeout = { 1, 0 };
	struct sockaddr_un sun;
	socklen_t len;
	ssize_t n;
	int fd, rc, saved;

	if ((rc = notify_addr(&sun, &len)) <= 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("notify: socket: %s", strerror(errno));
		return -1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout,
	    sizeof(timeout));
	n = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL,
	    (struct sockaddr *)&sun, len);
	saved = errno;
	close(fd);
	if (n < 0) {
		log_warn("notify: %s: %s", getenv("NOTIFY_SOCKET"),
		    strerror(saved));
		return -1;
	}
	return 1;
}

int
notify_sendf(const char *fmt, ...)
{
	char msg[NOTIFY_MAX];
	va_list ap;
	int n;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	return notify_send(msg);
}

int
notify_status(const char *name, const char *detail)
{
	char msg[NOTIFY_MAX];
	size_t i, start;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	snprintf(msg, sizeof(msg), "STATUS=%s%s%s", name,
	    detail != NULL ? " " : "", detail != NULL ? detail : "");
	/* A newline would start another assignment (MAINPID=, READY=...). */
	start = strlen("STATUS=");
	for (i = start; msg[i] != '\0'; i++)
		if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f)
			msg[i] = ' ';
	return notify_send(msg);
}

int
notify_reloading(void)
{
	struct timespec ts;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return notify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000);
}

uint64_t
notify_watchdog_usec(void)
{
	unsigned long long usec;

	if (env_number("WATCHDOG_USEC", &usec) != 0 || usec == 0)
		return 0;
	if (!env_is_our_pid("WATCHDOG_PID"))
		return 0;
	return usec;
}

/* sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0), in short. */
static int
is_unix_listener(int fd)
{
	struct sockaddr_un sun;
	socklen_t len;
	struct stat st;
	int type, listening;

	if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
		return 0;
	len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
	    type != SOCK_STREAM)
		return 0;
	len = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
	    !listening)
		return 0;
	len = sizeof(sun);
	if (getsockname(fd, (struct sockaddr *)&sun, &len) != 0 ||
	    sun.sun_family != AF_UNIX)
		return 0;
	return 1;
}

static void
unset_listen_env(void)
{
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

int
notify_listen_fd(int *fd)
{
	unsigned long long n, i;
	int ours;

	if (getenv("LISTEN_FDS") == NULL) {
		unset_listen_env();
		return 0;
	}
	/* sd_listen_fds(3): without LISTEN_PID, or another pid, not ours. */
	ours = getenv("LISTEN_PID") != NULL && env_is_our_pid("LISTEN_PID");
	if (env_number("LISTEN_FDS", &n) != 0)
		n = 0;
	unset_listen_env();
	if (!ours || n == 0)
		return 0;
	if (n > 64) {
		log_error("socket activation: LISTEN_FDS=%llu is not sane", n);
		return -1;
	}
	/* Nothing we run may inherit them. */
	for (i = 0; i < n; i++)
		(void)fcntl(LISTEN_FDS_START + (int)i, F_SETFD, FD_CLOEXEC);
	if (n > 1) {
		log_warn("socket activation: %llu sockets passed, using the "
		    "first", n);
		for (i = 1; i < n; i++)
			close(LISTEN_FDS_START + (int)i);
	}
	if (!is_unix_listener(LISTEN_FDS_START)) {
		log_error("socket activation: fd %d is not a listening Unix "
		    "stream socket", LISTEN_FDS_START);
		close(LISTEN_FDS_START);
		return -1;
	}
	*fd = LISTEN_FDS_START;
	return 1;
}
