/*
 * clawsd: keep one XMPP client session alive and bridge it to a Unix socket.
 */
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>
#include <uv.h>

#include "compat_mbedtls.h"
#include "conf.h"
#include "gap.h"
#include "hub.h"
#include "log.h"
#include "notify.h"
#include "session.h"

/* The daemon context: everything the process holds, passed explicitly. */
struct clawsd {
	uv_loop_t	 loop;
	const char	*conf_path;
	struct conf	 conf;
	struct session	*session;
	struct gap	*gap;		/* catch-up and rooms */
	struct hub	*hub;
	uv_signal_t	 sigterm, sigint, sighup;
	uv_timer_t	 watchdog;	/* fed while WATCHDOG_USEC asks */
	int		 listen_fd;	/* from systemd, or -1 */
	int		 verbose;	/* -v: debug whatever the file says */
	int		 stopping;
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: clawsd [-c FILE] [-t] [-v] [-V] [-h]\n"
	    "  -c, --config FILE    configuration file (default %s)\n"
	    "  -t, --check-config   validate the configuration and exit\n"
	    "  -v, --verbose        log at debug level\n"
	    "  -V, --version        print versions and exit\n"
	    "  -h, --help           this help\n", CONF_DEFAULT_PATH);
}

static void
version(void)
{
	char tls[32];

	mbedtls_version_get_string(tls);
	printf("clawsd %s\nlibuv %s\n%s\nmbedtls %s (%s)\n", CLAWSD_VERSION,
	    uv_version_string(), XML_ExpatVersion(), tls, COMPAT_TLS_VERSIONS);
}

static void
on_line(void *arg, const struct head *h)
{
	struct clawsd *d = arg;

	gap_line(d->gap, h);
}

static void
on_bound(void *arg, int resumed)
{
	struct clawsd *d = arg;

	gap_up(d->gap, resumed);
}

static void
on_gap_relay(void *arg, const struct head *h)
{
	struct clawsd *d = arg;

	hub_relay(d->hub, h);
}

static void
on_gap_status(void *arg, const char *line, size_t len)
{
	struct clawsd *d = arg;

	hub_broadcast(d->hub, line, len);
}

static void
on_gap_send(void *arg, const char *data, size_t len)
{
	struct clawsd *d = arg;

	session_send(d->session, data, len);
}

static void
on_status(void *arg, const char *line, size_t len, int announce)
{
	struct clawsd *d = arg;

	hub_status(d->hub, line, len, announce);
}

/*
 * Every state change becomes the STATUS= line systemctl status shows; the
 * hub times requests only while the session is up; a state other than
 * Binded is a session down for the catch-up and rooms.
 */
static void
on_state(void *arg, const char *name, const char *detail)
{
	struct clawsd *d = arg;

	notify_status(name, detail);
	hub_session(d->hub, strcmp(name, "Binded") == 0);
	if (strcmp(name, "Binded") != 0)
		gap_down(d->gap);
}

/* The daemon's own handles, those that were initialized (loop set). */
static void
close_handles(struct clawsd *d)
{
	uv_handle_t *h[] = {
		(uv_handle_t *)&d->sigterm, (uv_handle_t *)&d->sigint,
		(uv_handle_t *)&d->sighup, (uv_handle_t *)&d->watchdog,
	};
	size_t i;

	for (i = 0; i < sizeof(h) / sizeof(h[0]); i++)
		if (h[i]->loop != NULL && !uv_is_closing(h[i]))
			uv_close(h[i], NULL);
}

static void
on_stopped(void *arg)
{
	struct clawsd *d = arg;

	gap_save(d->gap);
	hub_close_clients(d->hub);
	hub_unlisten(d->hub);
	close_handles(d);
	log_info("stopped");
}

static const char *
on_stanza(void *arg, const char *data, size_t len, uint64_t tag,
    const char **text)
{
	struct clawsd *d = arg;

	switch (session_submit(d->session, data, len, tag)) {
	case 0:
		return NULL;
	case SESSION_TOO_LARGE:
		*text = "larger than the server accepts";
		return "too-large";
	default:
		*text = "the session is down and the queue is full";
		return "queue-full";
	}
}

static void
on_hub_state(void *arg, struct hub_state *st)
{
	struct clawsd *d = arg;
	struct session_info si;

	session_info(d->session, &si);
	st->state = si.state;
	st->jid = si.jid;
	st->sm = si.sm;
	st->queued = si.queued;
	st->unacked = si.unacked;
	st->since = (unsigned long)((uv_now(&d->loop) - si.since) / 1000);
	st->catching_up = gap_catching_up(d->gap);
}

static void
on_hub_rooms(void *arg, struct buf *b)
{
	struct clawsd *d = arg;

	gap_rooms_status(d->gap, b);
}

static void
on_acked(void *arg, uint64_t tag)
{
	struct clawsd *d = arg;

	gap_acked(d->gap, tag);
}

static void
on_refused(void *arg, uint64_t tag, const char *condition, const char *text)
{
	struct clawsd *d = arg;

	gap_refused(d->gap, tag, condition, text);
}

static void
on_gap_acked(void *arg, uint64_t tag)
{
	struct clawsd *d = arg;

	hub_acked(d->hub, tag);
}

static void
on_gap_refused(void *arg, uint64_t tag, const char *condition,
    const char *text)
{
	struct clawsd *d = arg;

	hub_refused(d->hub, tag, condition, text);
}

static void
on_congested(void *arg, int on)
{
	struct clawsd *d = arg;

	hub_pause(d->hub, on);
}

static const struct session_cb session_cb = {
	.line = on_line,
	.status = on_status,
	.state = on_state,
	.congested = on_congested,
	.stopped = on_stopped,
	.acked = on_acked,
	.refused = on_refused,
	.bound = on_bound,
};

static const struct gap_cb gap_cb = {
	.relay = on_gap_relay,
	.status = on_gap_status,
	.send = on_gap_send,
	.acked = on_gap_acked,
	.refused = on_gap_refused,
};

static const struct hub_cb hub_cb = {
	.stanza = on_stanza,
	.state = on_hub_state,
	.rooms = on_hub_rooms,
};

/* SPEC section 5: no new clients, take what clients wrote, then close. */
static void
shutdown_daemon(struct clawsd *d, int signum)
{
	if (d->stopping)
		return;
	d->stopping = 1;
	log_info("%s: shutting down", strsignal(signum));
	notify_send("STOPPING=1\nSTATUS=Shutting down");
	uv_timer_stop(&d->watchdog);
	hub_unlisten(d->hub);
	hub_drain(d->hub);
	session_stop(d->session);
}

static void
apply_log_level(const struct conf *c, int verbose)
{
	log_set_level(verbose ? LOG_LEVEL_DEBUG : (enum log_level)c->log_level);
}

/*
 * SIGHUP: a bad file is reported and the running configuration kept; so is
 * one whose TLS settings cannot be loaded (the session would otherwise go
 * on with the old ones under the new file's name).
 */
static void
reload_conf(struct clawsd *d)
{
	struct conf next, old;
	int xmpp, sock;

	log_info("reloading %s", d->conf_path);
	if (conf_load(&next, d->conf_path, stderr) != 0) {
		log_error("reload: %s is invalid, keeping the running "
		    "configuration", d->conf_path);
		return;
	}
	xmpp = conf_xmpp_changed(&d->conf, &next);
	sock = conf_socket_changed(&d->conf, &next);
	/* systemd's socket is the socket: path, mode and group do not apply. */
	if (d->listen_fd >= 0)
		sock = 0;
	/* The session reads d->conf: it sees the new one from here on. */
	old = d->conf;
	d->conf = next;
	if (session_configure(d->session, &d->conf) != 0) {
		d->conf = old;
		conf_free(&next);
		log_error("reload: the TLS settings of %s cannot be loaded, "
		    "keeping the running configuration", d->conf_path);
		return;
	}
	conf_free(&old);
	apply_log_level(&d->conf, d->verbose);
	hub_configure(d->hub, &d->conf);
	if (sock && hub_listen(d->hub, &d->conf, -1) != 0)
		log_error("reload: the socket could not be re-created, "
		    "keeping the old one");
	gap_configure(d->gap, &d->conf);
	if (xmpp) {
		log_info("reload: [xmpp] changed, reconnecting");
		session_restart(d->session);
	}
}

/* systemd waits from RELOADING=1 to READY=1, whatever the outcome. */
static void
reload(struct clawsd *d)
{
	notify_reloading();
	reload_conf(d);
	notify_send("READY=1");
}

static void
on_signal(uv_signal_t *h, int signum)
{
	struct clawsd *d = h->data;

	if (signum != SIGHUP)
		shutdown_daemon(d, signum);
	else if (d->stopping)
		log_info("SIGHUP during shutdown: not reloading");
	else
		reload(d);
}

static int
watch_signal(struct clawsd *d, uv_signal_t *h, int signum)
{
	int rc = uv_signal_init(&d->loop, h);

	h->data = d;
	if (rc == 0)
		rc = uv_signal_start(h, on_signal, signum);
	if (rc != 0)
		log_error("%s: %s", strsignal(signum), uv_strerror(rc));
	return rc;
}

static void
on_watchdog(uv_timer_t *t)
{
	notify_send("WATCHDOG=1");
}

/*
 * Feed the watchdog from the event loop itself, at half the interval: if
 * the loop is stuck, systemd stops hearing from us and restarts the daemon.
 * Unreferenced, so it never keeps a finished loop alive.
 */
static int
start_watchdog(struct clawsd *d)
{
	uint64_t usec = notify_watchdog_usec();
	uint64_t ms = usec / 2000;
	int rc;

	if ((rc = uv_timer_init(&d->loop, &d->watchdog)) != 0) {
		log_error("watchdog: %s", uv_strerror(rc));
		return rc;
	}
	d->watchdog.data = d;
	uv_unref((uv_handle_t *)&d->watchdog);
	if (usec == 0)
		return 0;
	if (ms == 0)
		ms = 1;
	log_debug("watchdog: every %llu ms", (unsigned long long)ms);
	notify_send("WATCHDOG=1");
	if ((rc = uv_timer_start(&d->watchdog, on_watchdog, ms, ms)) != 0)
		log_error("watchdog: %s", uv_strerror(rc));
	return rc;
}

static int
run(struct clawsd *d)
{
	int rc = 1;

	d->listen_fd = -1;
	if (notify_listen_fd(&d->listen_fd) < 0)
		return 1;
	d->hub = hub_new(&d->loop, &hub_cb, d);
	d->session = session_new(&d->loop, &session_cb, d);
	d->gap = gap_new(&d->loop, &gap_cb, d);
	gap_configure(d->gap, &d->conf);
	if (d->hub == NULL || d->session == NULL)
		log_error("cannot set up the %s",
		    d->hub ? "session" : "socket");
	/*
	 * The signals before the socket: whoever sees the socket may signal
	 * at once, and must not meet the default action (death, exit -2).
	 */
	else if (session_configure(d->session, &d->conf) == 0 &&
	    watch_signal(d, &d->sigterm, SIGTERM) == 0 &&
	    watch_signal(d, &d->sigint, SIGINT) == 0 &&
	    watch_signal(d, &d->sighup, SIGHUP) == 0 &&
	    hub_listen(d->hub, &d->conf, d->listen_fd) == 0) {
		/* Clients can connect now: the session comes up on its own. */
		notify_send("READY=1");
		if (start_watchdog(d) == 0) {
			session_start(d->session);
			uv_run(&d->loop, UV_RUN_DEFAULT);
			rc = 0;
		}
	}
	/* Close every handle, on the way out of a failure too. */
	close_handles(d);
	session_free(d->session);
	gap_free(d->gap);
	hub_free(d->hub);
	uv_run(&d->loop, UV_RUN_DEFAULT);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct clawsd d;
	int ch, check = 0, rc;

	memset(&d, 0, sizeof(d));
	d.conf_path = CONF_DEFAULT_PATH;
	while ((ch = getopt_long(argc, argv, "c:tvVh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': d.conf_path = optarg; break;
		case 't': check = 1; break;
		case 'v': d.verbose = 1; break;
		case 'V': version(); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	log_init();
	if (conf_load(&d.conf, d.conf_path, stderr) != 0)
		return CONF_EX_CONFIG;
	if (check) {
		conf_free(&d.conf);
		return 0;
	}
	apply_log_level(&d.conf, d.verbose);
	/* A client that goes away mid-write must not kill the daemon. */
	signal(SIGPIPE, SIG_IGN);
	/*
	 * Large buffers (a big stanza, a TLS burst) come from mmap and go
	 * back to the system when freed; glibc would otherwise raise the
	 * threshold after the first free and keep them.
	 */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	if (compat_crypto_init() != 0) {
		log_error("TLS: cannot initialise the crypto library");
		return 1;
	}
	if (uv_loop_init(&d.loop) != 0) {
		log_error("cannot create the event loop");
		return 1;
	}
	log_info("clawsd %s starting", CLAWSD_VERSION);
	rc = run(&d);
	if (uv_loop_close(&d.loop) != 0)
		log_error("handles left open at exit");
	conf_free(&d.conf);
	return rc;
}
