#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "fan.h"
#include "filter.h"
#include "frame.h"
#include "head.h"
#include "hub.h"
#include "log.h"
#include "req.h"
#include "xmlw.h"

#define READ_SIZE	65536
/* A client with this much output waiting is written at once, not at the
 * end of the loop turn: a burst from the server reaches it sooner. */
#define WRITE_EARLY	65536
/* Views handed to one writev. */
#define WRITE_BUFS	64
/* The ids the hub puts on the wire for clients' requests: PREFIX-CLIENT-SEQ. */
#define WIRE_PREFIX	"clawsd-r-"
#define NS_STANZAS	"urn:ietf:params:xml:ns:xmpp-stanzas"

/* A stanza waiting for its receipt: its ordinal and its id (or NULL). */
struct receipt {
	unsigned long	 n;
	char		*id;
};

struct client {
	uv_pipe_t		 pipe;
	struct hub		*hub;
	struct client		*prev, *next;
	struct frame		*frame;
	struct fan_queue	 out;
	size_t			 inflight;	/* bytes of out being written */
	uv_write_t		 wreq;
	unsigned long		 id;
	unsigned long		 nstanzas;	/* written by the client */
	struct req		 req;		/* its requests and recent ids */
	struct filter		*filter;	/* NULL: everything */
	int			 receipts;	/* it asked for them */
	struct receipt		*rcpt;		/* waiting, in order */
	size_t			 rfirst, rcount, rcap;
	int			 eof;		/* its input ended */
	int			 writing;
	int			 closing;	/* close once the output is out */
	int			 deaf;		/* stopped reading: output dropped */
	int			 closed;	/* uv_close called */
};

struct hub {
	uv_loop_t		*loop;
	const struct hub_cb	*cb;
	void			*arg;
	uv_pipe_t		*listener;	/* NULL when not listening */
	char			*path;		/* socket file we created */
	struct stat		 path_st;	/* its identity */
	uv_prepare_t		 flush;
	uv_timer_t		 expiry;	/* requests past reply_timeout */
	int			 handles;	/* open of flush and expiry */
	struct client		*clients;
	size_t			 nclients;
	unsigned long		 next_id;
	size_t			 max_clients;
	size_t			 client_buffer;
	size_t			 max_stanza_size;
	uint64_t		 reply_ms;
	char			*account;	/* bare JID */
	int			 up;		/* the session is bound */
	int			 paused;	/* clients' input not read */
	struct fan		 fan;
	struct buf		 status;
	char			 rbuf[READ_SIZE];
};

static void client_close(struct client *);
static void client_flush(struct client *);
static void on_expiry(uv_timer_t *);
static void flush_all(struct hub *);
static void on_flush(uv_prepare_t *);

/* `n' 0: not about one stanza; `id' NULL: that stanza had none. */
static void
error_line(struct buf *out, const char *condition, const char *text,
    unsigned long n, const char *id)
{
	buf_puts(out, "<error xmlns=\"urn:x-clawsd\"");
	xmlw_attr_pair(out, "reason", condition);
	if (n > 0)
		buf_printf(out, " n=\"%lu\"", n);
	if (n > 0 && id != NULL)
		xmlw_attr_pair(out, "id", id);
	buf_putc(out, '>');
	xmlw_text(out, text, strlen(text));
	buf_puts(out, "</error>\n");
}

/* Write before the loop next blocks; at once if that cannot be arranged. */
static void
schedule_flush(struct hub *h)
{
	if (uv_prepare_start(&h->flush, on_flush) != 0)
		flush_all(h);
}

/* Queue a line for one client; a subscriber too slow to keep up is cut. */
static void
client_queue(struct client *c, const struct fan_ref *r)
{
	struct hub *h = c->hub;

	if (c->closed || c->deaf)
		return;
	/* A line always fits an empty queue, however large it came. */
	if (c->out.bytes > 0 && c->out.bytes + r->len > h->client_buffer) {
		log_warn("client %lu: more than %zu bytes unread, disconnecting",
		    c->id, h->client_buffer);
		client_close(c);
		return;
	}
	fan_queue_push(&c->out, r);
	if (c->out.bytes >= WRITE_EARLY && !c->writing)
		client_flush(c);
	else
		schedule_flush(h);
}

static void
client_send(struct client *c, const char *data, size_t len)
{
	struct fan_ref r;

	fan_put(&c->hub->fan, data, len, &r);
	client_queue(c, &r);
}

static void
stanza_error(struct client *c, const char *condition, const char *text,
    unsigned long n, const char *id)
{
	struct buf line;

	if (n > 0)
		log_info("client %lu: %s: %s (stanza %lu)", c->id, condition,
		    text, n);
	else
		log_info("client %lu: %s: %s", c->id, condition, text);
	buf_init(&line);
	error_line(&line, condition, text, n, id);
	client_send(c, line.data, line.len);
	buf_free(&line);
}

static void
client_error(struct client *c, const char *condition, const char *text)
{
	stanza_error(c, condition, text, 0, NULL);
}

static void
on_client_closed(uv_handle_t *handle)
{
	struct client *c = handle->data;
	size_t held = c->out.bytes;

	frame_free(c->frame);
	fan_queue_clear(&c->out);
	req_free(&c->req);
	filter_free(c->filter);
	while (c->rcount > 0) {
		free(c->rcpt[c->rfirst].id);
		c->rfirst = (c->rfirst + 1) % c->rcap;
		c->rcount--;
	}
	free(c->rcpt);
	free(c);
	/* A subscriber cut with a backlog leaves blocks free in the heap. */
	if (held >= WRITE_EARLY)
		malloc_trim(0);
}

static void
client_close(struct client *c)
{
	struct hub *h = c->hub;

	if (c->closed)
		return;
	c->closed = 1;
	if (c->prev)
		c->prev->next = c->next;
	else
		h->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->nclients--;
	log_debug("client %lu: closed", c->id);
	uv_close((uv_handle_t *)&c->pipe, on_client_closed);
}

/* Close after what is queued for the client has been written. */
static void
client_finish(struct client *c)
{
	c->closing = 1;
	uv_read_stop((uv_stream_t *)&c->pipe);
	if (c->out.bytes == 0)
		client_close(c);
	else
		schedule_flush(c->hub);
}

/*
 * Half-closed (SPEC 4.4): once nothing it waits for is pending, the client
 * is closed after its last line.
 */
static void
client_settle(struct client *c)
{
	if (c->eof && !c->closing && !c->closed &&
	    req_pending(&c->req) == 0 && c->rcount == 0)
		client_finish(c);
}

static void
expiry_arm(struct hub *h)
{
	int rc;

	if (uv_is_active((uv_handle_t *)&h->expiry))
		return;
	if ((rc = uv_timer_start(&h->expiry, on_expiry, 1000, 1000)) != 0)
		log_error("socket: request timer: %s", uv_strerror(rc));
}

static uint64_t
make_tag(const struct client *c, unsigned long n)
{
	return (uint64_t)c->id << 32 | (uint32_t)n;
}

static void
receipt_wait(struct client *c, unsigned long n, const char *id)
{
	struct receipt *r;
	size_t i;

	if (c->rcount == c->rcap) {
		r = xmalloc((c->rcap ? c->rcap * 2 : 16) * sizeof(*r));
		for (i = 0; i < c->rcount; i++)
			r[i] = c->rcpt[(c->rfirst + i) % c->rcap];
		free(c->rcpt);
		c->rcpt = r;
		c->rcap = c->rcap ? c->rcap * 2 : 16;
		c->rfirst = 0;
	}
	r = &c->rcpt[(c->rfirst + c->rcount++) % c->rcap];
	r->n = n;
	r->id = id != NULL ? xstrdup(id) : NULL;
}

/*
 * Send the client's iq request under an id of the hub's own, which its
 * answer brings back: several clients may use the same id at once.
 */
static const char *
submit_request(struct client *c, const char *data, size_t len,
    const struct frame_stanza *st, uint64_t tag, const char **text)
{
	struct hub *h = c->hub;
	struct head_val v;
	const char *condition;
	unsigned long seq;
	struct buf wire;

	if (head_attr(data, st->head, "id", &v) != 0) {
		*text = "the id attribute cannot be found";
		return FRAME_NOT_WELL_FORMED;
	}
	seq = req_add(&c->req, st->id, st->to, c->nstanzas,
	    uv_now(h->loop) + h->reply_ms);
	if (seq == 0) {
		*text = "too many requests waiting for their answers";
		return "queue-full";
	}
	buf_init(&wire);
	buf_append(&wire, data, (size_t)(v.p - data));
	buf_printf(&wire, WIRE_PREFIX "%lu-%lu", c->id, seq);
	buf_append(&wire, v.p + v.len, len - (size_t)(v.p + v.len - data));
	condition = h->cb->stanza(h->arg, wire.data, wire.len, tag, text);
	buf_free(&wire);
	if (condition != NULL)
		req_cancel(&c->req, seq);
	else
		expiry_arm(h);
	return condition;
}

static int
is_request(const struct frame_stanza *st)
{
	return strcmp(st->name, "iq") == 0 && st->id != NULL &&
	    st->type != NULL && (strcmp(st->type, "get") == 0 ||
	    strcmp(st->type, "set") == 0);
}

static void
on_frame_stanza(void *arg, const char *data, size_t len,
    const struct frame_stanza *st)
{
	struct client *c = arg;
	struct hub *h = c->hub;
	const char *condition, *text;
	uint64_t tag;

	c->nstanzas++;
	tag = c->receipts ? make_tag(c, c->nstanzas) : 0;
	if (is_request(st))
		condition = submit_request(c, data, len, st, tag, &text);
	else
		condition = h->cb->stanza(h->arg, data, len, tag, &text);
	if (condition != NULL) {
		stanza_error(c, condition, text, c->nstanzas, st->id);
		return;
	}
	if (st->id != NULL && strcmp(st->name, "iq") != 0) {
		req_sent(&c->req, st->id, uv_now(h->loop) + h->reply_ms);
		expiry_arm(h);
	}
	if (tag != 0)
		receipt_wait(c, c->nstanzas, st->id);
}

static void
on_frame_reject(void *arg, const char *condition, const char *text)
{
	client_error(arg, condition, text);
}

static void
command_status(struct client *c)
{
	struct hub *h = c->hub;
	struct hub_state st;
	struct buf line;
	size_t len;

	memset(&st, 0, sizeof(st));
	h->cb->state(h->arg, &st);
	buf_init(&line);
	buf_puts(&line, "<status xmlns=\"urn:x-clawsd\"");
	xmlw_attr_pair(&line, "state", st.state);
	if (st.jid != NULL)
		xmlw_attr_pair(&line, "jid", st.jid);
	buf_printf(&line, " sm=\"%s\" queued=\"%zu\" unacked=\"%zu\" "
	    "clients=\"%zu\" since=\"%lu\" catching_up=\"%s\"",
	    st.sm ? "yes" : "no", st.queued, st.unacked, h->nclients, st.since,
	    st.catching_up ? "yes" : "no");
	len = line.len;
	buf_putc(&line, '>');
	h->cb->rooms(h->arg, &line);
	if (line.len == len + 1) {
		line.len = len;
		buf_puts(&line, "/>\n");
	} else
		buf_puts(&line, "</status>\n");
	client_send(c, line.data, line.len);
	buf_free(&line);
}

static void
on_frame_command(void *arg, const char *name, const char **attrs)
{
	struct client *c = arg;
	struct filter *f;
	const char *err;

	if (strcmp(name, "filter") == 0) {
		if ((f = filter_parse(attrs, &err)) == NULL) {
			client_error(c, "bad-command", err);
			return;
		}
		filter_free(c->filter);
		/* No attribute: everything, as if no filter was set. */
		c->filter = attrs[0] != NULL ? f : NULL;
		if (c->filter == NULL)
			filter_free(f);
		return;
	}
	if (strcmp(name, "status") != 0 && strcmp(name, "receipts") != 0) {
		client_error(c, "unknown-command",
		    "expected status, receipts or filter");
		return;
	}
	if (attrs[0] != NULL) {
		client_error(c, "bad-command", "this command takes no "
		    "attributes");
		return;
	}
	if (strcmp(name, "status") == 0)
		command_status(c);
	else
		c->receipts = 1;
}

static const struct frame_cb frame_cb = {
	.stanza = on_frame_stanza,
	.reject = on_frame_reject,
	.command = on_frame_command,
};

static void
client_input(struct client *c, const char *data, size_t len)
{
	const char *condition, *text;

	if (c->closing || c->closed)
		return;
	if (frame_feed(c->frame, data, len) == 0)
		return;
	frame_error(c->frame, &condition, &text);
	client_error(c, condition, text);
	client_finish(c);
}

/*
 * Its input ended: what it wrote is sent; it gets its answers and receipts
 * before it is closed (SPEC 4.4).
 */
static void
client_eof(struct client *c)
{
	const char *condition, *text;

	uv_read_stop((uv_stream_t *)&c->pipe);
	if (c->closing)
		return;
	c->eof = 1;
	if (frame_finish(c->frame) != 0) {
		frame_error(c->frame, &condition, &text);
		log_info("client %lu: dropped the unfinished element its "
		    "input ended in", c->id);
		client_error(c, condition, text);
		client_finish(c);
		return;
	}
	client_settle(c);
}

static void
on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	struct client *c = handle->data;

	/* Reads are consumed before the next one: one buffer serves all. */
	buf->base = c->hub->rbuf;
	buf->len = sizeof(c->hub->rbuf);
}

static void
on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct client *c = stream->data;

	if (n > 0) {
		client_input(c, buf->base, (size_t)n);
		return;
	}
	if (n == 0 || c->closed)
		return;
	if (n == UV_EOF) {
		client_eof(c);
		return;
	}
	log_info("client %lu: read: %s", c->id, uv_strerror((int)n));
	client_finish(c);
}

/*
 * The client went away or stopped reading.  What it wrote before that is
 * still read and sent, so it is closed at its end of input, not now.
 */
static void
write_failed(struct client *c, int err)
{
	log_info("client %lu: write: %s", c->id, uv_strerror(err));
	c->deaf = 1;
	c->inflight = 0;
	fan_queue_clear(&c->out);
	/* Gone for good once its input has ended too: nobody waits. */
	if (c->closing || c->eof)
		client_close(c);
}

static void
on_write(uv_write_t *req, int status)
{
	struct client *c = req->data;

	c->writing = 0;
	if (c->closed)
		return;
	if (status < 0) {
		write_failed(c, status);
		return;
	}
	fan_queue_consume(&c->out, c->inflight);
	c->inflight = 0;
	if (c->out.bytes > 0)
		schedule_flush(c->hub);
	else if (c->closing)
		client_close(c);
}

/*
 * Write straight away when the socket takes it all, the usual case: no
 * request, so no poll registration either.  What it does not take is
 * handed to libuv, which writes it when the client reads.
 */
static void
client_flush(struct client *c)
{
	uv_buf_t bufs[WRITE_BUFS];
	size_t i;
	int n, rc;

	if (c->writing || c->closed || c->out.bytes == 0)
		return;
	n = uv_try_write((uv_stream_t *)&c->pipe, bufs,
	    fan_queue_bufs(&c->out, bufs, WRITE_BUFS));
	if (n == UV_EAGAIN)
		n = 0;
	if (n < 0) {
		write_failed(c, n);
		return;
	}
	fan_queue_consume(&c->out, (size_t)n);
	if (c->out.bytes == 0) {
		if (c->closing)
			client_close(c);
		return;
	}
	n = fan_queue_bufs(&c->out, bufs, WRITE_BUFS);
	for (i = 0; i < (size_t)n; i++)
		c->inflight += bufs[i].len;
	c->wreq.data = c;
	rc = uv_write(&c->wreq, (uv_stream_t *)&c->pipe, bufs, (unsigned)n,
	    on_write);
	if (rc < 0) {
		write_failed(c, rc);
		return;
	}
	c->writing = 1;
}

static void
flush_all(struct hub *h)
{
	struct client *c, *next;

	for (c = h->clients; c != NULL; c = next) {
		next = c->next;
		client_flush(c);
	}
}

/* Once a loop turn, before blocking: one write per client for its lines. */
static void
on_flush(uv_prepare_t *prep)
{
	(void)uv_prepare_stop(prep);	/* cannot fail */
	flush_all(prep->data);
}

static void
log_peer(struct client *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) == 0 &&
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		log_info("client %lu: connected (pid %ld, uid %ld)", c->id,
		    (long)cred.pid, (long)cred.uid);
	else
		log_info("client %lu: connected", c->id);
}

/* Start reading a client; one that cannot be read is closed. */
static void
client_read(struct client *c)
{
	int rc;

	if ((rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc,
	    on_read)) != 0) {
		log_warn("client %lu: read: %s", c->id, uv_strerror(rc));
		client_close(c);
	}
}

static void
on_connection(uv_stream_t *server, int status)
{
	struct hub *h = server->data;
	struct client *c;
	int rc;

	if (status < 0) {
		log_warn("socket: accept: %s", uv_strerror(status));
		return;
	}
	c = xcalloc(1, sizeof(*c));
	if ((rc = uv_pipe_init(h->loop, &c->pipe, 0)) != 0) {
		log_error("socket: %s", uv_strerror(rc));
		free(c);
		return;
	}
	c->hub = h;
	c->id = ++h->next_id;
	fan_queue_init(&c->out);
	c->pipe.data = c;
	c->next = h->clients;
	if (h->clients)
		h->clients->prev = c;
	h->clients = c;
	h->nclients++;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
		client_close(c);
		return;
	}
	log_peer(c);
	if (h->nclients > h->max_clients) {
		client_error(c, "too-many-clients", "max_clients reached");
		client_finish(c);
		return;
	}
	c->frame = frame_new(h->max_stanza_size, &frame_cb, c);
	if (c->frame == NULL) {
		client_close(c);
		return;
	}
	client_send(c, h->status.data, h->status.len);
	if (!h->paused)
		client_read(c);
}

struct hub *
hub_new(uv_loop_t *loop, const struct hub_cb *cb, void *arg)
{
	struct hub *h = xcalloc(1, sizeof(*h));

	h->loop = loop;
	h->cb = cb;
	h->arg = arg;
	if (uv_prepare_init(loop, &h->flush) != 0) {
		free(h);
		return NULL;
	}
	buf_init(&h->status);
	fan_init(&h->fan);
	h->flush.data = h;
	uv_timer_init(loop, &h->expiry);
	h->expiry.data = h;
	h->handles = 2;
	return h;
}

void
hub_configure(struct hub *h, const struct conf *conf)
{
	h->max_clients = conf->max_clients;
	h->client_buffer = conf->client_buffer;
	h->max_stanza_size = conf->max_stanza_size;
	h->reply_ms = (uint64_t)conf->reply_timeout * 1000;
	free(h->account);
	h->account = xmalloc(strlen(conf->user) + strlen(conf->domain) + 2);
	sprintf(h->account, "%s@%s", conf->user, conf->domain);
}

/*
 * Whoever may write to the socket's folder may put a socket of their own in
 * its place: refuse a folder everyone may write to (unless it is sticky, as
 * /tmp is: there only the owner renames or removes a file) or one that
 * belongs to another user than root or us.
 */
static int
check_folder(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat st;

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s",
		    slash == path ? 1 : (int)(slash - path), path);
	if (stat(dir, &st) != 0) {
		log_error("socket: folder %s: %s", dir, strerror(errno));
		return -1;
	}
	if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
		log_error("socket: folder %s is writable by everyone", dir);
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		log_error("socket: folder %s belongs to uid %ld, neither root "
		    "nor us", dir, (long)st.st_uid);
		return -1;
	}
	if ((st.st_mode & S_IWGRP) && !(st.st_mode & S_ISVTX))
		log_warn("socket: folder %s is writable by its group", dir);
	return 0;
}

/* Whether the file at `path' is the one whose identity is `st'. */
static int
same_file(const char *path, const struct stat *st)
{
	struct stat now;

	return lstat(path, &now) == 0 && now.st_dev == st->st_dev &&
	    now.st_ino == st->st_ino;
}

/*
 * A socket file at `path' is either held by a live daemon (refuse to start)
 * or left over by one that died (remove it).  Only ECONNREFUSED says that
 * nobody listens: EACCES and the like say nothing, and the file may well
 * be another daemon's.
 */
static int
clear_stale(const char *path)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, rc, err;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		log_error("socket: %s exists and is not a socket", path);
		return -1;
	}
	/* Non-blocking: a daemon too busy to accept still counts as alive. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		log_error("socket: %s", strerror(errno));
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	err = errno;
	close(fd);
	if (rc == 0 || err == EAGAIN) {
		log_error("socket: %s: another daemon is listening there",
		    path);
		return -1;
	}
	if (err != ECONNREFUSED) {
		log_error("socket: %s: cannot tell whether a daemon listens "
		    "there: %s", path, strerror(err));
		return -1;
	}
	/* Not if another daemon has put its own there meanwhile. */
	if (!same_file(path, &st)) {
		log_error("socket: %s: replaced while being checked", path);
		return -1;
	}
	log_info("socket: removing stale %s", path);
	if (unlink(path) != 0 && errno != ENOENT) {
		log_error("socket: unlink %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * chown only when the group is not already right: the shipped service's
 * system call filter has no chown at all (~@privileged), and the socket it
 * creates has the daemon's group, the only one it could set anyway.
 */
static int
set_group(const char *path, gid_t gid)
{
	struct stat st;

	if (gid == (gid_t)-1 || (lstat(path, &st) == 0 && st.st_gid == gid))
		return 0;
	return chown(path, (uid_t)-1, gid);
}

/*
 * A listening socket under a temporary name in the socket's folder, with
 * no access for anyone else until its mode and group are set: it is never
 * more open than configured.  `st' gets its identity.
 */
static int
bind_socket(const struct conf *conf, char *tmp, size_t size,
    struct stat *st)
{
	struct sockaddr_un sun;
	mode_t old;
	int fd, rc;

	if ((size_t)snprintf(tmp, size, "%s.%ld", conf->socket_path,
	    (long)getpid()) >= size) {
		log_error("socket: path too long: %s", conf->socket_path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		log_error("socket: %s", strerror(errno));
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, tmp, strlen(tmp) + 1);
	unlink(tmp);
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc != 0) {
		log_error("socket: bind %s: %s", tmp, strerror(errno));
		close(fd);
		return -1;
	}
	if (chmod(tmp, conf->socket_mode) != 0 ||
	    set_group(tmp, conf->socket_gid) != 0 ||
	    listen(fd, 128) != 0 || lstat(tmp, st) != 0) {
		log_error("socket: %s: %s", tmp, strerror(errno));
		unlink(tmp);
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Put the socket at `tmp' in place.  link() takes the path only if it is
 * free, atomically: of two daemons starting at once, one gets it and the
 * other fails, where a rename would let each replace the other's.  Our own
 * socket (a reload with the same path) is replaced in one step: rename.
 */
static int
place_socket(const char *tmp, const char *path, int ours)
{
	int rc = ours ? rename(tmp, path) : link(tmp, path);

	if (rc != 0) {
		if (errno == EEXIST)
			log_error("socket: %s: taken by another daemon "
			    "meanwhile", path);
		else
			log_error("socket: %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	if (!ours)
		unlink(tmp);
	return 0;
}

static void
on_listener_closed(uv_handle_t *handle)
{
	free(handle);
}

static uv_pipe_t *
open_listener(struct hub *h, int fd)
{
	uv_pipe_t *l = xcalloc(1, sizeof(*l));
	int rc;

	if ((rc = uv_pipe_init(h->loop, l, 0)) != 0) {
		log_error("socket: %s", uv_strerror(rc));
		free(l);
		close(fd);
		return NULL;
	}
	l->data = h;
	/* Once open, the descriptor is the pipe's: uv_close closes it. */
	if ((rc = uv_pipe_open(l, fd)) != 0)
		close(fd);
	else if ((rc = uv_listen((uv_stream_t *)l, 128, on_connection)) == 0)
		return l;
	log_error("socket: listen: %s", uv_strerror(rc));
	uv_close((uv_handle_t *)l, on_listener_closed);
	return NULL;
}

/* Is the file at `path' still the socket we created? */
static int
owns(const struct hub *h, const char *path)
{
	return h->path != NULL && strcmp(h->path, path) == 0 &&
	    same_file(path, &h->path_st);
}

/*
 * Close the listener, and remove its file unless `replaced' or no longer
 * ours (another daemon may have taken the path since).
 */
static void
drop_listener(struct hub *h, int replaced)
{
	if (h->listener != NULL)
		uv_close((uv_handle_t *)h->listener, on_listener_closed);
	h->listener = NULL;
	if (h->path != NULL && !replaced && owns(h, h->path))
		unlink(h->path);
	free(h->path);
	h->path = NULL;
}

/*
 * The new listener is set up in full before the old one (a reload) goes:
 * if anything fails, the old one is kept.
 */
int
hub_listen(struct hub *h, const struct conf *conf, int fd)
{
	char tmp[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int own_fd = fd < 0, ours = own_fd && owns(h, conf->socket_path);
	struct stat st;
	uv_pipe_t *l;

	hub_configure(h, conf);
	if (own_fd) {
		if (check_folder(conf->socket_path) != 0 ||
		    (!ours && clear_stale(conf->socket_path) != 0))
			return -1;
		if ((fd = bind_socket(conf, tmp, sizeof(tmp), &st)) < 0)
			return -1;
	}
	if ((l = open_listener(h, fd)) == NULL) {
		if (own_fd)
			unlink(tmp);
		return -1;
	}
	if (own_fd && place_socket(tmp, conf->socket_path, ours) != 0) {
		uv_close((uv_handle_t *)l, on_listener_closed);
		return -1;
	}
	drop_listener(h, ours);
	h->listener = l;
	if (own_fd) {
		h->path = xstrdup(conf->socket_path);
		h->path_st = st;
	}
	log_info("socket: listening on %s",
	    h->path ? h->path : "the socket passed by systemd");
	return 0;
}

void
hub_unlisten(struct hub *h)
{
	drop_listener(h, 0);
}

void
hub_broadcast(struct hub *h, const char *line, size_t len)
{
	struct client *c, *next;
	struct fan_ref r;

	if (h->clients == NULL)
		return;
	fan_put(&h->fan, line, len, &r);
	for (c = h->clients; c != NULL; c = next) {
		next = c->next;
		if (!c->closing)
			client_queue(c, &r);
	}
}

static struct client *
find_client(struct hub *h, unsigned long id)
{
	struct client *c;

	for (c = h->clients; c != NULL; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

/*
 * While the session is down nothing goes out, and the clock waits: a
 * request has reply_timeout from the time it can be sent.
 */
static void
extend_all(struct hub *h)
{
	struct client *c;

	for (c = h->clients; c != NULL; c = c->next)
		req_extend(&c->req, uv_now(h->loop) + h->reply_ms);
}

/* Every second while requests wait: those past reply_timeout get theirs. */
static void
on_expiry(uv_timer_t *t)
{
	struct hub *h = t->data;
	struct client *c, *next;
	struct req_done done;
	char text[64];
	int busy = 0;

	if (!h->up)
		extend_all(h);
	snprintf(text, sizeof(text), "no answer in %llu s",
	    (unsigned long long)(h->reply_ms / 1000));
	for (c = h->clients; c != NULL; c = next) {
		next = c->next;
		while (req_expired(&c->req, uv_now(h->loop), &done)) {
			stanza_error(c, "timeout", text, done.n, done.id);
			free(done.id);
		}
		busy |= !req_idle(&c->req);
		client_settle(c);
	}
	if (!busy)
		uv_timer_stop(t);
}

/*
 * An answer to a client's request, by the id the hub gave it on the wire:
 * to that client only, with its own id in place of the hub's.  One from
 * elsewhere than the request went to, or too late, is dropped.
 */
static void
route_answer(struct hub *h, const struct head *hd)
{
	unsigned long cid, seq;
	struct req_done done;
	struct head_val v;
	struct client *c;
	struct buf line;

	if (sscanf(hd->id, WIRE_PREFIX "%lu-%lu", &cid, &seq) != 2 ||
	    (c = find_client(h, cid)) == NULL ||
	    !req_answer(&c->req, seq, hd->from, h->account, &done)) {
		log_debug("dropped the answer %s: its client or its request "
		    "is gone", hd->id);
		return;
	}
	if (head_attr(hd->line, hd->len, "id", &v) == 0) {
		buf_init(&line);
		buf_append(&line, hd->line, (size_t)(v.p - hd->line));
		xmlw_attr(&line, done.id, strlen(done.id));
		buf_append(&line, v.p + v.len, hd->len -
		    (size_t)(v.p + v.len - hd->line));
		client_send(c, line.data, line.len);
		buf_free(&line);
	}
	free(done.id);
	client_settle(c);
}

/* A bounce of a client's recent message or presence: to it alone. */
static int
route_bounce(struct hub *h, const struct head *hd)
{
	struct client *c;

	for (c = h->clients; c != NULL; c = c->next) {
		if (!c->closing && req_bounce(&c->req, hd->id,
		    uv_now(h->loop))) {
			client_send(c, hd->line, hd->len);
			return 1;
		}
	}
	return 0;
}

/*
 * A request that no client receives is answered here, so the requester is
 * not left waiting (RFC 6120 8.4).
 */
static void
unserved(struct hub *h, const struct head *hd)
{
	struct buf iq;
	const char *text;

	if (hd->id == NULL)
		return;
	buf_init(&iq);
	buf_puts(&iq, "<iq type=\"error\"");
	xmlw_attr_pair(&iq, "id", hd->id);
	if (hd->from != NULL)
		xmlw_attr_pair(&iq, "to", hd->from);
	buf_puts(&iq, "><error type=\"cancel\"><service-unavailable xmlns=\""
	    NS_STANZAS "\"/></error></iq>");
	log_info("answered a request no client receives with "
	    "service-unavailable");
	if (h->cb->stanza(h->arg, iq.data, iq.len, 0, &text) != NULL)
		log_info("could not answer the request: %s", text);
	buf_free(&iq);
}

static int
is_type(const struct head *hd, const char *a, const char *b)
{
	return hd->type != NULL && (strcmp(hd->type, a) == 0 ||
	    (b != NULL && strcmp(hd->type, b) == 0));
}

void
hub_relay(struct hub *h, const struct head *hd)
{
	struct client *c, *next;
	struct fan_ref r;
	int served = 0;

	if (hd->kind == HEAD_IQ && hd->id != NULL &&
	    strncmp(hd->id, WIRE_PREFIX, sizeof(WIRE_PREFIX) - 1) == 0 &&
	    is_type(hd, "result", "error")) {
		route_answer(h, hd);
		return;
	}
	if ((hd->kind == HEAD_MESSAGE || hd->kind == HEAD_PRESENCE) &&
	    hd->id != NULL && is_type(hd, "error", NULL) &&
	    route_bounce(h, hd))
		return;
	/* Copied once, only when a client takes it; shared by all. */
	for (c = h->clients; c != NULL; c = next) {
		next = c->next;
		if (c->closing || (c->filter != NULL &&
		    !filter_match(c->filter, hd, h->account)))
			continue;
		if (served++ == 0)
			fan_put(&h->fan, hd->line, hd->len, &r);
		client_queue(c, &r);
	}
	if (served == 0 && hd->kind == HEAD_IQ && is_type(hd, "get", "set"))
		unserved(h, hd);
}

/* The receipt of a client's n-th stanza, wherever it waits. */
static int
receipt_take(struct client *c, unsigned long n, char **id)
{
	struct receipt *r;
	size_t i, j;

	for (i = 0; i < c->rcount; i++) {
		r = &c->rcpt[(c->rfirst + i) % c->rcap];
		if ((uint32_t)r->n != (uint32_t)n)
			continue;
		*id = r->id;
		/* In order, it is the first: otherwise close the gap. */
		for (j = i; j > 0; j--)
			c->rcpt[(c->rfirst + j) % c->rcap] =
			    c->rcpt[(c->rfirst + j - 1) % c->rcap];
		c->rfirst = (c->rfirst + 1) % c->rcap;
		c->rcount--;
		return 1;
	}
	return 0;
}

static struct client *
tag_client(struct hub *h, uint64_t tag, unsigned long *n, char **id)
{
	struct client *c = find_client(h, (unsigned long)(tag >> 32));

	*n = (unsigned long)(tag & 0xffffffffu);
	if (c == NULL || c->closing || !receipt_take(c, *n, id))
		return NULL;
	return c;
}

void
hub_acked(struct hub *h, uint64_t tag)
{
	struct client *c;
	unsigned long n;
	struct buf line;
	char *id;

	if ((c = tag_client(h, tag, &n, &id)) == NULL)
		return;
	buf_init(&line);
	buf_printf(&line, "<ack xmlns=\"urn:x-clawsd\" n=\"%lu\"", n);
	if (id != NULL)
		xmlw_attr_pair(&line, "id", id);
	buf_puts(&line, "/>\n");
	client_send(c, line.data, line.len);
	buf_free(&line);
	free(id);
	client_settle(c);
}

void
hub_refused(struct hub *h, uint64_t tag, const char *condition,
    const char *text)
{
	struct client *c;
	unsigned long n;
	char *id;

	if ((c = tag_client(h, tag, &n, &id)) == NULL)
		return;
	stanza_error(c, condition, text, n, id);
	free(id);
	client_settle(c);
}

void
hub_status(struct hub *h, const char *line, size_t len, int announce)
{
	h->status.len = 0;
	buf_append(&h->status, line, len);
	if (announce)
		hub_broadcast(h, line, len);
}

void
hub_drain(struct hub *h)
{
	struct client *c, *next;
	uv_os_fd_t fd;
	ssize_t n;

	for (c = h->clients; c != NULL; c = next) {
		next = c->next;
		if (c->closing || c->eof ||
		    uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0)
			continue;
		while (!c->closing &&
		    (n = read(fd, h->rbuf, sizeof(h->rbuf))) > 0)
			client_input(c, h->rbuf, (size_t)n);
	}
}

void
hub_session(struct hub *h, int up)
{
	if (up && !h->up)
		extend_all(h);
	h->up = up;
}

void
hub_pause(struct hub *h, int paused)
{
	struct client *c, *next;

	if (h->paused == paused)
		return;
	h->paused = paused;
	for (c = h->clients; c != NULL; c = next) {
		next = c->next;
		if (c->closing || c->eof || c->frame == NULL)
			continue;
		/* uv_read_stop cannot fail (libuv's documentation). */
		if (paused)
			uv_read_stop((uv_stream_t *)&c->pipe);
		else
			client_read(c);
	}
}

void
hub_close_clients(struct hub *h)
{
	while (h->clients != NULL)
		client_close(h->clients);
}

static void
on_hub_closed(uv_handle_t *handle)
{
	struct hub *h = handle->data;

	/* The last of its handles to close frees the hub. */
	if (--h->handles == 0)
		free(h);
}

void
hub_free(struct hub *h)
{
	if (h == NULL)
		return;
	hub_unlisten(h);
	hub_close_clients(h);
	buf_free(&h->status);
	fan_free(&h->fan);
	free(h->account);
	/* The last handle to close frees the hub, on the next loop turn. */
	uv_close((uv_handle_t *)&h->flush, on_hub_closed);
	uv_close((uv_handle_t *)&h->expiry, on_hub_closed);
}
