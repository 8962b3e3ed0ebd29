/*
 * notify.c: the sd_notify datagrams as systemd receives them (path and
 * abstract sockets), the STATUS= sanitizing, WATCHDOG_USEC/WATCHDOG_PID and
 * LISTEN_FDS/LISTEN_PID.  The test plays the service manager.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "notify.h"

struct fx {
	char	 dir[64];
	char	 path[128];		/* dir/notify.sock */
	int	 fd;			/* our end: where datagrams arrive */
};

static void
clear_env(void)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
}

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct sockaddr_un sun;

	assert_non_null(fx);
	clear_env();
	strcpy(fx->dir, "/tmp/test_notify.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/notify.sock", fx->dir);
	fx->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fx->fd >= 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, fx->path);
	assert_int_equal(bind(fx->fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	close(fx->fd);
	unlink(fx->path);
	rmdir(fx->dir);
	free(fx);
	clear_env();
	return 0;
}

/* The next datagram, as a string; "" if none is waiting. */
static const char *
receive(int fd)
{
	static char msg[2048];
	ssize_t n;

	n = recv(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT);
	if (n < 0)
		n = 0;
	msg[n] = '\0';
	return msg;
}

static void
test_no_socket_is_a_no_op(void **state)
{
	struct fx *fx = *state;

	assert_int_equal(notify_send("READY=1"), 0);
	assert_int_equal(notify_status("Connecting", NULL), 0);
	assert_int_equal(notify_reloading(), 0);
	assert_string_equal(receive(fx->fd), "");
}

static void
test_path_socket(void **state)
{
	struct fx *fx = *state;

	setenv("NOTIFY_SOCKET", fx->path, 1);
	assert_int_equal(notify_send("READY=1"), 1);
	assert_string_equal(receive(fx->fd), "READY=1");
	assert_int_equal(notify_sendf("STATUS=%s %d", "x", 42), 1);
	assert_string_equal(receive(fx->fd), "STATUS=x 42");
}

static void
test_abstract_socket(void **state)
{
	struct sockaddr_un sun;
	char name[64];
	socklen_t len;
	int fd;

	(void)state;
	snprintf(name, sizeof(name), "@test_notify.%ld", (long)getpid());
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path + 1, name + 1, strlen(name) - 1);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, len), 0);
	setenv("NOTIFY_SOCKET", name, 1);
	assert_int_equal(notify_send("WATCHDOG=1"), 1);
	assert_string_equal(receive(fd), "WATCHDOG=1");
	close(fd);
}

static void
test_unusable_socket(void **state)
{
	struct fx *fx = *state;
	char gone[160];

	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(notify_send("READY=1"), -1);
	setenv("NOTIFY_SOCKET", "@", 1);
	assert_int_equal(notify_send("READY=1"), -1);
	snprintf(gone, sizeof(gone), "%s/nobody-here", fx->dir);
	setenv("NOTIFY_SOCKET", gone, 1);
	assert_int_equal(notify_send("READY=1"), -1);
}

static void
test_status(void **state)
{
	struct fx *fx = *state;

	setenv("NOTIFY_SOCKET", fx->path, 1);
	assert_int_equal(notify_status("Connecting", NULL), 1);
	assert_string_equal(receive(fx->fd), "STATUS=Connecting");
	assert_int_equal(notify_status("Binded", "as bot@example.com/clawsd"), 1);
	assert_string_equal(receive(fx->fd),
	    "STATUS=Binded as bot@example.com/clawsd");
}

static void
test_status_cannot_add_assignments(void **state)
{
	struct fx *fx = *state;

	/* A reason may come from the server: it must stay one value. */
	setenv("NOTIFY_SOCKET", fx->path, 1);
	assert_int_equal(notify_status("Retrying",
	    "in 3.0 s: stream error: x\nMAINPID=1\r\nREADY=1\t\x7f"), 1);
	assert_string_equal(receive(fx->fd),
	    "STATUS=Retrying in 3.0 s: stream error: x MAINPID=1  READY=1  ");
}

static void
test_reloading(void **state)
{
	struct fx *fx = *state;
	unsigned long long usec, before, after;
	struct timespec ts;
	const char *msg;

	setenv("NOTIFY_SOCKET", fx->path, 1);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	before = (unsigned long long)ts.tv_sec * 1000000 +
	    (unsigned long long)ts.tv_nsec / 1000;
	assert_int_equal(notify_reloading(), 1);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	after = (unsigned long long)ts.tv_sec * 1000000 +
	    (unsigned long long)ts.tv_nsec / 1000;
	msg = receive(fx->fd);
	assert_int_equal(sscanf(msg, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec),
	    1);
	assert_true(before <= usec && usec <= after);
}

static void
test_watchdog_usec(void **state)
{
	char pid[32];

	(void)state;
	assert_int_equal(notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "30000000", 1);
	assert_int_equal(notify_watchdog_usec(), 30000000);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(notify_watchdog_usec(), 30000000);
	/* for another process (a parent's variable we inherited) */
	snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(notify_watchdog_usec(), 0);
	unsetenv("WATCHDOG_PID");
	setenv("WATCHDOG_USEC", "0", 1);
	assert_int_equal(notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "12x", 1);
	assert_int_equal(notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "-5", 1);
	assert_int_equal(notify_watchdog_usec(), 0);
}

static void
set_listen_env(long pid, const char *fds)
{
	char s[32];

	snprintf(s, sizeof(s), "%ld", pid);
	setenv("LISTEN_PID", s, 1);
	setenv("LISTEN_FDS", fds, 1);
	setenv("LISTEN_FDNAMES", "clawsd.socket", 1);
}

static void
assert_listen_env_gone(void)
{
	assert_null(getenv("LISTEN_PID"));
	assert_null(getenv("LISTEN_FDS"));
	assert_null(getenv("LISTEN_FDNAMES"));
}

/* Put a socket of `type' on fd 3, listening if `listening'; -1 if fd 3 was free. */
static int
socket_on_fd3(struct fx *fx, int type, int listening)
{
	struct sockaddr_un sun;
	int fd, saved;

	saved = fcntl(3, F_GETFD) == -1 ? -1 : fcntl(3, F_DUPFD_CLOEXEC, 10);
	fd = socket(AF_UNIX, type, 0);
	assert_true(fd >= 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/listen.sock", fx->dir);
	unlink(sun.sun_path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	if (listening)
		assert_int_equal(listen(fd, 4), 0);
	if (fd != 3) {
		assert_int_equal(dup2(fd, 3), 3);
		close(fd);
	}
	return saved;
}

static void
restore_fd3(struct fx *fx, int saved)
{
	char path[160];

	close(3);
	if (saved >= 0) {
		dup2(saved, 3);
		close(saved);
	}
	snprintf(path, sizeof(path), "%s/listen.sock", fx->dir);
	unlink(path);
}

static void
test_listen_none(void **state)
{
	int fd = -1;

	(void)state;
	assert_int_equal(notify_listen_fd(&fd), 0);
	assert_int_equal(fd, -1);
	/* variables meant for another process are not ours, and removed */
	set_listen_env(1, "1");
	assert_int_equal(notify_listen_fd(&fd), 0);
	assert_int_equal(fd, -1);
	assert_listen_env_gone();
	/* without LISTEN_PID they are not ours either */
	setenv("LISTEN_FDS", "1", 1);
	assert_int_equal(notify_listen_fd(&fd), 0);
	assert_listen_env_gone();
}

static void
test_listen_passed_socket(void **state)
{
	struct fx *fx = *state;
	int fd = -1, saved;

	saved = socket_on_fd3(fx, SOCK_STREAM, 1);
	set_listen_env((long)getpid(), "1");
	assert_int_equal(notify_listen_fd(&fd), 1);
	assert_int_equal(fd, 3);
	assert_true(fcntl(3, F_GETFD) & FD_CLOEXEC);
	assert_listen_env_gone();
	restore_fd3(fx, saved);
}

static void
test_listen_unusable_socket(void **state)
{
	struct fx *fx = *state;
	int fd = -1, saved;

	/* a datagram socket, then a stream socket that does not listen */
	saved = socket_on_fd3(fx, SOCK_DGRAM, 0);
	set_listen_env((long)getpid(), "1");
	assert_int_equal(notify_listen_fd(&fd), -1);
	assert_int_equal(fd, -1);
	assert_listen_env_gone();
	restore_fd3(fx, saved);

	saved = socket_on_fd3(fx, SOCK_STREAM, 0);
	set_listen_env((long)getpid(), "1");
	assert_int_equal(notify_listen_fd(&fd), -1);
	restore_fd3(fx, saved);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_socket_is_a_no_op,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_socket, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_abstract_socket, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_unusable_socket, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_status, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_status_cannot_add_assignments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reloading, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_watchdog_usec, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_listen_none, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_listen_passed_socket,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_unusable_socket,
		    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
