/*
 * The service manager's side channels, without libsystemd: readiness and
 * status over the sd_notify protocol (a datagram to $NOTIFY_SOCKET), the
 * watchdog interval ($WATCHDOG_USEC) and socket activation ($LISTEN_FDS).
 * Outside systemd every function here is a cheap no-op.
 */
#ifndef CLAWSD_NOTIFY_H
#define CLAWSD_NOTIFY_H

#include <stdint.h>

/*
 * Send `msg' ("READY=1", "STATUS=...", several assignments separated by
 * newlines) to $NOTIFY_SOCKET.  Returns 1 when sent, 0 when there is no
 * service manager to tell, -1 on error (logged).
 */
int		 notify_send(const char *msg);
int		 notify_sendf(const char *fmt, ...)
		    __attribute__((format(printf, 1, 2)));
/*
 * STATUS=<name> <detail>, with control characters in the detail made
 * blanks: a reason coming from the network must not add assignments.
 */
int		 notify_status(const char *name, const char *detail);
/* RELOADING=1 with MONOTONIC_USEC=, as systemd asks of reloading daemons. */
int		 notify_reloading(void);
/*
 * The watchdog interval in microseconds from $WATCHDOG_USEC, 0 when no
 * watchdog is asked for (or it is meant for another process).
 */
uint64_t	 notify_watchdog_usec(void);
/*
 * Socket activation: the listening socket systemd passed, if $LISTEN_PID is
 * this process.  Returns 1 with *fd set, 0 when none was passed, -1 when
 * what was passed is unusable (logged).  The LISTEN_* variables are removed
 * from the environment either way; call it before any thread exists.
 */
int		 notify_listen_fd(int *fd);

#endif
